"""The full conversion matrix: every zoo model to every target (TFLite fp32 / fp16 / dynamic / int8 / int16x8,
OpenVINO fp32 / fp16 / int8) with `edge-pose convert`, calibrated on real COCO crops. It exists to prove the whole
zoo converts everywhere; CI runs a reduced set (tests/test_zoo_matrix.py) because this takes an hour on 2 cores.

Seeded weights: int8 fidelity of an untrained model measures noise, so --allow-degraded keeps it (marked degraded).
One convert per model and format; when a target fails, its one-line error is recorded and the targets after it are
converted by a further call, so one failure hides nothing. Results of models not run now are kept from earlier runs.

    python benchmarks/zoo_matrix.py [MODEL ...]   -> benchmarks/out/zoo-matrix/ (bundles, logs), zoo-matrix.{json,md}
"""
from __future__ import annotations

import datetime as _dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoo_bundles import ROOT, coco_mini  # noqa: E402

from converters.targets import SUPPORTED  # noqa: E402
from converters.zoo import ZOO  # noqa: E402
from edge_pose.bundle import load_bundle  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "zoo-matrix"
TARGETS = [(fmt, p) for fmt, precisions in SUPPORTED.items() for p in precisions]


def _error_line(log: Path) -> str:
    """The CLI's one-line error (`edge-pose convert: error: ...`), else the last line (a traceback's exception)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    return (errors or lines or ["no output"])[-1]


def _cell(bundle_dir: Path) -> dict:
    bundle = load_bundle(bundle_dir)  # verifies every file against its sha256
    m = bundle.manifest
    size = sum((bundle_dir / name).stat().st_size for name in m.files)
    return {"converted": True, "format": m.format, "precision": m.precision, "mb": round(size / 1e6, 2),
            "degraded": bool(m.fidelity.get("degraded")), "untrained": bool(m.model.get("untrained")),
            "mitigation": m.fidelity.get("mitigation"), "export_seconds": m.provenance.get("export_seconds")}


def convert_model(model: str, data: Path, out: Path = OUT) -> dict:
    exe = Path(sys.executable).with_name("edge-pose")
    cells, calls, started = {}, [], time.perf_counter()
    for fmt, precisions in SUPPORTED.items():
        todo = list(precisions)
        while todo:
            for p in todo:  # a bundle left by an earlier run must not pass for one made now
                shutil.rmtree(out / f"{model}-{fmt}-{p}", ignore_errors=True)
            log = out / "logs" / f"{model}-{fmt}-{todo[0]}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            cmd = [str(exe), "convert", model, "--format", fmt, *[a for p in todo for a in ("--precision", p)],
                   "--calib", str(data / "test_coco.json"), "--boxes", str(data / "test_coco_det_AP_H_56.json"),
                   "--allow-degraded", "--json", "--out", str(out)]
            print("$", " ".join(cmd), file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            with open(log, "w") as err:
                rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err).returncode
            calls.append({"format": fmt, "precisions": list(todo), "rc": rc,
                          "seconds": round(time.perf_counter() - t0, 1), "log": str(log.relative_to(out))})
            done = [p for p in todo if (out / f"{model}-{fmt}-{p}" / "edge_pose.json").is_file()]
            for p in done:
                cells[f"{fmt}/{p}"] = _cell(out / f"{model}-{fmt}-{p}")
            missing = [p for p in todo if p not in done]
            if not missing:
                break
            # targets run in order: the first one without a bundle is the one that failed
            error = _error_line(log) if rc else "exit 0 but no bundle written"
            cells[f"{fmt}/{missing[0]}"] = {"converted": False, "error": error}
            print(f"  {model} {fmt}/{missing[0]} FAILED: {error}", file=sys.stderr, flush=True)
            todo = missing[1:]
    return {"seconds": round(time.perf_counter() - started, 1), "calls": calls, "targets": cells,
            "run_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def markdown(results: dict) -> str:
    cols = [f"{f}/{p}" for f, p in TARGETS]
    lines = ["| model | " + " | ".join(cols) + " | seconds |", "|---" * (len(cols) + 2) + "|"]
    failures = []
    for model in [m for m in ZOO if m in results]:
        r, row = results[model], []
        for col in cols:
            c = r["targets"].get(col)
            if c is None:
                row.append("-")
            elif c["converted"]:
                row.append(f"{c['mb']:.1f} MB{' D' if c['degraded'] else ''}")
            else:
                row.append("FAILED")
                failures.append(f"- {model} {col}: {c['error']}")
        lines.append(f"| {model} | " + " | ".join(row) + f" | {r['seconds']:.0f} |")
    lines += ["", "A size (MB, all model files of the bundle) means converted; FAILED: not converted, error below; "
              "D = degraded (kept by --allow-degraded: missed its fidelity threshold on seeded, untrained weights); "
              "seconds = wall time of all the model's conversions."]
    return "\n".join(lines + ([""] + ["Failures:"] + failures if failures else [])) + "\n"


def main(argv: list[str]) -> int:
    unknown = [m for m in argv if m not in ZOO]
    if unknown:
        sys.exit(f"unknown zoo model(s) {unknown} (known: {', '.join(ZOO)})")
    data, json_path = coco_mini(), OUT.parent / "zoo-matrix.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    for model in argv or list(ZOO):
        print(f"== {model}", file=sys.stderr, flush=True)
        results[model] = convert_model(model, data)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1) + "\n")  # after each model: a crash keeps the rest
    table = markdown(results)
    json_path.with_suffix(".md").write_text("# Zoo conversion matrix\n\n" + table)
    print(table)
    return int(any(not c["converted"] for r in results.values() for c in r["targets"].values()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
