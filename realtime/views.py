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

:class:`SharedFrameViews` is the same frame hook writing into one
:mod:`multiprocessing.shared_memory` segment instead, plus a mirrored ring of the analysed mono
audio (one hop per frame, for the waveform), so that the GUI can read from another process
through :class:`SharedViewsReader`. The analysis side writes without locks; a stream generation
counter, odd while a new stream (re)initialises the segment, lets the reader discard a copy that
overlapped a reset (a seqlock), and the published frame counter keeps the margin above.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["FrameViews", "SharedAudio", "SharedFrameViews", "SharedViewsReader", "ViewLayout"]

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


def _layout_for(
    analyzer: Any, capacity_frames: int, frame_size: int
) -> tuple[ViewLayout, npt.NDArray[np.float32]]:
    """The layout of ``analyzer``'s views, and the feature-vector view of its spectrum rows."""
    features = analyzer.features
    sizes = tuple(features.layout.frame_sizes)
    size = (
        frame_size
        if frame_size in sizes
        else min(sizes, key=lambda n: abs(math.log2(n) - math.log2(frame_size)))
    )
    block = features.layout.block("logfilt", size)
    source = features.output[block]  # a view of the preallocated feature vector
    r = sizes.index(size)
    beats = getattr(analyzer, "beats", None)
    layout = ViewLayout(
        capacity_frames=capacity_frames,
        bands=int(source.shape[0]),
        center_hz=np.asarray(features.filterbanks[r].center_hz, dtype=np.float64).copy(),
        frame_size=int(size),
        frame_rate_hz=float(analyzer.ctx.frame_rate_hz),
        hop_size=int(analyzer.hop),
        sample_rate_hz=int(analyzer.rate_hz),
        has_beats=beats is not None and hasattr(beats, "activation"),
    )
    return layout, source


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
        layout, source = _layout_for(analyzer, self.capacity_frames, self.frame_size)
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


# ---------------------------------------------------------------------- shared memory
# Header fields (int64) of a shared views segment.
_GEN = 0  # stream generation: odd while a new stream re-initialises the segment (a seqlock)
_FRAMES = 1  # frames written in the current stream (published last)
_SAMPLE_INDEX = 2  # analysis sample index one past the newest frame
_BASE_SAMPLE = 3  # analysis sample at which ring frame 0 began
_AUDIO_WRITTEN = 4  # mono analysis-rate samples written to the audio ring in this stream
_CAPACITY = 5
_BANDS = 6
_AUDIO_CAPACITY = 7
_FRAME_SIZE = 8
_HOP = 9
_RATE = 10
_HAS_BEATS = 11
_MAGIC = 12
_WALL_NS = 13  # time.monotonic_ns() when the newest frame was published
_HEADER = 16
_MAGIC_VALUE = 0x6F6E62656174  # "onbeat"


