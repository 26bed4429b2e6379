"""Hostile `.pth` files, by class: each is refused in one line naming the file, runs nothing, reads nothing it should
not and stays within bounded memory. Every file is crafted here, byte by byte (tests/hostile_files.py).

Classes: code execution anywhere in the pickle; torch look-alikes with bad storage geometry; allow-listed classes
abused (numpy dtype fields/offsets, _reconstruct, scalar, codecs); pickle bounds (recursion, memo, objects, size,
malformed opcodes); zip damage; zip bombs; enormous declared sizes. A few run through `edge-pose convert` and the
reader in a subprocess under an address-space limit.
"""
from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from converters.checkpoints import CheckpointError, CheckpointLimits, read_checkpoint
from converters.ckpt_archive import ArchiveLimits
from converters.safe_pickle import PickleLimits
from hostile_files import (
    SIX, Ops, build, call, checkpoint, enc, glob, member_data_offset, np_array, np_dtype, patch_end_record,
    patch_member, pkl, storage, tensor, zip_bomb,
)
from torch_zip import write_raw_zip, write_torch_zip

ROOT = Path(__file__).resolve().parents[1]
MARK = "/tmp/edge-pose-hostile-marker"  # a payload that ever ran would create it


@pytest.fixture(autouse=True)
def _no_marker():
    Path(MARK).unlink(missing_ok=True)
    yield
    assert not Path(MARK).exists(), "a payload ran"


def refused(path, *fragments, limits=None) -> str:
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path, limits)
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith(f"{path}: "), text
    for fragment in fragments:
        assert fragment in text, text
    return text


def sd(**entries):
    return {"meta": {"epoch": 1}, "state_dict": entries}


# --- code execution payloads -------------------------------------------------------------------------------------

SYSTEM = call(glob("os", "system"), f"touch {MARK}")
CODE_EXEC = {
    "reduce-os.system": (SYSTEM, "'os.system'"),
    "reduce-posix.system": (call(glob("posix", "system"), f"touch {MARK}"), "'posix.system'"),
    "reduce-builtins.eval": (call(glob("builtins", "eval"), f"open({MARK!r}, 'w')"), "'builtins.eval'"),
    "py2-name-__builtin__.exec": (call(glob("__builtin__", "exec"), "x=1"), "'builtins.exec'"),
    "getattr-chain": (call(glob("builtins", "getattr"), glob("os", "path"), "join"), "'builtins.getattr'"),
    "__import__": (call(glob("builtins", "__import__"), "os"), "'builtins.__import__'"),
    "INST-os.system": (Ops(b"(" + enc(f"touch {MARK}") + b"ios\nsystem\n"), "'os.system'"),
    "OBJ-os.system": (Ops(b"(" + glob("os", "system") + enc(f"touch {MARK}") + b"o"), "'os.system'"),
    "NEWOBJ-subprocess.Popen": (Ops(glob("subprocess", "Popen") + enc((["touch", MARK],)) + b"\x81"),
                                "'subprocess.Popen'"),
    "STACK_GLOBAL-os.system": (Ops(enc("os") + enc("system") + b"\x93" + enc((f"touch {MARK}",)) + b"R"),
                               "'os.system'"),
    "numpy-runstring": (call(glob("numpy.testing._private.utils", "runstring"), "import os", {}), "runstring'"),
    "numpy.load-allow_pickle": (call(glob("numpy", "load"), "/etc/passwd", None, True), "'numpy.load'"),
    "numpy.frombuffer": (call(glob("numpy", "frombuffer"), b"\0" * 8, "f4"), "'numpy.frombuffer'"),
    "numpy.ctypeslib": (call(glob("numpy.ctypeslib", "as_array"), 0, (1 << 20,)), "'numpy.ctypeslib.as_array'"),
    "tensor-from-payload": (call(glob("torch._utils", "_rebuild_tensor_v2"), SYSTEM, 0, (6,), (1,)), "'os.system'"),
    "rebuild_from_type-through-set": (call(glob("torch._tensor", "_rebuild_from_type_v2"), glob("builtins", "set"),
                                           glob("torch", "Tensor"), ([1],), {}), "rebuilt through builtins.set"),
    "mm-namespace-function": (call(glob("mmengine.utils", "exec_cmd"), "x"), "'mmengine.utils.exec_cmd'"),
    "copyreg-reconstructor-object": (call(glob("copy_reg", "_reconstructor"), glob("builtins", "object"),
                                          glob("builtins", "object"), None), "copyreg reconstruction"),
    "copyreg-extension-registry": (Ops(b"\x82\x01"), "extension registry"),
    "BUILD-on-a-dict": (build({}, {"__class__": 1}), "sets state on a dict"),
    "PERSID-string": (Ops(b"Ppwn\n"), "unsupported persistent id"),
    "codecs-rot13": (call(glob("_codecs", "encode"), "x", "rot13"), "_codecs.encode"),
}
PLACES = {
    "top-level": lambda p: p,
    "state-dict-value": lambda p: sd(w=p),
    "state-dict-key": lambda p: {"state_dict": {p: tensor()}},
    "deep-in-meta": lambda p: {"meta": {"a": [{"b": (1, p)}]}, "state_dict": {"w": tensor()}},
    "optimizer-state": lambda p: {"state_dict": {"w": tensor()}, "optimizer": {"state": {0: {"exp_avg": p}}}},
}


