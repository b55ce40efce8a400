"""Golden-file regression test: the event stream of a fixed synthetic input.

A 20 s demo band loop (120 → 138 BPM step at 12 s) is replayed with the shipped models; the
onset, beat and tempo events must match ``tests/golden/demo_events.jsonl``. Any change to
features, models, peak picking or the tracker shows up here as a readable diff. When a change is
intended (new weights, a tracker fix), regenerate the file and review the diff in the commit::

    ONBEAT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from onbeat.realtime.config import OnbeatConfig, apply_overrides
from onbeat.realtime.demo import demo_song
from onbeat.realtime.engine import Engine
from onbeat.realtime.events import Event, event_to_dict
from onbeat.realtime.sources import ArraySource

GOLDEN = Path(__file__).parent / "golden" / "demo_events.jsonl"
KEEP = ("onset", "beat", "tempo")


class _Collect:
    name = "collect"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def handle(self, event: Event) -> None:
        self.events.append(event)

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def current_events() -> list[dict]:
    song = demo_song(duration_s=20.0, bpm=120.0, bpm_after=138.0, change_s=12.0, seed=7)
    cfg = apply_overrides(OnbeatConfig(), {"output.console": False, "tags.enabled": "off"})
    sink = _Collect()
    Engine(cfg, sinks=[sink]).run_fast(ArraySource(song.samples, song.sample_rate_hz))
    return [_rounded(event_to_dict(e)) for e in sink.events if e.type in KEEP]


def _key(d: dict) -> str:
    return f"{d['type']}@{d['time_s']:.3f}"


def test_events_match_golden_file() -> None:
    events = current_events()
    if os.environ.get("ONBEAT_UPDATE_GOLDEN"):
        GOLDEN.write_text("".join(json.dumps(e) + "\n" for e in events))
        pytest.skip(f"rewrote {GOLDEN}")
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    assert [_key(e) for e in events] == [_key(e) for e in golden]
    for got, want in zip(events, golden, strict=True):
        for k, v in want.items():
            if isinstance(v, float):
                assert got[k] == pytest.approx(v, abs=2e-4), (_key(want), k)
            else:
                assert got[k] == v, (_key(want), k)
