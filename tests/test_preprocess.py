"""Preprocess parity with mmpose (affine.npz, the MANIFEST crop, the models' real input tensors)."""
import json

import cv2
import numpy as np
import pytest
from shared import coco_mini, fixture

from edge_pose.bundle import InputSpec, Quantization
from edge_pose.errors import EdgePoseError
from edge_pose.preprocess import (box_to_center_scale, crop_people, crop_to_image, fix_aspect, to_model_input,
                                  warp_matrices, warp_matrix)

MMPOSE_SPEC = dict(name="input", layout="NCHW", dtype="float32", color="rgb")


@pytest.fixture(scope="module")
def affine():
    return np.load(fixture("affine.npz"))


@pytest.fixture(scope="module")
def manifest_crop():
    return json.loads(fixture("MANIFEST.json").read_text())["models"]["res50_256x192"]["crop"]


def test_box_to_center_scale_matches_bbox_xywh2cs(affine):
    centers, scales = box_to_center_scale(affine["boxes_xywh"], None)
    np.testing.assert_allclose(centers, affine["centers"], atol=1e-4)
    np.testing.assert_allclose(scales, affine["scales"][:, ::-1], atol=1e-4)  # mmpose writes (w, h)


def test_aspect_fixed_to_model_input(affine):
    _, scales = box_to_center_scale(affine["boxes_xywh"], (256, 192))
    np.testing.assert_allclose(scales[:, 0] * 0.75, scales[:, 1], rtol=1e-6)
    raw = affine["scales"][:, ::-1]
    assert np.all(scales >= raw - 1e-4) and np.any(scales > raw + 1)  # only ever grows one side


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_warp_matrices_match_get_warp_matrix_with_rotation(affine):
    scales_hw = affine["scales"][:, ::-1]
    fwd = warp_matrices(affine["centers"], scales_hw, (256, 192), affine["rot_deg"])
    inv = warp_matrices(affine["centers"], scales_hw, (256, 192), affine["rot_deg"], inv=True)
    np.testing.assert_allclose(fwd[:, :, :2], affine["warp"][:, :, :2], atol=1e-5)
    np.testing.assert_allclose(inv[:, :, :2], affine["warp_inv"][:, :, :2], atol=1e-5)
    # translations are large numbers computed by mmpose in float32: compare where points land instead
    corners = np.array([[0, 0], [191, 0], [0, 255], [191, 255]], float)
    for i in range(len(fwd)):
        np.testing.assert_allclose(_apply(inv[i], corners), _apply(affine["warp_inv"][i], corners), atol=1e-3)
        img_pts = _apply(affine["warp_inv"][i], corners)
        np.testing.assert_allclose(_apply(fwd[i], img_pts), _apply(affine["warp"][i], img_pts), atol=1e-3)
        np.testing.assert_allclose(_apply(fwd[i], img_pts), corners, atol=1e-3)


def test_manifest_crop_reproduces_warp(manifest_crop):
    image = cv2.imread(str(coco_mini() / manifest_crop["file"]))
    crops = crop_people(image, [manifest_crop["bbox"]], (256, 192))
    np.testing.assert_allclose(crops.centers[0], manifest_crop["center"], atol=1e-4)
    np.testing.assert_allclose(crops.scales[0], manifest_crop["scale"][::-1], atol=1e-3)
    m = warp_matrix(crops.centers[0], crops.scales[0], (256, 192))
    np.testing.assert_allclose(m, manifest_crop["warp"], atol=1e-5)


@pytest.mark.parametrize("name,size", [("res50_256x192", (256, 192)), ("litehrnet18_384x288", (384, 288))])
def test_model_input_equals_mmpose_input(name, size, manifest_crop):
    """Row 0 of the fixture input is mmpose's TopdownAffine + data preprocessor output for the MANIFEST crop."""
    ref = np.load(fixture(f"{name}_input.npy"))[0]
    image = cv2.imread(str(coco_mini() / manifest_crop["file"]))
    crops = crop_people(image, [manifest_crop["bbox"]], size)
    x = to_model_input(crops.images, InputSpec(height=size[0], width=size[1], **MMPOSE_SPEC))
    assert x.shape == (1, 3) + size and x.dtype == np.float32
    np.testing.assert_allclose(x[0], ref, atol=1e-5)


