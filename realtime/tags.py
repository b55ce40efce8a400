"""Windowed CNN tagging (genre, mood, voice) beside the beat tracker, never in its way.

How it runs
    :class:`Tagger` is an engine frame hook. On the analysis thread, after every frame, it copies
    the newest hop of analysis-rate mono samples into its own mirrored
    :class:`~onbeat.realtime.ringbuffer.RingBuffer` (441 samples; the audio callback does nothing
    extra) and, once per ``tags.hop_s`` of stream time, wakes the worker thread with the
    window's end position. The worker copies the window out of that ring, computes the engine's
    numba log-mel and runs the CNN in NumPy (:mod:`onbeat.models.tagger_np`, no torch), then
    leaves the finished :class:`~onbeat.realtime.events.TagsEvent` in a one-slot mailbox that the
    analysis thread publishes at its next frame (so the bus keeps a single producer).

    If the worker is still busy when the next window is due, that window is dropped and counted
    (``TagsEvent.dropped``): work never queues up and the analysis thread never waits.
    ``replay --fast`` runs the tagger inline instead (``inline=True``): the same windows, computed
    on the analysis thread, so fast replay gives every window deterministically.

Smoothing
    Probabilities are smoothed with an exponential moving average (time constant
    ``tags.ema_s``); the displayed top genre and quadrant change only when another label leads
    the current one by ``tags.hysteresis``. Windows quieter than ``tags.gate_dbfs`` (room noise)
    produce nothing, and the last state holds.

Similarity
    With a reference library (:attr:`Tagger.matcher`, ``onbeat.realtime.library``), the worker
    also compares each window's embedding with the library and hands a
    :class:`~onbeat.realtime.events.SimilarEvent` (nearest tracks, scene cue) over with the
    tags event, through the same mailbox.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from onbeat.realtime.events import Event, TagsEvent
from onbeat.realtime.ringbuffer import RingBuffer

if TYPE_CHECKING:
    from onbeat.realtime.analysis import Analyzer
    from onbeat.realtime.config import TagsConfig
    from onbeat.realtime.library import LibraryMatcher

__all__ = ["Tagger", "TagsState", "tagger_available"]

log = logging.getLogger(__name__)


def tagger_available(directory: Path | None = None) -> bool:
    """Whether the tagging CNN's weights ship with this installation."""
    from onbeat.models.registry import available

    return available("tags", directory)


