"""The daemon's one TOML config: a typed schema, defaults, and one validation pass that reports every problem.

Every key has a default except `model.bundle` and `source.uri`; command-line flags override the file. Each field
declares its range in its metadata (`num`), so types, ranges and finiteness are checked in one place, by one loop;
cross-field rules (paths, addresses, tokens) follow it. Problems read `FILE: [section] key: what is wrong`, one per
line, so that `edge-pose serve --check-config FILE` lists all of them at once in a deploy script.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_pose.bundle import resolve_bundles
from edge_pose.errors import EdgePoseError

TOKEN_ENV = "EDGE_POSE_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error")
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


class ConfigError(EdgePoseError, ValueError):
    """Config values the daemon cannot run with; `problems` holds one line per problem (file, key, what)."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def num(default, lo=None, hi=None, *, lo_open: bool = False, why: str = ""):
    """A numeric field with its allowed range (finite always; lo_open: lo itself excluded)."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "lo_open": lo_open, "why": why})


def choice(default: str, *choices: str):
    return field(default=default, metadata={"choices": choices})


@dataclass
class ModelConfig:
    bundle: str = ""  # bundle directory (required)
    device: str = "auto"  # device profile name or "auto"
    backend: str = ""  # force a backend ("litert" | "openvino"); empty = let the selector choose
    threads: int = num(0, 0, 256, why="0 = the runtime's default")


@dataclass
class SourceConfig:
    uri: str = ""  # camera index, /dev/videoN, video file, rtsp:// or http(s):// stream, image directory
    loop: bool = True  # video files and image directories start again at the end
    fps: float = num(0.0, 0, 1000, why="0 = the file's own rate")  # pace for files and directories (images: 5/s)
    reconnect_min_s: float = num(0.5, 0, 3600, lo_open=True)  # first retry delay; doubles up to reconnect_max_s
    reconnect_max_s: float = num(10.0, 0, 86400, lo_open=True)


@dataclass
class PersonsConfig:
    # "auto": the detector ([persons] detector, or a detect bundle beside the pose bundles) when there is one, else
    # the whole frame; "detector" (one is required), "whole" (frame = one box), "hog" (OpenCV HOG), or a COCO
    # detections file (image-directory sources)
    boxes: str = "auto"
    max_people: int = num(10, 1, 256)  # boxes per frame, and per POST /v1/infer (more: 413)
    detector: str = ""  # a detect bundle or a directory holding one
    # measured (benchmarks/detect_pipeline.py): every 3rd frame ran 1.46x the FPS of every frame, finding 92% of the
    # people; between detections boxes follow the people's keypoints
    detect_every: int = num(3, 1, 1000)


@dataclass
class TrackingConfig:
    enabled: bool = False
    match: str = choice("oks", "oks", "iou")  # keypoint similarity or box overlap
    threshold: float = num(0.3, 0, 1, lo_open=True)  # minimum similarity to continue a track
    max_missed: int = num(10, 0, 100000)  # frames a track survives unseen
    smoothing: bool = True  # One-Euro filter on keypoints
    min_cutoff: float = num(1.0, 0, 1000, lo_open=True)  # Hz: lower = smoother when still
    beta: float = num(0.05, 0, 1000)  # higher = less lag when moving
    d_cutoff: float = num(1.0, 0, 1000, lo_open=True)


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = num(8080, 0, 65535)
    token: str = ""  # bearer token; required when host is not loopback
    token_file: str = ""  # or read it from this file (first line)
    max_body_bytes: int = num(8 * 1024 * 1024, 1024, 1 << 30)  # POST /v1/infer body limit
    max_pixels: int = num(4096 * 4096, 64 * 64, 1 << 28)  # POST /v1/infer decoded image limit (height * width)
    jpeg_quality: int = num(80, 1, 100)  # GET /v1/frame.jpg
    sse_queue: int = num(32, 1, 10000)  # events buffered per stream client before the oldest is dropped (counted)
    max_connections: int = num(32, 2, 1024)  # open connections (stream clients included); more get 503
    max_header_bytes: int = num(16384, 1024, 1 << 20)  # request line + headers; more gets 431
    header_timeout_s: float = num(5.0, 0, 300, lo_open=True)  # request line + headers must arrive within this
    body_timeout_s: float = num(30.0, 0, 3600, lo_open=True)  # a POST body must arrive within this
    write_timeout_s: float = num(10.0, 0, 3600, lo_open=True)  # a client not taking a response for this long is cut


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = num(1883, 1, 65535)
    topic: str = "edge-pose/poses"
    qos: int = num(1, 0, 2)
    client_id: str = ""  # empty = edge-pose-<hostname>-<pid>
    username: str = ""
    password: str = ""
    password_file: str = ""  # or the first line of this file
    tls: bool = False  # TLS to the broker (certificate and host name verified)
    ca_file: str = ""  # CA bundle for the broker's certificate; empty = the system's CAs
    cert_file: str = ""  # client certificate (PEM), for brokers that require one
    key_file: str = ""  # its private key (PEM); empty = in cert_file
    keepalive_s: int = num(30, 5, 3600)
    buffer: int = num(1000, 1, 1000000)  # messages held while the broker is away; past it the oldest are dropped


@dataclass
class JsonlConfig:
    path: str = ""  # empty = off
    max_bytes: int = num(50 * 1024 * 1024, 1024, 1 << 40)  # rotate when the file would grow past this
    backups: int = num(5, 0, 1000)  # keep path.1 .. path.N
    flush_s: float = num(1.0, 0, 3600, lo_open=True)  # write out at least this often (and always on stop)


@dataclass
class LogConfig:
    level: str = choice("info", *LOG_LEVELS)


@dataclass
class ServeConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    persons: PersonsConfig = field(default_factory=PersonsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    jsonl: JsonlConfig = field(default_factory=JsonlConfig)
    log: LogConfig = field(default_factory=LogConfig)
    origin: str = "<defaults>"  # where the values came from, for error messages


SECTIONS = [f.name for f in fields(ServeConfig) if f.name != "origin"]


def _coerce(value: Any, default: Any, where: str) -> Any:
    """TOML value -> the type of the default; ints are accepted where floats are expected. ConfigError if not."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {_show(value)}")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # source.uri = 0 (a camera index)
        return str(value)
    raise ConfigError(f"{where}: expected a string, got {_show(value)}")


