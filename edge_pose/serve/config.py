"""The daemon's one TOML config: a typed schema, defaults, and validation with one-line errors naming file and key.

Every key has a default except `model.bundle` and `source.uri`; command-line flags override the file. Errors read
`FILE: [section] key: what is wrong` so that `edge-pose serve --check-config FILE` is useful in a deploy script.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_pose.bundle import resolve_bundles
from edge_pose.errors import EdgePoseError

TOKEN_ENV = "EDGE_POSE_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(EdgePoseError, ValueError):
    """A config value the daemon cannot run with; str(exc) is one line naming the file and the key."""


@dataclass
class ModelConfig:
    bundle: str = ""  # bundle directory (required)
    device: str = "auto"  # device profile name or "auto"
    backend: str = ""  # force a backend ("litert" | "openvino"); empty = let the selector choose
    threads: int = 0  # runtime threads; 0 = the runtime's default


@dataclass
class SourceConfig:
    uri: str = ""  # camera index, /dev/videoN, video file, rtsp:// or http(s):// stream, image directory
    loop: bool = True  # video files and image directories start again at the end
    fps: float = 0.0  # pace for files and directories; 0 = the file's own rate (images: 5/s)
    reconnect_min_s: float = 0.5  # first retry delay after a failure; doubles up to reconnect_max_s
    reconnect_max_s: float = 10.0


@dataclass
class PersonsConfig:
    boxes: str = "whole"  # "whole" (frame = one box), "hog" (OpenCV HOG), or a COCO detections file (image dirs)
    max_people: int = 10


@dataclass
class TrackingConfig:
    enabled: bool = False
    match: str = "oks"  # "oks" (keypoint similarity) or "iou" (box overlap)
    threshold: float = 0.3  # minimum similarity to continue a track
    max_missed: int = 10  # frames a track survives unseen
    smoothing: bool = True  # One-Euro filter on keypoints
    min_cutoff: float = 1.0  # Hz: lower = smoother when still
    beta: float = 0.05  # higher = less lag when moving
    d_cutoff: float = 1.0


@dataclass
class HttpConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""  # bearer token; required when host is not loopback
    token_file: str = ""  # or read it from this file (first line)
    max_body_bytes: int = 8 * 1024 * 1024  # POST /v1/infer body limit
    max_pixels: int = 4096 * 4096  # POST /v1/infer decoded image limit (height * width)
    jpeg_quality: int = 80  # GET /v1/frame.jpg
    sse_queue: int = 32  # events buffered per stream client before the oldest is dropped (counted)


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "edge-pose/poses"
    qos: int = 1
    client_id: str = ""  # empty = edge-pose-<hostname>-<pid>
    username: str = ""
    password: str = ""
    keepalive_s: int = 30
    buffer: int = 1000  # messages held while the broker is away; past it the oldest are dropped (counted)


@dataclass
class JsonlConfig:
    path: str = ""  # empty = off
    max_bytes: int = 50 * 1024 * 1024  # rotate when the file would grow past this
    backups: int = 5  # keep path.1 .. path.N
    flush_s: float = 1.0  # flush at least this often (and always on stop)


@dataclass
class LogConfig:
    level: str = "info"


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
    """TOML value -> the type of the default; ints are accepted where floats are expected."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # source.uri = 0 (a camera index)
        return str(value)
    raise ConfigError(f"{where}: expected a string, got {value!r}")


def from_dict(data: dict[str, Any], origin: str) -> ServeConfig:
    cfg = ServeConfig(origin=origin)
    for section, body in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: [{section}]: unknown section (known: {', '.join(SECTIONS)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: {section}: expected a [{section}] table, got {body!r}")
        target = getattr(cfg, section)
        known = {f.name for f in fields(target)}
        for key, value in body.items():
            where = f"{origin}: [{section}] {key}"
            if key not in known:
                raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(known))})")
            setattr(target, key, _coerce(value, getattr(target, key), where))
    return cfg


def load_file(path: str | os.PathLike) -> ServeConfig:
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
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return from_dict(data, str(path))


def split_host_port(text: str, where: str, default_port: int) -> tuple[str, int]:
    """'HOST:PORT', ':PORT', 'HOST' or '[v6]:PORT' -> (host, port)."""
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1:]
        if rest.startswith(":"):
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        port = int(port)
    except ValueError:
        raise ConfigError(f"{where}: port must be an integer, got {text!r}") from None
    return host or "127.0.0.1", port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(http: HttpConfig, origin: str) -> str:
    """The bearer token from the config, its token_file, or $EDGE_POSE_TOKEN (first one set)."""
    if http.token:
        return http.token
    if http.token_file:
        try:
            return Path(http.token_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError):
            raise ConfigError(f"{origin}: [http] token_file: cannot read a token from {http.token_file}") from None
    return os.environ.get(TOKEN_ENV, "").strip()


def check_boxes(cfg: ServeConfig, bad) -> None:
    """The box source must be usable here (HOG is missing from OpenCV 5; a COCO file must parse)."""
    from edge_pose.boxes import box_source
    from edge_pose.serve.sources import kind_of

    spec = cfg.persons.boxes
    if spec not in ("whole", "frame", "hog") and kind_of(cfg.source.uri) != "images":
        raise bad("persons", "boxes", f"a COCO detections file ({spec}) needs an image-directory source")
    try:
        box_source(spec)
    except EdgePoseError as exc:
        raise bad("persons", "boxes", str(exc)) from None


