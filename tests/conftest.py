"""Shared fixtures: synthesized audio only (no data files needed)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A developer's own reference library (onbeat library add) must not reach the tests: the
# library's default database lives under XDG_DATA_HOME.
os.environ["XDG_DATA_HOME"] = _DATA_HOME = tempfile.mkdtemp(prefix="onbeat-tests-data-")
atexit.register(shutil.rmtree, _DATA_HOME, ignore_errors=True)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def config():
    from onbeat.realtime.config import OnbeatConfig

    return OnbeatConfig()


@pytest.fixture(scope="session")
def prepared_features(config):
    from onbeat.realtime.features import SpectralFeatures
    from onbeat.realtime.stages import StreamContext

    f = SpectralFeatures(config.features)
    f.prepare(StreamContext(config.audio.sample_rate_hz, config.features.hop_size))
    return f


@pytest.fixture(scope="session")
def noise_music():
    """Two seconds of noisy, percussive test signal at 44.1 kHz."""
    rng = np.random.default_rng(1)
    sr = 44100
    x = 0.05 * rng.standard_normal(2 * sr)
    for k in range(8):
        s = int((0.1 + 0.23 * k) * sr)
        t = np.arange(4000) / sr
        x[s : s + 4000] += 0.5 * np.sin(2 * np.pi * (200 + 150 * k) * t) * np.exp(-t * 40)
    return x.astype(np.float32)


def collect_events(bus):
    """Subscribe a list collector to ``bus``; returns the subscription."""
    return bus.subscribe("test", maxlen=1_000_000)
