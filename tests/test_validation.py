"""The shared ``KEY=VALUE`` option parser and the tracker follower of the output sinks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from onbeat.realtime.clock import TrackerFollower
from onbeat.realtime.errors import ConfigError
from onbeat.realtime.events import BeatEvent, StreamEndEvent, StreamStartEvent, TempoEvent
from onbeat.realtime.validation import parse_key_values


@dataclass(frozen=True)
class _Schema:
    rate: float = 1.0
    flag: bool = False
    label: str = ""


def test_parse_key_values_kinds_and_aliases() -> None:
    got = parse_key_values([" rate = 2.5", "flag=On", "label=a b"], "--x", _Schema)
    assert got == {"rate": 2.5, "flag": True, "label": "a b"}
    aliases = {"r": "rate", "rate": "rate"}
    assert parse_key_values(["r=3"], "--x", _Schema, aliases) == {"rate": 3.0}
    assert parse_key_values([], "--x", _Schema) == {}


@pytest.mark.parametrize(
    ("opts", "fragment"),
    [
        (["rate"], "must be KEY=VALUE with KEY one of flag, label, rate"),
        (["colour=red"], "KEY=VALUE"),
        (["rate=fast"], "rate = 'fast' is not a number"),
        (["flag=maybe"], "flag = 'maybe' must be true or false"),
        ([""], "KEY=VALUE"),
    ],
)
def test_parse_key_values_errors(opts: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key_values(opts, "--x 'v'", _Schema)
    assert str(info.value).startswith("--x 'v': ")
    assert fragment in str(info.value)


def test_aliases_restrict_the_keys() -> None:
    with pytest.raises(ConfigError, match=r"KEY one of r$"):
        parse_key_values(["rate=1"], "--x", _Schema, {"r": "rate"})


_START = StreamStartEvent(0, 0.0, 0.0, "t", 44100, 100.0)


def _beat(t: float, index: int, *, bpm: float = 120.0, locked: bool = True) -> BeatEvent:
    bar_pos = (index - 1) % 4 + 1
    return BeatEvent(
        round(t * 44100), t, t, index, bar_pos, bpm, 0.9, 0.0, bar_pos == 1, locked, True
    )


def test_tracker_follower_grid_and_reset() -> None:
    f = TrackerFollower()
    assert not f.active and not f.ready
    f.on_event(100.0, _START)
    assert f.active and not f.ready
    f.on_event(102.0, _beat(2.0, 5))
    assert f.ready and f.locked and f.bpm == 120.0
    assert f.stream.to_wall(2.5) == pytest.approx(102.5)
    assert f.beats_since_anchor(3.0) == pytest.approx(2.0)
    assert f.grid_time(-1.0) == pytest.approx(1.5)
    f.on_event(102.1, _beat(2.1, 6, bpm=0.0, locked=False))  # a zero tempo keeps the last one
    assert f.bpm == 120.0 and not f.locked
    f.on_event(102.2, StreamEndEvent(0, 2.2, 2.2, 0, "eof"))
    assert not f.active and f.anchor is not None
    f.on_event(200.0, _START)
    assert f.anchor is None and f.bpm == 0.0 and f.stream.to_wall(1.0) == pytest.approx(201.0)
    f.on_event(200.1, TempoEvent(0, 0.1, 0.1, 124.0, 0.5, False, 3))
    assert (f.bpm, f.confidence, f.locked, f.beats_per_bar) == (124.0, 0.5, False, 3)
