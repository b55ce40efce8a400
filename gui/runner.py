"""Runs the engine on its own thread (no Qt here).

The GUI runs this inside its engine process (:mod:`onbeat.gui.engine_process`), never in the Qt
process. :meth:`EngineRunner.start` builds a fresh :class:`~onbeat.realtime.bus.EventBus` with a
bounded subscription for the GUI, an :class:`~onbeat.realtime.engine.Engine` with the given frame
views hook, and runs ``run_paced`` (file, demo), ``run_fast`` (tests) or ``run_live`` (a device)
on an ``engine`` thread. Tracker commands go on ``engine.commands``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.realtime.bus import EventBus, Subscription
from onbeat.realtime.commands import Command
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.engine import Engine, RunSummary
from onbeat.realtime.sources import ArraySource, BlockSource, FileSource, LiveSource
from onbeat.realtime.views import FrameViews, SharedFrameViews

__all__ = ["EngineRunner", "SourceSpec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What to analyse.

    Attributes
    ----------
    kind : str
        ``"live"``, ``"file"``, ``"demo"`` or ``"array"``.
    path : str
        File to replay (``"file"``).
    device : str
        Input device index or name fragment (``"live"``; "" for the default).
    samples : ndarray or None
        Signal to replay (``"array"``).
    sample_rate_hz : int
        Its rate (``"array"``).
    name : str
        Display name (``"array"``).
    fast : bool
        Replay as fast as possible instead of at real-time pace (tests).
    duration_s : float
        Length of the demo song.
    audible : bool
        Also play replayed audio through the default output device.
    """

    kind: str
    path: str = ""
    device: str = ""
    samples: npt.NDArray[np.float32] | None = None
    sample_rate_hz: int = 44100
    name: str = "array"
    fast: bool = False
    duration_s: float = 60.0
    audible: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("live", "file", "demo", "array"):
            raise ValueError(f"source kind {self.kind!r} must be live, file, demo or array")
        if self.kind == "file" and not self.path:
            raise ValueError("a file source needs a path")
        if self.kind == "array" and self.samples is None:
            raise ValueError("an array source needs samples")

    def describe(self) -> str:
        """Short text for the window title and status bar."""
        if self.kind == "file":
            return Path(self.path).name
        if self.kind == "live":
            return f"live: {self.device or 'default input'}"
        if self.kind == "demo":
            return "demo song"
        return self.name


class EngineRunner:
    """Owns one engine thread.

    Parameters
    ----------
    config : OnbeatConfig
        Engine configuration.
    views : FrameViews or SharedFrameViews or None
        Frame views added to every engine's frame hooks (None: no hook).
    queue_size : int
        Length of the GUI's bus subscription (drop-oldest beyond it).
    """

    def __init__(
        self,
        config: OnbeatConfig,
        views: FrameViews | SharedFrameViews | None,
        *,
        queue_size: int = 4096,
    ) -> None:
        self.config = config
        self.views = views
        self.queue_size = queue_size
        self.engine: Engine | None = None
        self.subscription: Subscription | None = None
        self.spec: SourceSpec | None = None
        self.live: LiveSource | None = None
        self.summary: RunSummary | None = None
        self.error = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._playing = False

    # ------------------------------------------------------------------ control
    @property
    def running(self) -> bool:
        """Whether the engine thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _source(self, spec: SourceSpec) -> BlockSource | LiveSource:
        """Open the source on the GUI thread, so errors surface at once (OnbeatError)."""
        if spec.kind == "file":
            return FileSource(spec.path)
        if spec.kind == "demo":
            from onbeat.realtime.demo import demo_song

            song = demo_song(duration_s=spec.duration_s)
            return ArraySource(song.samples, song.sample_rate_hz, name="demo")
        if spec.kind == "array":
            assert spec.samples is not None
            return ArraySource(spec.samples, spec.sample_rate_hz, name=spec.name)
        a = self.config.audio
        return LiveSource(
            spec.device or a.device,
            channels=a.channels,
            block_size=a.block_size,
            preferred_rate_hz=a.device_rate_hz or a.sample_rate_hz,
        )

    def start(self, spec: SourceSpec) -> None:
        """Stop any running stream, then start analysing ``spec``.

        Raises
        ------
        OnbeatError
            When the source cannot be opened (missing file, no such device).
        """
        self.stop()
        source = self._source(spec)
        bus = EventBus()
        self.subscription = bus.subscribe("gui", self.queue_size)
        engine = Engine(self.config, bus=bus)
        if self.views is not None:
            engine.frame_hooks.append(self.views)
        self.engine = engine
        self.spec = spec
        self.summary = None
        self.error = ""
        self._stop = threading.Event()
        stop = self._stop
        self.live = source if isinstance(source, LiveSource) else None

        def target() -> None:
            try:
                if isinstance(source, LiveSource):
                    self.summary = engine.run_live(source, stop=stop)
                elif spec.fast:
                    self.summary = engine.run_fast(source, stop=stop)
                else:
                    self.summary = engine.run_paced(source, stop=stop)
            except Exception as exc:  # shown in the window; the GUI keeps running
                log.exception("engine stopped with an error")
                self.error = f"{type(exc).__name__}: {exc}"

        if spec.audible and not spec.fast and isinstance(source, BlockSource):
            self._play(source)
        self._thread = threading.Thread(target=target, name="engine", daemon=True)
        self._thread.start()

    def _play(self, source: BlockSource) -> None:
        """Best effort: play the replayed audio on the default output, started with the engine."""
        try:
            import sounddevice as sd

            if isinstance(source, FileSource):
                x, rate = source.read_all()
            elif isinstance(source, ArraySource):
                x, rate = np.asarray(source._x), source.sample_rate_hz
            else:
                return
            sd.play(x, rate)
            self._playing = True
        except Exception as exc:
            log.warning("audible playback unavailable: %s", exc)
            self.error = f"audible playback unavailable: {exc}"

    def request_stop(self) -> None:
        """Ask the running stream to stop, without waiting."""
        self._stop.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the stream and wait for the engine thread to finish."""
        self._stop.set()
        if self._playing:
            try:
                import sounddevice as sd

                sd.stop()
            except Exception as exc:
                log.debug("stopping playback: %s", exc)
            self._playing = False
        t = self._thread
        if t is not None and t.is_alive():
            t.join(timeout_s)
            if t.is_alive():
                log.warning("engine thread did not stop within %.1f s", timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the stream to end by itself; True when it has."""
        t = self._thread
        if t is None:
            return True
        t.join(timeout_s)
        return not t.is_alive()

    # ------------------------------------------------------------------ reads
    @property
    def ring(self) -> Any:
        """The engine's audio ring buffer (None before the stream's first set-up)."""
        return self.engine.ring if self.engine is not None else None

    @property
    def device_rate_hz(self) -> int:
        """Rate of the samples in :attr:`ring`."""
        analyzer = self.engine.analyzer if self.engine is not None else None
        return int(analyzer.device_rate_hz) if analyzer is not None else 0

    def command_queue(self) -> Any:
        """The engine's tracker command queue (every analyzer of the engine drains it), or None
        before the first stream."""
        return self.engine.commands if self.engine is not None else None

    def send(self, command: Command) -> bool:
        """Queue a tracker command; False when there is no analyzer to take it."""
        queue = self.command_queue()
        if queue is None:
            return False
        queue.put(command)
        return True
