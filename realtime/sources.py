"""Audio sources. Every source drives the same :class:`InputCallback` into a ring buffer.

* :class:`LiveSource`: a PortAudio input stream through ``sounddevice``.
* :class:`FileSource`: any file ``soundfile`` reads (wav, flac, ogg, opus, mp3), replayed block
  by block through the callback, at real-time pace or as fast as possible.
* :class:`ArraySource`: an in-memory array, the same way (tests, the demo).

File and array sources can hand out driver-like irregular block sizes (zero included), so tests
exercise what real drivers do.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.realtime.errors import AudioFileError, DeviceError
from onbeat.realtime.ringbuffer import RingBuffer

__all__ = [
    "ArraySource",
    "BlockSource",
    "DeviceInfo",
    "FileSource",
    "InputCallback",
    "LiveSource",
    "irregular_block_sizes",
    "list_input_devices",
]

log = logging.getLogger(__name__)


class InputCallback:
    """The audio callback: copy the block into the ring, count xruns. Nothing else.

    Parameters
    ----------
    ring : RingBuffer
        Preallocated destination.
    """

    __slots__ = ("ring",)

    def __init__(self, ring: RingBuffer) -> None:
        self.ring = ring

    def __call__(
        self, indata: npt.NDArray[np.float32], frames: int, time_info: Any, status: Any
    ) -> None:
        """PortAudio input callback (``sounddevice.InputStream`` signature).

        Real-time safety: no allocation of buffers, no lock, no logging, no torch or numba;
        only a copy into preallocated memory and integer increments.
        """
        ring = self.ring
        if status:
            ring.count_xrun()
        ring.write(indata)
        ring.count_callback()


def irregular_block_sizes(mean: int, *, seed: int = 0, zero_every: int = 7) -> Iterator[int]:
    """Driver-like block sizes: random around ``mean``, with a zero-sized block now and then."""
    rng = np.random.default_rng(seed)
    k = 0
    while True:
        k += 1
        if zero_every and k % zero_every == 0:
            yield 0
        else:
            yield int(rng.integers(1, 2 * mean + 1))


class BlockSource:
    """A finite source that yields ``(n, channels)`` float32 blocks.

    Attributes
    ----------
    name : str
        Shown in events and the console.
    sample_rate_hz : int
        Rate of the blocks.
    channels : int
        Channels of the blocks.
    frames : int
        Total samples per channel.
    """

    name: str
    sample_rate_hz: int
    channels: int
    frames: int

    def blocks(
        self, block_size: int, *, irregular_seed: int | None = None
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Yield successive blocks (views of a reused buffer: consume before the next)."""
        raise NotImplementedError

    def play(
        self,
        callback: InputCallback,
        block_size: int,
        *,
        realtime: bool,
        stop: threading.Event | None = None,
        irregular_seed: int | None = None,
    ) -> None:
        """Drive ``callback`` with every block; at real-time pace when ``realtime``."""
        t0 = time.monotonic()
        sent = 0
        for block in self.blocks(block_size, irregular_seed=irregular_seed):
            if stop is not None and stop.is_set():
                return
            if realtime:
                due = t0 + (sent + block.shape[0]) / self.sample_rate_hz
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            callback(block, block.shape[0], None, None)
            sent += block.shape[0]


