"""The guard's plan: trained sources get every mitigation in turn (whole-model 16x8 and dynamic: the graph rewrite only);
untrained ones only the default attempt."""
from types import SimpleNamespace

import pytest

from converters.guard import Attempt, GuardFailed, run_guard


def _missing(mitigation):
    return Attempt(mitigation, figures={"oks_agreement": 0.5}, failed=["OKS agreement 0.5 < 0.95"])


@pytest.mark.parametrize("fmt", ["tflite", "openvino"])
def test_untrained_source_gets_the_default_attempt_only(fmt):
    source = SimpleNamespace(untrained=True, model_name="seeded", kind="keras", keras_model=None)
    tried, log = [], []
    outcome = run_guard(fmt, "int8", source, lambda m: tried.append(m) or _missing(m), allow_degraded=True,
                        log=log.append)
    assert len(tried) == 1 and outcome.degraded and "untrained" in log[0]
    with pytest.raises(GuardFailed, match="after 1 attempt"):
        run_guard(fmt, "int8", source, _missing, allow_degraded=False, log=log.append)


def test_settings_the_exporter_refused_are_not_retried_on_the_rewritten_graph(pb_source):
    from converters.guard import tflite_plan

    plan = tflite_plan(pb_source)
    tried = []

    def attempt(m):
        tried.append(m.label)
        if m.options.get("float_ops") == ("LOGISTIC",):
            return Attempt(m, error="float op type LOGISTIC does not occur in the model")
        return _missing(m)

    outcome = run_guard("tflite", "int8", pb_source, attempt, allow_degraded=True, log=lambda _: None)
    sigmoid = [label for label in tried if "sigmoid" in label]
    assert sigmoid == ["sigmoid gates in float"] and len(tried) == len(plan) - 1
    assert outcome.degraded and any(label.startswith("concat-fed") for label in tried)


def test_whole_model_quantisation_gets_the_rewrite_only(pb_source):
    tried = []
    run_guard("tflite", "int16x8", pb_source, lambda m: tried.append(m) or _missing(m), allow_degraded=True,
              log=lambda _: None)
    assert [m.rewrite for m in tried] == [None, "split_concat"] and {m.precision for m in tried} == {None}
    tried.clear()
    run_guard("tflite", "fp16", pb_source, lambda m: tried.append(m) or _missing(m), allow_degraded=True,
              log=lambda _: None)
    assert len(tried) == 1
