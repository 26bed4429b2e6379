"""Greedy non-maximum suppression without a Python loop over boxes.

Greedy NMS (sort by score; keep a box unless a higher-scored KEPT box overlaps it by IoU > t) is the unique
solution of keep[i] = not any(S[i, j] and keep[j]) where S[i, j] = "j ranks above i and IoU(i, j) > t": entry i
depends only on entries ranked above it, so by induction on rank there is exactly one such vector. Iterating that
equation from keep = all-true therefore reaches it, and a step that changes nothing proves it was reached. Each
step is one vectorised pass over the nonzero entries of S (kept as index pairs: real candidates overlap sparsely);
the number of steps is the length of the longest suppression chain (box 1 suppresses 2, which would have
suppressed 3, ...), a handful on real detections. The same dependence on higher ranks only lets candidates be
settled a block at a time, best first, and stop once `max_out` are kept: with an SSD's 1917 anchors all above a
1e-8 threshold, the 100 boxes it keeps are settled long before the IoU of every pair is computed.

A pathological chain could need as many steps as there are candidates, so steps are capped; past the cap a block is
finished by the greedy rule taken one KEPT box at a time (each step one vectorised column of S), at most `max_out`
steps, never one per candidate.
"""
from __future__ import annotations

import numpy as np

MAX_FIXED_POINT_STEPS = 32  # measured on the shared SSD's frames: 4-9 steps per block of 256 candidates
ROW_BLOCK = 256  # candidates settled per block; real frames keep 100 boxes within the first few blocks


