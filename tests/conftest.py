import os
import sys
from pathlib import Path

# Keep TensorFlow quiet and single-process friendly on the 2-core CI machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from source_fixtures import (onnx_crops, onnx_source, pb_crops, pb_source, sb_onnx_bundles,  # noqa: E402,F401
                             ssd_bundles)  # one instance per session


@pytest.fixture(scope="session")
def cpm_bundle(tmp_path_factory):
    """The shared CPM model as a LiteRT fp32 bundle (made once per test session)."""
    from bundles import cpm_tflite_bundle

    return cpm_tflite_bundle(tmp_path_factory.mktemp("bundles") / "cpm-tflite-fp32")


@pytest.fixture(scope="session")
def simplebaseline_ov_bundle(tmp_path_factory):
    """The shared SimpleBaseline-family ONNX as an OpenVINO FP32 bundle (made once per test session)."""
    from bundles import simplebaseline_openvino_bundle

    root = tmp_path_factory.mktemp("bundles")
    return simplebaseline_openvino_bundle(root / "sb-openvino-fp32", root / "work")
