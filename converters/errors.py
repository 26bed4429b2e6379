"""Errors the converters raise for user-caused problems (bad files, missing facts, unsupported ops)."""
from edge_pose.errors import EdgePoseError


class ConversionError(EdgePoseError):
    """A model that cannot be read or converted; str() is one line naming the file and the problem."""


class SourceError(ConversionError):
    """A model file that cannot be read, or facts about it that are missing or contradictory."""


class CheckpointError(EdgePoseError):
    """A checkpoint that cannot be read safely or does not hold a state dict; str() is one line naming the file."""
