"""Which (format, precision) pairs to build: what the user asked for, or what a device profile runs best."""
from __future__ import annotations

from converters.errors import ConversionError

SUPPORTED = {"tflite": ("fp32", "fp16", "dynamic", "int8", "int16x8"), "openvino": ("fp32", "fp16", "int8")}
QUANTISED = ("dynamic", "int8", "int16x8")  # precisions that need (dynamic: benefit from) calibration crops
CALIBRATED = ("int8", "int16x8")


def resolve_targets(formats=(), precisions=(), device: str | None = None,
                    have_calibration: bool = True) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """(targets, notes, blob device): the pairs to build in order, why some asked-for pairs were skipped, and the
    OpenVINO device to precompile a blob for (from the profile)."""
    formats, precisions = [f.lower() for f in formats or ()], [p.lower() for p in precisions or ()]
    for f in formats:
        if f not in SUPPORTED:
            raise ConversionError(f"format {f!r} unknown (use {' or '.join(SUPPORTED)})")
    for p in precisions:
        if p not in SUPPORTED["tflite"]:
            raise ConversionError(f"precision {p!r} unknown (use {', '.join(SUPPORTED['tflite'])})")
    notes: list[str] = []
    blob = None
    if device:
        from devices.profiles import ProfileError, get_profile

        try:
            profile = get_profile(device)
        except ProfileError as exc:
            raise ConversionError(str(exc)) from None
        wanted = [t for t in profile.convert_targets
                  if (not formats or t[0] in formats) and (not precisions or t[1] in precisions)]
        if not wanted:
            raise ConversionError(f"device {device}: its default set {list(profile.convert_targets)} has nothing in "
                                  f"--format {formats or 'any'} --precision {precisions or 'any'}")
        blob = profile.convert_blobs[0] if profile.convert_blobs else None
    else:
        formats = formats or ["tflite", "openvino"]
        precisions = precisions or (["fp32", "int8"] if have_calibration else ["fp32"])
        wanted = []
        for f in formats:
            for p in precisions:
                if p in SUPPORTED[f]:
                    wanted.append((f, p))
                else:
                    notes.append(f"{f} has no {p} precision: skipped")
        if not wanted:
            raise ConversionError("nothing to build: " + "; ".join(notes))
    if not have_calibration:
        missing = [f"{f}/{p}" for f, p in wanted if p in CALIBRATED]
        if missing:
            raise ConversionError(f"{', '.join(missing)} need calibration crops: pass --calib DATA "
                                  "(a COCO keypoint JSON, an image folder or a video)")
    return wanted, notes, blob
