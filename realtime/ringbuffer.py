"""Single-producer/single-consumer audio ring buffer with absolute sample counters.

Each sample is stored twice, at ``i % capacity`` and ``i % capacity + capacity`` (the mirrored
layout of friture's ring buffer and of many DSP delay lines), so that any window of up to
``capacity`` samples ending anywhere in the buffer is one contiguous NumPy view: readers never
copy or concatenate.

Counters are absolute (they count samples since the stream began and never wrap), so a reader can
tell how much it missed. The producer is the audio callback: it only copies and advances the
write counter. Under CPython the GIL orders the data copy before the counter store, which is the
ordering an SPSC queue needs; no lock is taken.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["RingBuffer"]

# Indices into the preallocated statistics array.
WRITTEN = 0
READ = 1
OVERFLOWS = 2
OVERFLOW_SAMPLES = 3
XRUNS = 4
CALLBACKS = 5


class RingBuffer:
    """A mirrored SPSC ring of ``float32`` frames of shape ``(n, channels)``.

    Parameters
    ----------
    capacity : int
        Samples (per channel) the ring holds.
    channels : int
        Interleaved channels per sample.
    """

    def __init__(self, capacity: int, channels: int = 1) -> None:
        if capacity < 1 or channels < 1:
            raise ValueError("capacity and channels must be positive")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._buf = np.zeros((2 * self.capacity, self.channels), dtype=np.float32)
        # Preallocated counters: written, read, overflows, overflowed samples, xruns, callbacks.
        self._stats = np.zeros(8, dtype=np.int64)

    # ----------------------------------------------------------------- producer side
    def write(self, block: npt.NDArray[np.float32]) -> None:
        """Copy ``block`` (shape ``(n, channels)``) into the ring.

        Real-time safety: copies into preallocated memory only; no allocation of buffers,
        no lock, no logging. Called from the audio callback.
        """
        n = block.shape[0]
        if n == 0:
            return
        stats = self._stats
        cap = self.capacity
        buf = self._buf
        w = int(stats[WRITTEN])
        if n > cap:  # only the newest `cap` samples can be kept
            stats[OVERFLOWS] += 1
            stats[OVERFLOW_SAMPLES] += n - cap
            w += n - cap
            block = block[n - cap :]
            n = cap
        elif w + n - int(stats[READ]) > cap:
            stats[OVERFLOWS] += 1
            stats[OVERFLOW_SAMPLES] += w + n - int(stats[READ]) - cap
        start = w % cap
        first = min(n, cap - start)
        buf[start : start + first] = block[:first]
        buf[start + cap : start + cap + first] = block[:first]
        rest = n - first
        if rest:
            buf[:rest] = block[first:]
            buf[cap : cap + rest] = block[first:]
        stats[WRITTEN] = w + n

    def count_xrun(self) -> None:
        """Count one driver-reported over- or underrun.

        Real-time safety: increments a preallocated integer.
        """
        self._stats[XRUNS] += 1

    def count_callback(self) -> None:
        """Count one audio callback.

        Real-time safety: increments a preallocated integer.
        """
        self._stats[CALLBACKS] += 1

    # ----------------------------------------------------------------- consumer side
    @property
    def written(self) -> int:
        """Samples written since the stream began."""
        return int(self._stats[WRITTEN])

    @property
    def read_position(self) -> int:
        """Samples the consumer has consumed."""
        return int(self._stats[READ])

    @property
    def overflows(self) -> int:
        """Times the producer overwrote samples the consumer had not read."""
        return int(self._stats[OVERFLOWS])

    @property
    def overflow_samples(self) -> int:
        """Samples lost to overflows."""
        return int(self._stats[OVERFLOW_SAMPLES])

    @property
    def xruns(self) -> int:
        """Driver-reported xruns counted by the callback."""
        return int(self._stats[XRUNS])

    @property
    def callbacks(self) -> int:
        """Audio callbacks seen."""
        return int(self._stats[CALLBACKS])

    def available(self) -> int:
        """Samples written but not yet consumed (at most ``capacity``)."""
        return min(self.written - self.read_position, self.capacity)

    def window(self, end: int, length: int) -> npt.NDArray[np.float32]:
        """Return a read-only contiguous view of samples ``[end - length, end)``.

        Parameters
        ----------
        end : int
            Absolute sample index one past the last sample wanted; at most ``written``.
        length : int
            Samples wanted; at most ``capacity``.

        Raises
        ------
        ValueError
            If the window is not (or no longer) in the ring.
        """
        if length > self.capacity or end > self.written or end - length < 0:
            raise ValueError(f"window [{end - length}, {end}) is not available")
        if self.written - (end - length) > self.capacity:
            raise ValueError(f"window [{end - length}, {end}) has been overwritten")
        stop = end % self.capacity + self.capacity
        if stop - length < 0:
            stop += self.capacity
        view = self._buf[stop - length : stop]
        view = view.view()
        view.flags.writeable = False
        return view

    def latest(self, length: int) -> npt.NDArray[np.float32]:
        """Return a read-only view of the newest ``length`` samples (for windowed readers)."""
        end = self.written
        length = min(length, end, self.capacity)
        return self.window(end, length)

    def read(self, max_samples: int) -> tuple[int, npt.NDArray[np.float32]]:
        """Consume up to ``max_samples`` unread samples.

        Returns
        -------
        start : int
            Absolute index of the first returned sample. If the producer overran the reader,
            ``start`` jumps ahead of the previous read position (the gap was lost and counted).
        block : ndarray, shape (n, channels)
            A read-only view; valid until the producer wraps around, so copy or process it
            before reading again.
        """
        w = self.written
        r = self.read_position
        if w - r > self.capacity:
            r = w - self.capacity
        n = min(w - r, max_samples)
        if n <= 0:
            return r, self._buf[:0]
        block = self.window(r + n, n)
        self._stats[READ] = r + n
        return r, block

    def reset(self) -> None:
        """Zero the contents and counters without reallocating."""
        self._buf.fill(0.0)
        self._stats.fill(0)
