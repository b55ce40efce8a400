"""``onbeat eval tags DIR``: score the shipped genre / mood / voice tagger on labelled files.

Labels
    A CSV (default ``DIR/labels.csv``) with the header ``song,quadrant,genres``: ``song`` is a
    file's stem or name (or its path relative to ``DIR``), ``quadrant`` is ``Q1``..``Q4`` or
    empty, ``genres`` is a ``;``-separated list of coarse genre names from
    :data:`~onbeat.models.tagger.GENRES` (empty: no genre label). Audio files are found under
    ``DIR`` recursively; files without a row are tagged but not scored.

How files are tagged
    * Default (window path): as the live worker does, windows of ``spec.window_s`` ending every
      ``tags.hop_s`` of the file (the first ends at ``window_s``), each through the same numba
      log-mel (:meth:`TaggerSpec.log_mel`) and the CNN on one torch thread; windows quieter than
      ``tags.gate_dbfs`` are skipped, as live. A clip's outputs are the means of its window
      probabilities. CPU time per window is :func:`time.process_time` around log-mel + CNN.
    * ``--live``: every file is replayed through the real engine (:meth:`Engine.run_fast`, tags
      on) and the clip's outputs are the smoothed probabilities of its last ``tags`` event
      (prediction: their arg-max; the displayed labels, held by hysteresis, are in the JSON).
      The tag-stability numbers (:func:`tag_stability`) are reported as well.

Metrics (each only where labels exist; the report says which were skipped and why)
    quadrant accuracy and macro-F1, valence and arousal sign accuracy (Q1 +v +a, Q2 -v +a,
    Q3 -v -a, Q4 +v -a), genre macro ROC-AUC over the genres that have positive and negative
    clips, voice agreement with the musicnn teacher (ROC-AUC of our voice probability against the
    teacher's clip-mean voice probability thresholded at 0.5; teacher files
    ``TEACHER/<set>/<stem>.npz`` from ``training/teacher.py``), and CPU milliseconds per window.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.models.tagger import GENRES, QUADRANTS, mood_from_quadrants
from onbeat.realtime.config import OnbeatConfig, apply_overrides
from onbeat.realtime.errors import OnbeatError
from onbeat.realtime.evaluate import AUDIO_EXT
from onbeat.realtime.events import TagsEvent

__all__ = [
    "ClipResult",
    "SongLabels",
    "TagStability",
    "TagsEvaluation",
    "evaluate_tags",
    "main_eval_tags",
    "read_labels",
    "score_results",
    "tag_stability",
    "write_json",
    "write_plot",
]

F64 = npt.NDArray[np.float64]

#: Issue 6 targets: at most this many top-label changes per 30 s, and settled within this time.
MAX_CHANGES_PER_30S = 1.0
MAX_SETTLE_S = 6.0


# --------------------------------------------------------------------------------------------
# Labels


@dataclass(frozen=True, slots=True)
class SongLabels:
    """Labels of one song.

    Attributes
    ----------
    quadrant : int
        0..3 for Q1..Q4, -1 when not labelled.
    genres : tuple of str
        Coarse genres (names from :data:`GENRES`); empty when not labelled.
    """

    quadrant: int = -1
    genres: tuple[str, ...] = ()


def read_labels(path: Path) -> dict[str, SongLabels]:
    """Read a ``song,quadrant,genres`` CSV.

    Parameters
    ----------
    path : Path
        The CSV file.

    Returns
    -------
    dict of str to SongLabels
        Keyed by the ``song`` column as written.

    Raises
    ------
    OnbeatError
        When the file is missing or unreadable, the header lacks a column, a row has the wrong
        number of fields, a song repeats, or a quadrant or genre is unknown (one line, with the
        line number).
    """
    if not path.is_file():
        raise OnbeatError(f"labels file {str(path)!r} does not exist (give one with --labels CSV)")
    genre_names = {g.lower(): g for g in GENRES}
    out: dict[str, SongLabels] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            cols = [c.strip().lower() for c in header or []]
            missing = [c for c in ("song", "quadrant", "genres") if c not in cols]
            if missing:
                raise OnbeatError(
                    f"{str(path)!r}: the header must name the columns song,quadrant,genres "
                    f"(missing: {','.join(missing)})"
                )
            i_song, i_quad, i_genre = (cols.index(c) for c in ("song", "quadrant", "genres"))
            for row in reader:
                line = reader.line_num
                if not row or not any(f.strip() for f in row):
                    continue
                if len(row) != len(cols):
                    raise OnbeatError(
                        f"{str(path)!r} line {line}: {len(row)} fields, the header has {len(cols)}"
                    )
                song = row[i_song].strip()
                if not song:
                    raise OnbeatError(f"{str(path)!r} line {line}: empty song")
                if song in out:
                    raise OnbeatError(f"{str(path)!r} line {line}: song {song!r} is listed twice")
                q = row[i_quad].strip().upper()
                if q and q not in QUADRANTS:
                    raise OnbeatError(
                        f"{str(path)!r} line {line}: unknown quadrant {row[i_quad].strip()!r} "
                        "(Q1, Q2, Q3, Q4 or empty)"
                    )
                genres = []
                for g in (g.strip() for g in row[i_genre].split(";")):
                    if not g:
                        continue
                    if g.lower() not in genre_names:
                        raise OnbeatError(
                            f"{str(path)!r} line {line}: unknown genre {g!r} "
                            f"(known: {', '.join(GENRES)})"
                        )
                    genres.append(genre_names[g.lower()])
                out[song] = SongLabels(
                    QUADRANTS.index(q) if q else -1, tuple(dict.fromkeys(genres))
                )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OnbeatError(f"cannot read labels file {str(path)!r}: {exc}") from None
    return out


def find_audio(directory: Path) -> list[Path]:
    """Audio files under ``directory`` (recursively, sorted)."""
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_EXT and p.is_file())


def _label_key(path: Path, directory: Path, labels: dict[str, SongLabels]) -> str | None:
    """The CSV ``song`` that names ``path``: relative path, with or without suffix, name, stem."""
    rel = path.relative_to(directory)
    for key in (rel.as_posix(), rel.with_suffix("").as_posix(), path.name, path.stem):
        if key in labels:
            return key
    return None


# --------------------------------------------------------------------------------------------
# Teacher


class _Teacher:
    """Clip-mean voice probability of the musicnn teacher for a song stem, where it exists."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        names = next(
            (p for p in (directory / "tags.json", directory.parent / "tags.json") if p.is_file()),
            None,
        )
        self.names: dict[str, list[str]] | None = (
            json.loads(names.read_text()) if names is not None else None
        )
        self.files: dict[str, Path] = {}
        if self.names is not None and directory.is_dir():
            for p in sorted([*directory.glob("*.npz"), *directory.glob("*/*.npz")], reverse=True):
                self.files[p.stem] = p  # reverse order: the first set (sorted) wins

    def voice(self, stem: str) -> float | None:
        """Teacher voice probability of ``stem`` (mean over its windows), or None."""
        from onbeat.training.tags import teacher_targets

        npz = self.files.get(stem)
        if npz is None or self.names is None:
            return None
        try:
            _, v = teacher_targets(npz, self.names)
        except (OSError, KeyError, ValueError) as exc:
            print(f"onbeat: teacher file {npz} unusable ({exc}); ignored", file=sys.stderr)
            return None
        return float(np.mean(v)) if v.size else None