class _Segment:
    """One shared-memory segment and the NumPy arrays laid over it.

    Layout: int64 header[16], float64 [frame_rate_hz, 0], float64 center_hz[bands],
    float32 spectrum[2 * capacity, bands], onset[2 * capacity], beat[2 * capacity],
    audio[2 * audio_capacity, 1] (every ring mirrored, as in :class:`FrameViews`).
    """

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool) -> None:
        self.shm = shm
        self.owner = owner
        buf = shm.buf
        self.header: npt.NDArray[np.int64] = np.ndarray((_HEADER,), np.int64, buf, 0)
        if not owner and int(self.header[_MAGIC]) != _MAGIC_VALUE:
            raise ValueError(f"shared memory {shm.name!r} is not an onbeat views segment")
        cap, bands, acap = self.geometry
        off = 8 * _HEADER
        self.floats: npt.NDArray[np.float64] = np.ndarray((2,), np.float64, buf, off)
        off += 16
        self.center_hz: npt.NDArray[np.float64] = np.ndarray((bands,), np.float64, buf, off)
        off += 8 * bands
        self.spectrum: npt.NDArray[np.float32] = np.ndarray((2 * cap, bands), np.float32, buf, off)
        off += 4 * 2 * cap * bands
        self.onset: npt.NDArray[np.float32] = np.ndarray((2 * cap,), np.float32, buf, off)
        off += 4 * 2 * cap
        self.beat: npt.NDArray[np.float32] = np.ndarray((2 * cap,), np.float32, buf, off)
        off += 4 * 2 * cap
        self.audio: npt.NDArray[np.float32] = np.ndarray((2 * acap, 1), np.float32, buf, off)

    @staticmethod
    def nbytes(capacity: int, bands: int, audio_capacity: int) -> int:
        return 8 * _HEADER + 16 + 8 * bands + 4 * (2 * capacity * (bands + 2) + 2 * audio_capacity)

    @classmethod
    def create(cls, capacity: int, bands: int, audio_capacity: int) -> _Segment:
        size = cls.nbytes(capacity, bands, audio_capacity)
        shm = shared_memory.SharedMemory(create=True, size=size)
        # Touch every page now: the writer must not take a page fault per hop for the first
        # ring's worth of frames (several microseconds each under a hypervisor).
        everything = np.ndarray((size,), np.uint8, shm.buf, 0)
        everything.fill(0)
        del everything
        header = np.ndarray((_HEADER,), np.int64, shm.buf, 0)
        header[_CAPACITY], header[_BANDS] = capacity, bands
        header[_AUDIO_CAPACITY] = audio_capacity
        header[_MAGIC] = _MAGIC_VALUE
        del header
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> _Segment:
        return cls(shared_memory.SharedMemory(name=name), owner=False)

    @property
    def geometry(self) -> tuple[int, int, int]:
        h = self.header
        return int(h[_CAPACITY]), int(h[_BANDS]), int(h[_AUDIO_CAPACITY])

    def release(self, *, unlink: bool) -> None:
        """Drop the arrays, unmap the segment and (``unlink``) remove its name."""
        for name in ("header", "floats", "center_hz", "spectrum", "onset", "beat", "audio"):
            setattr(self, name, None)
        try:
            self.shm.close()
        except BufferError:  # a caller still holds a view; the mapping goes with it
            pass
        if unlink:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class SharedFrameViews:
    """Frame hook that mirrors spectrum, activations and audio into shared memory.

    The writer side of :class:`SharedViewsReader`, for a GUI in another process; same parameters
    as :class:`FrameViews`. The segment is created on the first frame of the first stream and
    reused by every later stream with the same layout; :attr:`segment_name` names it for the
    reader. :meth:`close` removes it.

    Real-time safety: per frame, row copies into the preallocated segment and integer stores into
    its header; the frame counter is stored last. No lock, no allocation, never waits for a reader.
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
        self._seg: _Segment | None = None
        self._analyzer: Any = None
        self._source: npt.NDArray[np.float32] | None = None
        self._hop = 0
        self._k = 0
        #: Name of the shared segment ("" before the first frame).
        self.segment_name = ""
        #: Streams seen.
        self.generation = 0

    @property
    def frames(self) -> int:
        """Frames written in the current stream."""
        return self._k

    def _prepare(self, analyzer: Any, sample_index: int) -> None:
        """Set the segment up for a new analyzer (once per stream, on its first frame)."""
        layout, source = _layout_for(analyzer, self.capacity_frames, self.frame_size)
        cap = self.capacity_frames
        hop = layout.hop_size
        geometry = (cap, layout.bands, cap * hop)
        seg = self._seg
        if seg is None or seg.geometry != geometry:
            new = _Segment.create(*geometry)
            if seg is not None:
                seg.release(unlink=True)
            seg = self._seg = new
        h = seg.header
        h[_GEN] += 1  # odd: readers discard what they copy meanwhile
        h[_FRAMES] = 0
        h[_AUDIO_WRITTEN] = 0
        h[_SAMPLE_INDEX] = 0
        h[_BASE_SAMPLE] = int(sample_index) - hop
        h[_FRAME_SIZE] = layout.frame_size
        h[_HOP] = hop
        h[_RATE] = layout.sample_rate_hz
        h[_HAS_BEATS] = int(layout.has_beats)
        seg.floats[0] = layout.frame_rate_hz
        seg.center_hz[:] = layout.center_hz
        h[_GEN] += 1  # even: the new stream is published
        self._analyzer = analyzer
        self._source = source
        self._hop = hop
        self._k = 0
        self.generation += 1
        self.segment_name = seg.shm.name

    def __call__(self, analyzer: Any, frame_index: int, sample_index: int) -> None:
        """Copy this frame's spectrum, activations and hop of audio (an engine frame hook)."""
        if analyzer is not self._analyzer:
            self._prepare(analyzer, sample_index)
        seg = self._seg
        assert seg is not None
        cap = self.capacity_frames
        k = self._k
        i = k % cap
        src = self._source
        spec = seg.spectrum
        spec[i] = src
        spec[i + cap] = src
        a = float(analyzer.onsets.activation)
        seg.onset[i] = a
        seg.onset[i + cap] = a
        beats = getattr(analyzer, "beats", None)
        b = float(getattr(beats, "activation", 0.0)) if beats is not None else 0.0
        seg.beat[i] = b
        seg.beat[i + cap] = b
        hop = self._hop
        p = i * hop  # the audio ring holds capacity_frames hops: frame i's hop is contiguous
        acap = cap * hop
        x = analyzer.latest_hop()
        audio = seg.audio
        audio[p : p + hop, 0] = x
        audio[p + acap : p + acap + hop, 0] = x
        h = seg.header
        h[_SAMPLE_INDEX] = sample_index
        h[_AUDIO_WRITTEN] = (k + 1) * hop
        self._k = k + 1
        h[_FRAMES] = k + 1  # publish last: the frame is complete
        h[_WALL_NS] = time.monotonic_ns()

    def close(self) -> None:
        """Remove the shared segment (readers keep their mapping until they close it)."""
        seg, self._seg = self._seg, None
        self._analyzer = self._source = None
        if seg is not None:
            seg.release(unlink=True)


