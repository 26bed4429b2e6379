"""One base class for every error a user can cause; the CLI prints it as one line and exits non-zero."""


class EdgePoseError(Exception):
    """str(exc) is one line that names the file or value and what is wrong with it."""
