"""Shared validation for frozen config dataclasses."""

from __future__ import annotations

import math

from onbeat.realtime.errors import ConfigError

__all__ = ["check_range"]


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
