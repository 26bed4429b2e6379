"""How far a converted model is from its source, measured on crops that were not used for calibration.

Figures (all on the same crops, both sides decoded by the runtime's own decoder):
- heatmap_rel_l2: mean over crops of ||candidate - reference|| / ||reference||;
- heatmap_max_rel_diff: max |candidate - reference| / max |reference| over the whole set;
- keypoint_error_px: mean distance between decoded keypoints, in heatmap pixels; keypoint_within_1px: share <= 1 px;
- oks_agreement: mean OKS of the candidate's keypoints against the source's, every predicted joint counted as
  labelled, object area = the person box's w * h in image pixels, the model's own OKS sigmas.
Keypoint figures count the joints the source predicts: a joint whose reference heatmap peaks below MIN_PEAK (1% of a
unit Gaussian peak; trained models peak at 0.3-1.0 on visible joints) has no location to agree with - its argmax is
noise, and any rounding in the candidate moves it across the map (measured: one such CPM joint, peak < 1e-3, moved
45 px in fp16 while the other 167 moved 0.003 px) - so it is left out and counted in `joints_without_peak`.
Heatmap figures count everything.
- with ground truth: COCO keypoint AP of both through pycocotools, and ap_drop = AP(source) - AP(candidate).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from calibration.cropset import CropSet

MIN_PEAK = 0.01
# Which bar a precision is held to comes from the registry (`judged_as`): dynamic-range and 16x8 like int8.
FP_PRECISIONS = ("fp32", "fp16", "bf16")


@dataclass
class Thresholds:
    fp32_max_rel_diff: float = 1e-4
    fp16_keypoint_error_px: float = 0.05
    # bf16 keeps 8 mantissa bits to fp16's 11: judged like fp16, by keypoint error, with a bar 8x as wide
    bf16_keypoint_error_px: float = 0.4
    int8_oks_agreement: float = 0.95
    int8_ap_drop: float = 1.0  # COCO AP points (0..100)

    def check(self, precision: str, figures: dict[str, Any]) -> list[str]:
        """The thresholds `figures` miss for `precision` (empty when it passes)."""
        from registry import PRECISIONS

        judged = PRECISIONS[precision].judged_as if precision in PRECISIONS else "int8"
        failed = []
        if judged == "fp32":
            if not figures["heatmap_max_rel_diff"] <= self.fp32_max_rel_diff:
                failed.append(f"heatmap max rel diff {figures['heatmap_max_rel_diff']:.2e} > "
                              f"{self.fp32_max_rel_diff:.0e}")
        elif judged in ("fp16", "bf16"):
            bar = self.fp16_keypoint_error_px if judged == "fp16" else self.bf16_keypoint_error_px
            if not figures["keypoint_error_px"] <= bar:
                failed.append(f"keypoint error {figures['keypoint_error_px']:.3f} px > {bar} px")
        else:
            oks = figures.get("oks_agreement")
            if oks is not None and not oks >= self.int8_oks_agreement:
                failed.append(f"OKS agreement {oks:.4f} < {self.int8_oks_agreement}")
            drop = figures.get("ap_drop")
            if drop is not None and not drop <= self.int8_ap_drop:
                failed.append(f"AP drop {drop:.2f} > {self.int8_ap_drop} points")
        return failed

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _as_nchw(heatmaps: np.ndarray) -> np.ndarray:
    h = np.asarray(heatmaps, dtype=np.float32)
    if h.ndim != 4:
        raise ValueError(f"heatmaps must be 4-D (N, K, H, W), got shape {h.shape}")
    return h


def oks(pred: np.ndarray, ref: np.ndarray, areas: np.ndarray, sigmas, labelled=None) -> np.ndarray:
    """Per-person OKS [N] of pred [N, K, 2] against ref [N, K, 2] over the `labelled` joints (default all);
    NaN for a person with no labelled joint."""
    k2 = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2
    d2 = ((pred.astype(np.float64) - ref.astype(np.float64)) ** 2).sum(-1)
    s2 = np.maximum(np.asarray(areas, dtype=np.float64), np.finfo(np.float64).eps)[:, None]
    mask = np.ones(d2.shape, bool) if labelled is None else np.asarray(labelled, bool)
    count = mask.sum(-1)
    total = (np.exp(-d2 / (2.0 * s2 * k2)) * mask).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def decode(heatmaps: np.ndarray, input_size, method: str = "msra", blur_kernel: int = 11):
    from edge_pose.decode import decode_heatmaps

    return decode_heatmaps(heatmaps, method=method, input_size=tuple(input_size), blur_kernel=blur_kernel,
                           layout="NCHW")


def compare(reference_heatmaps, candidate_heatmaps, input_size, crops: CropSet | None = None, keypoints=None,
            decode_method: str = "msra", blur_kernel: int = 11, min_peak: float = MIN_PEAK) -> dict[str, Any]:
    """Fidelity figures of candidate vs reference heatmaps (N, K, H, W); see the module docstring.

    `crops` (the CropSet the heatmaps were computed on) and `keypoints` (KeypointSpec) add OKS agreement and,
    when the crops carry COCO ground truth, AP of both.
    """
    ref, cand = _as_nchw(reference_heatmaps), _as_nchw(candidate_heatmaps)
    if ref.shape != cand.shape:
        raise ValueError(f"reference heatmaps {ref.shape} and candidate {cand.shape} differ in shape")
    diff = cand - ref
    n = ref.shape[0]
    ref_norm = np.linalg.norm(ref.reshape(n, -1), axis=1)
    rel_l2 = np.linalg.norm(diff.reshape(n, -1), axis=1) / np.maximum(ref_norm, 1e-12)
    stride = input_size[0] / ref.shape[2]
    ref_kp, ref_sc = decode(ref, input_size, decode_method, blur_kernel)
    cand_kp, cand_sc = decode(cand, input_size, decode_method, blur_kernel)
    predicted = ref_sc > min_peak
    err = (np.linalg.norm(cand_kp - ref_kp, axis=-1) / stride)[predicted]
    figures: dict[str, Any] = {
        "crops": int(n),
        "heatmap_rel_l2": float(rel_l2.mean()),
        "heatmap_max_rel_diff": float(np.abs(diff).max() / max(float(np.abs(ref).max()), 1e-12)),
        "keypoint_error_px": float(err.mean()) if err.size else 0.0,
        "keypoint_within_1px": float((err <= 1.0).mean()) if err.size else 1.0,
        "joints_without_peak": int((~predicted).sum()),
    }
    if crops is None:
        return figures
    from edge_pose.preprocess import crop_to_image

    ref_img = crop_to_image(ref_kp, crops.centers, crops.scales, tuple(input_size))
    cand_img = crop_to_image(cand_kp, crops.centers, crops.scales, tuple(input_size))
    if keypoints is not None and keypoints.sigmas:
        areas = crops.boxes[:, 2] * crops.boxes[:, 3]
        per_person = oks(cand_img, ref_img, areas, keypoints.sigmas, predicted)
        figures["oks_agreement"] = float(np.nanmean(per_person)) if np.isfinite(per_person).any() else None
    if keypoints is not None and crops.has_ground_truth:
        from calibration.cocoeval import keypoint_ap, shared_joints

        if shared_joints(keypoints.names, crops.coco_gt):
            args = dict(coco_gt=crops.coco_gt, image_ids=crops.image_ids, model_names=keypoints.names,
                        ann_ids=crops.ann_ids, box_scores=crops.box_scores)
            ap_ref = keypoint_ap(keypoints=ref_img, scores=ref_sc, **args)
            ap_cand = keypoint_ap(keypoints=cand_img, scores=cand_sc, **args)
            figures.update(ap_reference=ap_ref["AP"], ap_candidate=ap_cand["AP"],
                           ap_drop=ap_ref["AP"] - ap_cand["AP"], ap_joints=shared_joints(keypoints.names,
                                                                                         crops.coco_gt))
    return figures


COLUMNS = [
    ("bundle", "{}"), ("precision", "{}"), ("crops", "{}"), ("heatmap_rel_l2", "{:.2e}"),
    ("heatmap_max_rel_diff", "{:.2e}"), ("keypoint_error_px", "{:.3f}"), ("keypoint_within_1px", "{:.1%}"),
    ("joints_without_peak", "{}"),
    ("oks_agreement", "{:.4f}"), ("ap_reference", "{:.1f}"), ("ap_candidate", "{:.1f}"), ("ap_drop", "{:+.2f}"),
    ("passed", "{}"),
]
HEADERS = {"heatmap_rel_l2": "rel L2", "heatmap_max_rel_diff": "max rel", "keypoint_error_px": "kp err px",
           "keypoint_within_1px": "<=1px", "joints_without_peak": "no peak", "oks_agreement": "OKS", "ap_reference": "AP src",
           "ap_candidate": "AP new", "ap_drop": "AP drop"}


LEGEND = {
    "heatmap_rel_l2": "rel L2: mean relative L2 distance of the heatmaps to the source's",
    "heatmap_max_rel_diff": "max rel: largest heatmap difference / largest source value",
    "keypoint_error_px": "kp err px: mean keypoint distance to the source's, heatmap pixels",
    "keypoint_within_1px": "<=1px: share of keypoints within 1 heatmap pixel",
    "joints_without_peak": "no peak: joints left out (the source's heatmap has no peak there)",
    "oks_agreement": "OKS: keypoint similarity to the source's keypoints (1 = identical)",
    "ap_reference": "AP src / AP new / AP drop: COCO keypoint AP of source and bundle on the ground truth, x100",
}


def legend(rows: list[dict[str, Any]]) -> str:
    """What the table's figure columns mean, one line each (only the columns shown)."""
    return "\n".join(text for k, text in LEGEND.items() if any(k in r for r in rows))


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of fidelity rows (missing figures shown as '-')."""
    cols = [(k, f) for k, f in COLUMNS if any(k in r for r in rows)]
    cells = [[HEADERS.get(k, k) for k, _ in cols]]
    for r in rows:
        cells.append(["-" if r.get(k) is None else (f.format(r[k]) if not isinstance(r[k], str) else r[k])
                      for k, f in cols])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