# --------------------------------------------------------------------------------------------
# Tagging one file


@dataclass(frozen=True, slots=True)
class TagStability:
    """How steadily the displayed labels behaved over one replayed file.

    Attributes
    ----------
    top_changes_per_30s : float
        Changes of the displayed labels per 30 s of tagging: the number of events whose
        ``top_genre`` differs from the previous event's, plus the number whose ``top_quadrant``
        does (a change of both at once counts twice), divided by the time from the first to the
        last event and multiplied by 30. The first event is not a change. NaN with fewer than
        two events.
    settle_s : float
        Time from the first event to the start of the first run of events with unchanged
        ``(top_genre, top_quadrant)`` that lasts at least ``hold_s`` (from its first event to
        the next change) or that lasts to the last event. 0 when the labels never change; on a
        stream shorter than ``hold_s``, the time of the last change. NaN without events.
    genre_changes, quadrant_changes : int
        The two counts.
    span_s : float
        Time from the first to the last event.
    events : int
        Events seen.
    """

    top_changes_per_30s: float
    settle_s: float
    genre_changes: int
    quadrant_changes: int
    span_s: float
    events: int

    @property
    def meets_targets(self) -> bool:
        """Whether issue 6's targets hold (≤ 1 change per 30 s, settled within 6 s)."""
        return self.top_changes_per_30s <= MAX_CHANGES_PER_30S and self.settle_s <= MAX_SETTLE_S


def tag_stability(events: Sequence[TagsEvent], *, hold_s: float = 30.0) -> TagStability:
    """Label changes per 30 s and settling time of one file's ``tags`` events.

    Parameters
    ----------
    events : sequence of TagsEvent
        The events of one replayed file, in stream order.
    hold_s : float
        How long unchanged labels must hold to count as settled (see :class:`TagStability`).

    Returns
    -------
    TagStability
    """
    if not events:
        return TagStability(math.nan, math.nan, 0, 0, 0.0, 0)
    t = np.array([e.time_s for e in events], dtype=np.float64)
    g = [e.top_genre for e in events]
    q = [e.top_quadrant for e in events]
    g_changes = sum(a != b for a, b in pairwise(g))
    q_changes = sum(a != b for a, b in pairwise(q))
    span_s = float(t[-1] - t[0])
    rate = 30.0 * (g_changes + q_changes) / span_s if span_s > 0 else math.nan
    starts = [0] + [i for i in range(1, len(events)) if (g[i], q[i]) != (g[i - 1], q[i - 1])]
    settle_s = float(t[starts[-1]] - t[0])
    for k, s in enumerate(starts[:-1]):
        if t[starts[k + 1]] - t[s] >= hold_s:
            settle_s = float(t[s] - t[0])
            break
    return TagStability(rate, settle_s, g_changes, q_changes, span_s, len(events))


