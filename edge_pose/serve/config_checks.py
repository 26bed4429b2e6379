"""Validation of a loaded config: every field's declared range in one loop, then the cross-field rules (bundle and
detector paths, box source, addresses, tokens, TLS files, writable output). Problems read
`FILE: [section] key: what is wrong`, one per line, all of them at once.
"""
from __future__ import annotations

import math
import os
import stat
from dataclasses import fields
from pathlib import Path

from edge_pose.bundle import resolve_bundles
from edge_pose.errors import EdgePoseError
from edge_pose.serve.addresses import host_problem, is_loopback
from edge_pose.serve.config_schema import SECTIONS, TOKEN_ENV, ConfigError, HttpConfig, MqttConfig, ServeConfig, collect


def _first_line(path: str, what: str, where: str) -> str:
    try:
        lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {what} from {path} ({getattr(exc, 'strerror', None) or exc})") \
            from None
    if not lines or not lines[0].strip():
        raise ConfigError(f"{where}: {path} is empty (expected the {what} on its first line)")
    return lines[0].strip()


def resolve_token(http: HttpConfig, origin: str) -> str:
    """The bearer token from the config, its token_file, or $EDGE_POSE_TOKEN (first one set)."""
    if http.token:
        return http.token
    if http.token_file:
        return _first_line(http.token_file, "a token", f"{origin}: [http] token_file")
    return os.environ.get(TOKEN_ENV, "").strip()


def resolve_mqtt_password(m: MqttConfig, origin: str) -> str:
    if m.password_file:
        return _first_line(m.password_file, "a password", f"{origin}: [mqtt] password_file")
    return m.password


def check_boxes(cfg: ServeConfig, bad) -> None:
    """The box source must be usable here (HOG is missing from OpenCV 5; a COCO file must parse)."""
    from edge_pose.boxes import box_source
    from edge_pose.serve.sources import kind_of

    spec = cfg.persons.boxes
    if spec in ("auto", "detector"):
        check_detector(cfg, bad)
        return
    if spec not in ("whole", "frame", "hog") and kind_of(cfg.source.uri) != "images":
        bad("persons", "boxes", f"a COCO detections file ({spec}) needs an image-directory source")
        return
    try:
        box_source(spec)
    except EdgePoseError as exc:
        bad("persons", "boxes", str(exc))
    except Exception as exc:  # an OpenCV or file-system error: still one line, never a traceback
        bad("persons", "boxes", f"cannot use {spec}: {type(exc).__name__}: {' '.join(str(exc).split())[:160]}")


def detector_path(cfg: ServeConfig) -> str | None:
    """The detector the daemon will use: [persons] detector, or one beside the pose bundles; None without one."""
    if cfg.persons.boxes not in ("auto", "detector"):
        return None
    if cfg.persons.detector:
        return cfg.persons.detector
    from edge_pose.estimator import find_detector

    found = find_detector(cfg.model.bundle) if cfg.model.bundle else None
    return str(found) if found else None


def check_detector(cfg: ServeConfig, bad) -> None:
    path = detector_path(cfg)
    if path is None:
        if cfg.persons.boxes == "detector":
            bad("persons", "detector", "boxes = \"detector\" needs a detect bundle (set [persons] detector or put "
                                       "one beside the pose bundles)")
        return
    try:
        resolve_bundles(path, task="detect")
    except EdgePoseError as exc:
        bad("persons", "detector", str(exc))


def check_bundle(cfg: ServeConfig, bad) -> None:
    if not cfg.model.bundle:
        bad("model", "bundle", "required (a bundle or a directory of bundles; or --bundle PATH)")
        return
    try:  # the one rule for a bundle path: a bundle, or a directory whose bundles compete
        resolve_bundles(cfg.model.bundle, task="pose")
    except EdgePoseError as exc:
        bad("model", "bundle", str(exc))


def writable_file_problem(path: str) -> str | None:
    """None when `path` can be appended to (an existing regular file, or a new name in a writable directory)."""
    p = Path(path)
    if path.endswith(("/", os.sep)) or p.is_dir():
        return f"{path} is a directory (give a file path, e.g. {p / 'poses.jsonl'})"
    if not p.parent.is_dir():
        return f"directory {p.parent} does not exist"
    if p.exists():
        if not stat.S_ISREG(p.stat().st_mode):
            return f"{path} is not a regular file"
        if not os.access(p, os.W_OK):
            return f"{path} is not writable"
    elif not os.access(p.parent, os.W_OK | os.X_OK):
        return f"directory {p.parent} is not writable"
    return None