@pytest.mark.parametrize("payload", CODE_EXEC, ids=list(CODE_EXEC))
def test_code_execution_payload_is_refused(tmp_path, payload):
    ops, fragment = CODE_EXEC[payload]
    refused(checkpoint(tmp_path / "evil.pth", sd(w=ops)), fragment)


@pytest.mark.parametrize("place", PLACES)
def test_payload_is_refused_wherever_it_sits(tmp_path, place):
    refused(checkpoint(tmp_path / "evil.pth", PLACES[place](SYSTEM)), "refused to load global 'os.system'",
            "nothing was run")


def test_protocol_4_framed_payload_is_refused(tmp_path):
    body = enc("os") + enc("system") + b"\x93" + enc((f"touch {MARK}",)) + b"R."
    raw = b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body
    refused(checkpoint(tmp_path / "evil.pth", None, raw_pickle=raw), "'os.system'")


def test_training_loop_classes_become_inert_and_are_dropped(tmp_path):
    hub = call(glob("mmengine.logging", "HistoryBuffer"), f"touch {MARK}")
    newobj = Ops(glob("mmengine.runner", "Runner") + enc(()) + b"\x81")
    built = build(newobj, {"__reduce__": "x", "__class__": glob("mmengine.runner", "Evil")})
    path = checkpoint(tmp_path / "mm.pth", {"state_dict": {"w": tensor()}, "message_hub": [hub, built]})
    out = read_checkpoint(path)
    assert list(out) == ["w"] and out["w"].tolist() == list(range(6))


# --- torch look-alikes with bad storage geometry -----------------------------------------------------------------

