"""`onbeat live` on a real (virtual) microphone: PipeWire null sink -> remapped mono source.

A click track is played into ``vsink`` with paplay while ``onbeat live --device pipewire`` runs
in a subprocess. After removing one constant latency, every detected onset must fall within
30 ms of a click, and no xrun may be counted. Skips only where PipeWire cannot start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from onbeat.realtime.demo import click_track
from pipewire_env import PipeWireUnavailable, virtual_microphone

pytestmark = pytest.mark.device


@pytest.fixture
def mic():
    """A private PipeWire session with the vsink -> vmic virtual microphone."""
    try:
        cm = virtual_microphone()
        session = cm.__enter__()
    except PipeWireUnavailable as exc:
        pytest.skip(f"PipeWire cannot start here: {exc}")
    try:
        yield session
    finally:
        cm.__exit__(None, None, None)


def _onbeat_live(mic, events, duration_s, *extra):
    """Start `onbeat live` on the virtual microphone, events to a JSON Lines file."""
    return subprocess.Popen(
        [
            sys.executable, "-m", "onbeat", "live", "--device", mic.input_device,
            "--events", str(events), "--no-console", "--duration", str(duration_s),
            "--set", "audio.latency_s=0.1", *extra,
        ],
        env={**mic.env, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _run_live_with_clicks(mic, tmp_path):
    clicks = click_track(duration_s=8.0, bpm=120, sample_rate_hz=48000, first_s=0.5)
    wav = tmp_path / "clicks.wav"
    sf.write(wav, clicks.samples, 48000)
    out = tmp_path / "live.jsonl"
    proc = _onbeat_live(mic, out, 11, "--block-size", "256")
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening to" in line, line + proc.stderr.read()
    # wait for the first callback: the stream's first events reach the file
    deadline = time.time() + 10
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 100):
        time.sleep(0.05)
    time.sleep(0.5)
    mic.play(wav).wait(timeout=30)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = [json.loads(ln) for ln in out.read_text().splitlines()]
    return clicks, events, err


def test_live_virtual_microphone_onsets_track_clicks(mic, tmp_path):
    clicks, events, err = _run_live_with_clicks(mic, tmp_path)
    onsets = np.array([e["time_s"] for e in events if e["type"] == "onset"])
    assert len(onsets) >= len(clicks.beats_s) - 1, (len(onsets), err)
    # One constant latency separates the player's clock from the stream's: estimate it as the
    # median offset to the click grid, then every onset must sit within 30 ms of a click.
    period = 60.0 / 120
    k = np.round((onsets - onsets[0]) / period)
    offset = float(np.median(onsets - k * period))
    residual = onsets - (offset + k * period)
    assert np.max(np.abs(residual)) <= 0.030, residual
    assert len(np.unique(k)) == len(k), "two onsets for one click"
    health = [e for e in events if e["type"] == "health"]
    assert health and health[-1]["xruns"] == 0
    assert any(e["type"] == "device" and e["state"] == "opened" for e in events)
    assert events[-1]["type"] == "end"


def test_vanished_stream_is_reopened_not_fatal(mic, tmp_path):
    """Destroy onbeat's PipeWire client mid-stream: it reports the loss, reopens, and goes on."""
    out = tmp_path / "vanish.jsonl"
    env = dict(mic.env)
    proc = _onbeat_live(mic, out, 6)
    deadline = time.time() + 20
    while time.time() < deadline and (not out.exists() or '"level"' not in out.read_text()):
        time.sleep(0.05)
    dump = json.loads(
        subprocess.run(["pw-dump"], env=env, capture_output=True, text=True, timeout=10).stdout
    )
    clients = [
        o["id"]
        for o in dump
        if o.get("type") == "PipeWire:Interface:Client"
        and "python" in json.dumps(o.get("info", {}).get("props", {})).lower()
    ]
    assert clients, "onbeat's PipeWire client not found"
    for cid in clients:
        subprocess.run(["pw-cli", "destroy", str(cid)], env=env, timeout=10, check=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    events = [json.loads(ln) for ln in out.read_text().splitlines()]
    states = [e["state"] for e in events if e["type"] == "device"]
    assert states[:1] == ["opened"] and "lost" in states and "reopened" in states, states
    assert events[-1]["type"] == "end" and events[-1]["time_s"] >= 5.9
