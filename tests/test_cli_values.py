"""Odd command-line values get one line and exit 2, never a traceback (real CLI, real bundle)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from shared import coco_mini

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args, says", [
    (["predict", "{bundle}", "{image}", "--out", "{file}"], "is a file; predict writes a directory"),
    (["bench", "{bundle}", "--pin", "999"], "--pin 999: no core 999 here"),
    (["bench", "{bundle}", "--threads", "0"], "--threads: every count must be at least 1"),
    (["bench", "{bundle}", "--threads", "two"], "--threads/--pin take comma lists of integers"),
    (["predict", "{bundle}", "{image}", "--out", "{dir}", "--threads", "0"], "must be at least 1, got 0"),
    (["predict", "{bundle}", "{image}", "--out", "{dir}", "--padding", "nan"], "--padding nan: must be"),
    (["explain", "{bundle}", "--allow-precision", "f64"], "invalid choice: 'f64'"),
    (["explain", "{file}"], "no such bundle or directory"),
    (["bench", "{bundle}", "--pipeline", "{image}", "--detect-every", "0"], "--detect-every must be at least 1"),
])
def test_odd_values_are_one_line(cpm_bundle, tmp_path, args, says):
    file = tmp_path / "a-file"
    file.write_text("x")
    fill = {"bundle": str(cpm_bundle.path), "image": str(coco_mini() / "000000000785.jpg"), "file": str(file),
            "dir": str(tmp_path / "out")}
    r = subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *[a.format(**fill) for a in args]], capture_output=True,
                       text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith(("INFO:", "usage:", " "))]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert any(says in ln for ln in lines) and len(lines) == 1, r.stderr