GEOMETRY = {
    "negative-offset": (dict(offset=-1), "invalid tensor geometry"),
    "negative-stride": (dict(stride=(-1,)), "invalid tensor geometry"),
    "negative-size": (dict(size=(-6,)), "invalid tensor geometry"),
    "rank-mismatch": (dict(size=(2, 3), stride=(1,)), "invalid tensor geometry"),
    "17-dims": (dict(size=(1,) * 17, stride=(1,) * 17), "at most 16 dimensions"),
    "float-size": (dict(size=(6.0,)), "invalid tensor geometry"),
    "bool-stride": (dict(stride=(True,)), "invalid tensor geometry"),
    "stride-2**62": (dict(size=(2,), stride=(2**62,)), "invalid tensor geometry"),
    "offset-2**100": (dict(offset=2**100), "invalid tensor geometry"),
    "stride-reads-past": (dict(size=(3,), stride=(3,)), "reads past its storage (7 > 6 elements)"),
    "offset-reads-past": (dict(offset=4, size=(3,)), "reads past its storage"),
    "empty-tensor-offset-past": (dict(offset=7, size=(0,)), "past its storage"),
    "expanded-stride-0": (dict(size=(12,), stride=(0,)), "more elements than its storage"),
    "product-2**80": (dict(size=(2**40, 2**40), stride=(0, 0)), "more elements than its storage"),
    "int64-overflow": (dict(size=(2**47, 2**47), stride=(2**47, 1)), "more elements than its storage"),
    "not-a-storage": (dict(store=enc("storage")), "not a storage"),
    "numel-vs-record": (dict(numel=7), "holds 24 bytes but the checkpoint declares 28"),
    "numel-2**40": (dict(numel=2**40, size=(2**40,)), "declares 4398046511104"),
    "numel-2**60": (dict(numel=2**60), "declares 1152921504606846976 elements"),
    "key-path-traversal": (dict(key="../../etc/passwd"), "is not a record name"),
    "key-not-a-string": (dict(key=0), "is not a record name"),
    "missing-record": (dict(key="9"), "record 'archive/data/9' is missing"),
    "unknown-storage-class": (dict(cls="QInt8Storage"), "'torch.QInt8Storage'"),
    "storage-is-eval": (dict(store=Ops(enc(("storage", glob("builtins", "eval"), "0", "cpu", 6)) + b"Q")),
                        "'builtins.eval'"),
    "wrong-persistent-tag": (dict(store=storage(tag="module")), "unsupported persistent id"),
}


@pytest.mark.parametrize("case", GEOMETRY)
def test_bad_tensor_geometry_is_refused_before_reading(tmp_path, case):
    kwargs, fragment = GEOMETRY[case]
    refused(checkpoint(tmp_path / "geom.pth", sd(w=tensor(**kwargs))), fragment)


def test_one_storage_declared_twice_with_other_type(tmp_path):
    path = checkpoint(tmp_path / "twice.pth", sd(a=tensor(), b=tensor(cls="IntStorage")))
    refused(path, "storage '0' is declared twice")


def test_valid_views_read_exactly_their_elements(tmp_path):
    """The checks refuse nothing legitimate: strided, offset and transposed views of one storage, and aliases."""
    path = checkpoint(tmp_path / "views.pth", sd(
        whole=tensor(), alias=tensor(), tail=tensor(offset=2, size=(4,)), step=tensor(size=(3,), stride=(2,)),
        t=tensor(size=(3, 2), stride=(1, 3)), empty=tensor(offset=6, size=(0,))))
    out = read_checkpoint(path)
    assert out["tail"].tolist() == [2, 3, 4, 5] and out["step"].tolist() == [0, 2, 4]
    assert out["t"].tolist() == [[0, 3], [1, 4], [2, 5]] and out["empty"].shape == (0,)
    assert np.shares_memory(out["whole"], out["alias"])  # tied weights stay one buffer, as in torch


# --- allow-listed classes abused ---------------------------------------------------------------------------------

