"""What edge-pose can build and run, declared once: tasks, precisions, formats, backends and decoders.

Both sides read this package, so it sits below everything else (it imports nothing of the project's and nothing
heavy): the device profiles validate their entries against it, the selector and the bundle check read it, the
converters pick exporters from it and every CLI takes its choices from it. An entry names its implementation as a
"module:attribute" string, loaded only when used, so importing the registry never imports a runtime.

Adding a backend, a format or a decoder is one file (the implementation) and one entry here; docs/registry.md says
how.
"""
from __future__ import annotations

from registry.backends import BACKENDS, BackendEntry, normalise_accelerator
from registry.decoders import DECODERS, DETECT_HEADS, DecoderEntry, DetectHeadEntry
from registry.formats import FORMATS, FormatEntry, Target, execution_of, target, targets
from registry.loading import load
from registry.precisions import EXECUTION, PRECISIONS, PrecisionEntry, cpu_has_bf16
from registry.tasks import TASKS

__all__ = ["BACKENDS", "BackendEntry", "DECODERS", "DETECT_HEADS", "DecoderEntry", "DetectHeadEntry", "EXECUTION", "FORMATS", "FormatEntry",
           "PRECISIONS", "PrecisionEntry", "TASKS", "Target", "cpu_has_bf16", "execution_of", "load", "normalise_accelerator",
           "target", "targets"]