def readable_file_problem(path: str) -> str | None:
    p = Path(path)
    if not p.is_file():
        return f"no such file {path}"
    if not os.access(p, os.R_OK):
        return f"{path} is not readable"
    return None


def _check_ranges(cfg: ServeConfig, bad) -> None:
    """Every field's declared range, choices and finiteness (TOML allows nan and inf; the daemon never does)."""
    for section in SECTIONS:
        part = getattr(cfg, section)
        for f in fields(part):
            meta, value = f.metadata, getattr(part, f.name)
            if "choices" in meta:
                low = value.lower() if f.name == "level" else value
                if low not in meta["choices"]:
                    bad(section, f.name, f"must be one of {', '.join(repr(c) for c in meta['choices'])}, "
                                         f"got {value!r}")
                continue
            if "lo" not in meta or isinstance(value, bool):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                bad(section, f.name, f"must be a finite number, got {value}")
                continue
            lo, hi = meta["lo"], meta["hi"]
            too_low = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
            if too_low or (hi is not None and value > hi):
                span = f"> {lo} and <= {hi}" if meta["lo_open"] else f"{lo}..{hi}"
                why = f" ({meta['why']})" if meta["why"] else ""
                bad(section, f.name, f"must be {span}{why}, got {value}")


def _no_nul(cfg: ServeConfig, bad) -> bool:
    """A NUL byte in a string makes every path call raise; report it and skip the path checks."""
    clean = True
    for section in SECTIONS:
        part = getattr(cfg, section)
        for f in fields(part):
            if isinstance(getattr(part, f.name), str) and "\0" in getattr(part, f.name):
                bad(section, f.name, "contains a NUL character")
                clean = False
    return clean


def validate(cfg: ServeConfig, problems: list[str] | None = None) -> ServeConfig:
    """Reject what the daemon cannot run with (all problems at once); fills http.token and mqtt.password from
    their files or the environment."""
    out, own = collect(problems)
    o = cfg.origin

    def bad(section: str, key: str, what: str) -> None:
        out.append(f"{o}: [{section}] {key}: {what}")

    _check_ranges(cfg, bad)
    if not _no_nul(cfg, bad):
        if own:
            raise ConfigError(out)
        return cfg
    check_bundle(cfg, bad)
    if not cfg.source.uri.strip():
        bad("source", "uri", "required (camera index, /dev/videoN, video file, rtsp:// URL or image directory; "
                             "or --source URI)")
    s = cfg.source
    if math.isfinite(s.reconnect_min_s + s.reconnect_max_s) and s.reconnect_min_s > s.reconnect_max_s:
        bad("source", "reconnect_min_s", f"must be <= reconnect_max_s ({s.reconnect_max_s}), got {s.reconnect_min_s}")
    check_boxes(cfg, bad)
    h = cfg.http
    if h.enabled:
        problem = host_problem(h.host)
        if problem:
            bad("http", "host", problem)
    try:
        h.token = resolve_token(h, o)
    except ConfigError as exc:
        out.extend(exc.problems)
    if h.enabled and not is_loopback(h.host) and not h.token and not host_problem(h.host):
        bad("http", "token", f"required when binding {h.host} (not loopback): set token, token_file or "
                             f"${TOKEN_ENV}, or bind 127.0.0.1")
    m = cfg.mqtt
    if m.enabled:
        problem = host_problem(m.host)
        if problem:
            bad("mqtt", "host", problem)
        if not m.topic or any(c in m.topic for c in "#+"):
            bad("mqtt", "topic", f"must be a non-empty topic without wildcards, got {m.topic!r}")
        if m.password and m.password_file:
            bad("mqtt", "password_file", "set either password or password_file, not both")
        if (m.password or m.password_file) and not m.username:
            bad("mqtt", "username", "required when a password is set")
        try:
            m.password = resolve_mqtt_password(m, o)
        except ConfigError as exc:
            out.extend(exc.problems)
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(m, key)
            if value and not m.tls:  # a certificate without TLS would send the password in clear text
                bad("mqtt", key, "set, but tls = false (set tls = true)")
            elif value:
                problem = readable_file_problem(value)
                if problem:
                    bad("mqtt", key, problem)
        if m.key_file and not m.cert_file:
            bad("mqtt", "key_file", "needs cert_file")
    j = cfg.jsonl
    if j.path:
        problem = writable_file_problem(j.path)
        if problem:
            bad("jsonl", "path", problem)
    if own and out:
        raise ConfigError(out)
    return cfg
