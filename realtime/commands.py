"""Commands from the outside (OSC control, the GUI) to the tracker, applied on the analysis thread.

Any thread may :meth:`CommandQueue.put` a :class:`Command`; the analysis thread drains the queue
once per hop, applies each command to the tracker before the next frame, and publishes a
:class:`CommandEvent`, so every command acts within one hop and is visible in the events.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import ClassVar

from onbeat.realtime.events import Event

__all__ = ["COMMAND_KINDS", "Command", "CommandEvent", "CommandQueue"]

#: kind -> number of float arguments
COMMAND_KINDS: dict[str, int] = {
    "tap": 0,  # tap tempo at the current stream time
    "nudge": 1,  # shift the beat phase by ms (positive = later)
    "resync": 0,  # "downbeat now": the current moment is beat 1
    "double": 0,  # x2 tempo
    "halve": 0,  # /2 tempo
    "bpm_range": 2,  # min_bpm, max_bpm
    "freeze": 1,  # 1 = freeze tempo, 0 = follow again
    "output_latency": 1,  # ms of output latency compensation for the tracker's beat events
}


@dataclass(frozen=True, slots=True)
class Command:
    """One tracker command.

    Attributes
    ----------
    kind : str
        One of :data:`COMMAND_KINDS`.
    args : tuple of float
        Its arguments.
    origin : str
        Who sent it (``"osc 127.0.0.1:5000"``, ``"gui"``), for the event log.
    """

    kind: str
    args: tuple[float, ...] = ()
    origin: str = ""

    def __post_init__(self) -> None:
        n = COMMAND_KINDS.get(self.kind)
        if n is None:
            raise ValueError(f"unknown command {self.kind!r}; known: {sorted(COMMAND_KINDS)}")
        if len(self.args) != n:
            raise ValueError(f"command {self.kind!r} takes {n} argument(s), got {len(self.args)}")
        for a in self.args:
            if not isinstance(a, int | float) or a != a or a in (float("inf"), float("-inf")):
                raise ValueError(f"command {self.kind!r}: argument {a!r} is not a finite number")


@dataclass(frozen=True, slots=True)
class CommandEvent(Event):
    """A command was applied (``ok``) or refused by the tracker.

    Attributes
    ----------
    kind : str
        The command.
    args : tuple of float
        Its arguments.
    origin : str
        Who sent it.
    ok : bool
        Whether it took effect.
    """

    type: ClassVar[str] = "command"
    kind: str
    args: tuple[float, ...]
    origin: str
    ok: bool


class CommandQueue:
    """Bounded, lock-free (GIL-atomic deque) multi-producer queue drained by the analysis thread."""

    def __init__(self, maxlen: int = 256) -> None:
        self._q: deque[Command] = deque(maxlen=maxlen)
        self.dropped = 0

    def put(self, command: Command) -> None:
        """Enqueue from any thread; never blocks (the oldest command goes when full)."""
        if len(self._q) == self._q.maxlen:
            self.dropped += 1
        self._q.append(command)

    def drain(self) -> list[Command]:
        """Everything queued, oldest first (analysis thread)."""
        out: list[Command] = []
        while True:
            try:
                out.append(self._q.popleft())
            except IndexError:
                return out

    def __len__(self) -> int:
        return len(self._q)