class TagsState:
    """Exponential smoothing and top-label hysteresis of successive window outputs.

    Parameters
    ----------
    genres, quadrants : sequence of str
        Label names, in the model's order.
    alpha : float
        Steady-state EMA weight of a new window (1 = no smoothing).
    hysteresis : float
        Lead another label needs over the displayed one to replace it.
    novelty : float
        Cosine distance between a window's embedding and the running mean of the embeddings
        above which the window starts a new running mean (a song change without a gap); 0
        turns this off.
    dwell : int
        A label that has led the smoothed probabilities for this many windows in a row replaces
        the displayed one even without the ``hysteresis`` lead (flat distributions could
        otherwise hold a stale label for ever); 0 turns this off.

    Notes
    -----
    The n-th window since the start (or since :meth:`restart`) weighs ``max(alpha, 1/n)``: a
    plain running mean until its weight falls to ``alpha``, then the EMA. A song's first windows
    therefore count equally (the first one alone no longer decides the early labels), which
    settles the labels sooner without making the steady state any less smooth.
    """

    def __init__(
        self,
        genres: tuple[str, ...],
        quadrants: tuple[str, ...],
        alpha: float,
        hysteresis: float,
        novelty: float = 0.0,
        dwell: int = 0,
    ) -> None:
        self.genres, self.quadrants = genres, quadrants
        self.alpha, self.hysteresis, self.novelty = alpha, hysteresis, novelty
        self.dwell = dwell
        self._lead = {"genre": (-1, 0), "quadrant": (-1, 0)}  # challenger, windows on top
        self.embedding: npt.NDArray[np.float64] | None = None
        self.restarts = 0
        self.genre: npt.NDArray[np.float64] | None = None
        self.quadrant = np.zeros(len(quadrants))
        self.voice = 0.0
        self.top_genre = -1
        self.top_quadrant = -1
        self.n = 0

    @classmethod
    def from_config(
        cls, config: TagsConfig, genres: tuple[str, ...], quadrants: tuple[str, ...]
    ) -> TagsState:
        """A fresh state with ``config``'s smoothing: its EMA time constant and dwell time
        become per-window weights and counts at ``config.hop_s``."""
        alpha = 1.0 - math.exp(-config.hop_s / config.ema_s) if config.ema_s else 1.0
        dwell = math.ceil(config.dwell_s / config.hop_s - 1e-9)
        return cls(genres, quadrants, alpha, config.hysteresis, config.novelty, dwell)

    def restart(self) -> None:
        """Let the next window start a new running mean (a new song after a silence); the
        displayed labels hold until the new mean replaces them through the hysteresis."""
        self.n = 0

    def update(
        self,
        genre: npt.ArrayLike,
        quadrant: npt.ArrayLike,
        voice: float,
        embedding: npt.ArrayLike | None = None,
    ) -> tuple[int, int]:
        """Fold in one window's probabilities (and embedding, for the novelty restart); return
        the displayed top genre and quadrant."""
        g = np.asarray(genre, np.float64)
        q = np.asarray(quadrant, np.float64)
        e = None if embedding is None else np.asarray(embedding, np.float64)
        if self.novelty > 0 and e is not None and self.embedding is not None and self.n > 0:
            norm = float(np.linalg.norm(self.embedding) * np.linalg.norm(e))
            if norm > 0 and 1.0 - float(self.embedding @ e) / norm > self.novelty:
                self.n = 0
                self.restarts += 1
        self.n += 1
        if e is not None:
            if self.embedding is None or self.n == 1:
                self.embedding = e.copy()
            else:
                self.embedding += max(self.alpha, 1.0 / self.n) * (e - self.embedding)
        if self.genre is None or self.n == 1:
            self.genre, self.quadrant, self.voice = g.copy(), q.copy(), float(voice)
        else:
            a = max(self.alpha, 1.0 / self.n)
            self.genre += a * (g - self.genre)
            self.quadrant += a * (q - self.quadrant)
            self.voice += a * (float(voice) - self.voice)
        self.top_genre = self._hold("genre", self.genre, self.top_genre)
        self.top_quadrant = self._hold("quadrant", self.quadrant, self.top_quadrant)
        return self.top_genre, self.top_quadrant

    def _hold(self, key: str, p: npt.NDArray[np.float64], current: int) -> int:
        best = int(np.argmax(p))
        challenger, run = self._lead[key]
        run = run + 1 if best == challenger else 1
        self._lead[key] = (best, run)
        if current < 0 or p[best] > p[current] + self.hysteresis:
            return best
        if self.dwell and best != current and run >= self.dwell:
            return best
        return current


