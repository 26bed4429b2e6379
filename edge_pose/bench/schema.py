"""The bench results file, versioned: what `edge-pose bench` writes and `edge-pose bench report` merges.

Documented field by field in docs/bench.md. Readers accept every file with the same major version; a new minor
field is additive, so results from older and newer devices still merge without loss.
"""
from __future__ import annotations

from edge_pose.errors import EdgePoseError

SCHEMA = "edge-pose/bench@1"
REQUIRED = {
    "": ("schema", "created", "device", "environment", "settings", "results"),
    "device": ("profile",),
    "environment": ("cpu_model", "cpu_count", "runtimes"),
    "settings": ("runs", "warmup", "interleaved"),
}
RESULT_REQUIRED = ("label", "bundle", "model", "format", "precision")
MEASURED_REQUIRED = ("runtime", "load_s", "first_inference_ms", "latency")
LATENCY_REQUIRED = ("n", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms", "std_ms", "throughput_per_s")


def check_results(doc: object, where: str) -> None:
    """One line naming the file and the first problem; silent when the document is usable."""
    if not isinstance(doc, dict):
        raise EdgePoseError(f"{where}: bench results must be a JSON object")
    schema = str(doc.get("schema", ""))
    if schema.split(".")[0] != SCHEMA:
        raise EdgePoseError(f"{where}: schema {doc.get('schema')!r} is not {SCHEMA!r}")
    for section, keys in REQUIRED.items():
        obj = doc if not section else doc.get(section)
        if not isinstance(obj, dict):
            raise EdgePoseError(f"{where}: '{section}' must be an object")
        missing = [k for k in keys if k not in obj]
        if missing:
            raise EdgePoseError(f"{where}: {section or 'top level'} lacks {', '.join(missing)}")
    if not isinstance(doc["results"], list):
        raise EdgePoseError(f"{where}: 'results' must be a list")
    for i, r in enumerate(doc["results"]):
        need = RESULT_REQUIRED + (() if "error" in r else MEASURED_REQUIRED)
        missing = [k for k in need if k not in r]
        if missing:
            raise EdgePoseError(f"{where}: results[{i}] lacks {', '.join(missing)}")
        if "latency" in r:
            missing = [k for k in LATENCY_REQUIRED if k not in r["latency"]]
            if missing:
                raise EdgePoseError(f"{where}: results[{i}].latency lacks {', '.join(missing)}")
