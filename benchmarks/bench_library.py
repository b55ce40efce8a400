"""Reference-library search benchmark: brute-force cosine per query at 1k, 10k and 100k tracks.

For each library size, random unit vectors of the tagger's embedding dimension stand in for the
track means (labelled with a few scenes, like a VJ's library), and random unit queries stand in
for live windows. Timed per query, as the live matcher does it on the tagger's worker thread:

* ``search``: the distances to every track (``LibraryIndex.distances``, an ``einsum``), the k
  nearest (``argpartition``) and the per-scene minimum distances;
* ``matmul``: the same distances with BLAS ``@`` on one thread, for comparison;
* ``load``: building the in-memory index from a SQLite library of that size (what a live
  process pays once at start and again whenever another process changes the library).

Thread counts are pinned to 1 (BLAS, OpenMP). Prints a markdown table and the library size
beyond which an approximate index (IVF / HNSW) would be needed to keep a query under the budget.

Run: ``python benchmarks/bench_library.py [--sizes 1000 10000 100000] [--queries 300]``.
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


def bench_size(n: int, dim: int, queries: int, k: int, with_db: bool) -> dict[str, float]:
    rng = np.random.default_rng(n)
    means = _unit(rng, n, dim)
    scenes = _scenes(rng, n)
    index = LibraryIndex.build("bench", list(range(n)), [f"t{i}" for i in range(n)], scenes, means)
    qs = _unit(rng, queries, dim)
    search, matmul = [], []
    for q in qs[:10]:  # warm-up
        index.top(index.distances(q), k)
    for q in qs:
        t0 = time.perf_counter()
        d = index.distances(q)
        index.top(d, k)
        index.scene_distances(d)
        t1 = time.perf_counter()
        _ = 1.0 - index.matrix @ q
        t2 = time.perf_counter()
        search.append(t1 - t0)
        matmul.append(t2 - t1)
    s50, s99 = _percentiles(search)
    m50, m99 = _percentiles(matmul)
    row = {
        "tracks": n,
        "matrix_mb": index.matrix.nbytes / 2**20,
        "search_p50_ms": s50,
        "search_p99_ms": s99,
        "matmul_p50_ms": m50,
        "matmul_p99_ms": m99,
        "load_s": float("nan"),
    }
    if with_db:
        row["load_s"] = _db_load_s(means, scenes)
    return row


def _db_load_s(means: np.ndarray, scenes: list[tuple[str, ...]]) -> float:
    """Seconds to build the index from a SQLite library holding these track means."""
    with tempfile.TemporaryDirectory() as tmp:
        with Library(Path(tmp) / "bench.sqlite") as lib, lib.transaction() as db:
            blob = np.zeros(means.shape[1], "<f4").tobytes()
            db.executemany(
                "INSERT INTO tracks(path, title, sha256, duration_s, scenes, model_id, added_s,"
                " indexed_s, n_windows, mean, std) VALUES (?, ?, '', 180.0, ?, 'bench', 0, 0,"
                " 120, ?, ?)",
                (
                    (f"/music/{i}.flac", f"track {i}", json.dumps(list(s)), m.tobytes(), blob)
                    for i, (m, s) in enumerate(zip(means.astype("<f4"), scenes, strict=True))
                ),
            )
        with Library(Path(tmp) / "bench.sqlite") as lib:
            t0 = time.perf_counter()
            index = lib.index("bench")
            dt = time.perf_counter() - t0
            assert len(index) == means.shape[0]
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--no-db", action="store_true", help="skip the SQLite load timing")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args()
    dim = TaggerSpec().hidden
    rows = [bench_size(n, dim, args.queries, args.k, not args.no_db) for n in args.sizes]
    print(
        f"Brute-force search, {dim}-d float32 embeddings, k={args.k}, one thread, "
        f"{args.queries} queries per size\n"
    )
    print("| tracks | matrix MB | query p50 ms | query p99 ms | BLAS `@` p50 ms | index load s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['tracks']:,} | {r['matrix_mb']:.1f} | {r['search_p50_ms']:.3f} | "
            f"{r['search_p99_ms']:.3f} | {r['matmul_p50_ms']:.3f} | {r['load_s']:.2f} |"
        )
    big = max(rows, key=lambda r: r["tracks"])
    per_track_ms = big["search_p50_ms"] / big["tracks"]
    limit = int(BUDGET_MS / per_track_ms)
    print(
        f"\nThe query is linear in the library size ({1e6 * per_track_ms:.1f} µs per 1,000 "
        f"tracks at {big['tracks']:,}). With a budget of {BUDGET_MS:.0f} ms per query on the "
        f"tagger's worker (every 1.5 s), brute force holds to about {limit:,} track means, or "
        f"{limit:,} windows for a window-level search (about {limit // 120:,} tracks of 3 min); "
        "beyond that an approximate index (IVF or HNSW) would be needed."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