class SharedAudio:
    """Read-only view of a shared segment's mono audio ring, shaped like a one-channel
    :class:`~onbeat.realtime.ringbuffer.RingBuffer` for the waveform plot.

    :meth:`refresh` takes a snapshot of the write counter; :attr:`written` stays that value until
    the next refresh, so one display update sees one consistent ring.
    """

    channels = 1

    def __init__(self, seg: _Segment, key: int) -> None:
        self._seg = seg
        self.capacity = int(seg.header[_AUDIO_CAPACITY])
        #: Changes with every stream (and segment): a reader's cache of this ring is stale then.
        self.generation = key
        self.written = 0
        self.sample_rate_hz = 0
        self.start_sample = 0
        self.refresh()

    def refresh(self) -> int:
        """Snapshot the write counter; returns it."""
        h = self._seg.header
        self.written = int(h[_AUDIO_WRITTEN])
        self.sample_rate_hz = int(h[_RATE])
        self.start_sample = int(h[_BASE_SAMPLE])
        return self.written

    @property
    def end_s(self) -> float:
        """Stream time one past the newest sample of the snapshot."""
        rate = self.sample_rate_hz
        return (self.start_sample + self.written) / rate if rate > 0 else 0.0

    def window(self, end: int, length: int) -> npt.NDArray[np.float32]:
        """Read-only contiguous view of samples ``[end - length, end)``, shape ``(length, 1)``."""
        cap = self.capacity
        if length > cap or end > self.written or end - length < 0:
            raise ValueError(f"window [{end - length}, {end}) is not available")
        stop = end % cap + cap
        if stop - length < 0:
            stop += cap
        view = self._seg.audio[stop - length : stop].view()
        view.flags.writeable = False
        return view


