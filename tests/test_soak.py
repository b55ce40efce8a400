"""A short soak (20 s at real-time pace) through every sink with real receivers on loopback.

The 30-minute version is ``python benchmarks/bench_soak.py``; both run ``soak()`` from there.
With aalink installed and a private network namespace available (``tests/netns.py``), Ableton
Link is in it too, with an observer peer; otherwise its checks are skipped, with the reason.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
from netns import network_namespace_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_soak import TEMPO_AGREE_PCT, soak


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_short_soak_loses_nothing_and_memory_stays_bounded() -> None:
    netns_before = network_namespace_id()
    r = soak(20.0 / 60.0, midi="off", warm_s=5.0, link="auto")
    assert network_namespace_id() == netns_before  # the test process is back where it was
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

    k = r["link"]
    if not k["ran"]:
        warnings.warn(f"Link checks skipped: {k['why']}", stacklevel=1)
        return
    assert k["same_netns"], "the receiver child is not in the soak's network namespace"
    assert not k["observer_error"], k["observer_error"]
    assert k["discovery_s"] is not None, "the observer never saw onbeat's peer"
    assert k["samples"] > 200, k  # ~20 Hz from discovery to the end of the stream
    assert (k["peers_min"], k["peers_max"], k["peer_drops"]) == (1, 1, 0), k
    assert (k["errors"], k["dropped_events"]) == (0, 0), k
    assert k["alive_at_end"], k
    assert k["peer_changes"] == 0, k  # the observer changes nothing
    assert k["tempo_proposals"] >= 1, k  # onbeat led
    assert k["leading_s"] >= 5.0, k
    assert k["tempo_compared"] > 50, k
    assert k["tempo_out"] == 0, k
    assert k["tempo_dev_max_pct"] <= TEMPO_AGREE_PCT, k
    assert 118.8 <= k["session_tempo_min"] <= k["session_tempo_max"] <= 121.2, k
    assert k["ok"], k
