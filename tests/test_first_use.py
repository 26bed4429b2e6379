"""What a new user meets first: mean/std units refused with the fix, one exit-code convention for a fidelity miss,
and the conversion libraries' own log lines kept off the terminal unless --verbose."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from converters.cli_common import library_noise
from converters.errors import SourceError
from converters.sources.facts import Facts
from edge_pose.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("mean,std,fix", [
    ("0.485,0.456,0.406", "58.395,57.12,57.375", "--mean 123.675,116.28,103.53"),
    ("123.675,116.28,103.53", "0.229,0.224,0.225", "--std 58.395,57.12,57.375"),
    ("0.5", None, "--mean 127.5,127.5,127.5"),
])
def test_zero_to_one_units_are_refused_with_the_values_times_255(mean, std, fix):
    with pytest.raises(SourceError, match=f"looks like 0..1 units.*multiply by 255: {fix}$"):
        Facts.parse(mean=mean, std=std)


def test_raw_pixel_normalisation_and_0_255_units_stay_valid():
    assert Facts.parse(mean="0,0,0", std="1,1,1").std == (1.0, 1.0, 1.0)
    assert Facts.parse(mean="1,0,1", std="1").mean == (1.0, 0.0, 1.0)
    assert Facts.parse(mean="123.675,116.28,103.53", std="58.395,57.12,57.375").mean[0] == 123.675


@pytest.mark.parametrize("std,message", [("0,1,1", "must be positive"), ("-58,57,57", "must be positive"),
                                         ("nan,57,57", "finite"), ("inf", "finite")])
def test_std_zero_negative_or_not_finite_is_refused(std, message):
    with pytest.raises(SourceError, match=message):
        Facts.parse(std=std)


def test_cli_units_mistake_is_one_line_before_anything_heavy_runs(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the facts are checked first")
    rc, _, err = _cli(["convert", str(model), "--input-size", "256,192", "--layout", "NCHW", "--color", "rgb",
                       "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--keypoints", "coco17",
                       "--out", str(tmp_path / "out")])
    lines = [ln for ln in err.splitlines() if "error" in ln]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "multiply by 255: --mean 123.675,116.28,103.53" in lines[0]


def test_convert_and_validate_document_the_same_exit_codes():
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("convert", "validate"):
        text = sub.choices[name].format_help()
        assert "exit status:" in text and "  1  it ran, but" in text and "  2  bad input" in text, name
        assert "--verbose" in text
    docs = (ROOT / "docs" / "convert.md").read_text()
    assert "exit status" in docs.lower() and "1" in docs


NOISE = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
         b"I0000 00:00:1796113624.720293   19440 port.cc:153] oneDNN custom operations are on.",
         b"E0000 00:00:1796113627.548716   19440 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
         b"Failed call to cuInit: UNKNOWN ERROR (303)",
         b"W0000 00:00:1796113627.701666   19440 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.",
         b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
         b"appropriate compiler flags.",
         b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."]


@pytest.mark.parametrize("verbose", [0, 1])
def test_c_level_noise_on_descriptor_2_is_dropped_unless_verbose(capfd, verbose):
    with library_noise(verbose):
        for line in NOISE:
            os.write(2, line + b"\n")
        os.write(2, b"[1/3] loading source litehrnet-18\n")
        print("edge-pose convert: error: x.json: no such file", file=sys.stderr)
    err = capfd.readouterr().err
    assert "[1/3] loading source litehrnet-18" in err and "edge-pose convert: error: x.json" in err
    assert ("cuInit" in err and "oneDNN" in err and "absl::InitializeLog" in err) == bool(verbose)
    assert ("XNNPACK" in err) == bool(verbose)
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def test_real_tensorflow_run_shows_only_our_lines(tmp_path):
    """A zoo model is built (TensorFlow imported, ops run: the cuInit/oneDNN/absl lines would print here), then the
    conversion stops on a missing evaluation file: stderr holds our progress lines and the one error line."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "edge_pose.cli.main", "convert", "litehrnet-18", "--format",
                          "tflite", "--precision", "fp32", "--eval", str(tmp_path / "missing.json"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert lines[0] == "[1/3] loading source litehrnet-18" and lines[-1].startswith("edge-pose convert: error: ")
    assert not [ln for ln in lines if any(w in ln for w in ("cuInit", "absl", "oneDNN", "cpu_feature_guard",
                                                            "I0000", "W0000", "E0000", "nncf"))], run.stderr


def test_readme_python_example_runs_as_written(cpm_bundle, tmp_path):
    """The README's snippet, verbatim, in a directory laid out as `make demo` leaves it."""
    import re
    import shutil

    from shared import coco_mini

    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    (tmp_path / "demo-out" / "bundles").mkdir(parents=True)
    shutil.copytree(cpm_bundle.path, tmp_path / "demo-out" / "bundles" / cpm_bundle.path.name)
    shutil.copyfile(coco_mini() / "000000000785.jpg", tmp_path / "demo-out" / "photo.jpg")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("]]") >= 1 and "[" in run.stdout  # one person's keypoints and scores printed


def test_converter_output_on_stdout_goes_to_stderr_so_stdout_keeps_only_the_json(capfd):
    """`convert --json > out.json` must get JSON only: inside stdout_to_stderr both Python's and a C library's
    stdout (descriptor 1) land on stderr, where the known calibrator line is dropped as noise."""
    from converters.cli_common import stdout_to_stderr

    with library_noise(0):
        with stdout_to_stderr():
            os.write(1, b"fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, "
                        b"output_inference_type: FLOAT32\n")
            os.write(1, b"a C library line\n")
            print("an onnx2tf line")
        print('[{"bundle": "x"}]')
    out, err = capfd.readouterr()
    assert out == '[{"bundle": "x"}]\n'
    assert "a C library line" in err and "an onnx2tf line" in err and "fully_quantize" not in err