FIELD_DTYPE = np_dtype("f4", (3, "|", None, ("x",), {"x": (np_dtype("f4"), 1 << 30)}, 4, 1, 16))
ABUSED = {
    "dtype-field-far-outside-item": (np_array((2,), FIELD_DTYPE, b"\0" * 8), "fields, offsets"),
    "dtype-subarray": (np_dtype("f4", (3, "<", (np_dtype("f4"), (1 << 20,)), None, None, -1, -1, 0)), "subarrays"),
    "dtype-object": (np_array((1,), np_dtype("O8", (3, "|", None, None, None, -1, -1, 63)), [SYSTEM]),
                     "refused numpy dtype the string 'O8'"),
    "dtype-void": (np_dtype("V16"), "refused numpy dtype"),
    "dtype-unicode": (np_dtype("U4"), "refused numpy dtype"),
    "dtype-structured-list": (call(glob("numpy", "dtype"), [("a", "<f4")], False, True), "refused numpy dtype a list"),
    "dtype-byteorder-junk": (np_dtype("f4", (3, "x", None, None, None, -1, -1, 0)), "byte order"),
    "array-data-short": (np_array((4,), np_dtype("f4"), b"\0" * 8), "not exactly 4 x 4 bytes"),
    "array-shape-2**40-short-data": (np_array((2**40,), np_dtype("f4"), b"\0" * 8), "not exactly"),
    "array-shape-negative": (np_array((-1,), np_dtype("f4"), b""), "invalid shape"),
    "array-object-data-list": (np_array((1,), np_dtype("f8"), [1.0]), "not exactly"),
    "array-dtype-not-built": (np_array((1,), enc("f8"), b"\0" * 8), "not built from a plain numeric code"),
    "reconstruct-non-ndarray": (call(glob("numpy.core.multiarray", "_reconstruct"), glob("collections", "OrderedDict"),
                                     (0,), b"b"), "plain ndarray only"),
    "scalar-wrong-length": (call(glob("numpy.core.multiarray", "scalar"), np_dtype("f8"), b"\0" * 4),
                            "exactly 8 bytes"),
    "scalar-object-dtype": (call(glob("numpy.core.multiarray", "scalar"), np_dtype("O8", None), SYSTEM),
                            "refused numpy dtype"),
    "scalar-str-dtype": (call(glob("numpy.core.multiarray", "scalar"), "f8", b"\0" * 8), "not a plain numeric"),
    "ordered-dict-not-pairs": (call(glob("collections", "OrderedDict"), [1, 2, 3]), "not (key, value) pairs"),
    "set-from-int": (call(glob("builtins", "set"), 5), "set built from 5"),
}


@pytest.mark.parametrize("case", ABUSED)
def test_allow_listed_class_abused_is_refused(tmp_path, case):
    ops, fragment = ABUSED[case]
    refused(checkpoint(tmp_path / "abuse.pth", {"meta": {"x": ops}, "state_dict": {"w": tensor()}}), fragment)


def test_array_without_data_never_becomes_memory(tmp_path):
    """_reconstruct without BUILD: numpy would hand back uninitialised memory; here it stays an inert placeholder."""
    unbuilt = call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), (2**40,), b"b")
    refused(checkpoint(tmp_path / "u.pth", sd(w=unbuilt)), "'w' is a numpy array without data, not a tensor")
    out = read_checkpoint(checkpoint(tmp_path / "m.pth", {"meta": {"a": unbuilt}, "state_dict": {"w": tensor()}}))
    assert list(out) == ["w"]


