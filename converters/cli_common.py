"""What every workstation subcommand needs: missing conversion tools and warnings as one line each."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings

from edge_pose.errors import EdgePoseError

CONVERT_MODULES = ("tensorflow", "tf_keras", "keras", "openvino", "nncf", "onnx", "onnxruntime", "onnx2tf",
                   "onnx_graphsurgeon", "sng4onnx", "pycocotools", "tqdm", "ai_edge_litert")


class MissingToolError(EdgePoseError):
    """A conversion tool is not installed here."""


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=file or sys.stderr)


@contextlib.contextmanager
def convert_tool_errors():
    """Turn a missing conversion package into one line saying what to install; print warnings as one line."""
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        yield
    except ImportError as exc:
        name = (getattr(exc, "name", None) or str(exc)).split(".")[0]
        if name not in CONVERT_MODULES:
            raise
        raise MissingToolError(f"{name} is not installed: install the conversion tools with "
                               "pip install 'edge-pose[convert]'") from None
    finally:
        warnings.showwarning = previous


def quiet_tensorflow() -> None:
    """TensorFlow's C++ INFO/WARNING lines bury the progress lines; keep errors only (unless the user chose)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
