"""Compile every numba kernel into its on-disk cache (run once after installing).

``python -m onbeat.realtime.warmup`` prepares a full analysis chain, which compiles (or loads) all
``cache=True`` kernels, so the first ``onbeat live`` starts in well under two seconds.
"""

from __future__ import annotations

import time

import numpy as np
from onbeat.realtime.analysis import Analyzer
from onbeat.realtime.bus import EventBus
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.features import log_mel


def warm_up(config: OnbeatConfig | None = None) -> float:
    """Prepare every kernel once; return the seconds it took."""
    t0 = time.perf_counter()
    config = config or OnbeatConfig()
    for channels in (1, 2):
        analyzer = Analyzer(
            config, EventBus(), device_rate_hz=config.audio.sample_rate_hz, channels_in=channels
        )
        analyzer.prepare()
    log_mel(np.zeros(4096, dtype=np.float32), sample_rate_hz=config.audio.sample_rate_hz)
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"onbeat: numba kernels ready in {warm_up():.1f} s")
