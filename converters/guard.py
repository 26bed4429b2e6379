"""The fidelity guard: an int8 bundle that misses the thresholds is rebuilt with the known mitigations, cheapest
first, and the first that passes is kept (it keeps the most of the model in int8, so it is the fastest passing one).

Mitigations: TFLite - per-channel weights (the default), then the head, the first conv, the sigmoid
gates kept in float, then the refinement stages of a multi-stage model and the depthwise convs, then 16x8;
OpenVINO - NNCF ignored scopes (last conv, the multi-stage heatmap path, sigmoid gates, first conv), the MIXED preset
and min-max activation ranges, then the refinement stages and the depthwise convs in float. Where a frozen graph
feeds concats of mixed-range tensors (features + heatmaps) into 1x1 convs, the whole-model rungs are climbed again on
the graph with those convs split per input (converters/sources/split_concat.py, exact in float), and the later rungs
run on that graph only; dynamic-range and 16x8, which quantise the whole model, get that rewrite as their only retry.
An attempt the runtime refuses (e.g. LiteRT cannot prepare the int8 model with XNNPACK) is a failed rung with that
reason, and the ladder goes on. When none passes, the closest attempt is reported and the conversion fails unless
`allow_degraded`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from converters.errors import ConversionError
from converters.sources import split_concat

INT_PRECISIONS = ("int8",)  # precisions the guard may mitigate
REWRITTEN_TOO = ("dynamic", "int16x8")  # precisions that get the graph rewrites, but no per-layer mitigations


@dataclass(frozen=True)
class Mitigation:
    label: str  # what a reader sees: "per-channel int8 (default)", "head in float", ...
    options: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments for the exporter
    precision: str | None = None  # a different precision to build (int16x8), else the requested one
    rewrite: str | None = None  # a float-exact source rewrite applied before export (REWRITES)

    def on_rewritten(self, rewrite: str, label: str) -> "Mitigation":
        return Mitigation(f"{label}, {self.label}", self.options, self.precision, rewrite)


STAGES_LABEL = "refinement stages in float (backbone and first stage int8)"
MINMAX_LABEL = "min-max activation ranges"
DEPTHWISE_LABEL = "depthwise convs in float"
STAGES_AND_DEPTHWISE_LABEL = "refinement stages and depthwise convs in float"


@dataclass(frozen=True)
class Rewrite:
    """A float-exact source rewrite the guard may retry on: its label, whether it applies to a source (cheap,
    structural) and how to make it (source, work_dir) -> rewritten source, or None when it does not apply."""
    label: str
    applies: Callable[[Any], bool]
    make: Callable[[Any, Any], Any]


REWRITES = {"split_concat": Rewrite("concat-fed 1x1 convs split per input", split_concat.applies,
                                    split_concat.split_concat_convs)}


@dataclass
class Attempt:
    mitigation: Mitigation
    figures: dict[str, Any] | None = None
    failed: list[str] = field(default_factory=list)  # thresholds missed
    error: str | None = None  # the export or the check itself failed
    payload: Any = None  # what the pipeline needs to write the bundle (export result, staged bundle)

    @property
    def passed(self) -> bool:
        return self.error is None and self.figures is not None and not self.failed

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mitigation": self.mitigation.label, "passed": self.passed}
        if self.error:
            out["error"] = self.error
        if self.failed:
            out["missed"] = self.failed
        if self.figures:
            for k in ("oks_agreement", "ap_drop", "keypoint_error_px", "heatmap_rel_l2"):
                if self.figures.get(k) is not None:
                    out[k] = self.figures[k]
        return out


DEFAULTS = {"tflite": Mitigation("per-channel int8 (default)"),
            "openvino": Mitigation("NNCF int8, performance preset (default)"),
            "onnx": Mitigation("QDQ int8, per-channel weights, min-max ranges (default)")}


def _rewrites(source: Any) -> list[str]:
    return [name for name, rewrite in REWRITES.items() if rewrite.applies(source)]


def _with_rewrites(plan: list[Mitigation], source: Any, retry: int) -> list[Mitigation]:
    """The plan's first `retry` steps (whole-model int8), those again on each rewritten graph, then the rest (layers
    or the whole model in float or 16 bit: slower, so last), on the rewritten graph when there is one: it is exact in
    float and quantises better (measured on the CPM: OKS agreement 0.77 -> 0.90 TFLite int8, 0.82 -> 0.94 16x8)."""
    head, tail = plan[:retry], plan[retry:]
    rewrites = _rewrites(source)
    if rewrites:
        tail = [m.on_rewritten(rewrites[-1], REWRITES[rewrites[-1]].label) for m in tail]
    return head + [m.on_rewritten(r, REWRITES[r].label) for r in rewrites for m in head] + tail


def tflite_plan(source: Any) -> list[Mitigation]:
    """Per-channel int8, then layers kept in float (export_tflite float_ops names; a rung naming what the model lacks
    is refused by the exporter and skipped), then 16x8 as a whole."""
    plan = [DEFAULTS["tflite"]]
    for ops, label in ((("last_conv",), "head (last conv) in float"), (("first_conv",), "first conv in float"),
                       (("LOGISTIC",), "sigmoid gates in float"),
                       (("first_conv", "last_conv"), "first conv + head in float")):
        plan.append(Mitigation(label, {"float_ops": ops}))
    retry = len(plan)
    plan.append(Mitigation(STAGES_LABEL, {"float_ops": ("refinement_stages",)}))
    plan.append(Mitigation(DEPTHWISE_LABEL, {"float_ops": ("DEPTHWISE_CONV_2D",)}))
    plan.append(Mitigation(STAGES_AND_DEPTHWISE_LABEL, {"float_ops": ("refinement_stages", "DEPTHWISE_CONV_2D")}))
    plan.append(Mitigation("16x8 (int16 activations, int8 weights)", precision="int16x8"))
    return _with_rewrites(plan, source, retry)


def openvino_plan(source: Any) -> list[Mitigation]:
    """Ignored scopes that exist in this model, the MIXED preset, min-max ranges; then the refinement stages and the
    depthwise convs in float. Scopes go to the exporter by name and are resolved on the model being quantised (a
    rewritten graph has other node names)."""
    from converters.export.nncf_quantize import float_scopes
    from converters.export.openvino_read import read_static_model

    scopes = float_scopes(read_static_model(source))
    plan = [DEFAULTS["openvino"]]
    for key, label in (("last_conv", "last conv in float"), ("heatmap_path", "heatmap path (stage heads) in float"),
                       ("sigmoid_gates", "sigmoid gates in float"), ("first_conv", "first conv in float")):
        if key in scopes:
            plan.append(Mitigation(label, {"ignored_scope": key}))
    if "first_conv" in scopes and "last_conv" in scopes:
        plan.append(Mitigation("first + last conv in float", {"ignored_scope": ["first_conv", "last_conv"]}))
    plan.append(Mitigation("NNCF MIXED preset (asymmetric activations)", {"preset": "mixed"}))
    plan.append(Mitigation(f"NNCF {MINMAX_LABEL} (no clipping of peaks)", {"ranges": "minmax"}))
    retry = len(plan)
    stages = ["refinement_stages"] if "refinement_stages" in scopes else []
    if stages:
        plan.append(Mitigation(STAGES_LABEL, {"ignored_scope": "refinement_stages"}))
        plan.append(Mitigation(f"{STAGES_LABEL}, {MINMAX_LABEL}",
                               {"ignored_scope": "refinement_stages", "ranges": "minmax"}))
    if "depthwise_convs" in scopes:
        # measured on the CPM (split graph), stages in float -> also its MobileNetV2 depthwise convs, min-max ranges:
        # heatmap error 0.116 -> 0.083, OKS agreement 0.943 -> 0.966 on coco-mini's GT crops, 0.81 -> 0.94 on its
        # detector crops
        plan.append(Mitigation(f"{DEPTHWISE_LABEL}, {MINMAX_LABEL}",
                               {"ignored_scope": "depthwise_convs", "ranges": "minmax"}))
        if stages:
            plan.append(Mitigation(f"{STAGES_AND_DEPTHWISE_LABEL}, {MINMAX_LABEL}",
                                   {"ignored_scope": stages + ["depthwise_convs"], "ranges": "minmax"}))
    return _with_rewrites(plan, source, retry)


def onnx_plan(source: Any) -> list[Mitigation]:
    """QDQ int8 with min-max ranges, then percentile ranges (clip rare outliers), then the head, the first conv and
    both kept in float (export_onnx float_nodes; a name the model lacks is refused and skipped)."""
    plan = [DEFAULTS["onnx"], Mitigation("QDQ int8, percentile ranges", {"calibrate": "percentile"})]
    for nodes, label in ((("last_conv",), "head (last conv) in float"), (("first_conv",), "first conv in float"),
                         (("first_conv", "last_conv"), "first conv + head in float")):
        plan.append(Mitigation(label, {"float_nodes": nodes}))
    return _with_rewrites(plan, source, len(plan))


PLANS: dict[str, Callable[[Any], list[Mitigation]]] = {"tflite": tflite_plan, "openvino": openvino_plan,
                                                       "onnx": onnx_plan}


def _closeness(a: Attempt) -> tuple:
    """Sort key: higher OKS agreement, then smaller AP drop, then smaller keypoint error."""
    f = a.figures or {}
    return (a.error is None, f.get("oks_agreement", 0.0), -(f.get("ap_drop") or 0.0),
            -f.get("keypoint_error_px", float("inf")))


@dataclass
class GuardOutcome:
    chosen: Attempt
    attempts: list[Attempt]
    degraded: bool

    def report(self) -> dict[str, Any]:
        return {"chosen": self.chosen.mitigation.label, "degraded": self.degraded,
                "attempts": [a.summary() for a in self.attempts]}


def run_guard(fmt: str, precision: str, source: Any, attempt: Callable[[Mitigation], Attempt],
              allow_degraded: bool = False, log: Callable[[str], None] = print) -> GuardOutcome:
    """Try `attempt(mitigation)` along the plan until one passes; non-int8 precisions get one plain attempt."""
    if precision not in INT_PRECISIONS:
        plan = [Mitigation(f"plain {precision}")]
        if precision in REWRITTEN_TOO and not getattr(source, "untrained", False):
            plan = _with_rewrites(plan, source, retry=1)  # quantised as a whole: only the graph rewrite applies
    elif getattr(source, "untrained", False):
        # seeded weights have no peaks to agree on: mitigations would chase noise (and fall back to a 16x8 that
        # runs 10x slower), so an untrained model gets the default attempt, judged and reported as usual
        log(f"  guard: {fmt}/{precision}: untrained source, trying the default only")
        plan = [DEFAULTS[fmt]]
    else:
        plan = PLANS[fmt](source)
    attempts: list[Attempt] = []
    refused: set[str] = set()  # settings the exporter refused (e.g. no sigmoid in the model): not retried rewritten
    for mitigation in plan:
        settings = repr((sorted(mitigation.options.items()), mitigation.precision))
        if mitigation.rewrite and settings in refused:
            continue
        if attempts:
            log(f"  guard: {fmt}/{precision} missed ({'; '.join(attempts[-1].failed) or attempts[-1].error}); "
                f"trying {mitigation.label}")
        result = attempt(mitigation)
        attempts.append(result)
        if result.error is not None and not mitigation.rewrite:
            refused.add(settings)
        if result.passed:
            return GuardOutcome(result, attempts, degraded=False)
    best = max(attempts, key=_closeness)
    outcome = GuardOutcome(best, attempts, degraded=True)
    if best.error is not None or not allow_degraded:
        tried = "; ".join(f"{a.mitigation.label}: {'; '.join(a.failed) or a.error}" for a in attempts)
        hint = "" if best.error is not None else " (--allow-degraded keeps the closest one)"
        raise GuardFailed(f"{fmt}/{precision} misses the fidelity thresholds after {len(attempts)} attempt(s): "
                          f"{tried}{hint}", outcome)
    log(f"  guard: keeping degraded {fmt}/{precision} ({best.mitigation.label}) because --allow-degraded")
    return outcome


class GuardFailed(ConversionError):
    """No attempt passed; `.outcome` holds every attempt's figures for the report."""

    def __init__(self, message: str, outcome: GuardOutcome):
        super().__init__(message)
        self.outcome = outcome
