"""Errors the converters raise for user-caused problems (bad files, missing facts, unsupported ops)."""
from edge_pose.errors import EdgePoseError


class ConversionError(EdgePoseError):
    """A model that cannot be read or converted; str() is one line naming the file and the problem."""


class SourceError(ConversionError):
    """A model file that cannot be read, or facts about it that are missing or contradictory."""


class CheckpointError(EdgePoseError):
    """A checkpoint that cannot be read safely or does not hold a state dict; str() is one line naming the file."""


class RuntimeRefused(ConversionError):
    """The runtime refuses to load or run an exported model (e.g. XNNPACK cannot prepare it): a failed attempt the
    fidelity guard records and moves past, not the end of the conversion."""
