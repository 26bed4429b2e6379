"""What every workstation subcommand needs: missing conversion tools and warnings as one line each, and the
libraries' own log lines (TensorFlow's C++ INFO/WARNING/ERROR lines such as "failed call to cuInit ... (303)" on a
machine without CUDA, absl's pre-initialisation notice, NNCF's INFO lines) kept off the terminal unless --verbose.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import threading
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
    """TensorFlow's C++ log lines bury the progress lines; none reach the user (unless they chose a level)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def add_verbose_argument(parser) -> None:
    """`edge-pose CMD --verbose` as well as `edge-pose -v CMD` (same dest; absent unless given, so -v survives)."""
    parser.add_argument("--verbose", action="count", default=argparse.SUPPRESS,
                        help="show the conversion libraries' own log lines (TensorFlow, absl, NNCF)")


# absl/glog-style lines ("I0000 00:00:1796113624.720293   19440 port.cc:153] ...": epoch seconds where the clock
# time goes before absl is initialised) that TensorFlow's C++ side writes straight to file descriptor 2, some before
# TF_CPP_MIN_LOG_LEVEL is even read, plus the two notices around them.
_NOISE = re.compile(rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] "
                    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                    rb"|To enable the following instructions: .* rebuild TensorFlow"
                    rb"|INFO: Created TensorFlow Lite \w+ delegate for CPU\.$"  # LiteRT, at each fidelity check
                    rb"|fully_quantize: \d+, inference_type: \d+, )")  # the TFLite calibrator, per int8 export
_active = threading.local()


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `then(module)` right after `name` is first imported (a library that sets its own log level at import
    time must be quietened after it, and pre-creating its logger would give it the wrong logger class)."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original, then = spec.loader.exec_module, self.then

        def exec_module(module):
            original(module)
            then(module)
        spec.loader.exec_module = exec_module
        return spec


def _after_import(name: str, then) -> None:
    if name in sys.modules:
        then(sys.modules[name])
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))


class _FilteredStderr:
    """Reroutes file descriptor 2 through a pipe whose reader drops the C++ noise lines and passes everything else
    on; Python's own sys.stderr keeps writing to the real stderr directly (a terminal stays a terminal for tqdm)."""

    def __enter__(self):
        sys.stderr.flush()
        try:  # only a sys.stderr that IS descriptor 2 is moved; a caller's redirect (a StringIO) stays as it is
            self.swap = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            self.swap = False
        self.saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.python_stderr = sys.stderr
        if self.swap:
            sys.stderr = open(os.dup(self.saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
        self.thread = threading.Thread(target=self._pump, args=(read_end,), daemon=True)
        self.thread.start()
        return self

    def _pump(self, fd: int) -> None:
        pending = b""
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not _NOISE.match(line))
                if kept:
                    os.write(self.saved, kept)
            if pending and not _NOISE.match(pending):
                os.write(self.saved, pending)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __exit__(self, *exc):
        if self.swap:  # left open: a handler made meanwhile (absl's) may hold it; it writes to the real stderr
            sys.stderr.flush()
            sys.stderr = self.python_stderr
        os.dup2(self.saved, 2)  # closes the pipe's last write end: the reader sees EOF
        self.thread.join(timeout=5)
        os.close(self.saved)


@contextlib.contextmanager
def stdout_to_stderr():
    """Everything written to stdout meanwhile goes to stderr, Python's prints (onnx2tf, NNCF) and any C/C++ library
    writing to descriptor 1 alike, so that stdout carries only the command's own table or JSON."""
    sys.stdout.flush()
    try:
        sys.__stdout__.flush()
    except (AttributeError, ValueError):
        pass
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def library_noise(verbose: int | bool = False):
    """Keep the conversion libraries' log lines off the terminal for the duration (all of them with --verbose)."""
    if verbose or getattr(_active, "on", False):
        yield
        return
    quiet_tensorflow()
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # a plain logger in TF too: safe to make first
    _after_import("absl.logging", lambda m: m.set_verbosity(m.ERROR))
    _after_import("nncf.common.logging.logger", lambda m: m.nncf_logger.setLevel(logging.WARNING))
    _active.on = True
    try:
        with _FilteredStderr():
            yield
    finally:
        _active.on = False