class ArraySource(BlockSource):
    """Replays an in-memory signal.

    Parameters
    ----------
    samples : ndarray, shape (n,) or (n, channels)
        The signal.
    sample_rate_hz : int
        Its rate.
    name : str
        Display name.
    """

    def __init__(self, samples: npt.ArrayLike, sample_rate_hz: int, name: str = "array") -> None:
        x = np.asarray(samples, dtype=np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.ndim != 2:
            raise ValueError("samples must be (n,) or (n, channels)")
        self._x = np.ascontiguousarray(x)
        self.name = name
        self.sample_rate_hz = int(sample_rate_hz)
        self.channels = int(x.shape[1])
        self.frames = int(x.shape[0])

    def blocks(
        self, block_size: int, *, irregular_seed: int | None = None
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Yield views of the array."""
        sizes = (
            irregular_block_sizes(block_size, seed=irregular_seed)
            if irregular_seed is not None
            else None
        )
        i = 0
        while i < self.frames:
            n = next(sizes) if sizes is not None else block_size
            yield self._x[i : i + n]
            i += n


class FileSource(BlockSource):
    """Replays an audio file block by block.

    Parameters
    ----------
    path : str or Path
        Any format ``soundfile`` (libsndfile) reads: wav, flac, ogg/vorbis, opus, mp3, ...

    Raises
    ------
    AudioFileError
        If the file is missing, unreadable, corrupt or holds no samples.
    """

    def __init__(self, path: str | Path) -> None:
        import soundfile as sf

        p = Path(path)
        self.path = p
        self.name = p.name
        if not p.exists():
            raise AudioFileError(f"audio file {str(p)!r} does not exist")
        if p.is_dir():
            raise AudioFileError(f"{str(p)!r} is a directory, not an audio file")
        try:
            info = sf.info(str(p))
        except Exception as exc:  # libsndfile reports corrupt files in several ways
            reason = str(exc).split("\n")[0].strip() or type(exc).__name__
            raise AudioFileError(f"cannot read audio file {str(p)!r}: {reason}") from None
        if info.frames <= 0 or info.samplerate <= 0:
            raise AudioFileError(f"audio file {str(p)!r} holds no audio")
        self.sample_rate_hz = int(info.samplerate)
        self.channels = int(info.channels)
        self.frames = int(info.frames)
        self.duration_s = info.frames / info.samplerate
        # libsndfile 1.2's MP3 decoder returns wrong samples when read in blocks (measured: a
        # click track read 128 or 4096 frames at a time loses or moves its clicks), while one
        # whole read is right. MP3 files are therefore decoded once, up front.
        self._decoded: npt.NDArray[np.float32] | None = None
        if str(info.format).upper() == "MP3":
            self._decoded = self.read_all()[0]

    def blocks(
        self, block_size: int, *, irregular_seed: int | None = None
    ) -> Iterator[npt.NDArray[np.float32]]:
        """Yield views of one reused buffer, read with ``SoundFile.read(out=...)``."""
        import soundfile as sf

        if self._decoded is not None:
            yield from ArraySource(self._decoded, self.sample_rate_hz).blocks(
                block_size, irregular_seed=irregular_seed
            )
            return
        sizes = (
            irregular_block_sizes(block_size, seed=irregular_seed)
            if irregular_seed is not None
            else None
        )
        cap = max(4 * block_size, 8192)
        buf = np.zeros((cap, self.channels), dtype=np.float32)
        try:
            with sf.SoundFile(str(self.path)) as f:
                while True:
                    n = next(sizes) if sizes is not None else block_size
                    if n == 0:
                        yield buf[:0]
                        continue
                    if n > cap:
                        cap = n
                        buf = np.zeros((cap, self.channels), dtype=np.float32)
                    got = f.read(n, dtype="float32", always_2d=True, out=buf[:n])
                    k = got.shape[0]
                    if k == 0:
                        return
                    yield buf[:k]  # short reads happen before EOF (mp3): stop only at 0
        except sf.LibsndfileError as exc:
            raise AudioFileError(f"error while reading {str(self.path)!r}: {exc}") from None

    def read_all(self) -> tuple[npt.NDArray[np.float32], int]:
        """The whole file as ``(samples, channels)`` float32 and its rate."""
        import soundfile as sf

        try:
            x, sr = sf.read(str(self.path), dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioFileError(f"cannot read audio file {str(self.path)!r}: {exc}") from None
        return x, int(sr)


# ---------------------------------------------------------------------- live input
@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """An input device as PortAudio reports it."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    default_samplerate_hz: float
    default_low_latency_s: float


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio library into a :class:`DeviceError`."""
    try:
        import sounddevice as sd
    except OSError as exc:
        raise DeviceError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sd


def list_input_devices() -> list[DeviceInfo]:
    """All devices with at least one input channel."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except Exception as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    out = []
    for d in devices:
        if d["max_input_channels"] > 0:
            out.append(
                DeviceInfo(
                    index=int(d["index"]),
                    name=str(d["name"]),
                    hostapi=str(hostapis[d["hostapi"]]["name"]),
                    max_input_channels=int(d["max_input_channels"]),
                    default_samplerate_hz=float(d["default_samplerate"]),
                    default_low_latency_s=float(d["default_low_input_latency"]),
                )
            )
    return out


def _describe(devices: list[DeviceInfo]) -> str:
    if not devices:
        return "no input devices are available"
    return "input devices: " + "; ".join(f"[{d.index}] {d.name}" for d in devices)


def resolve_device(spec: str | None) -> DeviceInfo:
    """Find an input device by index or case-insensitive name fragment (None: the default).

    Raises
    ------
    DeviceError
        If nothing matches (the message lists the devices), or the fragment is ambiguous.
    """
    devices = list_input_devices()
    if not devices:
        raise DeviceError("no audio input device found")
    if spec is None or spec == "":
        sd = _sounddevice()
        default = sd.default.device[0]
        if default is None or int(default) < 0:
            return devices[0]
        for d in devices:
            if d.index == int(default):
                return d
        return devices[0]
    if spec.strip().isdigit():
        idx = int(spec)
        for d in devices:
            if d.index == idx:
                return d
        raise DeviceError(f"no input device with index {idx}; {_describe(devices)}")
    frag = spec.lower()
    matches = [d for d in devices if frag in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == frag]
    if exact:
        return exact[0]
    if not matches:
        raise DeviceError(f"no input device matches {spec!r}; {_describe(devices)}")
    return matches[0]


class LiveSource:
    """A PortAudio input stream feeding an :class:`InputCallback`.

    The device is opened at ``device_rate_hz`` (or the analysis rate, falling back to the
    device's default rate when the device refuses it); the analyzer resamples. If the stream
    dies (device unplugged, server restarted) :meth:`reopen` tries again with back-off.

    Parameters
    ----------
    device : str or None
        Index or name fragment.
    channels : tuple of int
        Channels to be analysed; the stream opens enough channels to cover them.
    block_size : int
        Frames per callback.
    preferred_rate_hz : int
        Rate to try first.
    latency_s : float
        Requested input latency; 0 asks for PortAudio's low-latency default.
    """

    def __init__(
        self,
        device: str | None,
        *,
        channels: tuple[int, ...],
        block_size: int,
        preferred_rate_hz: int,
        latency_s: float = 0.0,
    ) -> None:
        self.sd = _sounddevice()
        self.latency: float | str = latency_s if latency_s > 0 else "low"
        self.device_spec = device
        self.info = resolve_device(device)
        self.name = self.info.name
        need = max(channels) + 1 if channels else min(self.info.max_input_channels, 2)
        if need > self.info.max_input_channels:
            raise DeviceError(
                f"device {self.info.name!r} has {self.info.max_input_channels} input channel(s); "
                f"channel {need - 1} was asked for"
            )
        self.channels = need
        self.block_size = block_size
        self.sample_rate_hz = self._pick_rate(preferred_rate_hz)
        self.stream: Any = None

    def _pick_rate(self, preferred_rate_hz: int) -> int:
        for rate in (preferred_rate_hz, int(self.info.default_samplerate_hz), 48000, 44100):
            try:
                self.sd.check_input_settings(
                    device=self.info.index, channels=self.channels, samplerate=rate, dtype="float32"
                )
                return int(rate)
            except Exception:
                continue
        raise DeviceError(f"device {self.info.name!r} accepts none of the usual sample rates")

    def open(self, callback: InputCallback) -> None:
        """Open and start the stream."""
        try:
            self.stream = self.sd.InputStream(
                device=self.info.index,
                channels=self.channels,
                samplerate=self.sample_rate_hz,
                blocksize=self.block_size,
                dtype="float32",
                latency=self.latency,
                callback=callback,
            )
            self.stream.start()
        except Exception as exc:
            self.stream = None
            raise DeviceError(f"cannot open input device {self.info.name!r}: {exc}") from None

    @property
    def latency_s(self) -> float:
        """Input latency PortAudio reports for the open stream."""
        return float(self.stream.latency) if self.stream is not None else 0.0

    def alive(self) -> bool:
        """Whether the stream is running."""
        s = self.stream
        return s is not None and bool(s.active) and not bool(s.closed)

    def close(self) -> None:
        """Stop and close, ignoring errors from a vanished device."""
        s, self.stream = self.stream, None
        if s is None:
            return
        for op in (s.abort, s.close):
            try:
                op()
            except Exception as exc:
                log.debug("closing stream: %s", exc)

    def reopen(self, callback: InputCallback) -> bool:
        """Try once to reopen the same device (re-scanning devices); True on success."""
        self.close()
        try:
            self.sd._terminate()
            self.sd._initialize()
            info = resolve_device(self.device_spec if self.device_spec else self.info.name)
            if info.max_input_channels < self.channels:
                return False
            self.info = info
            self.sd.check_input_settings(
                device=info.index,
                channels=self.channels,
                samplerate=self.sample_rate_hz,
                dtype="float32",
            )
            self.open(callback)
            return True
        except Exception as exc:
            log.debug("reopen failed: %s", exc)
            return False
