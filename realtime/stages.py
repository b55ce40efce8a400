"""The plugin-style stage contract (after Vamp's ``Plugin.h`` and JUCE's ``AudioProcessor``).

Every stage declares a frozen :class:`StageSpec`, allocates everything in ``prepare(ctx)``,
and then handles one frame per call of ``process(frame, sample_index)``, returning the shared
:data:`~onbeat.realtime.events.EMPTY` tuple when nothing happened. ``reset()`` zeroes state
without reallocating; ``flush()`` ends a stream and returns any last events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from onbeat.realtime.errors import StageError
from onbeat.realtime.events import Event

__all__ = ["Stage", "StageSpec", "StreamContext"]

InputKind = Literal["samples", "spectrum", "activation"]


@dataclass(frozen=True, slots=True)
class StageSpec:
    """What a stage consumes and produces.

    Attributes
    ----------
    name : str
        Registered name.
    input_kind : {"samples", "spectrum", "activation"}
        What ``process`` receives.
    frame_size : int
        Samples (or feature frames) one ``process`` call looks at.
    hop_size : int
        Samples between calls.
    latency_samples : int
        How far the stage's decisions lag the newest sample it has seen (look-ahead plus
        detection delay), at the analysis rate.
    outputs : tuple of str
        Event types or feature blocks it produces.
    """

    name: str
    input_kind: InputKind
    frame_size: int
    hop_size: int
    latency_samples: int
    outputs: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.frame_size < 1 or self.hop_size < 1 or self.latency_samples < 0:
            raise ValueError(f"invalid spec for stage {self.name!r}")


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What a stage is prepared for.

    Attributes
    ----------
    sample_rate_hz : int
        Analysis sample rate.
    hop_size : int
        Samples per frame step.
    """

    sample_rate_hz: int
    hop_size: int

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second."""
        return self.sample_rate_hz / self.hop_size

    def require(self, stage: str, *, sample_rate_hz: int | None = None) -> None:
        """Refuse a context a stage cannot serve, with a clear error."""
        if sample_rate_hz is not None and sample_rate_hz != self.sample_rate_hz:
            raise StageError(
                f"stage {stage!r} needs {sample_rate_hz} Hz, the stream runs at "
                f"{self.sample_rate_hz} Hz"
            )


class Stage(Protocol):
    """A processing stage."""

    name: ClassVar[str]
    spec: StageSpec

    def prepare(self, ctx: StreamContext) -> None:
        """Allocate everything and warm up numba; may refuse the context."""

    def process(self, frame: Any, sample_index: int) -> Sequence[Event]:
        """Handle one frame ending at ``sample_index``; return events or ``EMPTY``."""
        ...

    def reset(self) -> None:
        """Zero state without reallocating."""

    def flush(self) -> Sequence[Event]:
        """End a stream; return any last events."""
        ...
