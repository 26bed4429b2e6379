"""One rule for a bundle path, closed bundles, typed manifests, and selection by measurement (real bundles and
runtimes, the real CLI)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_pose import records
from edge_pose.bundle import BundleError, load_bundle, resolve_bundles
from edge_pose.select import CHOSEN, SKIPPED, open_best

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, env=None, timeout=180):
    return subprocess.run([str(ROOT / ".venv/bin/edge-pose"), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _edit(path: Path, change) -> None:
    doc = json.loads((path / "edge_pose.json").read_text())
    change(doc)
    (path / "edge_pose.json").write_text(json.dumps(doc))


@pytest.fixture()
def pair(cpm_bundle, simplebaseline_ov_bundle, tmp_path):
    """A directory of two good bundles of different formats, and one broken bundle beside them."""
    root = tmp_path / "bundles"
    shutil.copytree(cpm_bundle.path, root / "cpm-tflite-fp32")
    shutil.copytree(simplebaseline_ov_bundle.path, root / "sb-openvino-fp32")
    shutil.copytree(cpm_bundle.path, root / "broken")
    (root / "broken" / "model.tflite").write_bytes(b"not a model")
    return root


def test_a_bad_bundle_in_a_directory_is_refused_the_rest_stay_usable(pair):
    resolved = resolve_bundles(pair)
    assert sorted(b.path.name for b in resolved.bundles) == ["cpm-tflite-fp32", "sb-openvino-fp32"]
    assert len(resolved.refused) == 1 and "sha256 does not match" in resolved.refused[0].reason
    with pytest.raises(BundleError, match="sha256 does not match"):
        resolve_bundles(pair / "broken")  # named alone, it is an error
    loaded = open_best(pair, device="generic-x86-64")
    refused = [c for c in loaded.plan.candidates if c.refused]
    assert loaded.chosen.status == CHOSEN and len(refused) == 1 and refused[0].name == "broken"


def test_every_command_takes_a_directory_of_bundles(pair, tmp_path):
    r = _cli("inspect", str(pair))
    assert r.returncode == 0 and "refused:" in r.stderr and "broken" in r.stderr and "cpm-tflite-fp32" in r.stdout
    r = _cli("explain", str(pair), "--device", "generic-x86-64", "--json")
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert any(c["bundle"] == "broken" and c["reason"].startswith("refused:") for c in plan["candidates"])
    r = _cli("bench", str(pair), "--device", "generic-x86-64", "--runs", "2", "--warmup", "0")
    assert r.returncode == 0, r.stderr
    assert "broken: not measured: refused" in r.stderr
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'[model]\nbundle = "{pair}"\n[source]\nuri = "{tmp_path}"\n')
    r = _cli("serve", "--check-config", str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("change, says", [
    (lambda d: d["files"].update({"../outside": "0" * 64}), "file name '../outside' is not a plain file name"),
    (lambda d: d.update(model_file="/etc/passwd"), "is not a plain file name"),
    (lambda d: d["blobs"].update({"CPU": "../../x.blob"}), "is not a plain file name"),
    (lambda d: d["input"].update(height="256"), "input: height: expected an integer"),
    (lambda d: d["input"].update(height=10 ** 12), "is outside 1..8192"),
    (lambda d: d["input"].update(mean=[0, 0]), "input: mean: expected a list of 3..3 items"),
    (lambda d: d.update(keypoints={"names": "nose"}), "keypoints: names: expected a list"),
    (lambda d: d["decode"].update(blur_kernel=True), "decode: blur_kernel: expected an integer"),
    (lambda d: d.update(files=[]), "files: expected an object"),
    (lambda d: d.update(execution_precision="f64"), "execution_precision 'f64' not in"),
    (lambda d: d.update(provenance=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
     "levels deep (at most 32)"),
])
def test_hostile_manifests_are_refused_in_one_line(cpm_bundle, tmp_path, change, says):
    path = tmp_path / "b"
    shutil.copytree(cpm_bundle.path, path)
    _edit(path, change)
    with pytest.raises(BundleError) as err:
        load_bundle(path)
    assert says in str(err.value) and "\n" not in str(err.value) and str(path) in str(err.value)
    r = _cli("explain", str(path))
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


def test_nan_in_a_manifest_is_refused(cpm_bundle, tmp_path):
    path = tmp_path / "b"
    shutil.copytree(cpm_bundle.path, path)
    text = (path / "edge_pose.json").read_text().replace('"padding": 1.0', '"padding": NaN')
    (path / "edge_pose.json").write_text(text)
    with pytest.raises(BundleError, match="NaN is not a JSON number"):
        load_bundle(path)


def test_symlinks_never_lead_out_of_a_bundle(cpm_bundle, tmp_path):
    path = tmp_path / "b"
    shutil.copytree(cpm_bundle.path, path)
    outside = tmp_path / "outside.tflite"
    shutil.move(path / "model.tflite", outside)
    (path / "model.tflite").symlink_to(outside)
    with pytest.raises(BundleError, match="is a symbolic link"):
        load_bundle(path)
    r = _cli("inspect", str(path))
    assert r.returncode == 2 and "symbolic link" in r.stderr and "Traceback" not in r.stderr


def test_degraded_bundles_are_never_chosen_unless_asked(pair):
    _edit(pair / "sb-openvino-fp32", lambda d: d["fidelity"].update(degraded=True, passed=False,
                                                                    missed=["OKS agreement 0.91 < 0.95"]))
    loaded = open_best(pair, device="generic-x86-64")
    sb = next(c for c in loaded.plan.candidates if c.name == "sb-openvino-fp32")
    assert loaded.chosen.name == "cpm-tflite-fp32"
    assert sb.status == SKIPPED and "degraded" in sb.reason and "OKS agreement 0.91" in sb.reason
    assert open_best(pair, device="generic-x86-64", allow_degraded=True).chosen.name == "sb-openvino-fp32"


def test_bench_record_then_explain_chooses_the_lower_recorded_p50(pair):
    """The real flow: bench --record measures both bundles on this device; explain ranks by those figures."""
    r = _cli("bench", str(pair), "--device", "generic-x86-64", "--runs", "10", "--warmup", "2", "--record")
    assert r.returncode == 0, r.stderr
    rec = pair / records.FILENAME
    assert rec.is_file() and f"recorded p50s for this device in {rec}" in r.stderr
    entries = records.read_entries(rec, records.device_id("generic-x86-64"))
    p50 = {e.bundle: e.p50_ms for e in entries}
    assert set(p50) == {"cpm-tflite-fp32", "sb-openvino-fp32"}
    r = _cli("explain", str(pair), "--device", "generic-x86-64", "--json")
    plan = json.loads(r.stdout)
    chosen = next(c for c in plan["candidates"] if c["status"] == "chosen")
    assert chosen["bundle"] == min(p50, key=p50.get)
    assert chosen["recorded_p50_ms"] == pytest.approx(p50[chosen["bundle"]])
    assert "fastest recorded here" in chosen["reason"] and plan["ranking"].startswith("by recorded p50")


def test_records_override_the_profile_and_stale_records_are_ignored_with_a_note(pair, monkeypatch):
    device = records.device_id("generic-x86-64")
    default = open_best(pair, device="generic-x86-64", records=False).chosen.name  # the profile's first choice
    other = "cpm-tflite-fp32" if default == "sb-openvino-fp32" else "sb-openvino-fp32"
    bundles = {b.path.name: b for b in resolve_bundles(pair).bundles}
    backend = {"cpm-tflite-fp32": ("litert", "cpu"), "sb-openvino-fp32": ("openvino", "CPU")}

    def entry(name, p50, sha=None, runtime=None):
        b, (be, acc) = bundles[name], backend[name]
        return records.Entry(name, sha or records.model_hash(b), be, acc, None,
                             runtime or records.runtime_version(be), p50, records.now())

    records.write_entries(pair / records.FILENAME, device, [entry(default, 50.0), entry(other, 5.0)])
    loaded = open_best(pair, device="generic-x86-64")
    assert loaded.chosen.name == other and loaded.chosen.p50_ms == 5.0
    # the faster one's record is stale: another runtime version -> ignored, said, profile order again
    records.write_entries(pair / records.FILENAME, device, [entry(other, 5.0, runtime="openvino 1999.1")
                                                            if backend[other][0] == "openvino" else
                                                            entry(other, 5.0, sha="0" * 64)])
    loaded = open_best(pair, device="generic-x86-64")
    assert loaded.chosen.name == default
    assert any("ignored" in n for n in loaded.plan.notes)
    # a record elsewhere, named by $EDGE_POSE_RECORDS, is read too
    (pair / records.FILENAME).unlink()
    elsewhere = pair.parent / "records"
    records.write_entries(elsewhere / records.FILENAME, device, [entry(default, 50.0), entry(other, 5.0)])
    monkeypatch.setenv(records.ENV, str(elsewhere))
    assert open_best(pair, device="generic-x86-64").chosen.name == other


def test_records_match_profiles_that_set_threads(pair):
    """rpi5's preferences name 4 threads: bench records the thread count the chosen candidate ran with, so explain
    on the same profile finds the record."""
    r = _cli("bench", str(pair), "--device", "rpi5", "--runs", "3", "--warmup", "0", "--record")
    assert r.returncode == 0, r.stderr
    r = _cli("explain", str(pair), "--device", "rpi5", "--json")
    chosen = next(c for c in json.loads(r.stdout)["candidates"] if c["status"] == "chosen")
    assert chosen["threads"] == 4 and chosen["recorded_p50_ms"] is not None
