"""Listen and broker addresses: HOST:PORT parsing that never falls through to "every interface", and host checks."""
from __future__ import annotations

import ipaddress
import re

from edge_pose.serve.config_schema import ConfigError

_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


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
