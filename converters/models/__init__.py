"""Keras model definitions for the zoo, layer names matching mmpose module paths."""
