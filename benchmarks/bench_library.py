"""Reference-library search benchmark: best-window and track-mean scoring, one thread.

Random unit vectors of the tagger's embedding dimension stand in for the stored embeddings
(tracks labelled with a few scenes, like a VJ's library) and random unit queries for live
windows. Timed per query, as the live matcher does it on the tagger's worker thread:

* best-window scoring (``library.scoring = "window"``, the default) at 10k, 100k and 1M stored
  windows (:data:`WINDOWS_PER_TRACK` per track, a 3 min track at one window per 1.5 s):
  ``LibraryIndex.distances`` (one ``einsum`` over every window, ``np.maximum.reduceat`` per
  track), the k nearest (``argpartition``) and the per-scene minimum distances;
* track-mean scoring (``scoring = "mean"``) at 1k, 10k and 100k tracks, the same steps over one
  row per track;
* ``BLAS @``: the bare matrix-vector product with BLAS on one thread, for comparison;
* ``load``: building the in-memory index from a SQLite library of that size (what a live
  process pays once at start and again whenever another process changes the library).

Thread counts are pinned to 1 (BLAS, OpenMP). Prints markdown tables with the index's memory,
and the library size beyond which an approximate (ANN) index would be needed to keep a query
under :data:`BUDGET_MS`.

Run: ``python benchmarks/bench_library.py [--windows 10000 100000 1000000]
[--tracks 1000 10000 100000] [--queries 300] [--no-db]``.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from onbeat.models.tagger import TaggerSpec
from onbeat.realtime.library import Library, LibraryIndex

BUDGET_MS = 5.0  # per query: a small fraction of the tagger's few ms per 1.5 s window
WINDOWS_PER_TRACK = 120  # 3 min at one window per 1.5 s


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _scenes(rng: np.random.Generator, n: int) -> list[tuple[str, ...]]:
    """About a tenth of the tracks labelled with one of 8 scenes."""
    labels = rng.integers(0, 80, n)
    return [(f"scene{k}",) if k < 8 else () for k in labels]


def _percentiles(times_s: list[float]) -> tuple[float, float]:
    t = np.asarray(times_s) * 1e3
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def bench(
    scoring: str, n: int, per_track: int, dim: int, queries: int, k: int, with_db: bool
) -> dict[str, float | str]:
    """Time one library size: ``n`` windows, ``per_track`` per track (the last one shorter),
    with window scoring; ``n`` tracks with mean scoring."""
    n_tracks = -(-n // per_track) if scoring == "window" else n
    rng = np.random.default_rng(n)
    scenes = _scenes(rng, n_tracks)
    ids = np.arange(n_tracks, dtype=np.int64)
    titles = [f"t{i}" for i in range(n_tracks)]
    if scoring == "window":
        windows = _unit(rng, n, dim)
        rows = np.arange(n) // per_track
        means = np.add.reduceat(windows, np.arange(0, n, per_track)) / per_track
        index = LibraryIndex.from_arrays("bench", ids, titles, scenes, means, windows.copy(), rows)
        mat = index.windows
    else:
        windows = None
        means = _unit(rng, n_tracks, dim)
        index = LibraryIndex.from_arrays("bench", ids, titles, scenes, means)
        mat = index.matrix
    queries = max(20, min(queries, int(3e7 // mat.shape[0])))
    qs = _unit(rng, queries, dim)
    search, matmul = [], []
    for q in qs[:5]:  # warm-up
        index.top(index.distances(q), k)
    for q in qs:
        t0 = time.perf_counter()
        d = index.distances(q)
        index.top(d, k)
        index.scene_distances(d)
        t1 = time.perf_counter()
        _ = 1.0 - mat @ q
        t2 = time.perf_counter()
        search.append(t1 - t0)
        matmul.append(t2 - t1)
    s50, s99 = _percentiles(search)
    m50, m99 = _percentiles(matmul)
    row: dict[str, float | str] = {
        "scoring": scoring,
        "tracks": n_tracks,
        "rows": int(mat.shape[0]),
        "index_mb": index.nbytes / 2**20,
        "queries": queries,
        "search_p50_ms": s50,
        "search_p99_ms": s99,
        "matmul_p50_ms": m50,
        "matmul_p99_ms": m99,
        "load_s": float("nan"),
    }
    if with_db:
        row["load_s"] = _db_load_s(means, scenes, windows, per_track, scoring)
    return row


def _db_load_s(
    means: np.ndarray,
    scenes: list[tuple[str, ...]],
    windows: np.ndarray | None,
    per_track: int,
    scoring: str,
) -> float:
    """Seconds to build the index from a SQLite library holding these tracks (and windows)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.sqlite"
        with Library(path) as lib, lib.transaction() as db:
            blob = np.zeros(means.shape[1], "<f4").tobytes()
            db.executemany(
                "INSERT INTO tracks(id, path, title, sha256, duration_s, scenes, model_id,"
                " added_s, indexed_s, n_windows, mean, std)"
                " VALUES (?, ?, ?, '', 180.0, ?, 'bench', 0, 0, ?, ?, ?)",
                [
                    (
                        i + 1,
                        f"/music/{i}.flac",
                        f"track {i}",
                        json.dumps(list(s)),
                        per_track,
                        m,
                        blob,
                    )
                    for i, (m, s) in enumerate(
                        zip([x.tobytes() for x in means.astype("<f4")], scenes, strict=True)
                    )
                ],
            )
            if windows is not None:
                db.executemany(
                    "INSERT INTO windows(track_id, start_s, embedding) VALUES (?, ?, ?)",
                    (
                        (j // per_track + 1, 1.5 * (j % per_track), w.tobytes())
                        for j, w in enumerate(windows.astype("<f4"))
                    ),
                )
        with Library(path) as lib:
            t0 = time.perf_counter()
            index = lib.index("bench", scoring)
            dt = time.perf_counter() - t0
            assert len(index) == means.shape[0]
            if windows is not None:
                assert index.windows.shape == windows.shape
    return dt


def _table(rows: list[dict[str, float | str]], windows: bool) -> None:
    first = "| windows | tracks |" if windows else "| tracks |"
    print(f"{first} index MiB | query p50 ms | query p99 ms | BLAS `@` p50 ms | index load s |")
    print("|---:" * (7 if windows else 6) + "|")
    for r in rows:
        size = f"| {r['rows']:,} | {r['tracks']:,} |" if windows else f"| {r['tracks']:,} |"
        print(
            f"{size} {r['index_mb']:.1f} | {r['search_p50_ms']:.3f} | {r['search_p99_ms']:.3f} "
            f"| {r['matmul_p50_ms']:.3f} | {r['load_s']:.2f} |"
        )


def _limit(rows: list[dict[str, float | str]]) -> tuple[int, float]:
    """Rows that fit the budget (from the largest size's per-row cost) and that cost in µs."""
    big = max(rows, key=lambda r: float(r["rows"]))
    per_row_ms = float(big["search_p50_ms"]) / float(big["rows"])
    return int(BUDGET_MS / per_row_ms), 1e3 * per_row_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--tracks", type=int, nargs="*", default=[1000, 10_000, 100_000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--no-db", action="store_true", help="skip the SQLite load timing")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args()
    dim = TaggerSpec().hidden
    db = not args.no_db
    per = WINDOWS_PER_TRACK
    win = [bench("window", n, per, dim, args.queries, args.k, db) for n in args.windows]
    mean = [bench("mean", n, 1, dim, args.queries, args.k, db) for n in args.tracks]
    print(
        f"Brute-force search, {dim}-d float32 embeddings, k={args.k}, one thread, up to "
        f"{args.queries} queries per size (fewer for the largest)\n"
    )
    if win:
        print(f"Best-window scoring (default), {per} windows per track:\n")
        _table(win, windows=True)
        limit, us = _limit(win)
        big = max(win, key=lambda r: float(r["rows"]))
        print(
            f"\nLinear in the stored windows ({us * 1e3:.1f} µs per 1,000 windows at "
            f"{int(big['rows']):,}); {4 * dim} bytes per window ({4 * dim * 1e6 / 2**20:.0f} "
            f"MiB per million). Within {BUDGET_MS:.0f} ms per query on the tagger's worker "
            f"(every 1.5 s), brute force holds to about {limit:,} windows (about "
            f"{limit // per:,} tracks of 3 min, {limit * 1.5 / 3600:.0f} h of audio); beyond "
            "that an approximate nearest-neighbour index over the windows (HNSW or IVF, then "
            'the per-track max over the candidates) would be needed, or scoring = "mean".\n'
        )
    if mean:
        print('Track-mean scoring (scoring = "mean"):\n')
        _table(mean, windows=False)
        limit, us = _limit(mean)
        print(
            f"\nWithin {BUDGET_MS:.0f} ms per query, track means hold to about {limit:,} "
            "tracks before an approximate index would be needed."
        )
    if args.json:
        Path(args.json).write_text(json.dumps(win + mean, indent=2) + "\n")


if __name__ == "__main__":
    main()