def test_to_model_input_quantised_nhwc_bgr():
    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    spec = InputSpec(name="q", height=8, width=6, layout="NHWC", dtype="int8", color="bgr",
                     mean=(100.0, 110.0, 120.0), std=(50.0, 60.0, 70.0), quantization=Quantization(0.01, -5))
    q = to_model_input(crops, spec)
    assert q.dtype == np.int8 and q.shape == (2, 8, 6, 3)
    real = (crops.astype(np.float64) - spec.mean) / spec.std
    expect = np.clip(np.floor(real / 0.01 - 5 + 0.5), -128, 127)
    assert np.abs(q - expect).max() <= 1  # only .5 ties may differ
    assert (q == -128).any() and (q == 127).any()  # saturates instead of wrapping
    u8 = to_model_input(crops, InputSpec(name="u", height=8, width=6, layout="NHWC", dtype="uint8", color="bgr",
                                         mean=(0, 0, 0), std=(1, 1, 1)))
    np.testing.assert_array_equal(u8, crops)


def test_to_model_input_rejects_wrong_size():
    with pytest.raises(EdgePoseError, match="8x6"):
        to_model_input(np.zeros((1, 8, 6, 3), np.uint8), InputSpec(name="x", height=256, width=192))


def test_crop_to_image_inverts_the_crop(affine):
    boxes = affine["boxes_xywh"]
    centers, scales = box_to_center_scale(boxes, (256, 192))
    rots = affine["rot_deg"]
    img_pts = np.random.default_rng(1).uniform(0, 400, (len(boxes), 5, 2))
    fwd = warp_matrices(centers, scales, (256, 192), rots)
    crop_pts = np.einsum("nij,nkj->nki", fwd[:, :, :2], img_pts) + fwd[:, None, :, 2]
    back = crop_to_image(crop_pts, centers, scales, (256, 192), rots)
    np.testing.assert_allclose(back, img_pts, atol=1e-3)
    # without rotation it is mmpose's kp / input_size * scale + center - scale / 2
    kp = np.random.default_rng(2).uniform(0, 192, (len(boxes), 3, 2))
    wh = scales[:, ::-1]
    expect = kp / np.array([192, 256]) * wh[:, None] + centers[:, None] - 0.5 * wh[:, None]
    np.testing.assert_allclose(crop_to_image(kp, centers, scales, (256, 192)), expect, atol=1e-3)


def test_fix_aspect_keeps_the_long_side():
    np.testing.assert_allclose(fix_aspect([[100, 10], [10, 100]], (256, 192)), [[100, 75], [133.3333, 100]],
                               rtol=1e-5)


def test_crop_people_rejects_non_images():
    with pytest.raises(EdgePoseError, match="HxWx3"):
        crop_people(np.zeros((10, 10), np.uint8), [[0, 0, 5, 5]], (256, 192))


@pytest.mark.parametrize("layout,dtype,color,quant", [
    ("NCHW", "float32", "rgb", None), ("NHWC", "float32", "rgb", None), ("NHWC", "float16", "bgr", None),
    ("NHWC", "int8", "rgb", Quantization(0.0186, -14)), ("NCHW", "uint8", "bgr", Quantization(0.0171, 121)),
])
def test_lookup_tables_equal_the_plain_arithmetic(layout, dtype, color, quant):
    crops = np.random.default_rng(3).integers(0, 256, (3, 16, 12, 3), dtype=np.uint8)
    spec = InputSpec(name="x", height=16, width=12, layout=layout, dtype=dtype, color=color, quantization=quant)
    x = (crops[..., ::-1] if color == "rgb" else crops).astype(np.float32)
    y = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if quant:
        t = y / np.float32(quant.scale) + np.float32(quant.zero_point)
        y = np.clip(np.copysign(np.floor(np.abs(t) + 0.5), t), *{"int8": (-128, 127), "uint8": (0, 255)}[dtype])
    expect = (y.transpose(0, 3, 1, 2) if layout == "NCHW" else y).astype(dtype)
    got = to_model_input(crops, spec)
    assert got.dtype == np.dtype(dtype) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expect)