def _show(value: Any) -> str:
    """A value for an error line: tables and arrays by kind, never a multi-line dump."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _collect(problems: list[str] | None):
    """(list to append to, raise at the end?): callers pass a list to gather problems across steps."""
    return (problems, False) if problems is not None else ([], True)


def from_dict(data: dict[str, Any], origin: str, problems: list[str] | None = None) -> ServeConfig:
    """Known sections and keys of the right types into a ServeConfig; every other entry is a problem."""
    out, own = _collect(problems)
    cfg = ServeConfig(origin=origin)
    for section, body in data.items():
        if section not in SECTIONS:
            out.append(f"{origin}: [{section}]: unknown section (known: {', '.join(SECTIONS)})")
            continue
        if not isinstance(body, dict):
            out.append(f"{origin}: {section}: expected a [{section}] table, got {_show(body)}")
            continue
        target = getattr(cfg, section)
        known = {f.name for f in fields(target)}
        for key, value in body.items():
            where = f"{origin}: [{section}] {key}"
            if key not in known:
                out.append(f"{where}: unknown key (known: {', '.join(sorted(known))})")
                continue
            try:
                setattr(target, key, _coerce(value, getattr(target, key), where))
            except ConfigError as exc:
                out.extend(exc.problems)
    if own and out:
        raise ConfigError(out)
    return cfg


def load_file(path: str | os.PathLike, problems: list[str] | None = None) -> ServeConfig:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
    return from_dict(data, str(path), problems)


def split_host_port(text: str, where: str, default_port: int) -> tuple[str, int]:
    """'HOST:PORT', ':PORT', 'HOST', '[v6]:PORT' or '[v6]' -> (host, port); anything else is a ConfigError.

    Strict on purpose: a typo such as '[::1' must never fall through to an empty host, which binds every interface.
    """
    text = text.strip()
    port_text: str | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{where}: {text!r}: '[' without ']' (IPv6 is [ADDRESS]:PORT)")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{where}: {text!r}: expected ':PORT' after ']', got {rest!r}")
        port_text = rest[1:] if rest else None
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}: {text!r}: [{host}] is not an IPv6 address") from None
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ConfigError(f"{where}: {text!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
    else:
        host = text
    port = default_port
    if port_text is not None:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ConfigError(f"{where}: {text!r}: port must be an integer 0..65535, got {port_text!r}")
        port = int(port_text)
    host = host or "127.0.0.1"  # ':8080' means loopback, never all interfaces
    problem = host_problem(host)
    if problem:
        raise ConfigError(f"{where}: {text!r}: {problem}")
    return host, port


def host_problem(host: str) -> str | None:
    """None for an IP address or a well-formed host name; else what is wrong (an empty host binds everything)."""
    if not host:
        return "empty (use 127.0.0.1, or 0.0.0.0 / :: with a token to listen on every interface)"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host) or not HOSTNAME.fullmatch(host):
        return f"{host!r} is not an IP address or host name"
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    out, own = _collect(problems)
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


def apply_flags(cfg: ServeConfig, args: Any, problems: list[str] | None = None) -> ServeConfig:
    """Command-line flags win over the file; errors name the flag."""
    out, own = _collect(problems)

    def address(text: str, flag: str, default_port: int):
        try:
            return split_host_port(text, flag, default_port)
        except ConfigError as exc:
            out.extend(exc.problems)
            return None

    if getattr(args, "bundle", None):
        cfg.model.bundle = args.bundle
    if getattr(args, "detector", None):
        cfg.persons.detector, cfg.persons.boxes = args.detector, "detector"
    if getattr(args, "source", None) is not None:
        cfg.source.uri = args.source
    if getattr(args, "http", None):
        if args.http == "off":
            cfg.http.enabled = False
        else:
            got = address(args.http, "--http", cfg.http.port)
            if got:
                (cfg.http.host, cfg.http.port), cfg.http.enabled = got, True
    if getattr(args, "mqtt", None):
        got = address(args.mqtt, "--mqtt", 1883)
        if got:
            cfg.mqtt.host, cfg.mqtt.port = got
        cfg.mqtt.enabled = True
    if getattr(args, "topic", None):
        cfg.mqtt.topic = args.topic
    if getattr(args, "jsonl", None):
        cfg.jsonl.path = args.jsonl
    if getattr(args, "token", None):
        cfg.http.token = args.token
    if getattr(args, "device", None):
        cfg.model.device = args.device
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:  # 0 would silently mean "the runtime's default": omit the flag for that
            out.append(f"--threads: must be >= 1, got {args.threads} (omit it for the runtime's default)")
        else:
            cfg.model.threads = args.threads
    if getattr(args, "log_level", None):
        cfg.log.level = args.log_level
    if own and out:
        raise ConfigError(out)
    return cfg


def load(path: str | None, args: Any, origin: str = "command line") -> ServeConfig:
    """File (if any) + flags, validated: the config or one ConfigError listing every problem."""
    problems: list[str] = []
    cfg = load_file(path, problems) if path else ServeConfig(origin=origin)
    apply_flags(cfg, args, problems)
    validate(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return cfg