@dataclass(slots=True)
class ClipResult:
    """Tagger outputs for one file.

    Attributes
    ----------
    name : str
        Path relative to the evaluated directory.
    audio_s : float
        Duration.
    windows : int
        Windows tagged (not gated).
    gated : int
        Windows skipped as silent.
    genre : ndarray, shape (genres,)
        Genre probabilities (mean over windows, or the last smoothed event).
    quadrant : ndarray, shape (4,)
        Q1..Q4 probabilities.
    voice : float
        Singing-voice probability.
    predicted_quadrant : int
        0..3: the arg-max of ``quadrant``.
    cpu_ms_per_window : float
        Window path: CPU time of log-mel + CNN per window. NaN with ``--live``.
    cnn_cpu_ms_per_window : float
        Window path: CPU time of the CNN alone per window. NaN with ``--live``.
    labels : SongLabels or None
        From the CSV.
    teacher_voice : float or None
        The teacher's clip-mean voice probability.
    stability : TagStability or None
        ``--live`` only.
    displayed : (str, str) or None
        ``--live`` only: the last event's displayed ``top_genre`` and ``top_quadrant``.
    cpu_per_s : float
        ``--live`` only: CPU seconds of the whole analysis thread per audio second.
    """

    name: str
    audio_s: float
    windows: int
    gated: int
    genre: F64 = field(repr=False)
    quadrant: F64 = field(repr=False)
    voice: float
    predicted_quadrant: int
    cpu_ms_per_window: float = math.nan
    cnn_cpu_ms_per_window: float = math.nan
    labels: SongLabels | None = None
    teacher_voice: float | None = None
    stability: TagStability | None = None
    displayed: tuple[str, str] | None = None
    cpu_per_s: float = math.nan

    @property
    def top_genre(self) -> str:
        """The most probable genre."""
        return GENRES[int(np.argmax(self.genre))]


class _WindowTagger:
    """The shipped model and its mel filterbank, run window by window as the live worker does."""

    def __init__(self, config: OnbeatConfig) -> None:
        import torch
        from onbeat.models.registry import weights_path
        from onbeat.models.tagger import load_tagger

        path = weights_path("tags")
        if not path.exists():
            raise OnbeatError(f"no tagging model at {path}")
        torch.set_num_threads(1)
        self.net, _ = load_tagger(path)
        self.spec = self.net.spec
        self.fb = self.spec.filterbank()
        self.window_n = self.spec.window_samples
        self.hop_n = round(config.tags.hop_s * self.spec.sample_rate_hz)
        self.gate_dbfs = config.tags.gate_dbfs
        self._probs(np.zeros(self.window_n, np.float32))  # warm up numba and torch

    def _probs(self, x: npt.NDArray[np.float32]) -> tuple[dict[str, Any], float]:
        """Probabilities of one window and the CPU seconds of the CNN alone."""
        from onbeat.training.tags import TagItem, clip_outputs

        mel = self.spec.log_mel(x, self.fb)
        c0 = time.process_time()
        item = TagItem("window", Path(), "eval", "", mel=mel)  # a one-window "clip"
        out = clip_outputs(self.net, item, self.spec)
        return out, time.process_time() - c0

    def tag(self, path: Path) -> ClipResult:
        """Tag one file (raises :class:`OnbeatError` when it cannot be read or is too short)."""
        from onbeat.realtime.errors import AudioFileError
        from onbeat.realtime.sources import FileSource
        from onbeat.training.datasets import load_audio

        FileSource(path)  # a clear error for missing, corrupt or empty files
        try:
            audio = load_audio(path, self.spec.sample_rate_hz)
        except Exception as exc:  # libsndfile reports corrupt data in several ways
            raise AudioFileError(f"cannot decode {str(path)!r}: {exc}") from None
        n = audio.shape[0]
        if n < self.window_n:
            raise OnbeatError(f"shorter than one {self.spec.window_s:g} s window")
        outs, cpu_s, cnn_s, gated = [], 0.0, 0.0, 0
        for end in range(self.window_n, n + 1, self.hop_n):
            x = audio[end - self.window_n : end]
            rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
            if 20.0 * math.log10(max(rms, 1e-7)) < self.gate_dbfs:
                gated += 1
                continue
            c0 = time.process_time()
            out, cnn = self._probs(x)
            cpu_s += time.process_time() - c0
            cnn_s += cnn
            outs.append(out)
        if not outs:
            raise OnbeatError(f"every window is below the {self.gate_dbfs:g} dBFS gate")
        quadrant = np.mean([o["quadrant"] for o in outs], axis=0).astype(np.float64)
        return ClipResult(
            name=path.name,
            audio_s=n / self.spec.sample_rate_hz,
            windows=len(outs),
            gated=gated,
            genre=np.mean([o["genre"] for o in outs], axis=0).astype(np.float64),
            quadrant=quadrant,
            voice=float(np.mean([o["voice"][0] for o in outs])),
            predicted_quadrant=int(np.argmax(quadrant)),
            cpu_ms_per_window=1e3 * cpu_s / len(outs),
            cnn_cpu_ms_per_window=1e3 * cnn_s / len(outs),
        )


