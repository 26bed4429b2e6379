"""The header check lives in edge_pose.imagecheck (shared with predict and calibration); kept here for serve."""
from edge_pose.imagecheck import ImageHeaderError, image_format, image_size  # noqa: F401
