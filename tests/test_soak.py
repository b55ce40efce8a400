"""A short soak (20 s at real-time pace) through every sink with real receivers on loopback.

The 30-minute version is ``python benchmarks/bench_soak.py``; both run ``soak()`` from there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_soak import soak


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_soak_loses_nothing_and_memory_stays_bounded() -> None:
    r = soak(20.0 / 60.0, midi="off", warm_s=5.0)
    bad = [row for row in r["rows"] if not row["ok"]]
    assert not bad, bad
    names = {row["sink"] for row in r["rows"]}
    assert {"jsonl file", "websocket client", "osc:flat", "osc:rich", "osc:resolume"} <= names
    assert r["events"] > 200
    assert r["event_types"].get("beat", 0) >= 30  # 120 BPM: it kept tracking
    for row in r["rows"]:
        assert row["sent"] == row["received"], row
    assert r["bus_dropped"] == 0
    assert r["rss_growth_mb"] <= 20.0, r
