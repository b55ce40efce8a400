"""``onbeat eval similarity DIR``: how well embeddings find tracks again and group similar music.

Tracks
    Every audio file under ``DIR`` (recursively) is one track, its own group. When ``DIR`` is the
    4Q set (it holds ``metadata.csv`` with ``Song``, ``Artist``, ``Quadrant`` and ``GenresStr``),
    its clips are the tracks, grouped by artist, with quadrant and coarse-genre labels; their
    log-mels are cached (``ONBEAT_TAGS_CACHE``, default ``data/tags_cache``). All log-mels are the
    tagger's (:meth:`~onbeat.models.tagger.TaggerSpec.log_mel`, the live numbers).

Same-track retrieval (microphone degradation)
    Every track is indexed as the library does: ``window_s`` windows every
    :data:`~onbeat.realtime.library.WINDOW_HOP_S`. Queries are ``queries`` windows per query track
    at uniformly random starts (so up to half a hop off the indexed grid: a time shift), each
    passed through :class:`~onbeat.training.augment.MelAugment` (gain, EQ tilt and bump, band
    limit, room reverb, noise at 3–30 dB SNR; probabilities in :data:`DEGRADATION`). Recall@k: the
    fraction of queries whose own track is among the ``k`` best of all indexed tracks, scored by

    * ``mean``: cosine with the track's mean window embedding (what the library stores), or
    * ``max``: the best cosine over the track's window embeddings.

    Ties count as a uniformly random order (a constant embedding scores chance, ``k / tracks``).

Tag precision@10 (4Q only, artist-disjoint)
    Clip embeddings are the mean of the clean window embeddings; for each query clip the 10
    nearest clips **by other artists** are ranked; precision is the fraction sharing its quadrant
    (``p10_quadrant``) or sharing at least one coarse genre (``p10_genre``); ``chance_*`` is the
    same fraction over all candidates.

On 4Q, queries come from one artist-disjoint fold (:data:`TEST_FOLDS`, :data:`TEST_FOLD`), the
one the similarity head (``training/similarity.py``) never trains on; the index holds every clip.

Embeddings compared
    ``tagger`` (the tags CNN's hidden layer, shipped), ``head`` (the similarity head on the frozen
    trunk, when its weights exist), ``random-proj`` (an untrained baseline: per-band mean and
    standard deviation of the log-mel, standardised with the index's statistics, through a
    fixed-seed Gaussian projection to 128-d) and ``mel-stats`` (cosine of those standardised
    statistics themselves).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEGRADATION",
    "TEST_FOLD",
    "TEST_FOLDS",
    "EvalTrack",
    "degrade",
    "evaluate_similarity",
    "main_eval_similarity",
    "mel_statistics",
    "query_windows",
    "retrieval_recall",
    "tag_precision",
    "track_windows",
    "windows_at",
]

F32 = npt.NDArray[np.float32]
#: An embedding: mel windows ``(n, frames, mels)`` → unit rows ``(n, dim)``.
EmbedFn = Callable[[F32], F32]

#: MelAugment probabilities of the optional steps of the degradation chain.
DEGRADATION: dict[str, float] = {"p_reverb": 0.5, "p_noise": 0.8, "p_bandlimit": 0.3}
#: 4Q artist-disjoint folds for the held-out query fold (shared with ``training/similarity.py``).
TEST_FOLDS = 5
TEST_FOLD = 0
#: Gaussian projection width and seed of the untrained baseline.
PROJECTION_DIM = 128
PROJECTION_SEED = 1234


@dataclass(eq=False)
class EvalTrack:
    """One track of the evaluation.

    Attributes
    ----------
    name : str
        Display name.
    group : str
        Artist (4Q) or file: precision@10 ranks only other groups.
    mel : ndarray of float32, shape (frames, mels)
        The whole track's log-mel.
    quadrant : int
        0..3, or -1 without a label.
    genres : frozenset of str
        Coarse genres (empty without a label).
    query : bool
        Whether queries are drawn from this track.
    """

    name: str
    group: str
    mel: F32
    quadrant: int = -1
    genres: frozenset[str] = frozenset()
    query: bool = True


def _unit(x: npt.NDArray[Any]) -> F32:
    x = np.asarray(x, np.float64)
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    out: F32 = (x / np.maximum(n, 1e-12)[:, None]).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------- windows
def windows_at(mel: F32, starts: Sequence[int], frames: int) -> F32:
    """Windows of ``frames`` starting at ``starts`` (zero padded past the end of ``mel``),
    shape ``(len(starts), frames, mels)``."""
    out = np.zeros((len(starts), frames, mel.shape[1]), np.float32)
    for i, s in enumerate(starts):
        crop = mel[s : s + frames]
        out[i, : crop.shape[0]] = crop
    return out


def track_windows(mel: F32, frames: int, hop_frames: int) -> F32:
    """Windows of ``frames`` every ``hop_frames`` (a short track gives one zero-padded window),
    shape ``(n, frames, mels)``."""
    return windows_at(mel, range(0, max(1, mel.shape[0] - frames + 1), hop_frames), frames)


def query_windows(mel: F32, frames: int, n: int, rng: np.random.Generator) -> F32:
    """``n`` windows of ``frames`` at uniformly random starts, shape ``(n, frames, mels)``."""
    top = max(0, mel.shape[0] - frames)
    return windows_at(mel, [int(rng.integers(0, top + 1)) for _ in range(n)], frames)


def degrade(windows: F32, augment: Callable[[F32, np.random.Generator], F32], seed: int) -> F32:
    """Each window through the degradation chain (seeded)."""
    rng = np.random.default_rng(seed)
    return np.stack([augment(w, rng) for w in windows]).astype(np.float32)


# ---------------------------------------------------------------------------------- metrics
def _tie_recall(g: npt.NDArray[np.int64], e: npt.NDArray[np.int64], k: int) -> float:
    """Mean probability that the true item is in the top ``k`` when ``g`` items score higher and
    ``e`` others score the same (random tie order)."""
    p = np.clip((k - g) / (e + 1.0), 0.0, 1.0)
    return float(p.mean()) if p.size else float("nan")


def retrieval_recall(
    index: Sequence[F32],
    queries: F32,
    query_track: npt.ArrayLike,
    ks: Sequence[int] = (1, 10),
) -> dict[str, float]:
    """Recall@k of ``queries`` against tracks by mean and by max window similarity.

    Parameters
    ----------
    index : sequence of ndarray, each (windows_i, dim)
        Unit window embeddings of each indexed track.
    queries : ndarray, shape (q, dim)
        Unit query embeddings.
    query_track : array of int, shape (q,)
        The index position of each query's own track.
    ks : sequence of int
        Cut-offs.

    Returns
    -------
    dict
        ``mean_r@k`` and ``max_r@k`` for each ``k``, and ``tracks``, ``queries``.
    """
    truth = np.asarray(query_track, np.int64)
    q = np.asarray(queries, np.float32)
    means = _unit(np.stack([w.mean(axis=0) for w in index]))
    flat = np.concatenate(list(index))
    starts = np.concatenate([[0], np.cumsum([w.shape[0] for w in index])[:-1]])
    s_mean = np.round(q @ means.T, 5)
    s_max = np.round(np.maximum.reduceat(q @ flat.T, starts, axis=1), 5)
    out: dict[str, float] = {"tracks": float(len(index)), "queries": float(q.shape[0])}
    rows = np.arange(q.shape[0])
    for name, s in (("mean", s_mean), ("max", s_max)):
        own = s[rows, truth][:, None]
        g = (s > own).sum(axis=1)
        e = (s == own).sum(axis=1) - 1
        for k in ks:
            out[f"{name}_r@{k}"] = _tie_recall(g, e, k)
    return out


def tag_precision(
    clips: F32,
    groups: Sequence[str],
    labels: Sequence[frozenset[str]],
    query: Sequence[bool] | None = None,
    k: int = 10,
) -> tuple[float, float]:
    """Precision@k of nearest clips from other groups sharing a label, and its chance level.

    Parameters
    ----------
    clips : ndarray, shape (n, dim)
        Unit clip embeddings.
    groups : sequence of str
        Artist per clip (neighbours of the same group are excluded).
    labels : sequence of frozenset of str
        Labels per clip (empty: unlabelled, neither query nor candidate).
    query : sequence of bool, optional
        Which clips are queries (default all).
    k : int
        Neighbours.

    Returns
    -------
    precision, chance : float
        NaN when no clip qualifies.
    """
    n = clips.shape[0]
    sim = clips @ clips.T
    g = np.asarray(groups)
    has = np.asarray([bool(x) for x in labels])
    prec: list[float] = []
    chance: list[float] = []
    for i in range(n):
        if not has[i] or (query is not None and not query[i]):
            continue
        cand = np.flatnonzero(has & (g != g[i]))
        if cand.size == 0:
            continue
        share = np.asarray([bool(labels[int(j)] & labels[i]) for j in cand])
        top = np.argsort(-sim[i, cand], kind="stable")[:k]
        prec.append(float(share[top].mean()))
        chance.append(float(share.mean()))
    if not prec:
        return float("nan"), float("nan")
    return float(np.mean(prec)), float(np.mean(chance))


# ---------------------------------------------------------------------------------- embeddings
def mel_statistics(windows: F32) -> npt.NDArray[np.float64]:
    """Per-band mean and standard deviation over time of each window, ``(n, 2 * mels)``."""
    w = windows.astype(np.float64)
    return np.concatenate([w.mean(axis=1), w.std(axis=1)], axis=1)


class MelStats:
    """Standardised mel statistics, optionally through a fixed Gaussian projection.

    Parameters
    ----------
    mean, std : ndarray, shape (2 * mels,)
        Standardisation (the index's statistics).
    projection_dim : int
        0: no projection (plain mel-statistics cosine).
    seed : int
        Projection seed.
    """

    def __init__(
        self,
        mean: npt.NDArray[np.float64],
        std: npt.NDArray[np.float64],
        projection_dim: int = 0,
        seed: int = PROJECTION_SEED,
    ) -> None:
        self.mean, self.std = mean, np.maximum(std, 1e-6)
        self.proj = (
            np.random.default_rng(seed).standard_normal((mean.shape[0], projection_dim))
            if projection_dim
            else None
        )

    def __call__(self, windows: F32) -> F32:
        z = (mel_statistics(windows) - self.mean) / self.std
        return _unit(z @ self.proj if self.proj is not None else z)


def _trunk_embedders(
    tagger_path: Path | None, head_path: Path | None
) -> dict[str, Callable[[F32], dict[str, F32]]]:
    """One function embedding window batches with the tagger's hidden layer and the head.

    The head reads the trunk that :func:`~onbeat.realtime.library.similarity_trunk_path`
    finds, as live: the tagger's own pass, or its own frozen trunk. A head that fits neither is
    not evaluated."""
    import torch
    from onbeat.models.registry import weights_path
    from onbeat.models.similarity import load_head
    from onbeat.models.tagger import load_tagger
    from onbeat.realtime.library import similarity_trunk_path

    tp = tagger_path or weights_path("tags")
    if not tp.exists():
        return {}
    net, _ = load_tagger(tp)
    hp = head_path or weights_path("similarity")
    trunk = similarity_trunk_path(tp, hp) if hp.exists() else None
    head = load_head(hp)[0] if trunk is not None else None
    head_net = net if trunk in (None, tp) else load_tagger(trunk)[0]

    def run(windows: F32) -> dict[str, F32]:
        outs: dict[str, list[F32]] = {"tagger": [], "head": []}
        with torch.inference_mode():
            for i in range(0, windows.shape[0], 64):
                mel = torch.from_numpy(np.ascontiguousarray(windows[i : i + 64]))
                x = net.trunk_map(mel)
                outs["tagger"].append(_unit(net.hidden(net.pool(x)).numpy()))
                if head is not None:
                    hx = x if head_net is net else head_net.trunk_map(mel)
                    outs["head"].append(head.from_trunk(hx).numpy())
        return {k: np.concatenate(v) for k, v in outs.items() if v}

    return {"trunk": run}


# ---------------------------------------------------------------------------------- data
def _is_mer4q(directory: Path) -> bool:
    meta = directory / "metadata.csv"
    if not meta.is_file():
        return False
    with open(meta, newline="") as fh:
        header = next(csv.reader(fh), [])
    return {"Song", "Artist", "Quadrant", "GenresStr"} <= set(header)


def load_tracks(directory: Path, *, limit: int = 0, seed: int = 0) -> tuple[list[EvalTrack], str]:
    """The tracks under ``directory`` and the data set's name (``mer4q`` or ``files``).

    Raises
    ------
    OnbeatError
        When there is no readable audio.
    """
    from onbeat.models.tagger import TaggerSpec
    from onbeat.realtime.errors import OnbeatError
    from onbeat.realtime.library import find_audio_files
    from onbeat.training.datasets import load_audio
    from onbeat.training.tags import artist_folds, coarse_from_allmusic, mel_of, mer4q_items
    from tqdm import tqdm

    spec = TaggerSpec()
    tracks: list[EvalTrack] = []
    if _is_mer4q(directory):
        items = mer4q_items(directory)
        folds = artist_folds(items, TEST_FOLDS, seed=0)
        if limit:
            keep = np.random.default_rng(seed).permutation(len(items))[:limit]
            items = [items[i] for i in sorted(keep)]
            folds = folds[sorted(keep)]
        cache = Path(os.environ.get("ONBEAT_TAGS_CACHE", "data/tags_cache"))
        from onbeat.models.tagger import GENRES

        for it, f in zip(tqdm(items, desc="mel", leave=False), folds, strict=True):
            g = coarse_from_allmusic(it.allmusic)
            genres = (
                frozenset(GENRES[j] for j in np.flatnonzero(g)) if g is not None else frozenset()
            )
            tracks.append(
                EvalTrack(
                    it.name,
                    it.artist,
                    mel_of(it.audio, spec, cache),
                    it.quadrant,
                    genres,
                    query=bool(f == TEST_FOLD),
                )
            )
        return tracks, "mer4q"
    fb = spec.filterbank()
    files = find_audio_files([directory])
    if limit:
        files = files[:limit]
    for p in tqdm(files, desc="mel", leave=False):
        try:
            audio = load_audio(p, spec.sample_rate_hz)
        except Exception as exc:  # corrupt or unreadable: reported and skipped
            print(f"onbeat: skipping {p}: {exc}", file=sys.stderr)
            continue
        if audio.size:
            tracks.append(EvalTrack(p.stem, str(p), spec.log_mel(audio, fb)))
    if not tracks:
        raise OnbeatError(f"no readable audio files under {directory}")
    return tracks, "files"


# ---------------------------------------------------------------------------------- evaluation
def evaluate_similarity(
    tracks: Sequence[EvalTrack],
    *,
    queries: int = 3,
    seed: int = 0,
    embedders: dict[str, EmbedFn] | None = None,
    tagger_path: Path | None = None,
    head_path: Path | None = None,
    use_models: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics per embedding (see the module docstring).

    Parameters
    ----------
    tracks : sequence of EvalTrack
        Indexed tracks (queries come from those with ``query``).
    queries : int
        Degraded query windows per query track.
    seed : int
        Query positions and degradations.
    embedders : dict, optional
        Extra (or replacement) embeddings by name, for tests.
    tagger_path, head_path : path, optional
        Weights (default: the shipped ones; absent ones are skipped).
    use_models : bool
        Evaluate the tagger and head embeddings (off: only the baselines and ``embedders``).

    Returns
    -------
    dict
        Name → metrics.
    """
    from onbeat.models.tagger import TaggerSpec
    from onbeat.realtime.library import WINDOW_HOP_S
    from onbeat.training.augment import MelAugment

    spec = TaggerSpec()
    frames = spec.frames
    frame_rate_hz = spec.sample_rate_hz / spec.hop_size
    hop = round(WINDOW_HOP_S * frame_rate_hz)
    rng = np.random.default_rng(seed)
    index_w = [track_windows(t.mel, frames, hop) for t in tracks]
    qidx = [i for i, t in enumerate(tracks) if t.query]
    q_w = np.concatenate([query_windows(tracks[i].mel, frames, queries, rng) for i in qidx])
    q_truth = np.repeat(qidx, queries)
    augment = MelAugment(spec.filterbank().center_hz, frame_rate_hz, spec.log_mul, **DEGRADATION)
    q_w = degrade(q_w, augment, seed + 1)

    counts = [w.shape[0] for w in index_w]
    flat = np.concatenate(index_w)
    stats = mel_statistics(flat)
    fns: dict[str, EmbedFn] = {
        "random-proj": MelStats(stats.mean(0), stats.std(0), PROJECTION_DIM),
        "mel-stats": MelStats(stats.mean(0), stats.std(0)),
    }
    names: list[str] = []
    emb_index: dict[str, F32] = {}
    emb_query: dict[str, F32] = {}
    trunk = _trunk_embedders(tagger_path, head_path).get("trunk") if use_models else None
    if trunk is not None:
        a, b = trunk(flat), trunk(q_w)
        for k in a:
            emb_index[k], emb_query[k] = a[k], b[k]
            names.append(k)
    for k, fn in {**fns, **(embedders or {})}.items():
        emb_index[k], emb_query[k] = fn(flat), fn(q_w)
        if k not in names:
            names.append(k)

    cuts = np.cumsum(counts)[:-1]
    quad = [frozenset({f"Q{t.quadrant + 1}"}) if t.quadrant >= 0 else frozenset() for t in tracks]
    results: dict[str, dict[str, float]] = {}
    for k in names:
        per_track = np.split(emb_index[k], cuts)
        r = retrieval_recall(per_track, emb_query[k], q_truth)
        r["dim"] = float(emb_index[k].shape[1])
        clips = _unit(np.stack([w.mean(axis=0) for w in per_track]))
        groups = [t.group for t in tracks]
        qmask = [t.query for t in tracks]
        if any(quad):
            r["p10_quadrant"], r["chance_quadrant"] = tag_precision(clips, groups, quad, qmask)
        if any(t.genres for t in tracks):
            r["p10_genre"], r["chance_genre"] = tag_precision(
                clips, groups, [t.genres for t in tracks], qmask
            )
        results[k] = r
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A fixed-width table of :func:`evaluate_similarity`'s metrics."""
    cols = ["mean_r@1", "mean_r@10", "max_r@1", "max_r@10", "p10_quadrant", "p10_genre"]
    cols = [c for c in cols if any(c in r for r in results.values())]
    width = max([len("embedding"), *map(len, results)])
    lines = [f"{'embedding':{width}}  " + "  ".join(f"{c:>12}" for c in cols)]
    for name, r in results.items():
        lines.append(
            f"{name:{width}}  " + "  ".join(f"{r.get(c, float('nan')):12.3f}" for c in cols)
        )
    any_r = next(iter(results.values()), {})
    notes = [f"tracks {int(any_r.get('tracks', 0))}, queries {int(any_r.get('queries', 0))}"]
    for c in ("chance_quadrant", "chance_genre"):
        if c in any_r:
            notes.append(f"{c} {any_r[c]:.3f}")
    return "\n".join([*lines, "; ".join(notes)])


def main_eval_similarity(
    directory: Path,
    *,
    json_path: Path | None = None,
    queries: int = 3,
    seed: int = 0,
    limit: int = 0,
) -> int:
    """``onbeat eval similarity DIR``: print the table, optionally write JSON; returns 0.

    Raises
    ------
    OnbeatError
        When ``directory`` holds no readable audio.
    """
    import torch
    from onbeat.realtime.errors import OnbeatError

    if not directory.is_dir():
        raise OnbeatError(f"{directory} is not a directory")
    torch.set_num_threads(int(os.environ.get("ONBEAT_TRAIN_THREADS", "1")))
    tracks, kind = load_tracks(directory, limit=limit, seed=seed)
    results = evaluate_similarity(tracks, queries=queries, seed=seed)
    print(format_table(results))
    if json_path is not None:
        doc = {
            "data": str(directory),
            "set": kind,
            "queries_per_track": queries,
            "seed": seed,
            "degradation": DEGRADATION,
            "query_fold": f"{TEST_FOLD}/{TEST_FOLDS} (artist)" if kind == "mer4q" else "all",
            "results": results,
        }
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"onbeat: metrics written to {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="at most this many tracks (0 = all)")
    a = ap.parse_args()
    sys.exit(
        main_eval_similarity(
            a.directory, json_path=a.json, queries=a.queries, seed=a.seed, limit=a.limit
        )
    )
