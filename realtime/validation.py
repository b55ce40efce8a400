"""Shared validation for frozen config dataclasses."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from onbeat.realtime.errors import ConfigError

__all__ = ["check_range", "parse_key_values", "split_host_port"]

_TRUE = ("1", "true", "yes", "on")
_BOOL = (*_TRUE, "0", "false", "no", "off")


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


def parse_key_values(
    options: Iterable[str],
    where: str,
    schema: type,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Parse command-line ``KEY=VALUE`` options (``--osc``, ``--link``, ``--midi-clock``).

    Parameters
    ----------
    options : iterable of str
        The options, already split at the commas.
    where : str
        The flag and its value, to prefix errors with.
    schema : dataclass type
        The config the options are for. A field annotated ``bool`` takes ``true/false``
        (``1/0``, ``yes/no``, ``on/off``), ``str`` the text as written, anything else a number.
    aliases : mapping, optional
        Accepted keys, each to its field name; without it, the field names themselves.

    Returns
    -------
    dict
        Field name to value, for ``schema(**values)`` (which checks the ranges).

    Raises
    ------
    ConfigError
        Prefixed with ``where``, for an option without ``=``, an unknown key or a value of the
        wrong kind.
    """
    kinds = {f.name: f.type for f in fields(schema)}
    keys = dict(aliases) if aliases is not None else {name: name for name in kinds}
    values: dict[str, Any] = {}
    for opt in options:
        key, sep, raw = opt.partition("=")
        key, raw = key.strip(), raw.strip()
        field_name = keys.get(key)
        if not sep or field_name is None:
            raise ConfigError(
                f"{where}: option {opt!r} must be KEY=VALUE with KEY one of "
                f"{', '.join(sorted(keys))}"
            )
        kind = kinds[field_name]
        if kind in (bool, "bool"):
            if raw.lower() not in _BOOL:
                raise ConfigError(f"{where}: {key} = {raw!r} must be true or false")
            values[field_name] = raw.lower() in _TRUE
        elif kind in (str, "str"):
            values[field_name] = raw
        else:
            try:
                values[field_name] = float(raw)
            except ValueError:
                raise ConfigError(f"{where}: {key} = {raw!r} is not a number") from None
    return values