def validate(cfg: ServeConfig) -> ServeConfig:
    """Reject what the daemon cannot run with; fills http.token from token_file or the environment."""
    o = cfg.origin

    def bad(section: str, key: str, what: str) -> ConfigError:
        return ConfigError(f"{o}: [{section}] {key}: {what}")

    if not cfg.model.bundle:
        raise bad("model", "bundle", "required (a bundle or a directory of bundles; or --bundle PATH)")
    try:  # the one rule for a bundle path: a bundle, or a directory whose bundles compete
        resolve_bundles(cfg.model.bundle, task="pose")
    except EdgePoseError as exc:
        raise bad("model", "bundle", str(exc)) from None
    if cfg.model.threads < 0:
        raise bad("model", "threads", f"must be >= 0, got {cfg.model.threads}")
    if not cfg.source.uri.strip():
        raise bad("source", "uri", "required (camera index, /dev/videoN, video file, rtsp:// URL or image "
                                   "directory; or --source URI)")
    if cfg.source.fps < 0:
        raise bad("source", "fps", f"must be >= 0, got {cfg.source.fps}")
    if not 0 < cfg.source.reconnect_min_s <= cfg.source.reconnect_max_s:
        raise bad("source", "reconnect_min_s", "must be > 0 and <= reconnect_max_s")
    check_boxes(cfg, bad)
    if cfg.persons.max_people < 1:
        raise bad("persons", "max_people", f"must be >= 1, got {cfg.persons.max_people}")
    t = cfg.tracking
    if t.match not in ("oks", "iou"):
        raise bad("tracking", "match", f"must be 'oks' or 'iou', got {t.match!r}")
    if not 0 < t.threshold <= 1:
        raise bad("tracking", "threshold", f"must be in (0, 1], got {t.threshold}")
    if t.max_missed < 0 or t.min_cutoff <= 0 or t.beta < 0 or t.d_cutoff <= 0:
        raise bad("tracking", "max_missed/min_cutoff/beta/d_cutoff", "must be non-negative (cutoffs > 0)")
    h = cfg.http
    if not 0 <= h.port <= 65535:
        raise bad("http", "port", f"must be 0..65535, got {h.port}")
    if h.max_body_bytes < 1024 or h.max_pixels < 64 * 64:
        raise bad("http", "max_body_bytes/max_pixels", "too small to accept any image")
    if not 1 <= h.jpeg_quality <= 100:
        raise bad("http", "jpeg_quality", f"must be 1..100, got {h.jpeg_quality}")
    if h.sse_queue < 1:
        raise bad("http", "sse_queue", f"must be >= 1, got {h.sse_queue}")
    h.token = resolve_token(h, o)
    if h.enabled and not is_loopback(h.host) and not h.token:
        raise bad("http", "token", f"required when binding {h.host} (not loopback): set token, token_file "
                                   f"or ${TOKEN_ENV}, or bind 127.0.0.1")
    m = cfg.mqtt
    if m.enabled:
        if not m.host:
            raise bad("mqtt", "host", "required when mqtt is enabled")
        if not 1 <= m.port <= 65535:
            raise bad("mqtt", "port", f"must be 1..65535, got {m.port}")
        if not m.topic or any(c in m.topic for c in "#+\0"):
            raise bad("mqtt", "topic", f"must be a non-empty topic without wildcards, got {m.topic!r}")
        if m.qos not in (0, 1, 2):
            raise bad("mqtt", "qos", f"must be 0, 1 or 2, got {m.qos}")
        if m.buffer < 1:
            raise bad("mqtt", "buffer", f"must be >= 1, got {m.buffer}")
    j = cfg.jsonl
    if j.path:
        parent = Path(j.path).parent
        if not parent.is_dir():
            raise bad("jsonl", "path", f"directory {parent} does not exist")
        if j.max_bytes < 1024 or j.backups < 0 or j.flush_s <= 0:
            raise bad("jsonl", "max_bytes/backups/flush_s", "max_bytes >= 1024, backups >= 0, flush_s > 0")
    if cfg.log.level.lower() not in LOG_LEVELS:
        raise bad("log", "level", f"must be one of {', '.join(LOG_LEVELS)}, got {cfg.log.level!r}")
    return cfg


def apply_flags(cfg: ServeConfig, args: Any) -> ServeConfig:
    """Command-line flags win over the file; errors name the flag."""
    if getattr(args, "bundle", None):
        cfg.model.bundle = args.bundle
    if getattr(args, "source", None) is not None:
        cfg.source.uri = args.source
    if getattr(args, "http", None):
        if args.http == "off":
            cfg.http.enabled = False
        else:
            cfg.http.host, cfg.http.port = split_host_port(args.http, "--http", cfg.http.port)
            cfg.http.enabled = True
    if getattr(args, "mqtt", None):
        cfg.mqtt.host, cfg.mqtt.port = split_host_port(args.mqtt, "--mqtt", 1883)
        cfg.mqtt.enabled = True
    if getattr(args, "topic", None):
        cfg.mqtt.topic = args.topic
    if getattr(args, "jsonl", None):
        cfg.jsonl.path = args.jsonl
    if getattr(args, "token", None):
        cfg.http.token = args.token
    if getattr(args, "device", None):
        cfg.model.device = args.device
    if getattr(args, "log_level", None):
        cfg.log.level = args.log_level
    return cfg
