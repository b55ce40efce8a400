"""Event bus: one bounded, drop-oldest queue per subscriber, with drop counters.

The analysis thread publishes without ever blocking: a full queue drops its oldest event and
counts it. Each sink drains its own queue, from its own thread (:class:`SinkThread`) or, for the
GUI, from a timer on the Qt main thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

from onbeat.realtime.events import Event

__all__ = ["EventBus", "Sink", "SinkThread", "Subscription"]

log = logging.getLogger(__name__)


class Subscription:
    """A subscriber's bounded queue.

    Parameters
    ----------
    name : str
        Who subscribed (for drop reports).
    maxlen : int
        Queue bound; beyond it the oldest event is dropped.
    """

    def __init__(self, name: str, maxlen: int) -> None:
        self.name = name
        self.maxlen = maxlen
        self._queue: deque[Event] = deque(maxlen=maxlen)
        self._wake = threading.Event()
        self.dropped = 0
        self.delivered = 0
        self.closed = False

    def offer(self, event: Event) -> None:
        """Enqueue without blocking; the oldest event goes if the queue is full."""
        if len(self._queue) >= self.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wake.set()

    def drain(self, max_events: int | None = None) -> list[Event]:
        """Take up to ``max_events`` queued events (all when None), oldest first."""
        out: list[Event] = []
        q = self._queue
        limit = len(q) if max_events is None else min(max_events, len(q))
        for _ in range(limit):
            try:
                out.append(q.popleft())
            except IndexError:
                break
        self.delivered += len(out)
        return out

    def wait(self, timeout_s: float) -> bool:
        """Wait until an event is queued or the bus closes; True if woken."""
        woke = self._wake.wait(timeout_s)
        self._wake.clear()
        return woke

    def pending(self) -> int:
        """Events queued."""
        return len(self._queue)

    def close(self) -> None:
        """Mark closed and wake the reader."""
        self.closed = True
        self._wake.set()


class EventBus:
    """Fan-out of events to subscribers."""

    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self.published = 0

    def subscribe(self, name: str, maxlen: int = 8192) -> Subscription:
        """Add a subscriber with its own bounded queue."""
        sub = Subscription(name, maxlen)
        self._subs = (*self._subs, sub)
        return sub

    def publish(self, event: Event) -> None:
        """Offer ``event`` to every subscriber; never blocks."""
        self.published += 1
        for sub in self._subs:
            sub.offer(event)

    @property
    def dropped(self) -> int:
        """Events dropped over all subscribers."""
        return sum(s.dropped for s in self._subs)

    def close(self) -> None:
        """Close every subscription (readers drain what is left, then stop)."""
        for sub in self._subs:
            sub.close()


class Sink(Protocol):
    """Something that consumes events on its own thread."""

    name: str

    def handle(self, event: Event) -> None:
        """Consume one event."""

    def tick(self) -> None:
        """Called at least every 100 ms, for periodic output."""

    def close(self) -> None:
        """Flush and release resources."""


class SinkThread(threading.Thread):
    """Runs a :class:`Sink` on its own daemon thread, draining its subscription.

    A sink that raises is logged (rate-limited by the logging setup) and keeps running: one bad
    event never stops the others.
    """

    def __init__(self, sink: Sink, subscription: Subscription) -> None:
        super().__init__(name=f"sink-{sink.name}", daemon=True)
        self.sink = sink
        self.subscription = subscription
        self.errors = 0

    def run(self) -> None:
        """Drain until the subscription is closed and empty, then close the sink."""
        sub = self.subscription
        try:
            while True:
                sub.wait(0.1)
                for event in sub.drain():
                    try:
                        self.sink.handle(event)
                    except Exception:
                        self.errors += 1
                        if self.errors <= 5:
                            log.exception("sink %s failed on %s", self.sink.name, event.type)
                self.sink.tick()
                if sub.closed and sub.pending() == 0:
                    break
        finally:
            self.sink.close()