class SharedViewsReader:
    """Reads a :class:`SharedFrameViews` segment, possibly from another process.

    The same reader API as :class:`FrameViews` (:attr:`layout`, :attr:`generation`,
    :attr:`max_frames`, :attr:`time_s`, :meth:`copy_latest`) plus :attr:`audio`. Call
    :meth:`attach` with the writer's :attr:`~SharedFrameViews.segment_name` (again whenever it
    changes); before that every read is empty.

    Parameters
    ----------
    capacity_frames, margin_frames : int
        As given to the writer (the segment's own capacity wins once attached).
    """

    def __init__(self, capacity_frames: int = 1200, *, margin_frames: int = 100) -> None:
        self.capacity_frames = int(capacity_frames)
        self.margin_frames = int(margin_frames)
        self._seg: _Segment | None = None
        self._gen_seen = -1
        self._layout: ViewLayout | None = None
        self._audio: SharedAudio | None = None
        #: Streams seen by this reader (changes when the layout must be re-read).
        self.generation = 0

    @property
    def name(self) -> str:
        """The attached segment's name ("" when none)."""
        return self._seg.shm.name if self._seg is not None else ""

    def attach(self, name: str) -> None:
        """Map the writer's segment ``name`` (a no-op when it is already mapped)."""
        if name == self.name:
            return
        seg = _Segment.attach(name)
        self.close()
        self._seg = seg
        self.capacity_frames = seg.geometry[0]

    def close(self, *, unlink: bool = False) -> None:
        """Unmap the segment; ``unlink`` also removes it (when its writer died without doing so)."""
        seg, self._seg = self._seg, None
        self._layout = None
        self._audio = None
        self._gen_seen = -1
        if seg is not None:
            seg.release(unlink=unlink)

    def _check(self) -> _Segment | None:
        """The segment, with the layout re-read when a new stream was published."""
        seg = self._seg
        if seg is None:
            return None
        g = int(seg.header[_GEN])
        if g == self._gen_seen:
            return seg
        if g & 1 or g == 0:  # being re-initialised, or no stream yet
            return None
        h = seg.header
        cap, bands, _ = seg.geometry
        self._layout = ViewLayout(
            capacity_frames=cap,
            bands=bands,
            center_hz=seg.center_hz.copy(),
            frame_size=int(h[_FRAME_SIZE]),
            frame_rate_hz=float(seg.floats[0]),
            hop_size=int(h[_HOP]),
            sample_rate_hz=int(h[_RATE]),
            has_beats=bool(h[_HAS_BEATS]),
        )
        if int(h[_GEN]) != g:  # re-initialised while read: try again next time
            self._layout = None
            return None
        self.generation += 1
        self._audio = SharedAudio(seg, self.generation)
        self._gen_seen = g
        return seg

    @property
    def layout(self) -> ViewLayout | None:
        """The current stream's layout (None before its first frame)."""
        return self._layout if self._check() is not None else None

    @property
    def audio(self) -> SharedAudio | None:
        """The mono audio ring of the current stream (None before its first frame)."""
        return self._audio if self._check() is not None else None

    @property
    def frames(self) -> int:
        """Frames written in the current stream."""
        seg = self._check()
        return int(seg.header[_FRAMES]) if seg is not None else 0

    @property
    def max_frames(self) -> int:
        """The most frames one :meth:`copy_latest` call can return."""
        return self.capacity_frames - self.margin_frames

    @property
    def frame_wall_s(self) -> float:
        """``time.monotonic()`` at which the newest frame was published (0 before the first);
        the clock is system-wide, so this compares with the reader's own clock."""
        seg = self._check()
        return int(seg.header[_WALL_NS]) / 1e9 if seg is not None else 0.0

    @property
    def time_s(self) -> float:
        """Stream time of the newest frame's end (0 before the first frame)."""
        seg = self._check()
        if seg is None:
            return 0.0
        h = seg.header
        return (int(h[_BASE_SAMPLE]) + int(h[_FRAMES]) * int(h[_HOP])) / int(h[_RATE])

    def copy_latest(
        self,
        spectrum: npt.NDArray[np.float32] | None,
        onset: npt.NDArray[np.float32] | None,
        beat: npt.NDArray[np.float32] | None,
    ) -> tuple[int, float]:
        """Copy the newest frames into the caller's arrays, oldest first (as
        :meth:`FrameViews.copy_latest`). Returns 0 frames when the copy overlapped the start of a
        new stream or fell more than the margin behind the writer; the caller tries again."""
        outs = [o for o in (spectrum, onset, beat) if o is not None]
        if not outs:
            return 0, self.time_s
        n = outs[0].shape[0]
        if n > self.max_frames:
            raise ValueError(f"at most {self.max_frames} frames can be copied, {n} were asked")
        seg = self._check()
        if seg is None or self._layout is None:
            for o in outs:
                o.fill(0.0)
            return 0, 0.0
        lay = self._layout
        if spectrum is not None and spectrum.shape[1:] != (lay.bands,):
            return 0, self.time_s  # a new stream with another layout began: re-size, then copy
        h = seg.header
        g = self._gen_seen
        frames = int(h[_FRAMES])  # read once: the writer moves on meanwhile
        cap = lay.capacity_frames
        have = min(n, frames)
        start = (frames - have) % cap
        pad = n - have
        for out, ring in ((spectrum, seg.spectrum), (onset, seg.onset), (beat, seg.beat)):
            if out is None:
                continue
            if pad:
                out[:pad] = 0.0
            out[pad:] = ring[start : start + have]
        if int(h[_GEN]) != g or int(h[_FRAMES]) - frames > self.margin_frames:
            return 0, self.time_s  # torn: a new stream began, or the writer lapped the copy
        return have, (int(h[_BASE_SAMPLE]) + frames * lay.hop_size) / lay.sample_rate_hz
