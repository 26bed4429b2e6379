"""Hostile and odd images and COCO files, by class: each is refused in one line naming the file (checked from the
header before anything is decoded) or read correctly. Every file is generated here.

Classes: decompression bombs by header (forged sizes, tiny files) and by content (real, valid, highly compressed
images); truncated files; odd but valid images (16-bit, grey, alpha, palette, CMYK, progressive, EXIF thumbnail,
top-down BMP, TIFF, WebP); things that are not images or not files; broken COCO files (wrong types, missing keys,
huge numbers, non-finite numbers, deep nesting) for calibration and predict. A few run through `edge-pose predict`
in a subprocess under an address-space limit.
"""
from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.cropset import CalibrationDataError
from calibration.datasets import load_crops
from calibration.readers import read_coco_detections, read_coco_keypoints
from calibration.readers import read_image as calib_read_image
from edge_pose.boxes import BoxError, CocoBoxes
from edge_pose.imagecheck import check_image
from edge_pose.media import MediaError, read_image
from hostile_files import deflate_zeros
from shared import coco_mini

ROOT = Path(__file__).resolve().parents[1]


def one_line(exc_info, path) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith(f"{path}: "), text
    return text


def refused(path, fragment, **kw) -> str:
    with pytest.raises(MediaError) as exc:
        read_image(path, **kw)
    text = one_line(exc, path)
    assert fragment in text, text
    return text


# --- builders ----------------------------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(w: int, h: int, idat: bytes, color_type: int = 0, depth: int = 8) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def png_bomb(w: int, h: int) -> bytes:
    """A valid grey PNG of zeros whose rows ((w + 1) * h bytes, w + 1 a power of two) deflate ~1000:1."""
    n = (w + 1) * h
    adler = ((n % 65521) << 16) | 1  # adler32 of n zero bytes
    return png(w, h, b"\x78\x9c" + deflate_zeros(n, chunk=min(n, 1 << 20)) + struct.pack(">I", adler))


