"""Shared validation for frozen config dataclasses."""

from __future__ import annotations

import math

from onbeat.realtime.errors import ConfigError

__all__ = ["check_range", "split_host_port"]


def check_range(
    section: str, key: str, value: float, lo: float, hi: float, *, integer: bool = False
) -> None:
    """Raise a :class:`ConfigError` unless ``lo <= value <= hi`` (and integral if asked)."""
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and integer:
        ok = float(value).is_integer()
    if not ok or not math.isfinite(float(value)) or not lo <= value <= hi:
        raise ConfigError(f"{section}.{key} = {value!r} is invalid: must be {kind} in [{lo}, {hi}]")


def split_host_port(text: str, where: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """Parse ``[HOST:]PORT`` (``9000``, ``0.0.0.0:9000``, ``[::1]:9000``).

    Raises
    ------
    ConfigError
        Prefixed with ``where`` (the flag and its value).
    """
    text = text.strip()
    host, port_text = default_host, text
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ConfigError(f"{where}: expected [IPV6]:PORT")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not port_text.isdigit():
        raise ConfigError(f"{where}: expected [HOST:]PORT with a numeric port")
    return host, int(port_text)
