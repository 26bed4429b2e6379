"""Which targets to build: what the user asked for, or what a device profile runs best (the registry says what
each format can be built at)."""
from __future__ import annotations

from converters.errors import ConversionError
from registry import FORMATS, PRECISIONS, cpu_has_bf16, execution_of, target

CALIBRATED = tuple(p.name for p in PRECISIONS.values() if p.calibrated)


def unbuildable_here(fmt: str, precision: str) -> str | None:
    """Why this machine cannot build and judge the target (the guard runs it here), or None."""
    if execution_of(fmt, precision) == "bf16" and not cpu_has_bf16():
        return (f"{fmt}/{precision} skipped: this CPU has no native bf16 (avx512_bf16 or amx_bf16), so the guard "
                "cannot run it as a device would")
    return None


def resolve_targets(formats=(), precisions=(), device: str | None = None,
                    have_calibration: bool = True) -> tuple[list[tuple[str, str]], list[str], str | None]:
    """(targets, notes, blob device): the pairs to build in order, why some asked-for pairs were skipped, and the
    OpenVINO device to precompile a blob for (from the profile)."""
    formats, precisions = [f.lower() for f in formats or ()], [p.lower() for p in precisions or ()]
    buildable = [f for f, e in FORMATS.items() if e.precisions]
    for f in formats:
        if f not in buildable:
            raise ConversionError(f"format {f!r} cannot be built (use {' or '.join(buildable)})")
    for p in precisions:
        if p not in PRECISIONS:
            raise ConversionError(f"precision {p!r} unknown (use {', '.join(PRECISIONS)})")
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
                if target(f, p):
                    wanted.append((f, p))
                else:
                    notes.append(f"{f} has no {p} precision: skipped")
    kept = []
    for f, p in wanted:
        why = unbuildable_here(f, p)
        if why:
            notes.append(why)
        else:
            kept.append((f, p))
    if not kept:
        raise ConversionError("nothing to build: " + "; ".join(notes))
    if not have_calibration:
        missing = [f"{f}/{p}" for f, p in kept if p in CALIBRATED]
        if missing:
            raise ConversionError(f"{', '.join(missing)} need calibration crops: pass --calib DATA "
                                  "(a COCO keypoint JSON, an image folder or a video)")
    return kept, notes, blob
