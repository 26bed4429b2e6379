"""Compare the keypoints `edge-pose predict` wrote under arm64 emulation with the x86 ones; print a table, a verdict.

    python scripts/arm64_compare.py NAME:PRECISION:X86_DIR:ARM_DIR ...

Run with the repository on PYTHONPATH (OKS comes from calibration.fidelity). Each DIR holds predict's
keypoints.json for the same images and boxes, so the results line up one to one (checked: same count, image ids and
boxes). Per keypoint: the distance in image pixels between the two runs; per person: OKS of the arm64 keypoints
against the x86 ones (COCO sigmas, box area as the scale), as convert's fidelity check defines agreement. Exit 0
when every bundle is within its precision's tolerance, 1 otherwise, 2 on unusable input.

Tolerances (why these numbers):
- fp32: the same float graph on two instruction sets differs only in summation order (~1e-6 relative in the
  heatmaps), which moves a decoded keypoint by far less than predict's 0.001 px rounding; a near-tie between two
  heatmap cells can still flip argmax or the quarter-offset direction, so a few joints may move by a heatmap-pixel
  fraction. Bar: mean < 0.005 px, at least 99% of joints within 0.01 px, OKS agreement > 0.999.
- int8: XNNPACK picks micro-kernels per CPU (NEON, dot-product, i8mm; AVX2, AVX512-VNNI) and nothing here relies on
  identical bits across them; int8 heatmaps have plateaus where one quantization step moves the argmax. Measured on
  an emulated Cortex-A76: bit-identical heatmaps. Bar: mean < 0.5 px, >= 90% of joints within 1 px and OKS agreement
  > 0.99 (convert's int8 bar against the float source is 0.95).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# precision -> mean distance below mean_px, at least within_share of joints within within_px, mean OKS above oks
TOLERANCE = {
    "fp32": {"mean_px": 0.005, "within_share": 0.99, "within_px": 0.01, "oks": 0.999},
    "fp16": {"mean_px": 0.1, "within_share": 0.95, "within_px": 0.5, "oks": 0.995},
    "int8": {"mean_px": 0.5, "within_share": 0.90, "within_px": 1.0, "oks": 0.99},
}


class CompareError(Exception):
    pass


def _load(directory: Path) -> list[dict]:
    path = directory / "keypoints.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CompareError(f"{path}: cannot read predict's results ({exc})") from None
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) and "keypoints" in r for r in data):
        raise CompareError(f"{path}: not a non-empty list of COCO keypoint results")
    return data


def _arrays(results: list[dict], path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        flat = np.array([r["keypoints"] for r in results], dtype=np.float64)
        boxes = np.array([r["bbox"] for r in results], dtype=np.float64)
    except (KeyError, ValueError, TypeError):
        raise CompareError(f"{path}: results differ in length or lack bbox") from None
    if flat.ndim != 2 or flat.shape[1] % 3 or boxes.shape != (len(results), 4):
        raise CompareError(f"{path}: keypoints are not flat (x, y, score) triples with one box each")
    kp = flat.reshape(len(results), -1, 3)
    return kp[..., :2], kp[..., 2], boxes


def ran(directory: Path) -> str:
    """What predict says ran (backend, runtime, delegate or device, inference precision, threads)."""
    try:
        runs = json.loads((directory / "summary.json").read_text()).get("runs") or {}
    except (OSError, ValueError, AttributeError):
        return "?"
    keys = ("runtime", "accelerator", "delegate", "execution_precision", "inference_precision", "threads")
    return " ".join(f"{k}={runs[k]}" for k in keys if isinstance(runs, dict) and runs.get(k) is not None)


def compare(x86_dir: Path, arm_dir: Path, precision: str) -> dict:
    x86, arm = _load(x86_dir), _load(arm_dir)
    if len(x86) != len(arm):
        raise CompareError(f"{arm_dir}: {len(arm)} people on arm64 but {len(x86)} on x86 (same images and boxes)")
    if [r.get("image_id") for r in x86] != [r.get("image_id") for r in arm]:
        raise CompareError(f"{arm_dir}: image ids differ from {x86_dir}'s, in order")
    kx, sx, bx = _arrays(x86, x86_dir / "keypoints.json")
    ka, sa, ba = _arrays(arm, arm_dir / "keypoints.json")
    if kx.shape != ka.shape:
        raise CompareError(f"{arm_dir}: {ka.shape[1]} keypoints per person, x86 has {kx.shape[1]}")
    if np.abs(bx - ba).max() > 0.011:  # boxes are rounded to 0.01 px; a larger gap means other boxes were used
        raise CompareError(f"{arm_dir}: person boxes differ from x86's by {np.abs(bx - ba).max():.2f} px")
    from calibration.fidelity import oks
    from edge_pose.keypoints import coco17

    sigmas = coco17().sigmas if kx.shape[1] == 17 else [0.07] * kx.shape[1]  # no sigmas known: a COCO-like one
    tol = TOLERANCE.get(precision, TOLERANCE["int8"])
    dist = np.linalg.norm(ka - kx, axis=-1)
    per_person = oks(ka, kx, bx[:, 2] * bx[:, 3], sigmas)
    row = {"people": len(x86), "joints": int(dist.size), "mean_px": float(dist.mean()),
           "p99_px": float(np.percentile(dist, 99)), "max_px": float(dist.max()),
           "within": float((dist <= tol["within_px"]).mean()), "within_px": tol["within_px"],
           "identical": float((dist == 0).mean()), "oks_mean": float(per_person.mean()),
           "oks_min": float(per_person.min()), "score_max_diff": float(np.abs(sa - sx).max()), "tolerance": tol,
           "ran": f"x86: {ran(x86_dir)}; arm64: {ran(arm_dir)}"}
    row["passed"] = bool(row["mean_px"] < tol["mean_px"] and row["within"] >= tol["within_share"]
                         and row["oks_mean"] > tol["oks"])
    return row


def main(argv: list[str]) -> int:
    if not argv or any(a.count(":") != 3 for a in argv):
        print("usage: arm64_compare.py NAME:PRECISION:X86_DIR:ARM_DIR ...", file=sys.stderr)
        return 2
    rows = []
    for arg in argv:
        name, precision, x86_dir, arm_dir = arg.split(":")
        try:
            rows.append((name, precision, compare(Path(x86_dir), Path(arm_dir), precision)))
        except CompareError as exc:
            print(f"arm64-check: {exc}", file=sys.stderr)
            return 2
    head = (f"{'bundle':<44} {'people':>6} {'joints':>6} {'same':>6} {'mean px':>8} {'p99 px':>7} {'max px':>7} "
            f"{'<=tol':>12} {'OKS mean':>8} {'OKS min':>8} {'score d':>7}  bar (mean px, <=tol share, OKS)  verdict")
    print(head)
    print("-" * len(head))
    for name, precision, r in rows:
        t = r["tolerance"]
        within = f"{r['within']:.1%}@{r['within_px']:g}"
        print(f"{name:<44} {r['people']:>6} {r['joints']:>6} {r['identical']:>6.1%} {r['mean_px']:>8.4f} "
              f"{r['p99_px']:>7.3f} {r['max_px']:>7.3f} {within:>12} {r['oks_mean']:>8.5f} {r['oks_min']:>8.5f} "
              f"{r['score_max_diff']:>7.3f}  <{t['mean_px']:g}, >={t['within_share']:.0%}, >{t['oks']:g} ({precision})"
              f"{'':>4}{'PASS' if r['passed'] else 'FAIL'}")
    for name, _, r in rows:
        print(f"{name}: {r['ran']}")
    ok = all(r["passed"] for _, _, r in rows)
    print(f"arm64-check: {'PASS' if ok else 'FAIL'}: arm64 keypoints {'agree' if ok else 'do not agree'} with x86 "
          f"within each precision's tolerance ({len(rows)} bundles)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
