"""End-to-end check of the PipeWire virtual microphone used by device tests.

A click track is played into ``vsink`` with paplay while sounddevice records the virtual
microphone (``vmic``, reached through PortAudio's ALSA ``pipewire`` device); the clicks must
come out at the spacing they went in. Skipped, with the reason, where PipeWire can't start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pipewire_env import PipeWireUnavailable, VirtualMicrophone, virtual_microphone

pytestmark = pytest.mark.device

RATE = 48000
PERIOD_S = 0.5
FIRST_CLICK_S = 0.25  # not at t=0: nothing depends on the very first samples of a stream
DURATION_S = 3.0
CLICK_AMP = 0.8
TOLERANCE_S = 0.005


@pytest.fixture(scope="module")
def sd() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:  # libportaudio2 missing
        pytest.skip(f"sounddevice unusable: {exc}")
    return sounddevice


@pytest.fixture(scope="module")
def mic(sd: ModuleType) -> Iterator[VirtualMicrophone]:
    try:
        with virtual_microphone(RATE) as m:
            yield m
    except PipeWireUnavailable as exc:
        pytest.skip(f"PipeWire virtual microphone unavailable: {exc}")


def click_track(path: Path) -> np.ndarray:
    """48 kHz mono, a 2 ms 3 kHz Hann-windowed burst every 0.5 s from 0.25 s, 3 s long."""
    n = int(DURATION_S * RATE)
    x = np.zeros(n, dtype=np.float32)
    m = int(0.002 * RATE)
    t = np.arange(m) / RATE
    burst = (CLICK_AMP * np.hanning(m) * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    starts = np.arange(FIRST_CLICK_S, DURATION_S, PERIOD_S)
    for s in starts:
        i = round(s * RATE)
        x[i : i + m] += burst
    sf.write(path, x, RATE, subtype="FLOAT")
    return starts


def onsets(x: np.ndarray, threshold: float, refractory_s: float = 0.1) -> np.ndarray:
    """Sample indices where |x| first exceeds ``threshold``, at least ``refractory_s`` apart."""
    above = np.flatnonzero(np.abs(x) > threshold)
    if above.size == 0:
        return above
    keep = np.concatenate(([True], np.diff(above) > refractory_s * RATE))
    return above[keep]


def test_virtual_microphone_records_clicks_at_their_spacing(
    sd: ModuleType, mic: VirtualMicrophone, tmp_path: Path
) -> None:
    wav = tmp_path / "clicks.wav"
    starts = click_track(wav)

    dev = sd.query_devices(mic.input_device, "input")  # resolves the name fragment, or raises
    blocks: list[np.ndarray] = []
    statuses: list[str] = []
    first = threading.Event()

    def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status:
            statuses.append(str(status))
        blocks.append(indata[:, 0].copy())
        first.set()

    # A generous buffer: the pipewire ALSA plugin drops input silently (no input_overflow flag)
    # when PortAudio's thread is late, and a loaded CI machine can be late by > 35 ms (the
    # default "high" latency): that shows up as a click 256 samples early.
    with sd.InputStream(
        device=mic.input_device,
        samplerate=RATE,
        channels=1,
        dtype="float32",
        blocksize=1024,
        latency=0.2,
        callback=callback,
    ):
        assert first.wait(5.0), f"no audio callback from {dev['name']!r} within 5 s"
        player = mic.play(wav)
        try:
            _, err = player.communicate(timeout=DURATION_S + 7.0)
        finally:
            if player.poll() is None:
                player.kill()
        assert player.returncode == 0, f"paplay failed: {err.decode(errors='replace')}"
        time.sleep(0.3)  # let the tail of the track through the graph

    x = np.concatenate(blocks)
    peak = float(np.max(np.abs(x)))
    # unity gain through vsink -> vsink.monitor -> vmic (stereo remaps gave 1.414)
    assert 0.75 * CLICK_AMP < peak < 1.25 * CLICK_AMP, f"peak {peak:.3f}, statuses {statuses}"

    found = onsets(x, 0.3 * peak)
    assert len(found) == len(starts), (
        f"expected {len(starts)} clicks, found {len(found)} at "
        f"{np.round(found / RATE, 4).tolist()} s; statuses {statuses}"
    )
    spacing = np.diff(found) / RATE
    assert np.all(np.abs(spacing - PERIOD_S) <= TOLERANCE_S), (
        f"click spacing {np.round(spacing, 5).tolist()} s, want {PERIOD_S} ± {TOLERANCE_S} s; "
        f"statuses {statuses}"
    )