def iou_matrix(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes [N, 4] (x1, y1, x2, y2 in any one frame; corners may come in either order).

    Degenerate boxes (zero or negative area) have IoU 0 with everything, as TensorFlow's NMS treats them.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    area = (x2 - x1) * (y2 - y1)
    iw = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :])
    ih = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    union = area[:, None] + area[None, :] - inter
    valid = (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return np.where(valid, inter / np.where(valid, union, 1), 0).astype(np.float32)


def _corners(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    return x1, y1, x2, y2, (x2 - x1) * (y2 - y1)


def _block_pairs(corners, r0: int, r1: int, t: np.float32, lab) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero entries of S for rows r0..r1 against every column above them: (row - r0, column) pairs.

    The same float32 arithmetic as iou_matrix; memory bounded by block x r1."""
    x1, y1, x2, y2, area = corners
    sl = slice(r0, r1)
    iw = np.minimum(x2[sl, None], x2[None, :r1])
    iw -= np.maximum(x1[sl, None], x1[None, :r1])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(y2[sl, None], y2[None, :r1])
    ih -= np.maximum(y1[sl, None], y1[None, :r1])
    np.maximum(ih, 0, out=ih)
    iw *= ih  # intersection
    union = area[sl, None] + area[None, :r1]
    union -= iw
    valid = (area[sl, None] > 0) & (area[None, :r1] > 0) & (union > 0)
    np.divide(iw, union, out=iw, where=valid)
    hit = (iw > t) & valid
    hit &= np.arange(r0, r1)[:, None] > np.arange(r1)[None, :]  # only higher-ranked boxes suppress
    if lab is not None:
        hit &= lab[sl, None] == lab[None, :r1]
    return np.nonzero(hit)


def _fixed_point(fixed: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_steps: int):
    """Iterate keep = not (fixed or any kept suppressor) from keep = not fixed; None if max_steps do not settle."""
    keep = ~fixed
    for step in range(1, max_steps + 1):  # a loop over refinement steps, not over boxes
        suppressed = fixed.copy()
        suppressed[rows[keep[cols]]] = True  # one vectorised step: any kept suppressor above each box
        new = ~suppressed
        if np.array_equal(new, keep):
            return new, step
        keep = new
    return None, max_steps


def _greedy_by_kept(fixed: np.ndarray, rows: np.ndarray, cols: np.ndarray, max_out: int) -> np.ndarray:
    """The greedy rule one KEPT box at a time: take the best remaining box, drop every box it suppresses."""
    n = len(fixed)
    order = np.argsort(cols, kind="stable")
    by_col_rows, by_col = rows[order], cols[order]
    starts = np.searchsorted(by_col, np.arange(n), "left")
    ends = np.searchsorted(by_col, np.arange(n), "right")
    alive = ~fixed
    keep = np.zeros(n, dtype=bool)
    start = 0
    for _ in range(min(max_out, n)):  # at most max_out steps: one per box that is kept
        rest = np.flatnonzero(alive[start:])
        if rest.size == 0:
            break
        i = start + rest[0]
        keep[i] = True
        alive[by_col_rows[starts[i]:ends[i]]] = False
        start = i + 1
    return keep


def nms(boxes, scores, iou_threshold: float, labels=None, max_out: int | None = None,
        max_steps: int = MAX_FIXED_POINT_STEPS, stats: dict | None = None, block: int = ROW_BLOCK) -> np.ndarray:
    """Indices (into the inputs) of the boxes greedy NMS keeps, best score first.

    boxes [N, 4] x1, y1, x2, y2; scores [N]; labels [N] for class-aware NMS (boxes of different labels never
    suppress each other), None for single-class. Ties in score keep input order (a stable sort). `max_out` caps
    the number kept (greedy stopped after that many, as TensorFlow's max_output_size).

    Candidates are taken in score-ranked blocks: a box's fate depends only on boxes ranked above it, so a block is
    settled against the (final) decisions of the blocks before it, and once `max_out` boxes are kept the rest are
    never looked at. `stats`, when given, receives the fixed-point steps (the most any block took), the blocks
    examined and whether the capped fallback ran.
    """
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    n = len(scores)
    limit = n if max_out is None else max(int(max_out), 0)
    if n == 0 or limit == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    corners = _corners(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[order])
    lab = None if labels is None else np.asarray(labels).reshape(-1)[order]
    t = np.float32(iou_threshold)
    keep = np.zeros(n, dtype=bool)
    kept, most_steps, fallback, blocks = 0, 0, False, 0
    for r0 in range(0, n, block):  # a loop over blocks of candidates (at most N / block), not over boxes
        r1 = min(r0 + block, n)
        blocks += 1
        rows, cols = _block_pairs(corners, r0, r1, t, lab)
        above = cols < r0
        fixed = np.zeros(r1 - r0, dtype=bool)  # suppressed by a box already kept in an earlier block
        fixed[rows[above][keep[cols[above]]]] = True
        inner_rows, inner_cols = rows[~above], cols[~above] - r0
        got, steps = _fixed_point(fixed, inner_rows, inner_cols, max_steps)
        most_steps = max(most_steps, steps)
        if got is None:
            fallback = True
            got = _greedy_by_kept(fixed, inner_rows, inner_cols, limit - kept)
        keep[r0:r1] = got
        kept += int(got.sum())
        if kept >= limit:
            break
    if stats is not None:
        stats.update(steps=most_steps, fallback=fallback, candidates=n, blocks=blocks)
    return order[np.flatnonzero(keep)[:limit]]


def reference_nms(boxes, scores, iou_threshold: float, labels=None, max_out: int | None = None) -> np.ndarray:
    """Plain greedy NMS, one box at a time: the definition the vectorised version must equal (tests, benchmarks)."""
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    limit = len(scores) if max_out is None else int(max_out)
    for i in order:
        if len(kept) >= limit:
            break
        ok = True
        for j in kept:
            if labels is not None and labels[i] != labels[j]:
                continue
            if _iou_one(boxes[i], boxes[j]) > np.float32(iou_threshold):
                ok = False
                break
        if ok:
            kept.append(int(i))
    return np.asarray(kept, dtype=np.int64)


def _iou_one(a: np.ndarray, b: np.ndarray) -> np.float32:
    ax1, ax2 = min(a[0], a[2]), max(a[0], a[2])
    ay1, ay2 = min(a[1], a[3]), max(a[1], a[3])
    bx1, bx2 = min(b[0], b[2]), max(b[0], b[2])
    by1, by2 = min(b[1], b[3]), max(b[1], b[3])
    area_a = np.float32(ax2 - ax1) * np.float32(ay2 - ay1)
    area_b = np.float32(bx2 - bx1) * np.float32(by2 - by1)
    if area_a <= 0 or area_b <= 0:
        return np.float32(0)
    iw = max(np.float32(min(ax2, bx2) - max(ax1, bx1)), np.float32(0))
    ih = max(np.float32(min(ay2, by2) - max(ay1, by1)), np.float32(0))
    inter = np.float32(iw * ih)
    union = np.float32(area_a + area_b - inter)
    return np.float32(inter / union) if union > 0 else np.float32(0)
