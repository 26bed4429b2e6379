"""Opt-in: the on-device install on arm64, end to end (scripts/arm64-check.sh under qemu-user emulation).

Minutes of emulation, root and network (debootstrap, PyPI), so it runs only with EDGE_POSE_ARM64=1; `make test`
skips it, `make arm64-check` runs the script directly. The script installs '.[litert]' and '.[openvino]' in a
Debian arm64 root, predicts there with bundles converted here and compares with the x86 keypoints.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared import ROOT, SHARED, SIMPLEBASELINE_ONNX, shared

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("EDGE_POSE_ARM64") != "1",
                       reason="arm64 emulation check is opt-in: set EDGE_POSE_ARM64=1 (minutes, root, network)"),
]


@pytest.mark.timeout(3600)
def test_arm64_device_install_predicts_like_x86():
    shared(*SIMPLEBASELINE_ONNX)
    shared("data", "coco-mini", "test_coco_det_AP_H_56.json")
    if os.geteuid() != 0:
        pytest.fail("EDGE_POSE_ARM64=1 but not root: the check needs debootstrap, chroot and bind mounts")
    env = dict(os.environ, EDGE_POSE_PYTHON=sys.executable, EDGE_POSE_SHARED=str(SHARED))
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "arm64-check.sh")], env=env, capture_output=True,
                          text=True, timeout=3500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "  | generic-arm64:" in proc.stdout  # detection inside the root
    assert "import tensorflow fails as it should" in proc.stdout
    assert "arm64-check: PASS" in proc.stdout
