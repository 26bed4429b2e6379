"""The daemon's config schema: one dataclass per TOML section, every key with its default and declared range.

Every key has a default except `model.bundle` and `source.uri`. Each numeric field declares its range in its
metadata (`num`), so that one loop (edge_pose.serve.config_checks) checks types, ranges and finiteness for all.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from edge_pose.errors import EdgePoseError

TOKEN_ENV = "EDGE_POSE_TOKEN"
LOG_LEVELS = ("debug", "info", "warning", "error")


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


def collect(problems: list[str] | None):
    """(list to append to, raise at the end?): callers pass a list to gather problems across steps."""
    return (problems, False) if problems is not None else ([], True)