def replay_tags(config: OnbeatConfig, source: Any) -> tuple[list[TagsEvent], Any, Any]:
    """Replay ``source`` (a file or array source) through the engine, as fast as possible.

    Returns
    -------
    events : list of TagsEvent
        Every ``tags`` event, in stream order.
    summary : RunSummary
        What :meth:`Engine.run_fast` returned.
    tagger : Tagger
        The engine's tagger (its window, gate and restart counts).

    Raises
    ------
    OnbeatError
        When the configuration disables the tagger.
    """
    from onbeat.realtime.bus import EventBus
    from onbeat.realtime.engine import Engine

    bus = EventBus()
    sub = bus.subscribe("eval-tags", maxlen=10_000_000)
    engine = Engine(config, bus=bus)
    if engine.tagger is None:
        raise OnbeatError("the tagger is disabled")
    summary = engine.run_fast(source)
    return [e for e in sub.drain() if isinstance(e, TagsEvent)], summary, engine.tagger


def _tag_live(config: OnbeatConfig, path: Path) -> ClipResult:
    """Replay ``path`` through the engine with tags on; the last event gives the outputs."""
    from onbeat.realtime.sources import FileSource

    events, summary, tagger = replay_tags(config, FileSource(path))
    if not events:
        raise OnbeatError(f"no tags: shorter than one {config.tags.window_s:g} s window, or silent")
    last = events[-1]
    genre = dict(last.genre)
    quadrant = dict(last.mood_quadrant)
    return ClipResult(
        name=path.name,
        audio_s=summary.audio_s,
        windows=tagger.windows,
        gated=tagger.gated,
        genre=np.array([genre[g] for g in GENRES], np.float64),
        quadrant=np.array([quadrant[q] for q in QUADRANTS], np.float64),
        voice=float(last.voice),
        predicted_quadrant=int(np.argmax([quadrant[q] for q in QUADRANTS])),
        stability=tag_stability(events),
        displayed=(last.top_genre, last.top_quadrant),
        cpu_per_s=summary.cpu_per_audio_s,
    )


def label_switch_s(
    events: Sequence[TagsEvent],
    boundary_s: float,
    target: tuple[str | Collection[str], str | Collection[str]] | None = None,
) -> float:
    """Seconds after ``boundary_s`` until the displayed labels become ``target`` and stay.

    The song change of a live set: the first song plays up to ``boundary_s``, the next one
    follows without a gap. ``target`` is the new song's own (top genre, top quadrant), e.g.
    :func:`song_labels` of its windows; either may instead be a collection of labels that all
    count (a song whose own label is a near-tie). A display that still shows the old song's
    labels at the end never switched (``inf``). Without ``target``, the last event's labels count
    as the new song's. 0 when every event after the boundary shows the target; NaN without
    events after the boundary.
    """
    after = [e for e in events if e.time_s >= boundary_s]
    if not after:
        return math.nan
    if target is None:
        target = (after[-1].top_genre, after[-1].top_quadrant)
    genres, quadrants = ({t} if isinstance(t, str) else set(t) for t in target)
    good = [e.top_genre in genres and e.top_quadrant in quadrants for e in after]
    if not good[-1]:
        return math.inf
    bad = [i for i, g in enumerate(good) if not g]
    since = after[bad[-1] + 1].time_s if bad else after[0].time_s  # the last one is good
    return max(0.0, float(since) - boundary_s)


def switch_metrics(switch_s: Sequence[float]) -> dict[str, float]:
    """Summary of :func:`label_switch_s` over song changes: ``switch_s`` (median seconds;
    ``inf`` when most never reached the new song's labels), ``switch_share`` (share settled on
    the new song's labels within :data:`MAX_SETTLE_S`), ``switch_reached`` (share that showed
    them by the end) and ``transitions``."""
    x = np.asarray(switch_s, np.float64)
    return {
        "switch_s": float(np.median(x)),
        "switch_share": float(np.mean(x <= MAX_SETTLE_S)),
        "switch_reached": float(np.mean(np.isfinite(x))),
        "transitions": float(len(x)),
    }


