"""The command line as a user meets it: real subprocesses, exit codes, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from onbeat.realtime.demo import click_track

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def onbeat(*args, timeout=120, env=None):
    return subprocess.run(
        [sys.executable, "-m", "onbeat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or ENV,
    )


@pytest.fixture(scope="module")
def click_wav(tmp_path_factory):
    p = tmp_path_factory.mktemp("audio") / "clicks.wav"
    c = click_track(duration_s=6, sample_rate_hz=48000)
    sf.write(p, np.stack([c.samples, c.samples], axis=1), 48000)
    return p, c


def read_events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_fast_writes_jsonl(click_wav, tmp_path):
    wav, clicks = click_wav
    out = tmp_path / "ev.jsonl"
    r = onbeat("replay", str(wav), "--fast", "--events", str(out), "--no-console")
    assert r.returncode == 0, r.stderr
    ev = read_events(out)
    assert ev[0]["type"] == "start" and ev[-1]["type"] == "end"
    onsets = [e for e in ev if e["type"] == "onset"]
    assert len(onsets) == len(clicks.beats_s)
    for e in onsets:
        assert {"time_s", "emitted_s", "sample_index", "strength"} <= set(e)
    # within one 10 ms frame: the detector fires on the first frame its activation crosses the
    # threshold, one or two frames after a click, and dates it back by its calibrated delay
    np.testing.assert_allclose([e["time_s"] for e in onsets], clicks.beats_s, atol=0.0101)


@pytest.mark.parametrize("fmt", ["flac", "ogg", "mp3"])
def test_replay_other_formats(click_wav, tmp_path, fmt):
    wav, clicks = click_wav
    x, sr = sf.read(wav)
    p = tmp_path / f"c.{fmt}"
    try:
        sf.write(p, x, sr)
    except Exception as exc:  # libsndfile without that encoder
        pytest.skip(f"cannot write {fmt}: {exc}")
    out = tmp_path / "ev.jsonl"
    r = onbeat("replay", str(p), "--fast", "--events", str(out), "--no-console")
    assert r.returncode == 0, r.stderr
    assert len([e for e in read_events(out) if e["type"] == "onset"]) == len(clicks.beats_s)


def _one_line_error(r, fragment):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert fragment in lines[0], lines[0]


def test_missing_file(tmp_path):
    _one_line_error(onbeat("replay", str(tmp_path / "nope.wav")), "does not exist")


def test_corrupt_file(tmp_path):
    p = tmp_path / "corrupt.wav"
    p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" + os.urandom(300))
    _one_line_error(onbeat("replay", str(p)), "cannot read audio file")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    sf.write(p, np.zeros((0, 1)), 44100)
    _one_line_error(onbeat("replay", str(p)), "holds no audio")
    q = tmp_path / "zero.wav"
    q.write_bytes(b"")
    _one_line_error(onbeat("replay", str(q)), "cannot read audio file")


def test_impossible_config(click_wav, tmp_path):
    wav, _ = click_wav
    _one_line_error(onbeat("replay", str(wav), "--block-size", "0"), "audio.block_size")
    _one_line_error(onbeat("replay", str(wav), "--set", "features.hop_size=5"), "features.hop_size")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[onset]\nthreshold = 'high'\n")
    _one_line_error(onbeat("replay", str(wav), "--config", str(cfg)), "onset.threshold")


def test_unknown_channel(click_wav):
    wav, _ = click_wav
    _one_line_error(onbeat("replay", str(wav), "--channels", "5", "--fast"), "channel 5")


def test_unknown_device_lists_devices():
    r = onbeat("live", "--device", "no-such-device-xyz", "--duration", "1")
    _one_line_error(r, "")
    assert (
        "no-such-device-xyz" in r.stderr or "no audio input" in r.stderr or "PortAudio" in r.stderr
    )


def test_devices_command_runs():
    r = onbeat("devices")
    assert r.returncode in (0, 2), r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_leaves_complete_jsonl(tmp_path):
    # long enough that Ctrl-C lands mid-stream even when start-up (torch, the tagger) is slow
    wav = tmp_path / "clicks.wav"
    sf.write(wav, click_track(duration_s=30, sample_rate_hz=48000).samples, 48000)
    out = tmp_path / "ev.jsonl"
    p = subprocess.Popen(
        [sys.executable, "-m", "onbeat", "replay", str(wav), "--events", str(out), "--no-console"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell that starts jobs in the background ignores SIGINT, and the child inherits that
        # (Python then installs no KeyboardInterrupt handler): restore the default, as a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env=ENV,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 200):
        time.sleep(0.1)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "Traceback" not in err
    ev = read_events(out)  # every line parses
    assert ev[-1]["type"] == "end" and ev[-1]["reason"] == "stopped", (ev[-1], err[-2000:])
    assert 1.0 < ev[-1]["time_s"] < 25.0


def test_demo_fast_runs():
    r = onbeat("demo", "--fast", "--duration", "4")
    assert r.returncode == 0, r.stderr
    assert "onsets" in r.stderr
