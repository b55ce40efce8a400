"""Events: frozen, slotted dataclasses that every stage emits and every sink reads.

Every event carries three times:

* ``sample_index``: the analysis-rate sample the event refers to;
* ``time_s``: its musical time in stream seconds (``sample_index / sample_rate``);
* ``emitted_s``: the stream time at which it was issued, i.e. the end of the frame whose
  analysis produced it. A detected onset has ``emitted_s >= time_s``; a predicted beat is
  issued in the frame nearest ``time_s`` (``|emitted_s - time_s|`` within half a frame), or in
  the last frame before it with the tracker's ``issue_frame = "before"``.

Stream time counts analysis samples since the stream began, so a file replayed at full speed
yields exactly the events that live play of the same samples would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "EMPTY",
    "BeatEvent",
    "DeviceEvent",
    "Event",
    "HealthEvent",
    "LevelEvent",
    "OnsetEvent",
    "SimilarEvent",
    "StreamEndEvent",
    "StreamStartEvent",
    "TagsEvent",
    "TempoEvent",
    "event_to_dict",
]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events."""

    type: ClassVar[str] = "event"
    sample_index: int
    time_s: float
    emitted_s: float


EMPTY: tuple[Event, ...] = ()
"""The shared empty result of a stage that had nothing to say."""


@dataclass(frozen=True, slots=True)
class OnsetEvent(Event):
    """A note or percussion onset.

    Attributes
    ----------
    strength : float
        The detection function's value at the onset.
    source : str
        Detector name.
    """

    type: ClassVar[str] = "onset"
    strength: float
    source: str = "superflux"


@dataclass(frozen=True, slots=True)
class BeatEvent(Event):
    """A beat, usually predicted: issued ``time_s - emitted_s`` seconds ahead of it.

    Attributes
    ----------
    beat_index : int
        Increasing count of beats since the stream began.
    beat_in_bar : int
        Position in the bar, 1 = downbeat.
    bpm : float
        Tempo at this beat.
    confidence : float
        Tracker confidence in [0, 1].
    phase : float
        Beat phase in [0, 1) at ``emitted_s`` (0 = on the beat).
    is_downbeat : bool
        ``beat_in_bar == 1``.
    locked : bool
        The tracker is locked to the music.
    predicted : bool
        True when issued by prediction (before ``time_s``, or in the frame nearest it), False
        when reported after it.
    """

    type: ClassVar[str] = "beat"
    beat_index: int
    beat_in_bar: int
    bpm: float
    confidence: float
    phase: float
    is_downbeat: bool
    locked: bool
    predicted: bool


@dataclass(frozen=True, slots=True)
class TempoEvent(Event):
    """Tracker state, published when it changes and twice a second.

    Attributes
    ----------
    bpm : float
        Current tempo.
    confidence : float
        In [0, 1].
    locked : bool
        Whether the tracker is locked.
    beats_per_bar : int
        Current meter.
    """

    type: ClassVar[str] = "tempo"
    bpm: float
    confidence: float
    locked: bool
    beats_per_bar: int


@dataclass(frozen=True, slots=True)
class TagsEvent(Event):
    """Windowed CNN results (genre, mood, voice), smoothed.

    Attributes
    ----------
    genre : tuple of (str, float)
        Genre probabilities, best first.
    mood_quadrant : tuple of (str, float)
        Russell quadrant probabilities (Q1..Q4).
    valence, arousal : float
        In [-1, 1].
    voice : float
        Probability of singing voice.
    energy : float
        Loudness-like energy in [0, 1] (the window's RMS level, -60..0 dBFS).
    top_genre, top_quadrant : str
        The displayed labels: they change only when another label leads by the configured
        hysteresis (empty: the first entry of ``genre`` / ``mood_quadrant``).
    embedding : tuple of float
        The window's L2-normalised embedding (for similarity search); empty when not computed.
    dropped : int
        Windows dropped so far because the previous one was still being computed.
    """

    type: ClassVar[str] = "tags"
    genre: tuple[tuple[str, float], ...]
    mood_quadrant: tuple[tuple[str, float], ...]
    valence: float
    arousal: float
    voice: float
    energy: float
    top_genre: str = ""
    top_quadrant: str = ""
    embedding: tuple[float, ...] = ()
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SimilarEvent(Event):
    """The reference tracks nearest to the current tags window, and the scene cue.

    Published with each tags window when a reference library is in use
    (``onbeat.realtime.library``).

    Attributes
    ----------
    nearest : tuple of (str, float)
        ``(title, distance)`` of the ``library.k`` nearest tracks, nearest first; the distance
        is ``1 - cosine`` between the window's embedding and the track's mean embedding (0..2).
    scene : str
        The current scene (empty until the music has stayed closest to one labelled scene
        for ``library.dwell_s``).
    scene_changed : bool
        True on the window at which ``scene`` switched.
    """

    type: ClassVar[str] = "similar"
    nearest: tuple[tuple[str, float], ...]
    scene: str = ""
    scene_changed: bool = False


@dataclass(frozen=True, slots=True)
class LevelEvent(Event):
    """Input level over the last period.

    Attributes
    ----------
    rms_dbfs, peak_dbfs : float
        RMS and peak level in dB relative to full scale (floored at -120).
    """

    type: ClassVar[str] = "level"
    rms_dbfs: float
    peak_dbfs: float


@dataclass(frozen=True, slots=True)
class HealthEvent(Event):
    """Running counters of everything that went wrong (cumulative since the start).

    Attributes
    ----------
    xruns : int
        Over- and underruns reported by the audio driver.
    overflows : int
        Times the ring buffer was overrun because analysis fell behind.
    lost_samples : int
        Device samples lost to overflows.
    nonfinite : int
        NaN or infinite input samples replaced by zero.
    clipped : int
        Input samples at or beyond full scale (clamped to ±1).
    dropped : int
        Events dropped by full sink queues.
    """

    type: ClassVar[str] = "health"
    xruns: int
    overflows: int
    lost_samples: int
    nonfinite: int
    clipped: int
    dropped: int


@dataclass(frozen=True, slots=True)
class DeviceEvent(Event):
    """The input device changed state.

    Attributes
    ----------
    state : str
        ``"opened"``, ``"lost"`` or ``"reopened"``.
    device : str
        Device name.
    device_rate_hz : int
        Rate the device runs at.
    gap_s : float
        Wall-clock seconds without audio, for ``"reopened"``.
    """

    type: ClassVar[str] = "device"
    state: str
    device: str
    device_rate_hz: int
    gap_s: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamStartEvent(Event):
    """The stream began.

    Attributes
    ----------
    source : str
        What is analysed (file path, device name or ``"demo"``).
    sample_rate_hz : int
        Analysis sample rate.
    frame_rate_hz : float
        Frames per second.
    """

    type: ClassVar[str] = "start"
    source: str
    sample_rate_hz: int
    frame_rate_hz: float


@dataclass(frozen=True, slots=True)
class StreamEndEvent(Event):
    """The stream ended (end of file, or stopped by the user).

    Attributes
    ----------
    frames : int
        Frames analysed.
    reason : str
        ``"eof"``, ``"stopped"`` or ``"error"``.
    """

    type: ClassVar[str] = "end"
    frames: int
    reason: str


def event_to_dict(event: Event) -> dict[str, Any]:
    """Flatten an event to a JSON-ready dict with its ``type`` first."""
    d: dict[str, Any] = {"type": event.type}
    for f in dataclasses.fields(event):
        v = getattr(event, f.name)
        d[f.name] = round(v, 6) if isinstance(v, float) else v
    return d