def window_probs(
    events: Sequence[TagsEvent],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The genre and quadrant probabilities of ``events`` as arrays, ``(windows, genres)`` and
    ``(windows, quadrants)``, in :data:`GENRES` / :data:`QUADRANTS` order."""
    g = [[dict(e.genre)[k] for k in GENRES] for e in events]
    q = [[dict(e.mood_quadrant)[k] for k in QUADRANTS] for e in events]
    return (
        np.asarray(g, np.float64).reshape(-1, len(GENRES)),
        np.asarray(q, np.float64).reshape(-1, len(QUADRANTS)),
    )


def song_labels(
    genre: npt.ArrayLike, quadrant: npt.ArrayLike, genres: Sequence[str] = GENRES
) -> tuple[str, str]:
    """A song's own labels: the top genre and quadrant of its raw window probabilities
    (rows: windows) averaged over the song, as the clip-level evaluation scores a clip."""
    g = np.asarray(genre, np.float64).reshape(-1, len(genres)).mean(axis=0)
    q = np.asarray(quadrant, np.float64).reshape(-1, len(QUADRANTS)).mean(axis=0)
    return genres[int(np.argmax(g))], QUADRANTS[int(np.argmax(q))]


def raw_tagger(config: OnbeatConfig) -> Any:
    """A prepared inline :class:`~onbeat.realtime.tags.Tagger` with ``config``'s model, windows
    and gate but no smoothing: each event carries one window's own outputs."""
    from onbeat.realtime.tags import Tagger

    raw = dataclasses.replace(config.tags, ema_s=0.0, hysteresis=0.0, novelty=0.0, dwell_s=0.0)
    tagger = Tagger(raw, sample_rate_hz=config.audio.sample_rate_hz, inline=True)
    tagger.prepare()
    return tagger


def tag_transition(
    config: OnbeatConfig, first: Path, second: Path, raw: Any | None = None
) -> float:
    """Replay ``first`` then ``second`` as one stream (no gap); :func:`label_switch_s` at the
    boundary, towards the second song's own labels (its windows through ``raw``, a
    :func:`raw_tagger`)."""
    from onbeat.realtime.sources import ArraySource
    from onbeat.training.datasets import load_audio

    rate = config.audio.sample_rate_hz
    try:
        a, b = load_audio(first, rate), load_audio(second, rate)
    except Exception as exc:  # any decoder error: skip the pair
        raise OnbeatError(f"cannot read {first.name} / {second.name}: {exc}") from None
    own = (raw or raw_tagger(config)).tag_array(b)
    if not own:
        raise OnbeatError(f"{second.name}: no tags (shorter than a window, or silent)")
    target = song_labels(*window_probs(own))
    source = ArraySource(np.concatenate([a, b]), rate, f"{first.stem}+{second.stem}")
    events, _, _ = replay_tags(config, source)
    return label_switch_s(events, len(a) / rate, target)


# --------------------------------------------------------------------------------------------
# Scores


@dataclass(slots=True)
class TagsEvaluation:
    """Everything ``onbeat eval tags`` reports.

    Attributes
    ----------
    results : list of ClipResult
        One per tagged file.
    metrics : dict of str to float
        Mean metrics (only those that could be computed).
    skipped_metrics : dict of str to str
        Metrics that could not be computed, and why.
    skipped_files : list of (str, str)
        Files that could not be tagged, and why.
    genre_auc : dict of str to float
        ROC-AUC per genre that has positive and negative clips.
    confusion : ndarray, shape (4, 4)
        Clip counts, true quadrant (rows) by predicted quadrant (columns).
    unmatched_labels : int
        CSV rows without an audio file.
    live : bool
        Whether the files were replayed through the engine.
    """

    results: list[ClipResult]
    metrics: dict[str, float]
    skipped_metrics: dict[str, str]
    skipped_files: list[tuple[str, str]]
    genre_auc: dict[str, float]
    confusion: npt.NDArray[np.int64]
    unmatched_labels: int = 0
    live: bool = False


def score_results(
    results: Sequence[ClipResult],
) -> tuple[dict[str, float], dict[str, str], dict[str, float], npt.NDArray[np.int64]]:
    """Metrics of tagged clips against their labels.

    Returns
    -------
    metrics : dict of str to float
        ``quadrant_accuracy``, ``quadrant_macro_f1``, ``valence_sign_accuracy``,
        ``arousal_sign_accuracy``, ``genre_macro_auc``, ``voice_teacher_auc``,
        ``cpu_ms_per_window`` (and ``cnn_cpu_ms_per_window``), ``--live``:
        ``top_changes_per_30s``, ``settle_s`` (means) and ``stable_share`` (share of files
        meeting both targets), and counts of the clips each metric used.
    skipped : dict of str to str
        Metrics that could not be computed, and why.
    genre_auc : dict of str to float
        Per-genre ROC-AUC.
    confusion : ndarray of int, shape (4, 4)
        True quadrant (rows) by predicted quadrant (columns).
    """
    from onbeat.training.tags import _auc, quadrant_scores

    metrics: dict[str, float] = {"files": float(len(results))}
    skipped: dict[str, str] = {}
    confusion = np.zeros((4, 4), np.int64)
    mood = [r for r in results if r.labels is not None and r.labels.quadrant >= 0]
    if mood:
        y = [r.labels.quadrant for r in mood if r.labels is not None]
        metrics.update(quadrant_scores([r.quadrant for r in mood], y))
        metrics["quadrant_clips"] = float(len(mood))
        for r, t in zip(mood, y, strict=True):
            confusion[t, r.predicted_quadrant] += 1
    else:
        for k in ("quadrant_accuracy", "quadrant_macro_f1", "valence_sign_accuracy"):
            skipped[k] = "no file has a quadrant label"
        skipped["arousal_sign_accuracy"] = "no file has a quadrant label"

    genre_auc: dict[str, float] = {}
    tagged = [r for r in results if r.labels is not None and r.labels.genres]
    for j, g in enumerate(GENRES):
        pos = [float(r.genre[j]) for r in tagged if r.labels is not None and g in r.labels.genres]
        neg = [
            float(r.genre[j]) for r in tagged if r.labels is not None and g not in r.labels.genres
        ]
        if pos and neg:
            genre_auc[g] = _auc(pos, neg)
    if genre_auc:
        metrics["genre_macro_auc"] = float(np.mean(list(genre_auc.values())))
        metrics["genre_auc_genres"] = float(len(genre_auc))
        metrics["genre_clips"] = float(len(tagged))
    elif not tagged:
        skipped["genre_macro_auc"] = "no file has a genre label"
    else:
        skipped["genre_macro_auc"] = "no genre has both positive and negative files"

    with_t = [r for r in results if r.teacher_voice is not None]
    pos_v = [r.voice for r in with_t if r.teacher_voice is not None and r.teacher_voice >= 0.5]
    neg_v = [r.voice for r in with_t if r.teacher_voice is not None and r.teacher_voice < 0.5]
    if pos_v and neg_v:
        metrics["voice_teacher_auc"] = _auc(pos_v, neg_v)
        metrics["voice_teacher_clips"] = float(len(with_t))
    else:
        skipped["voice_teacher_auc"] = (
            "no teacher file for any song"
            if not with_t
            else "the teacher hears voice in all or none of the files"
        )

    windows = sum(r.windows for r in results)
    if windows and not math.isnan(results[0].cpu_ms_per_window):
        metrics["cpu_ms_per_window"] = sum(r.cpu_ms_per_window * r.windows for r in results) / (
            windows
        )
        metrics["cnn_cpu_ms_per_window"] = (
            sum(r.cnn_cpu_ms_per_window * r.windows for r in results) / windows
        )
    metrics["windows"] = float(windows)
    stab = [r.stability for r in results if r.stability is not None]
    if stab:
        metrics["top_changes_per_30s"] = float(np.nanmean([s.top_changes_per_30s for s in stab]))
        metrics["settle_s"] = float(np.nanmean([s.settle_s for s in stab]))
        metrics["stable_share"] = float(np.mean([s.meets_targets for s in stab]))
        total_s = sum(r.audio_s for r in results)
        metrics["cpu_per_s"] = (
            sum(r.cpu_per_s * r.audio_s for r in results) / total_s if total_s else math.nan
        )
    return metrics, skipped, genre_auc, confusion


def _say(text: str, progress: bool) -> None:
    """One line on stderr (through tqdm while its bar is drawn)."""
    if progress:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


def evaluate_tags(
    config: OnbeatConfig,
    directory: Path,
    *,
    labels_path: Path | None = None,
    teacher_dir: Path | None = None,
    live: bool = False,
    transitions: bool = False,
    progress: bool = True,
) -> TagsEvaluation:
    """Tag every audio file under ``directory`` and score the labelled ones.

    Parameters
    ----------
    config : OnbeatConfig
        ``[tags]`` gives the hop and gate; with ``live``, the whole engine configuration.
    directory : Path
        Audio files (searched recursively).
    labels_path : Path, optional
        The labels CSV (default ``directory / "labels.csv"``).
    teacher_dir : Path, optional
        Teacher soft labels (default ``$ONBEAT_TEACHER`` or ``data/teacher``).
    live : bool
        Replay through the engine and use the last smoothed event (plus stability numbers).
    transitions : bool
        With ``live``, also replay consecutive pairs of files (1st+2nd, 3rd+4th, ...) as one
        stream each and report how soon after the song change the labels settle on the new
        song's own labels (:func:`switch_metrics`).
    progress : bool
        Show a progress bar on stderr.

    Raises
    ------
    OnbeatError
        On a missing directory, no audio, a bad labels CSV or a missing model.
    """
    if not directory.is_dir():
        raise OnbeatError(f"{str(directory)!r} is not a directory")
    labels = read_labels(labels_path or directory / "labels.csv")
    files = find_audio(directory)
    if not files:
        raise OnbeatError(f"no audio files in {str(directory)!r}")
    teacher = _Teacher(teacher_dir or Path(os.environ.get("ONBEAT_TEACHER", "data/teacher")))
    if live:
        config = apply_overrides(config, {"tags.enabled": "on", "output.console": False})
        window = None
    else:
        window = _WindowTagger(config)
    iterator: Any = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="eval tags", unit="file")
    results, skipped_files, matched = [], [], set()
    for path in iterator:
        name = path.relative_to(directory).as_posix()
        key = _label_key(path, directory, labels)
        if key is not None:
            matched.add(key)
        try:
            r = _tag_live(config, path) if window is None else window.tag(path)
        except OnbeatError as exc:
            skipped_files.append((name, str(exc)))
            _say(f"onbeat: skipped {name}: {exc}", progress)
            continue
        r.name = name
        r.labels = labels[key] if key is not None else None
        r.teacher_voice = teacher.voice(path.stem)
        results.append(r)
    if not results:
        raise OnbeatError(f"none of the {len(files)} audio files in {str(directory)!r} was tagged")
    metrics, skipped, genre_auc, confusion = score_results(results)
    if live and transitions:
        pairs: Any = list(zip(files[0::2], files[1::2], strict=False))
        if progress:
            from tqdm import tqdm

            pairs = tqdm(pairs, desc="transitions", unit="pair")
        switch = []
        raw = raw_tagger(config)
        for first, second in pairs:
            try:
                switch.append(tag_transition(config, first, second, raw))
            except OnbeatError as exc:
                _say(f"onbeat: skipped {first.name}+{second.name}: {exc}", progress)
        done = [s for s in switch if s == s]
        if done:
            metrics.update(switch_metrics(done))
            if not math.isfinite(metrics["switch_s"]):
                del metrics["switch_s"]
                skipped["switch_s"] = "most song changes never reached the new song's labels"
        else:
            skipped["switch_s"] = "no pair of files could be replayed"
    return TagsEvaluation(
        results,
        metrics,
        skipped,
        skipped_files,
        genre_auc,
        confusion,
        len(labels) - len(matched),
        live,
    )