class Tagger:
    """Windowed genre / mood / voice tagging as an engine frame hook plus a worker thread.

    Parameters
    ----------
    config : TagsConfig
        Window, hop, smoothing and gate.
    sample_rate_hz : int
        Analysis rate (the rate of :meth:`Analyzer.latest_hop`).
    inline : bool
        Compute each window on the analysis thread (deterministic fast replay) instead of in
        the worker thread.
    weights : path, optional
        A ``tags.safetensors`` file (default: the shipped one, ``ONBEAT_MODELS`` overrides).
    head : path, optional
        A ``similarity.safetensors`` head for the embedding (default: the one beside
        ``weights``; see :func:`~onbeat.realtime.library.similarity_head`).
    """

    def __init__(
        self,
        config: TagsConfig,
        *,
        sample_rate_hz: int,
        inline: bool = False,
        weights: Path | None = None,
        head: Path | None = None,
    ) -> None:
        self.config = config
        self.rate_hz = int(sample_rate_hz)
        self.inline = inline
        self.weights = weights
        self.head = head
        self.window_n = round(config.window_s * self.rate_hz)
        self.hop_n = round(config.hop_s * self.rate_hz)
        self.ring = RingBuffer(self.window_n + 2 * self.hop_n + self.rate_hz)
        self._window = np.zeros(self.window_n, np.float32)
        self._net: Any = None
        self._similarity: Any = None  # the similarity model (NumpySimilarity), when one fits
        self._fb: Any = None
        self._spec: Any = None
        self.state: TagsState | None = None
        self.dropped = 0
        self.windows = 0
        self.gated = 0
        self._next_due = self.window_n
        self._busy = False
        self._job = (0, 0)  # (ring position, analysis sample) of the window's end
        self._late = 0  # windows overwritten before the worker copied them (worker thread)
        self._mailbox: tuple[Event, ...] | None = None
        #: Reference-library matching of each window's embedding (``SimilarEvent``), if any.
        self.matcher: LibraryMatcher | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = False

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        """Load the model (NumPy weights, no torch), build the mel filterbank and warm both up."""
        from onbeat.models.registry import WEIGHTS_DIR, weights_path
        from onbeat.models.tagger_np import load_tagger_np

        path = self.weights or weights_path("tags")
        if not path.exists():
            raise FileNotFoundError(f"no tagging model at {path} (shipped: {WEIGHTS_DIR})")
        from threadpoolctl import threadpool_limits

        # One BLAS thread, process-wide: the CNN's matmuls must not spread over the cores that
        # the analysis thread and the audio driver need (OpenBLAS would use every core).
        threadpool_limits(limits=1, user_api="blas")
        self._net, _ = load_tagger_np(path)
        from onbeat.realtime.library import similarity_head

        self._similarity, model_id = similarity_head(path, self.head)
        spec = self._spec = self._net.spec
        if spec.sample_rate_hz != self.rate_hz:
            raise ValueError(
                f"the tagging model expects {spec.sample_rate_hz} Hz analysis audio, "
                f"not {self.rate_hz} Hz"
            )
        self._fb = spec.filterbank()
        self.state = TagsState.from_config(self.config, spec.genres, spec.quadrants)
        self._infer(np.zeros(self.window_n, np.float32))  # warm-up: numba mel and the CNN
        if self.matcher is not None:
            self.matcher.prepare(model_id)
        self._ready = True

    def reset(self) -> None:
        """Start a new stream: forget the history and the smoothed state (the model stays)."""
        self.ring.reset()
        self._next_due = self.window_n
        self._mailbox = None
        self.dropped = self.windows = self.gated = self._late = 0
        if self.state is not None:
            self.state = TagsState.from_config(self.config, self.state.genres, self.state.quadrants)
        if self.matcher is not None:
            self.matcher.reset()

    def tag_array(self, audio: npt.NDArray[np.float32]) -> list[TagsEvent]:
        """Offline: the ``tags`` events of a whole mono recording at :attr:`rate_hz`.

        The windows, gate, model and smoothing are the live ones (this resets the stream
        first); only the engine's other stages are skipped, so evaluation and tuning run at
        the tagger's own speed. The result equals a replay through the engine (a test holds
        this), except for ``emitted_s``, which is the window's end here.
        """
        if not self._ready:
            self.prepare()
        self.reset()
        x = np.ascontiguousarray(audio, np.float32).reshape(-1, 1)
        out: list[TagsEvent] = []
        pos = 0
        for end in range(self.window_n, len(x) + 1, self.hop_n):
            self.ring.write(x[pos:end])
            pos = end
            ev = self._compute(self.ring.written, end)
            if ev is not None:
                out.append(ev)
        return out

    @property
    def ready(self) -> bool:
        """Whether the model is loaded and warmed up."""
        return self._ready

    def start(self) -> None:
        """Start the worker thread (not used inline); it loads the model first if
        :meth:`prepare` was not called (the engine calls it before any audio)."""
        if self.inline or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="tagger", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    # ------------------------------------------------------------------ analysis thread
    def __call__(self, analyzer: Analyzer, frame: int, sample: int) -> None:
        """Frame hook: keep the history, publish a finished window, start the next one."""
        hop = analyzer.latest_hop()
        self.ring.write(hop.reshape(-1, 1))
        done = self._mailbox
        if done is not None:
            self._mailbox = None
            analyzer.publish([_stamped(e, sample / self.rate_hz) for e in done])
        if self.ring.written < self._next_due or not self._ready:
            return
        end = self.ring.written
        # next window on the grid window_n + k * hop_n (skipping any missed while loading)
        self._next_due = self.window_n + ((end - self.window_n) // self.hop_n + 1) * self.hop_n
        if self.inline:
            out = self._outputs(end, sample)
            if out:
                analyzer.publish(out)
        elif self._busy:
            self.dropped += 1
        else:
            self._busy = True
            self._job = (end, sample)
            self._wake.set()

    @property
    def dropped_total(self) -> int:
        """Windows dropped: due while the worker was busy, or overwritten before it read them."""
        return self.dropped + self._late

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        if not self._ready:
            try:
                self.prepare()
            except Exception as exc:  # no tags, but the stream goes on
                log.error("tagging disabled: %s", exc)
                return
        while not self._stop.is_set():
            if not self._wake.wait(0.5):
                continue
            self._wake.clear()
            if self._stop.is_set():
                break
            if not self._busy:
                continue
            try:
                out = self._outputs(*self._job)
                if out:
                    self._mailbox = out
            except Exception:  # never take the stream down; report once per burst
                log.exception("tagging failed on one window")
            finally:
                self._busy = False

    def _outputs(self, end: int, sample: int) -> tuple[Event, ...]:
        """The window's tags event and, with a reference library, its similarity event."""
        ev = self._compute(end, sample)
        if ev is None:
            return ()
        if self.matcher is None or not ev.embedding:
            return (ev,)
        similar = self.matcher.match(ev.embedding, ev.sample_index, ev.time_s)
        return (ev,) if similar is None else (ev, similar)

    def _compute(self, end: int, sample: int) -> TagsEvent | None:
        """Tags of the window ending at ring position ``end``, which is analysis sample
        ``sample`` (None: gated, or overwritten before it could be copied)."""
        try:
            self._window[:] = self.ring.window(end, self.window_n)[:, 0]
            if self.ring.written - (end - self.window_n) > self.ring.capacity:
                raise ValueError("overwritten during the copy")
        except ValueError:
            self._late += 1
            return None
        x = self._window
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        dbfs = 20.0 * math.log10(max(rms, 1e-7))
        assert self.state is not None
        st = self.state
        if dbfs < self.config.gate_dbfs:
            self.gated += 1
            if self.config.restart_on_silence:
                st.restart()
            return None
        genre, quadrant, voice, emb = self._infer(x)
        top_g, top_q = st.update(genre, quadrant, voice, emb)
        assert st.genre is not None
        self.windows += 1
        from onbeat.models.tagger_np import mood_from_quadrants

        valence, arousal = mood_from_quadrants(st.quadrant)
        order = np.argsort(-st.genre)
        t = sample / self.rate_hz
        return TagsEvent(
            sample_index=sample,
            time_s=t,
            emitted_s=t,
            genre=tuple((st.genres[i], round(float(st.genre[i]), 4)) for i in order),
            mood_quadrant=tuple(
                (st.quadrants[i], round(float(st.quadrant[i]), 4)) for i in np.argsort(-st.quadrant)
            ),
            valence=round(valence, 4),
            arousal=round(arousal, 4),
            voice=round(st.voice, 4),
            energy=round(min(1.0, max(0.0, (dbfs + 60.0) / 60.0)), 4),
            top_genre=st.genres[top_g],
            top_quadrant=st.quadrants[top_q],
            embedding=tuple(round(float(v), 4) for v in emb),
            dropped=self.dropped_total,
        )

    def _infer(
        self, x: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], float, npt.NDArray[np.float32]]:
        """Raw genre and quadrant probabilities, voice probability and normalised embedding."""
        mel = self._spec.log_mel(x, self._fb)
        from onbeat.models.tagger_np import sigmoid, softmax

        out = self._net(mel[None])
        genre = softmax(out["genre"][0])
        quadrant = softmax(out["quadrant"][0])
        voice = float(sigmoid(out["voice"][0]))
        if self._similarity is not None:  # the same trunk pass, or the head's own trunk on this mel
            emb = self._similarity.embed(mel[None], out["trunk_map"])[0]
        else:
            emb = out["embedding"][0]
            emb = emb / max(float(np.linalg.norm(emb)), 1e-9)
        return genre, quadrant, voice, emb


def _stamped(ev: Event, emitted_s: float) -> Event:
    """``ev`` with the stream time at which the analysis thread published it."""
    import dataclasses

    return dataclasses.replace(ev, emitted_s=emitted_s)