def test_numpy_metadata_as_numpy_writes_it_still_loads(tmp_path):
    """Real numpy pickles (arrays, scalars, big-endian, Fortran order) in meta, and numpy arrays as a state dict."""
    import pickle

    meta = {"sigmas": np.array([0.026, 0.025], np.float32), "seed": np.int64(3), "be": np.arange(3, dtype=">i4"),
            "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "flag": np.bool_(True)}
    body = pickle.dumps({"meta": meta, "state_dict": {"w": np.arange(4, dtype=np.float32)}}, protocol=2)
    out = read_checkpoint(checkpoint(tmp_path / "np.pth", None, raw_pickle=body))
    assert out["w"].tolist() == [0, 1, 2, 3] and out["w"].flags.writeable
    obj = pickle.dumps({"state_dict": {"w": np.array([1, "x"], dtype=object)}}, protocol=2)
    refused(checkpoint(tmp_path / "obj.pth", None, raw_pickle=obj), "refused numpy dtype the string 'O8'")


def test_codecs_amplification_hits_the_metadata_budget(tmp_path):
    """One 1 MiB string in the memo, encoded 300 times: each call would copy it (300 MiB from a 1 MiB pickle)."""
    big = enc("x" * (1 << 20)) + b"q\x01"
    encode = glob("_codecs", "encode") + b"q\x02" + enc("latin1") + b"q\x03"
    calls = b"]q\x04(" + (b"h\x02(h\x01h\x03tR") * 300 + b"e"
    raw = b"\x80\x02}(" + enc("meta") + big + encode + calls + enc("state_dict") + enc({"w": tensor()}) + b"u."
    refused(checkpoint(tmp_path / "amp.pth", None, raw_pickle=raw), "over the 256.0 MiB limit",
            "metadata is never this large")


# --- pickle bounds: recursion, memo, objects, size, malformed ----------------------------------------------------

SMALL = CheckpointLimits(pickle=PickleLimits(max_bytes=1 << 20, max_memo=1000, max_objects=5000))
PICKLE_BOUNDS = {
    "nested-lists-100k": (b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b".", None, "deeper than 64"),
    "nested-tuples-100k": (b"\x80\x02)" + b"\x85" * 100_000 + b".", None, "deeper than 64"),
    "nested-dicts": (b"\x80\x02" + (b"}" + enc("k")) * 1000 + b"N" + b"s" * 1000 + b".", None, "deeper than 64"),
    "marks-100k": (b"\x80\x02" + b"(" * 100_000 + b"N.", None, "MARKs deeper than 64"),
    "memo-entries": (b"\x80\x02N" + b"".join(b"r" + struct.pack("<I", i) for i in range(1001)) + b".", SMALL,
                     "more than 1000 objects"),
    "objects-by-reference": (b"\x80\x02]q\x00(" + b"h\x00" * 6000 + b"e.", SMALL, "more than 5000 objects"),
    "pickle-too-large": (pkl({"pad": "x" * (1 << 20)}), SMALL, "over the 1.0 MiB limit"),
    "integer-of-800k-bits": (b"\x80\x02\x8b" + struct.pack("<i", 100_000) + b"\x01" * 100_000 + b".", None,
                             "bits (limit 4096)"),
    "no-STOP": (b"\x80\x02}", None, "exhausted before seeing STOP"),
    "truncated-opcode-argument": (b"\x80\x02X\xff\xff\x00\x00ab", None, "malformed pickle"),
    "unknown-opcode": (b"\x80\x02\xff.", None, "malformed pickle"),
    "stack-underflow": (b"\x80\x02R.", None, "empty stack"),
    "memo-never-written": (b"\x80\x02h\x07.", None, "memo entry 7 that was never written"),
    "STOP-inside-MARK": (b"\x80\x02(N.", None, "inside an open MARK"),
    "POP_MARK-without-MARK": (b"\x80\x02N1.", None, "never opened"),
    "protocol-9": (b"\x80\x09N.", None, "unknown pickle protocol 9"),
    "out-of-band-buffer": (b"\x80\x05\x97.", None, "out-of-band"),
    "dict-odd-items": (b"\x80\x02(Nd.", None, "odd number"),
    "append-to-tuple": (b"\x80\x02)Na.", None, "appends to a tuple"),
    "unhashable-key": (b"\x80\x02}]Ns.", None, "malformed pickle: SETITEM"),
    "not-a-dict": (pkl([1, 2]), None, "holds a list, not a dict"),
    "no-state-dict": (pkl({"epoch": 3}), None, "no 'state_dict'"),
    "state-dict-int-key": (pkl({"state_dict": {1: tensor()}}), None, "key 1 is not a string"),
    "state-dict-value-int": (pkl(sd(w=5)), None, "'w' is 5, not a tensor"),
    "module-prefix-collision": (pkl({"state_dict": {"module.w": tensor(), "w": tensor()}}), None, "appears twice"),
}


@pytest.mark.parametrize("case", PICKLE_BOUNDS)
def test_pickle_bounds_and_malformed_pickles(tmp_path, case):
    raw, limits, fragment = PICKLE_BOUNDS[case]
    refused(checkpoint(tmp_path / "p.pth", None, raw_pickle=raw), fragment, limits=limits)


# --- zip damage --------------------------------------------------------------------------------------------------

def _good(tmp_path, name="good.pth", compression=zipfile.ZIP_STORED) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("archive/data.pkl", pkl(sd(w=tensor())))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/data/0", SIX)
    return path


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


ZIP_DAMAGE = {
    "truncated-10%": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 10]), "truncated or corrupt"),
    "truncated-90%": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size * 9 // 10]), "truncated or corrupt"),
    "end-record-cut": (lambda p: p.write_bytes(p.read_bytes()[:-1]), "truncated or corrupt"),
    "bad-crc-storage": (lambda p: _flip(p, member_data_offset(p, "archive/data/0") + 5), "Bad CRC-32"),
    "bad-crc-pickle": (lambda p: _flip(p, member_data_offset(p, "archive/data.pkl") + 40), "corrupt"),
    "encrypted-storage": (lambda p: patch_member(p, "archive/data/0", flags=1), "encrypted"),
    "encrypted-pickle": (lambda p: patch_member(p, "archive/data.pkl", flags=1), "encrypted"),
    "method-bzip2": (lambda p: patch_member(p, "archive/data/0", method=12), "compression method 12"),
    "method-aes-99": (lambda p: patch_member(p, "archive/data.pkl", method=99), "compression method 99"),
    "stored-size-mismatch": (lambda p: patch_member(p, "archive/data/0", compress_size=4), "stored uncompressed"),
    "data-past-end-of-file": (lambda p: patch_member(p, "archive/data/0", compress_size=1 << 30),
                              "past the end"),
    "local-name-mismatch": (lambda p: _flip(p, member_data_offset(p, "archive/data/0") - 1), "corrupt"),
    "directory-size-forged": (lambda p: patch_end_record(p, cd_size=0x7FFFFFF0), "central directory declares"),
    "byteorder-huge": (lambda p: _rewrite(p, "archive/byteorder", b"x" * 100), "over the 16"),
    "byteorder-unknown": (lambda p: _rewrite(p, "archive/byteorder", b"middle"), "unknown byteorder"),
    "no-data.pkl": (lambda p: _rewrite(p, "archive/data.pkl", None), "without '<name>/data.pkl'"),
    "torchscript": (lambda p: _rewrite(p, "archive/data.pkl", None, {"archive/constants.pkl": b"x"}), "TorchScript"),
}