def jpeg_header(h: int, w: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, h, w, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sof + sos + b"\x00" * 16 + b"\xff\xd9"


def bmp_header(w: int, h: int) -> bytes:
    return struct.pack("<2sIHHIIiiHHIIiiII", b"BM", 54, 0, 0, 54, 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)


def webp_vp8x(w: int, h: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4 + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_header(w: int, h: int, order: str = "<") -> bytes:
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    entries = struct.pack(order + "HHLL", 256, 4, 1, w) + struct.pack(order + "HHLL", 257, 4, 1, h)
    return magic + struct.pack(order + "L", 8) + struct.pack(order + "H", 2) + entries + b"\x00" * 4


def encoded(ext: str, image: np.ndarray, *params) -> bytes:
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def pil_bytes(mode: str, fmt: str, color=0, **save) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (30, 40), color).save(buf, fmt, **save)
    return buf.getvalue()


RED = np.zeros((40, 30, 3), np.uint8)
RED[..., 2] = 200


def write(tmp_path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- decompression bombs -----------------------------------------------------------------------------------------

BY_HEADER = {
    "png-60000x60000": ("bomb.png", lambda: png(60000, 60000, b"")),
    "jpeg-65535x65535": ("bomb.jpg", lambda: jpeg_header(65535, 65535)),
    "bmp-100000x100000": ("bomb.bmp", lambda: bmp_header(100000, 100000)),
    "bmp-top-down-negative-height": ("bomb.bmp", lambda: bmp_header(100000, -100000)),
    "webp-vp8x-16777216x4096": ("bomb.webp", lambda: webp_vp8x(1 << 24, 4096)),
    "tiff-le-100000x100000": ("bomb.tif", lambda: tiff_header(100000, 100000)),
    "tiff-be-100000x100000": ("bomb.tiff", lambda: tiff_header(100000, 100000, ">")),
    "png-named-jpg": ("photo.jpg", lambda: png(60000, 60000, b"")),
}


@pytest.mark.parametrize("case", BY_HEADER)
def test_bomb_by_header_is_refused_before_decoding(tmp_path, case):
    name, make = BY_HEADER[case]
    path = write(tmp_path, name, make())
    refused(path, "Mpx, over the 50.0 Mpx limit (EDGE_POSE_MAX_PIXELS raises it)")


def test_bomb_by_content_is_a_real_image_and_is_refused(tmp_path):
    """A valid 8191x10240 PNG of zeros (84 Mpx) in 85 KB; the same builder's small image decodes exactly."""
    small = write(tmp_path, "small.png", png_bomb(1023, 64))
    assert read_image(small).shape == (64, 1023, 3) and not read_image(small).any()
    path = write(tmp_path, "bomb.png", png_bomb(8191, 10240))
    assert path.stat().st_size < 100_000
    refused(path, "PNG declares 10240x8191 = 83.9 Mpx")


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = write(tmp_path, "red.png", encoded(".png", RED))
    assert read_image(path).shape == (40, 30, 3)
    refused(path, "40x30 = 0.0 Mpx, over the 0.0 Mpx limit", max_pixels=1000)
    monkeypatch.setenv("EDGE_POSE_MAX_PIXELS", "1000")
    refused(path, "over the 0.0 Mpx limit")
    monkeypatch.setenv("EDGE_POSE_MAX_PIXELS", "many")
    refused(path, "EDGE_POSE_MAX_PIXELS='many' is not a positive number")


def test_file_larger_than_any_image_within_the_limit_is_not_read(tmp_path):
    path = write(tmp_path, "huge.png", encoded(".png", RED) + b"\x00" * (2 << 20))
    refused(path, "larger than any image within the pixel limit", max_pixels=1000)


# --- truncated files ---------------------------------------------------------------------------------------------

def _cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


TRUNCATED = {
    "jpeg-half": ("a.jpg", lambda: _cut(encoded(".jpg", RED), 0.5), "truncated JPEG"),
    "jpeg-without-end-marker": ("a.jpg", lambda: encoded(".jpg", RED)[:-2], "truncated JPEG"),
    "progressive-jpeg-two-thirds": ("a.jpg", lambda: _cut(pil_bytes("RGB", "JPEG", progressive=True), 0.66),
                                    "truncated JPEG"),
    "jpeg-frame-header-only": ("a.jpg", lambda: jpeg_header(40, 30)[:40], "truncated JPEG"),
    "png-half": ("a.png", lambda: _cut(encoded(".png", RED), 0.5), "PNG data corrupt or truncated"),
    "png-header-only": ("a.png", lambda: encoded(".png", RED)[:33], "PNG data corrupt or truncated"),
    "png-before-IHDR-end": ("a.png", lambda: encoded(".png", RED)[:20], "truncated PNG header"),
    "bmp-half": ("a.bmp", lambda: _cut(encoded(".bmp", RED), 0.5), "BMP data corrupt or truncated"),
    "webp-half": ("a.webp", lambda: _cut(encoded(".webp", RED), 0.5), "WebP header"),
    "tiff-half": ("a.tif", lambda: _cut(encoded(".tiff", RED), 0.5), "truncated TIFF"),
    "empty": ("a.png", lambda: b"", "empty file"),
    "one-byte": ("a.jpg", lambda: b"\xff", "not a JPEG, PNG, BMP, WebP or TIFF image"),
}


@pytest.mark.parametrize("case", TRUNCATED)
def test_truncated_image_is_one_line(tmp_path, case):
    name, make, fragment = TRUNCATED[case]
    refused(write(tmp_path, name, make()), fragment)


# --- odd but valid -----------------------------------------------------------------------------------------------

ODD = {
    "png-16-bit": ("a.png", lambda: encoded(".png", np.full((40, 30, 3), 40000, np.uint16)), (156, 156, 156)),
    "png-grey": ("a.png", lambda: encoded(".png", np.full((40, 30), 77, np.uint8)), (77, 77, 77)),
    "png-grey-16-bit": ("a.png", lambda: encoded(".png", np.full((40, 30), 65535, np.uint16)), (255, 255, 255)),
    "png-alpha": ("a.png", lambda: encoded(".png", np.dstack([RED, np.full((40, 30), 9, np.uint8)])), (0, 0, 200)),
    "png-palette": ("a.png", lambda: pil_bytes("P", "PNG"), (0, 0, 0)),
    "jpeg-cmyk": ("a.jpg", lambda: pil_bytes("CMYK", "JPEG", (0, 255, 255, 0)), (0, 0, 255)),
    "jpeg-grey": ("a.jpg", lambda: encoded(".jpg", np.full((40, 30), 128, np.uint8)), (128, 128, 128)),
    "jpeg-progressive": ("a.jpg", lambda: pil_bytes("RGB", "JPEG", (255, 0, 0), progressive=True), (0, 0, 254)),
    "bmp-top-down": ("a.bmp", lambda: _top_down_bmp(), (0, 0, 200)),
    "tiff": ("a.tif", lambda: encoded(".tiff", RED), (0, 0, 200)),
    "tiff-16-bit-grey": ("a.tiff", lambda: pil_bytes("I;16", "TIFF"), (0, 0, 0)),
    "webp": ("a.webp", lambda: encoded(".webp", RED, cv2.IMWRITE_WEBP_QUALITY, 101), (0, 0, 200)),
    "png-named-jpg": ("a.jpg", lambda: encoded(".png", RED), (0, 0, 200)),
}


def _top_down_bmp() -> bytes:
    data = bytearray(encoded(".bmp", RED[::-1]))
    struct.pack_into("<i", data, 22, -40)  # negative height: rows stored top row first
    return bytes(data)


@pytest.mark.parametrize("case", ODD)
def test_odd_but_valid_image_reads_as_bgr_uint8(tmp_path, case):
    if "pil_bytes" in ODD[case][1].__code__.co_names:
        pytest.importorskip("PIL")
    name, make, bgr = ODD[case]
    image = read_image(write(tmp_path, name, make()))
    assert image.shape == (40, 30, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image[20, 15], bgr, atol=3)


def test_jpeg_with_exif_thumbnail_reads_and_truncation_behind_it_is_caught(tmp_path):
    """The thumbnail's end marker comes before the main scan: it must not make a truncated file look complete."""
    main, thumb = encoded(".jpg", RED), encoded(".jpg", RED[:8, :8])
    app1 = b"Exif\x00\x00" + thumb
    data = main[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(app1)) + app1 + main[2:]
    assert read_image(write(tmp_path, "exif.jpg", data))[20, 15].tolist() == pytest.approx([0, 0, 200], abs=3)
    refused(write(tmp_path, "cut.jpg", data[:-len(main) // 3]), "truncated JPEG")


# --- not images, not files ---------------------------------------------------------------------------------------

def test_other_formats_are_refused_though_opencv_would_decode_them(tmp_path):
    pnm = write(tmp_path, "a.png", b"P6\n30 40\n255\n" + bytes(3600))
    assert cv2.imdecode(np.frombuffer(pnm.read_bytes(), np.uint8), cv2.IMREAD_COLOR) is not None
    refused(pnm, "not a JPEG, PNG, BMP, WebP or TIFF image")
    refused(write(tmp_path, "b.jpg", b"GIF89a" + bytes(20)), "not a JPEG")
    refused(write(tmp_path, "c.jpg", b"hello, world"), "not a JPEG")


def test_fifo_device_and_folder_are_not_read(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    refused(fifo, "not a regular file")  # opening a FIFO to read would block forever
    zero = tmp_path / "zero.jpg"
    zero.symlink_to("/dev/zero")
    refused(zero, "not a regular file")
    folder = tmp_path / "dir.jpg"
    folder.mkdir()
    refused(folder, "not a regular file")


def test_header_check_is_shared_with_serve():
    from edge_pose import imagecheck
    from edge_pose.serve import http as serve_http

    assert serve_http.image_size is imagecheck.image_size  # POST /v1/infer checks headers with the shared code
    assert serve_http.image_size(png(60000, 60000, b"")) == ("png", 60000, 60000)
    assert check_image(encoded(".png", RED)) == ("png", 40, 30)


# --- calibration readers use the same checks ---------------------------------------------------------------------

def test_calibration_reader_and_folder_refuse_a_bomb_in_one_line(tmp_path):
    (tmp_path / "imgs").mkdir()
    bomb = write(tmp_path / "imgs", "bomb.png", png_bomb(8191, 10240))
    with pytest.raises(CalibrationDataError) as exc:
        calib_read_image(bomb)
    assert "Mpx limit" in one_line(exc, bomb)
    with pytest.raises(CalibrationDataError) as exc:
        load_crops(tmp_path / "imgs", (64, 48))
    assert "Mpx limit" in one_line(exc, bomb)


# --- broken COCO files -------------------------------------------------------------------------------------------

def _coco(**over) -> dict:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 40}],
           "annotations": [{"id": 5, "image_id": 1, "bbox": [1, 2, 10, 20], "category_id": 1, "iscrowd": 0,
                            "num_keypoints": 1, "keypoints": [3, 4, 2] * 17}],
           "categories": [{"id": 1, "name": "person"}]}
    for path, value in over.items():
        keys = path.split("__")
        target = doc
        for k in keys[:-1]:
            target = target[int(k)] if isinstance(target, list) else target[k]
        if value is KeyError:
            target.pop(keys[-1])
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return doc


BROKEN_COCO = {  # case: (file text, fragment of the one line)
    "images-not-a-list": (_coco(images=5), "images: expected a list, got int"),
    "image-not-an-object": (_coco(images=["a.jpg"]), "images[0]: expected an object, got str"),
    "image-id-string": (_coco(images__0__id="1"), "images[0].id: expected a non-negative integer id"),
    "image-id-bool": (_coco(images__0__id=True), "images[0].id"),
    "image-id-float": (_coco(images__0__id=1.5), "images[0].id"),
    "image-id-list": (_coco(images__0__id=[1]), "images[0].id: expected a non-negative integer id, got list"),
    "image-id-2**70": (_coco(images__0__id=2**70), "is too large"),
    "image-id-twice": (_coco(images=[{"id": 1, "file_name": "a.jpg"}] * 2), "image id 1 listed twice"),
    "file-name-number": (_coco(images__0__file_name=7), "images[0].file_name: expected a file name"),
    "file-name-absolute": (_coco(images__0__file_name="/etc/passwd"), "points outside the images folder"),
    "file-name-dotdot": (_coco(images__0__file_name="../../x.jpg"), "points outside the images folder"),
    "image-without-id": (_coco(images__0__id=KeyError), "images[0]: missing 'id'"),
    "image-without-file-name": (_coco(images__0__file_name=KeyError), "images[0]: missing 'file_name'"),
    "no-images-key": ({"annotations": []}, "no 'images' list"),
    "top-level-list": ([1, 2], "no 'images' list"),
    "annotations-dict": (_coco(annotations={"0": {}}), "annotations: expected a list, got dict"),
    "bbox-string": (_coco(annotations__0__bbox="1,2,3,4"), "annotations[0].bbox: expected [x, y, w, h]"),
    "bbox-three-numbers": (_coco(annotations__0__bbox=[1, 2, 3]), "annotations[0].bbox"),
    "bbox-with-string": (_coco(annotations__0__bbox=[1, 2, "3", 4]), "annotations[0].bbox"),
    "bbox-1e300": (_coco(annotations__0__bbox=[1, 2, 1e300, 4]), "number 1e+300 is out of range"),
    "bbox-1e8": (_coco(annotations__0__bbox=[1, 2, 1e8, 4]), "annotations[0].bbox: expected [x, y, w, h]"),
    "bbox-missing": (_coco(annotations__0__bbox=KeyError), "annotations[0]: missing 'bbox'"),
    "image-id-unknown": (_coco(annotations__0__image_id=99), "annotations[0].image_id: 99 is not among"),
    "ann-without-image-id": (_coco(annotations__0__image_id=KeyError), "missing 'image_id'"),
    "keypoints-not-multiple-of-3": (_coco(annotations__0__keypoints=[1, 2]), "annotations[0].keypoints"),
    "keypoints-strings": (_coco(annotations__0__keypoints=["a"] * 51), "annotations[0].keypoints"),
    "keypoints-missing": (_coco(annotations__0__keypoints=KeyError), "missing 'keypoints'"),
    "num-keypoints-negative": (_coco(annotations__0__num_keypoints=-1), "annotations[0].num_keypoints"),
    "iscrowd-2": (_coco(annotations__0__iscrowd=2), "annotations[0].iscrowd: expected 0 or 1"),
    "category-name": (_coco(annotations__0__category_id="person"), "annotations[0].category_id"),
}
BROKEN_TEXT = {  # raw JSON text the parser itself refuses
    "nan-literal": ('{"images": [{"id": 1, "file_name": "a.jpg", "width": NaN}]}', "NaN is not a number JSON allows"),
    "infinity-literal": ('{"images": [], "x": -Infinity}', "-Infinity is not a number JSON allows"),
    "float-1e999": ('{"images": [], "x": 1e999}', "number 1e999 is out of range"),
    "int-10000-digits": ('{"images": [], "x": ' + "9" * 10000 + "}", "is too large"),
    "nested-100k": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "nested-inside-images": ('{"images": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
    "truncated": ('{"images": [{"id": 1', "broken JSON (line 1"),
    "empty": ("", "broken JSON"),
    "not-utf8": (b"\xff\xfe{\x00}\x00", "not a UTF-8 text JSON file"),
}


def _write_json(tmp_path, content) -> Path:
    path = tmp_path / "coco.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("case", list(BROKEN_COCO) + list(BROKEN_TEXT))
def test_broken_coco_keypoint_file_is_one_line_for_calibration(tmp_path, case):
    content, fragment = BROKEN_COCO.get(case) or BROKEN_TEXT[case]
    path = _write_json(tmp_path, content)
    with pytest.raises(CalibrationDataError) as exc:
        read_coco_keypoints(path)
    assert fragment in one_line(exc, path)


@pytest.mark.parametrize("case", [c for c in BROKEN_COCO if c not in ("no-images-key", "top-level-list")]
                         + list(BROKEN_TEXT))
def test_broken_coco_file_is_one_line_for_predict_boxes(tmp_path, case):
    content, fragment = BROKEN_COCO.get(case) or BROKEN_TEXT[case]
    if case in ("keypoints-missing",):  # boxes need no keypoints
        assert CocoBoxes(_write_json(tmp_path, content)).for_id(1).shape == (1, 5)
        return
    path = _write_json(tmp_path, content)
    with pytest.raises(BoxError) as exc:
        CocoBoxes(path)
    assert fragment.replace("no 'images' list", "expected a COCO") in one_line(exc, path)


BROKEN_DETECTIONS = {
    "not-a-list": ({"image_id": 1}, "expected a JSON list"),
    "record-not-object": ([[1, 2, 3, 4]], "detections[0]: expected an object, got list"),
    "score-string": ([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": "high"}], "detections[0].score"),
    "score-huge": ([{"image_id": 1, "bbox": [1, 2, 3, 4], "score": 1e12}], "detections[0].score"),
    "bbox-missing": ([{"image_id": 1, "score": 0.9}], "detections[0]: missing 'bbox'"),
    "image-id-null": ([{"image_id": None, "bbox": [1, 2, 3, 4], "score": 0.9}], "detections[0].image_id"),
}


@pytest.mark.parametrize("case", BROKEN_DETECTIONS)
def test_broken_detection_results_are_one_line(tmp_path, case):
    content, fragment = BROKEN_DETECTIONS[case]
    path = _write_json(tmp_path, content)
    with pytest.raises(CalibrationDataError) as exc:
        read_coco_detections(path)
    assert fragment in one_line(exc, path)
    with pytest.raises(BoxError) as exc:
        CocoBoxes(path)
    assert fragment.replace("expected a JSON list", "expected a COCO") in one_line(exc, path)


def test_valid_coco_files_still_load():
    gt = coco_mini() / "test_coco.json"
    data = read_coco_keypoints(gt)
    assert data["images"] and data["annotations"]
    assert CocoBoxes(gt).by_image


# --- through `edge-pose predict`, in a subprocess under an address-space limit -----------------------------------

def _predict(args, tmp_path, limit=1 << 30):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("EDGE_POSE_MAX_PIXELS", None)
    return subprocess.run([sys.executable, "-m", "edge_pose.cli.main", "predict", *map(str, args)],
                          capture_output=True, text=True, preexec_fn=cap, env=env, cwd=tmp_path, timeout=120)


def test_predict_refuses_a_png_bomb_in_one_line_within_1_gib(tmp_path):
    """402 Mpx of zeros in a 0.4 MB PNG: decoded it would take 1.6 GB; refused from the header, nothing written."""
    bomb = write(tmp_path, "bomb.png", png_bomb(16383, 24576))
    assert bomb.stat().st_size < 500_000
    out = tmp_path / "out"
    got = _predict([tmp_path / "no-bundle", bomb, "--out", out], tmp_path)
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert got.stderr.strip().splitlines() == [f"edge-pose predict: error: {bomb}: PNG declares 24576x16383 = 402.6 "
                                               f"Mpx, over the 50.0 Mpx limit (EDGE_POSE_MAX_PIXELS raises it)"]
    assert not out.exists()


def test_predict_refuses_a_broken_gt_file_in_one_line(tmp_path):
    image = write(tmp_path, "000000000001.jpg", encoded(".jpg", RED))
    gt = _write_json(tmp_path, '{"images": [], "annotations": [{"image_id": 1, "bbox": [NaN, 0, 1, 1]}]}')
    out = tmp_path / "out"
    got = _predict([tmp_path / "no-bundle", image, "--gt", gt, "--out", out], tmp_path)
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [f"edge-pose predict: error: {gt}: NaN is not a number JSON allows"]
    assert not out.exists()


def test_predict_folder_skips_bad_images_and_writes_strict_json(cpm_bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = coco_mini() / "000000000785.jpg"
    (folder / "a_good.jpg").write_bytes(good.read_bytes())
    (folder / "b_bomb.png").write_bytes(png_bomb(16383, 24576))
    (folder / "c_cut.jpg").write_bytes(_cut(good.read_bytes(), 0.5))
    out = tmp_path / "out"
    got = _predict([cpm_bundle.path, folder, "--out", out, "--no-draw"], tmp_path, limit=3 << 30)
    assert got.returncode == 0, got.stderr
    skipped = [ln for ln in got.stderr.splitlines() if "skipped" in ln]
    assert len(skipped) == 2 and "b_bomb.png: PNG declares" in skipped[0] and "c_cut.jpg: not a readable" in skipped[1]

    def strict(name):
        raise ValueError(name)

    results = json.loads((out / "keypoints.json").read_text(), parse_constant=strict)
    assert results and {r["image_id"] for r in results} == {0}
    assert sorted(p.name for p in out.iterdir()) == ["keypoints.json", "summary.json"]
