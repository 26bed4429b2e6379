"""Reading mmpose checkpoints without torch: real fixtures load; hostile, truncated and odd files fail in one line."""
from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest

from converters.checkpoints import CheckpointError, read_checkpoint
from edge_pose.errors import EdgePoseError
from shared import fixture
from torch_zip import BFloat16, write_raw_zip, write_torch_zip

FIXTURES = ["res50_256x192.pth", "cpm_256x192.pth", "litehrnet18_256x192.pth", "litehrnet18_384x288.pth",
            "litehrnet30_256x192.pth"]


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("name", FIXTURES)
def test_every_mmpose_fixture_loads_with_parameter_count_of_manifest(name):
    import json

    manifest = json.loads(fixture("MANIFEST.json").read_text())["models"][name[:-4]]
    state = read_checkpoint(fixture(name))
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert {str(v.dtype) for v in state.values()} == {"float16", "int64"}
    learnable = sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var",
                                                                         "num_batches_tracked")))
    assert learnable == manifest["params"]
    assert all(k.startswith(("backbone.", "head.")) for k in state)


class _Exploit:
    """Unpickling this would run a shell command / exec that creates the marker file."""

    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "nested-in-state-dict"])
def test_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Exploit(os.system, f"touch {marker}")
    else:
        payload = _Exploit(exec, f"open({str(marker)!r}, 'w').write('x')")
    if kind == "nested-in-state-dict":
        payload = {"state_dict": {"backbone.conv1.weight": payload}, "meta": {}}
    # Prove the payload is live: unpickled by the standard library, it creates the marker.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(os.system, f"touch {probe}"), protocol=2))
    assert probe.exists()
    path = write_raw_zip(tmp_path / "evil.pth", pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    text = _one_line(exc)
    assert str(path) in text and "refused" in text
    assert ("posix.system" in text or "os.system" in text) if kind == "os.system" else "builtins.exec" in text
    assert not marker.exists()


def test_truncated_checkpoint_gives_one_line(tmp_path):
    data = fixture("res50_256x192.pth").read_bytes()
    for cut in (len(data) // 2, 100, 0):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as exc:
            read_checkpoint(path)
        assert str(path) in _one_line(exc)


def test_corrupt_storage_record_and_out_of_bounds_tensor(tmp_path):
    a = np.arange(6, dtype=np.float32)
    good = write_torch_zip(tmp_path / "good.pth", {"w": a})
    # Shorten the storage record: refused from the sizes the zip and the pickle declare, before it is read.
    with zipfile.ZipFile(good) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    bad = tmp_path / "short.pth"
    with zipfile.ZipFile(bad, "w") as zf:
        for n, raw in items.items():
            zf.writestr(n, raw[:8] if n.endswith("data/0") else raw)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(bad)
    assert "holds 8 bytes but the checkpoint declares 24" in _one_line(exc)


def test_legacy_and_non_checkpoint_files(tmp_path):
    legacy = tmp_path / "legacy.pth"
    legacy.write_bytes(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.rest")
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(legacy)
    assert "legacy" in _one_line(exc)
    text_file = tmp_path / "notes.pth"
    text_file.write_text("hello")
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(text_file)
    assert "not a PyTorch checkpoint" in _one_line(exc)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(tmp_path / "absent.pth")
    assert "not found" in _one_line(exc)
    assert issubclass(CheckpointError, EdgePoseError)


def test_bare_state_dict_module_prefix_dtypes_and_meta(tmp_path):
    w = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    bits = (w.view(np.uint32) >> 16).astype(np.uint16)
    state = {"module.conv.weight": w, "module.conv.half": w.astype(np.float16), "module.bf": BFloat16(bits),
             "module.bn.num_batches_tracked": np.array(7, dtype=np.int64)}
    bare = read_checkpoint(write_torch_zip(tmp_path / "bare.pth", state))
    wrapped = read_checkpoint(write_torch_zip(tmp_path / "wrapped.pth", {
        "meta": {"epoch": 210, "sigmas": np.array([0.026, 0.025]), "flip": [(1, 2)]}, "state_dict": state}))
    for out in (bare, wrapped):
        assert set(out) == {"conv.weight", "conv.half", "bf", "bn.num_batches_tracked"}
        np.testing.assert_array_equal(out["conv.weight"], w)
        assert out["conv.half"].dtype == np.float16
        assert out["bf"].dtype == np.float32
        np.testing.assert_array_equal(out["bf"], (bits.astype(np.uint32) << 16).view(np.float32))
        assert out["bn.num_batches_tracked"].shape == () and int(out["bn.num_batches_tracked"]) == 7


def test_checkpoint_without_state_dict_is_rejected(tmp_path):
    path = write_torch_zip(tmp_path / "odd.pth", {"epoch": 3, "optimizer": {"lr": 0.1}})
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    assert "state_dict" in _one_line(exc)


def test_training_metadata_objects_are_inert_and_dropped(tmp_path, monkeypatch):
    """mmengine checkpoints carry e.g. HistoryBuffer objects in message_hub; they load as inert placeholders."""
    import sys
    import types

    created = []

    class HistoryBuffer:  # would record its construction if the reader ever ran it
        def __init__(self, *a):
            created.append(a)

        def __setstate__(self, state):
            created.append(state)

    HistoryBuffer.__module__ = "mmengine.logging.history_buffer"
    HistoryBuffer.__qualname__ = "HistoryBuffer"
    names = ["mmengine", "mmengine.logging", HistoryBuffer.__module__]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[HistoryBuffer.__module__].HistoryBuffer = HistoryBuffer
    buffer = object.__new__(HistoryBuffer)
    buffer.__dict__.update(max_length=100, values=np.arange(3.0))
    w = np.ones((2, 2), np.float32)
    path = write_torch_zip(tmp_path / "mmengine.pth", {
        "meta": {"epoch": 1}, "state_dict": {"head.final_layer.weight": w},
        "message_hub": {"log_scalars": {"train/loss": buffer}}, "optimizer": {"state": {0: {"exp_avg": w}}}})
    for name in names:
        monkeypatch.delitem(sys.modules, name)
    out = read_checkpoint(path)
    assert list(out) == ["head.final_layer.weight"]
    assert created == []