# --------------------------------------------------------------------------------------------
# Report


def _nan_none(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


def write_json(path: Path, ev: TagsEvaluation) -> None:
    """Per-file outputs and the mean metrics as JSON (NaN as null)."""
    files = []
    for r in ev.results:
        d: dict[str, Any] = {
            "name": r.name,
            "audio_s": round(r.audio_s, 3),
            "windows": r.windows,
            "gated": r.gated,
            "genre": {g: round(float(p), 5) for g, p in zip(GENRES, r.genre, strict=True)},
            "quadrant": {q: round(float(p), 5) for q, p in zip(QUADRANTS, r.quadrant, strict=True)},
            "valence": round(mood_from_quadrants(r.quadrant)[0], 5),
            "arousal": round(mood_from_quadrants(r.quadrant)[1], 5),
            "voice": round(r.voice, 5),
            "top_genre": r.top_genre,
            "predicted_quadrant": QUADRANTS[r.predicted_quadrant],
            "label_quadrant": (
                QUADRANTS[r.labels.quadrant] if r.labels and r.labels.quadrant >= 0 else None
            ),
            "label_genres": list(r.labels.genres) if r.labels else None,
            "teacher_voice": r.teacher_voice,
            "cpu_ms_per_window": _nan_none(r.cpu_ms_per_window),
        }
        if r.stability is not None:
            s = r.stability
            d["stability"] = {
                "top_changes_per_30s": _nan_none(s.top_changes_per_30s),
                "settle_s": _nan_none(s.settle_s),
                "genre_changes": s.genre_changes,
                "quadrant_changes": s.quadrant_changes,
                "span_s": s.span_s,
                "events": s.events,
                "meets_targets": s.meets_targets,
            }
            d["cpu_per_s"] = _nan_none(r.cpu_per_s)
            d["displayed"] = list(r.displayed) if r.displayed else None
        files.append(d)
    data = {
        "task": "tags",
        "mode": "live" if ev.live else "windows",
        "mean": {k: _nan_none(v) for k, v in ev.metrics.items()},
        "skipped_metrics": ev.skipped_metrics,
        "genre_auc": ev.genre_auc,
        "confusion": {"quadrants": list(QUADRANTS), "counts": ev.confusion.tolist()},
        "skipped_files": [{"name": n, "reason": why} for n, why in ev.skipped_files],
        "files": files,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_plot(path: Path, ev: TagsEvaluation) -> None:
    """PNG: the quadrant confusion matrix and the per-genre ROC-AUC bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), constrained_layout=True)
    cm = ev.confusion
    ax1.imshow(cm, cmap="Blues", vmin=0, vmax=max(1, int(cm.max())))
    ax1.set_xticks(range(4), QUADRANTS)
    ax1.set_yticks(range(4), QUADRANTS)
    ax1.set_xlabel("predicted quadrant")
    ax1.set_ylabel("labelled quadrant")
    for i in range(4):
        for j in range(4):
            colour = "white" if cm[i, j] > 0.6 * cm.max() else "black"
            ax1.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=colour)
    acc = ev.metrics.get("quadrant_accuracy")
    ax1.set_title(
        "quadrant confusion" + (f" (accuracy {acc:.3f})" if acc is not None else ": no labels")
    )
    if ev.genre_auc:
        names = list(ev.genre_auc)
        ax2.barh(range(len(names)), [ev.genre_auc[g] for g in names], color="#3a7bd5")
        ax2.axvline(0.5, color="#888", lw=1, ls="--")
        ax2.set_yticks(range(len(names)), names, fontsize=8)
        ax2.set_xlim(0, 1)
        ax2.invert_yaxis()
        ax2.set_xlabel("ROC-AUC")
        ax2.set_title(f"genre ROC-AUC (macro {ev.metrics['genre_macro_auc']:.3f})")
    else:
        ax2.text(0.5, 0.5, "no genre AUC: " + ev.skipped_metrics.get("genre_macro_auc", ""),
                 ha="center", va="center", wrap=True)  # fmt: skip
        ax2.set_axis_off()
    mode = "live engine, last event" if ev.live else "window means"
    fig.suptitle(f"onbeat eval tags: {len(ev.results)} files ({mode})")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _print_table(ev: TagsEvaluation) -> None:
    width = max(8, *(len(r.name) for r in ev.results))
    head = f"{'file':{width}}  {'win':>4}  {'label':>5}  {'pred':>4}  {'val':>6}  {'aro':>6}"
    head += f"  {'voice':>5}  {'top genre':16}"
    if ev.live:
        head += f"  {'chg/30s':>7}  {'settle':>6}"
    print(head)
    for r in ev.results:
        label = QUADRANTS[r.labels.quadrant] if r.labels and r.labels.quadrant >= 0 else "-"
        v, a = mood_from_quadrants(r.quadrant)
        line = f"{r.name:{width}}  {r.windows:>4}  {label:>5}  {QUADRANTS[r.predicted_quadrant]:>4}"
        line += f"  {v:+6.3f}  {a:+6.3f}  {r.voice:5.3f}  {r.top_genre:16}"
        if r.stability is not None:
            line += f"  {r.stability.top_changes_per_30s:7.2f}  {r.stability.settle_s:6.1f}"
        print(line)
    print()
    for k, val in ev.metrics.items():
        print(f"{k:24} {val:10.4f}")
    for k, why in ev.skipped_metrics.items():
        print(f"{k:24} {'skipped':>10}  ({why})")
    if ev.genre_auc:
        print("genre ROC-AUC: " + ", ".join(f"{g} {a:.3f}" for g, a in ev.genre_auc.items()))


def main_eval_tags(
    config: OnbeatConfig,
    directory: Path,
    *,
    labels_path: Path | None,
    teacher_dir: Path | None,
    json_path: Path | None,
    plot_path: Path,
    live: bool,
    transitions: bool = False,
) -> int:
    """``onbeat eval tags``: evaluate, print the table, write the plot and the JSON."""
    if transitions and not live:
        raise OnbeatError("--transitions needs --live")
    ev = evaluate_tags(
        config,
        directory,
        labels_path=labels_path,
        teacher_dir=teacher_dir,
        live=live,
        transitions=transitions,
    )
    _print_table(ev)
    if ev.skipped_files:
        print(f"onbeat: {len(ev.skipped_files)} file(s) skipped (see above)", file=sys.stderr)
    if ev.unmatched_labels:
        print(f"onbeat: {ev.unmatched_labels} labelled song(s) have no audio file", file=sys.stderr)
    write_plot(plot_path, ev)
    print(f"onbeat: plot written to {plot_path}", file=sys.stderr)
    if json_path is not None:
        write_json(json_path, ev)
    return 0
