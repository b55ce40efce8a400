"""Read-only views of the analysis for the GUI: a frame hook that mirrors per-frame data.

:class:`FrameViews` is appended to :attr:`Engine.frame_hooks
<onbeat.realtime.engine.Engine.frame_hooks>`. After every frame, on the analysis thread, it copies
into preallocated rings:

* the log-filtered spectrum of one frame size (the spectrogram);
* the onset activation;
* the beat activation, when the analyzer has a ``beats`` stage with an ``activation``.

Each ring stores every frame twice (at ``k % capacity`` and ``k % capacity + capacity``), like the
audio :class:`~onbeat.realtime.ringbuffer.RingBuffer`, so the newest ``n`` frames are always one
contiguous slice. The GUI copies the newest frames into its own preallocated arrays with
:meth:`FrameViews.copy_latest` on its timer, from the Qt main thread. The analysis thread never
waits for the reader: the reader keeps a margin of frames between what it copies and what the
writer may overwrite during the copy.

The rings are allocated once per stream, on the first frame of a new analyzer; nothing is
allocated per frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FrameViews", "ViewLayout"]

_DEFAULT_FRAME_SIZE = 2048


@dataclass(frozen=True, slots=True)
class ViewLayout:
    """What the rings of one stream hold.

    Attributes
    ----------
    capacity_frames : int
        Frames each ring holds.
    bands : int
        Spectrum bands per frame.
    center_hz : ndarray of float64, shape (bands,)
        Centre frequency of each band.
    frame_size : int
        FFT frame size whose log-filtered spectrum is mirrored.
    frame_rate_hz : float
        Frames per second.
    hop_size : int
        Analysis samples per frame.
    sample_rate_hz : int
        Analysis sample rate.
    has_beats : bool
        Whether the analyzer has a beat stage with an activation.
    """

    capacity_frames: int
    bands: int
    center_hz: npt.NDArray[np.float64]
    frame_size: int
    frame_rate_hz: float
    hop_size: int
    sample_rate_hz: int
    has_beats: bool


class _Rings:
    """The preallocated storage of one stream (swapped as a whole when a new stream starts)."""

    __slots__ = ("analyzer", "base_sample", "beat", "layout", "onset", "source", "spectrum")

    def __init__(
        self,
        analyzer: Any,
        layout: ViewLayout,
        source: npt.NDArray[np.float32],
        base_sample: int,
    ) -> None:
        cap = layout.capacity_frames
        self.analyzer = analyzer
        self.base_sample = base_sample  # analysis sample at which ring frame 0 began
        self.layout = layout
        self.source = source
        self.spectrum = np.zeros((2 * cap, layout.bands), dtype=np.float32)
        self.onset = np.zeros(2 * cap, dtype=np.float32)
        self.beat = np.zeros(2 * cap, dtype=np.float32)


class FrameViews:
    """Frame hook that mirrors spectrum and activations into preallocated rings.

    Parameters
    ----------
    capacity_frames : int
        Frames kept. A reader may copy at most ``capacity_frames - margin_frames`` of them.
    frame_size : int
        FFT frame size whose log-filtered spectrum is shown; the nearest configured size is used
        when the analyzer does not compute this one.
    margin_frames : int
        Frames the writer may add while a reader copies without touching what it copies.

    Notes
    -----
    The writer is the analysis thread (:meth:`__call__`); readers are any thread, normally the
    GUI's, through :meth:`copy_latest`. The frame counter is published after the data, so a
    reader never sees a frame before it is complete.
    """

    def __init__(
        self,
        capacity_frames: int = 1200,
        *,
        frame_size: int = _DEFAULT_FRAME_SIZE,
        margin_frames: int = 100,
    ) -> None:
        if capacity_frames < 2 or not 0 <= margin_frames < capacity_frames:
            raise ValueError("capacity_frames must be >= 2 and margin_frames below it")
        self.capacity_frames = int(capacity_frames)
        self.frame_size = int(frame_size)
        self.margin_frames = int(margin_frames)
        self._rings: _Rings | None = None
        #: Frames written in the current stream (published after each frame's data).
        self.frames = 0
        #: Analysis sample index one past the newest frame.
        self.sample_index = 0
        #: Streams seen (increments when a new analyzer starts writing).
        self.generation = 0

    # ------------------------------------------------------------------ writer side
    def _prepare(self, analyzer: Any, sample_index: int) -> _Rings:
        """Allocate the rings for a new analyzer (once per stream, on its first frame)."""
        features = analyzer.features
        sizes = tuple(features.layout.frame_sizes)
        size = (
            self.frame_size
            if self.frame_size in sizes
            else min(sizes, key=lambda n: abs(math.log2(n) - math.log2(self.frame_size)))
        )
        block = features.layout.block("logfilt", size)
        source = features.output[block]  # a view of the preallocated feature vector
        r = sizes.index(size)
        beats = getattr(analyzer, "beats", None)
        layout = ViewLayout(
            capacity_frames=self.capacity_frames,
            bands=int(source.shape[0]),
            center_hz=np.asarray(features.filterbanks[r].center_hz, dtype=np.float64).copy(),
            frame_size=int(size),
            frame_rate_hz=float(analyzer.ctx.frame_rate_hz),
            hop_size=int(analyzer.hop),
            sample_rate_hz=int(analyzer.rate_hz),
            has_beats=beats is not None and hasattr(beats, "activation"),
        )
        rings = _Rings(analyzer, layout, source, int(sample_index) - layout.hop_size)
        self.frames = 0
        self.sample_index = 0
        self._rings = rings
        self.generation += 1
        return rings

    def __call__(self, analyzer: Any, frame_index: int, sample_index: int) -> None:
        """Copy this frame's spectrum and activations into the rings (an engine frame hook).

        Real-time safety: on the analysis thread; per frame only row copies into preallocated
        rings and integer stores (the rings are allocated on a new analyzer's first frame).
        """
        rings = self._rings
        if rings is None or rings.analyzer is not analyzer:
            rings = self._prepare(analyzer, sample_index)
        cap = self.capacity_frames
        k = self.frames
        i = k % cap
        src = rings.source
        spec = rings.spectrum
        spec[i] = src
        spec[i + cap] = src
        a = float(analyzer.onsets.activation)
        rings.onset[i] = a
        rings.onset[i + cap] = a
        beats = getattr(analyzer, "beats", None)
        b = float(getattr(beats, "activation", 0.0)) if beats is not None else 0.0
        rings.beat[i] = b
        rings.beat[i + cap] = b
        self.sample_index = int(sample_index)
        self.frames = k + 1  # publish last: the frame is complete

    # ------------------------------------------------------------------ reader side
    @property
    def layout(self) -> ViewLayout | None:
        """The current stream's layout (None before its first frame)."""
        rings = self._rings
        return rings.layout if rings is not None else None

    @property
    def max_frames(self) -> int:
        """The most frames one :meth:`copy_latest` call can return."""
        return self.capacity_frames - self.margin_frames

    @property
    def time_s(self) -> float:
        """Stream time of the newest frame's end (0 before the first frame)."""
        rings = self._rings
        if rings is None:
            return 0.0
        return self.sample_index / rings.layout.sample_rate_hz

    def copy_latest(
        self,
        spectrum: npt.NDArray[np.float32] | None,
        onset: npt.NDArray[np.float32] | None,
        beat: npt.NDArray[np.float32] | None,
    ) -> tuple[int, float]:
        """Copy the newest frames into the caller's arrays, oldest first.

        Each output's first axis is the number of frames wanted, ``n`` (at most
        :attr:`max_frames`); pass None to skip one. When fewer than ``n`` frames exist, the
        missing oldest rows are zero-filled.

        Parameters
        ----------
        spectrum : ndarray of float32, shape (n, bands) or None
            Receives the log-filtered spectrum.
        onset, beat : ndarray of float32, shape (n,) or None
            Receive the onset and beat activations.

        Returns
        -------
        frames : int
            Frames that were copied (``min(n, frames written)``); 0 before the first frame.
        time_s : float
            Stream time of the newest copied frame's end.
        """
        rings = self._rings
        outs = [o for o in (spectrum, onset, beat) if o is not None]
        if not outs:
            return 0, self.time_s
        n = outs[0].shape[0]
        if n > self.max_frames:
            raise ValueError(f"at most {self.max_frames} frames can be copied, {n} were asked")
        if rings is None:
            for o in outs:
                o.fill(0.0)
            return 0, 0.0
        if spectrum is not None and spectrum.shape[1:] != (rings.layout.bands,):
            return 0, self.time_s  # a new stream with another layout began: re-size, then copy
        frames = self.frames  # read once: the writer may move on meanwhile
        cap = self.capacity_frames
        have = min(n, frames)
        start = (frames - have) % cap
        pad = n - have
        for out, ring in ((spectrum, rings.spectrum), (onset, rings.onset), (beat, rings.beat)):
            if out is None:
                continue
            if pad:
                out[:pad] = 0.0
            out[pad:] = ring[start : start + have]
        # Frames are one hop apart, so the newest copied frame's time follows from the counter
        # alone (the sample index may already belong to a frame written during the copy).
        lay = rings.layout
        return have, (rings.base_sample + frames * lay.hop_size) / lay.sample_rate_hz