def _rewrite(path, name, data, extra=None):
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    if data is None:
        items.pop(name)
    else:
        items[name] = data
    items.update(extra or {})
    with zipfile.ZipFile(path, "w") as zf:
        for n, raw in items.items():
            zf.writestr(n, raw)
    return path


@pytest.mark.parametrize("case", ZIP_DAMAGE)
def test_zip_damage_is_one_line(tmp_path, case):
    damage, fragment = ZIP_DAMAGE[case]
    path = _good(tmp_path)
    read_checkpoint(path)
    damage(path)
    refused(path, fragment)


def test_corrupt_deflate_stream(tmp_path):
    path = _good(tmp_path, compression=zipfile.ZIP_DEFLATED)
    assert read_checkpoint(path)["w"].tolist() == list(range(6))
    start = member_data_offset(path, "archive/data/0")
    data = bytearray(path.read_bytes())
    data[start:start + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    refused(path, "record 'archive/data/0' is corrupt")


def test_too_many_members(tmp_path):
    path = write_raw_zip(tmp_path / "many.pth", pkl(sd(w=tensor())), {str(i): SIX for i in range(20)})
    refused(path, "declares 23 entries", limits=CheckpointLimits(archive=ArchiveLimits(max_members=10)))


# --- zip bombs ---------------------------------------------------------------------------------------------------

def _deflated(path, pickle_bytes: bytes, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", pickle_bytes)
        zf.writestr("archive/byteorder", "little")
        for key, raw in records.items():
            zf.writestr(f"archive/data/{key}", raw)
    return path


def test_zip_bomb_storage_is_refused_before_inflating(tmp_path):
    n = 4 << 20  # 16 MiB of zeros deflates ~1000:1
    path = _deflated(tmp_path / "bomb.pth", pkl(sd(w=tensor(numel=n, size=(n,)))), {"0": bytes(4 * n)})
    assert path.stat().st_size < 100_000
    refused(path, "record 'archive/data/0' inflates", "a zip bomb; refused")


def test_zip_bomb_pickle_is_refused(tmp_path):
    path = _deflated(tmp_path / "bomb.pth", pkl({"pad": "x" * (8 << 20), "state_dict": {}}), {})
    refused(path, "record 'archive/data.pkl' inflates", "zip bomb")


def test_bomb_in_an_unused_storage_is_never_read(tmp_path):
    """Optimizer state and metadata storages are declared and checked but only state-dict tensors are read."""
    n = 4 << 20
    obj = {"state_dict": {"w": tensor()}, "optimizer": {"exp_avg": tensor(key="1", numel=n, size=(n,))}}
    path = _deflated(tmp_path / "opt.pth", pkl(obj), {"0": SIX, "1": bytes(4 * n)})
    refused(path, "zip bomb")  # declared storages are checked (without reading) wherever they appear ...
    ok = _deflated(tmp_path / "ok.pth", pkl(obj), {"0": SIX, "1": np.random.default_rng(0).bytes(4 * n)})
    assert list(read_checkpoint(ok)) == ["w"]  # ... and one that passes is still not read


def _bomb(path, nbytes: int) -> Path:
    """A real zip bomb: a record of `nbytes` zeros deflated ~1000:1, and a pickle declaring a tensor that size."""
    n = nbytes // 4
    return zip_bomb(path, pkl(sd(w=tensor(numel=n, size=(n,)))), "0", nbytes)


@pytest.mark.parametrize("gib", [2, 3])
def test_small_file_inflating_to_gigabytes_is_refused_before_inflating(tmp_path, gib):
    path = _bomb(tmp_path / f"bomb{gib}.pth", gib << 30)
    assert path.stat().st_size < (gib + 1) << 20
    refused(path, f"to {gib}.00 GiB", "zip bomb")


def test_header_declaring_gigabytes_over_a_few_bytes_is_refused(tmp_path):
    n = 2 << 30
    path = _deflated(tmp_path / "forged.pth", pkl(sd(w=tensor(numel=n // 4, size=(n // 4,)))),
                     {"0": np.random.default_rng(1).bytes(1 << 20)})
    patch_member(path, "archive/data/0", file_size=n)
    refused(path, "inflates 1.0 MiB to 2.00 GiB")


# --- enormous declared sizes and the byte ceiling ----------------------------------------------------------------

def test_total_byte_ceiling_is_configurable(tmp_path, monkeypatch):
    big = np.zeros(1 << 19, np.float32)  # 2 MiB, stored (no ratio)
    path = write_torch_zip(tmp_path / "big.pth", {"state_dict": {"a": big, "b": big}})
    assert read_checkpoint(path)["a"].nbytes == 2 << 20
    limits = CheckpointLimits(archive=ArchiveLimits(max_total_bytes=3 << 20))
    refused(path, "over the 3.0 MiB limit", "EDGE_POSE_CHECKPOINT_MAX_BYTES", limits=limits)
    monkeypatch.setenv("EDGE_POSE_CHECKPOINT_MAX_BYTES", "3M")
    refused(path, "over the 3.0 MiB limit")
    monkeypatch.setenv("EDGE_POSE_CHECKPOINT_MAX_BYTES", "lots")
    with pytest.raises(CheckpointError, match="not a size"):
        read_checkpoint(path)


def test_overlapping_views_cannot_amplify_memory(tmp_path):
    """5000 one-element-shifted views of one 1 MiB storage: 5 GiB of copies from a 150 KB pickle."""
    n = 1 << 18
    views = {f"v{i}": tensor(numel=n, offset=1, size=(n - 1,)) for i in range(5000)}
    path = checkpoint(tmp_path / "views.pth", {"state_dict": views}, {"0": bytes(4 * n)})
    refused(path, "overlapping views amplify memory")


def test_bf16_widening_and_big_endian_are_counted_and_correct(tmp_path):
    bits = np.array([0x3F80, 0xC000], np.uint16)  # 1.0, -2.0
    path = write_raw_zip(tmp_path / "be.pth", pkl(sd(w=tensor(numel=2, size=(2,), cls="BFloat16Storage"),
                                                     i=tensor(key="1", numel=2, size=(2,), cls="IntStorage"))),
                         {"0": bits.astype(">u2").tobytes(), "1": np.array([7, -1], ">i4").tobytes()})
    _rewrite(path, "archive/byteorder", b"big")
    out = read_checkpoint(path)
    assert out["w"].tolist() == [1.0, -2.0] and out["w"].dtype == np.float32 and out["i"].tolist() == [7, -1]


# --- in a subprocess under an address-space limit: the reader and `edge-pose convert` ----------------------------

READER = """
import sys
from converters.checkpoints import CheckpointError, read_checkpoint
try:
    state = read_checkpoint(sys.argv[1])
    code = 0
except CheckpointError as exc:
    print(exc, file=sys.stderr)
    code = 2
# peak RSS of this program (VmHWM starts afresh at exec; ru_maxrss would include the forking parent's)
print(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
sys.exit(code)
"""


def _limited(args, limit: int, tmp_path):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("EDGE_POSE_CHECKPOINT_MAX_BYTES", None)
    return subprocess.run(args, capture_output=True, text=True, preexec_fn=cap, env=env, cwd=tmp_path, timeout=120)


def _memory_cases(tmp_path) -> dict[str, Path]:
    n = 1 << 18
    views = {f"v{i}": tensor(numel=n, offset=1, size=(n - 1,)) for i in range(2000)}
    return {
        "bomb-2GiB": _bomb(tmp_path / "d2.pth", 2 << 30),
        "bomb-3GiB": _bomb(tmp_path / "d3.pth", 3 << 30),
        "view-amplification": checkpoint(tmp_path / "amp.pth", {"state_dict": views}, {"0": bytes(4 * n)}),
        "dtype-field-offset": checkpoint(tmp_path / "dt.pth", sd(w=np_array((2,), FIELD_DTYPE, b"\0" * 8))),
        "unbuilt-2**40-array": checkpoint(tmp_path / "un.pth", sd(w=call(glob("numpy.core.multiarray", "_reconstruct"),
                                                                         glob("numpy", "ndarray"), (2**40,), b"b"))),
    }


def test_reader_stays_small_under_an_address_space_limit(tmp_path):
    """Each case ran the old reader to 1-6 GB or out of bounds; here each is refused within 1 GiB of address space."""
    for name, path in _memory_cases(tmp_path).items():
        got = _limited([sys.executable, "-c", READER, str(path)], 1 << 30, tmp_path)
        lines = got.stderr.strip().splitlines()
        assert got.returncode == 2 and len(lines) == 1 and lines[0].startswith(str(path)), (name, got.stderr)
        assert int(got.stdout.split()[-1]) < 300_000, (name, got.stdout)  # peak RSS in KiB
    legit = _limited([sys.executable, "-c", READER, str(_shared_fixture())], 1 << 30, tmp_path)
    assert legit.returncode == 0, legit.stderr


def _shared_fixture() -> Path:
    from shared import fixture

    return fixture("res50_256x192.pth")


@pytest.mark.parametrize("case", ["os.system", "dtype-field-offset", "bomb-2GiB"])
def test_convert_cli_refuses_in_one_line_and_writes_nothing(tmp_path, case):
    """3 GiB of address space: a legitimate convert loads TensorFlow, builds the model and its weights within it."""
    path = {"os.system": lambda: checkpoint(tmp_path / "evil.pth", PLACES["deep-in-meta"](SYSTEM)),
            "dtype-field-offset": lambda: checkpoint(tmp_path / "dt.pth", sd(w=np_array((2,), FIELD_DTYPE, b"\0" * 8))),
            "bomb-2GiB": lambda: _bomb(tmp_path / "d2.pth", 2 << 30)}[case]()
    out = tmp_path / "bundles"
    cli = str(Path(sys.executable).with_name("edge-pose"))
    got = _limited([cli, "convert", "litehrnet-18", "--checkpoint", str(path), "--out", str(out)], 3 << 30, tmp_path)
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    last = got.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edge-pose convert: error: {path}: "), got.stderr
    assert not out.exists()
