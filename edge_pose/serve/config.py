"""The daemon's one TOML config, loaded: the file's known sections and keys, then the command-line flags over them,
then one validation pass (edge_pose.serve.config_checks) that reports every problem.

The schema (sections, keys, defaults, ranges) is edge_pose.serve.config_schema. Problems read
`FILE: [section] key: what is wrong`, one per line, so that `edge-pose serve --check-config FILE` lists all of them
at once in a deploy script.
"""
from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge_pose.serve.addresses import split_host_port
from edge_pose.serve.config_checks import validate
from edge_pose.serve.config_schema import SECTIONS, ConfigError, ServeConfig, collect


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


def from_dict(data: dict[str, Any], origin: str, problems: list[str] | None = None) -> ServeConfig:
    """Known sections and keys of the right types into a ServeConfig; every other entry is a problem."""
    out, own = collect(problems)
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


def apply_flags(cfg: ServeConfig, args: Any, problems: list[str] | None = None) -> ServeConfig:
    """Command-line flags win over the file; errors name the flag."""
    out, own = collect(problems)

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
