"""``onbeat library``: index reference tracks, list, remove and query them.

::

    onbeat library add DIR|FILE... [--scene NAME]...   # index (re-index when changed)
    onbeat library list
    onbeat library remove PATH|DIR|ID...
    onbeat library query FILE [-k N] [--scoring S]     # nearest tracks to a file
    onbeat library reindex                             # after the tagging model changed

Every action takes ``--db PATH`` (else ``library.db_path`` from ``--config``/``--set``, else
the user data folder, :func:`~onbeat.realtime.library.default_db_path`).

``query`` ranks tracks by :meth:`~onbeat.realtime.library.LibraryIndex.file_distances`: with
``window`` scoring (``library.scoring``, the default) a track's distance is ``1 -`` the mean,
over the file's windows, of the best cosine to any of the track's windows; with ``mean`` it is
``1 -`` the cosine between the file's and the track's mean embeddings.

Exit codes
    ``add``, ``remove`` and ``reindex`` report each file or item they cannot handle in one line
    on stderr, skip it and go on. They exit 0 when at least one item was handled (indexed,
    already up to date, relabelled or removed), and 2 with one error line when nothing could be
    done (every file corrupt, nothing found, nothing matched). ``query`` and ``list`` exit 2 on
    a bad query file or an unusable database. Ctrl-C during ``add`` keeps every file indexed so
    far (each file is one transaction) and exits 130.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onbeat.realtime.errors import AudioFileError, OnbeatError

if TYPE_CHECKING:
    from onbeat.realtime.config import OnbeatConfig
    from onbeat.realtime.library import Embedder, Library

__all__ = ["add_library_parser", "cmd_library"]


def add_library_parser(sub: Any) -> None:
    """Add ``library`` and its actions to the ``onbeat`` subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="PATH",
        help="library database (default: library.db_path, else the user data folder)",
    )
    from onbeat.realtime.cli import add_config_arguments

    add_config_arguments(common)
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log output")

    p = sub.add_parser(
        "library",
        help="reference tracks for live 'sounds like' and scene cues",
        description="Reference tracks for live 'sounds like' and scene cues. Files that cannot "
        "be read are reported and skipped; the exit code is 2 only when nothing could be done.",
    )
    actions = p.add_subparsers(dest="library_command", required=True, metavar="ACTION")
    a = actions.add_parser(
        "add", parents=[common], help="index audio files (directories recursively)"
    )
    a.add_argument("paths", nargs="+", metavar="DIR|FILE")
    a.add_argument(
        "--scene",
        action="append",
        metavar="NAME",
        help="scene label of these tracks (repeatable; replaces their labels)",
    )
    actions.add_parser("list", parents=[common], help="list the indexed tracks")
    r = actions.add_parser("remove", parents=[common], help="remove tracks")
    r.add_argument("items", nargs="+", metavar="PATH|DIR|ID")
    q = actions.add_parser("query", parents=[common], help="the nearest tracks to a file")
    q.add_argument("file", metavar="FILE")
    q.add_argument("-k", type=int, default=5, metavar="N", help="how many (default 5)")
    q.add_argument(
        "--scoring",
        choices=("window", "mean"),
        help="compare with each track's best window (mean over the file's windows) or with the "
        "track means (default: library.scoring, window)",
    )
    actions.add_parser(
        "reindex",
        parents=[common],
        help="re-index tracks whose file or embedding model changed",
    )


def cmd_library(args: argparse.Namespace) -> int:
    """Run one ``onbeat library`` action; returns the exit code."""
    from onbeat.realtime.config import apply_overrides, load_config, parse_override
    from onbeat.realtime.library import resolve_db_path

    config = load_config(args.config)
    config = apply_overrides(config, dict(parse_override(o) for o in args.overrides))
    db = resolve_db_path(args.db or config.library.db_path)
    action = {
        "add": _add,
        "list": _list,
        "remove": _remove,
        "query": _query,
        "reindex": _reindex,
    }[args.library_command]
    try:
        return action(args, config, db)
    except sqlite3.Error as exc:
        raise OnbeatError(f"library {db}: {exc}") from None


def _say(text: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"onbeat: {text}", file=sys.stderr)


def _embedder(config: OnbeatConfig) -> Embedder:
    from onbeat.realtime.library import Embedder

    return Embedder(gate_dbfs=config.tags.gate_dbfs)


def _index_files(
    lib: Library, embedder: Embedder, files: list[Path], scenes: list[str] | None
) -> Counter[str]:
    from tqdm import tqdm

    counts: Counter[str] = Counter()
    bar = tqdm(files, unit="file", desc="indexing", disable=None, file=sys.stderr, leave=False)
    for f in bar:
        bar.set_postfix_str(f.name[:40], refresh=False)
        try:
            r = lib.add_file(f, embedder, scenes=scenes)
        except AudioFileError as exc:
            _say(f"skipped: {exc}")
            counts["skipped"] += 1
            continue
        counts[r.status] += 1
    bar.close()
    return counts


def _summary(counts: Counter[str], lib: Library) -> str:
    order = ("added", "reindexed", "relabelled", "unchanged", "skipped")
    done = ", ".join(f"{counts[k]} {k}" for k in order if counts[k])
    return f"{done or 'nothing done'}; library {lib.path}: {lib.count()} track(s)"


def _add(args: argparse.Namespace, config: OnbeatConfig, db: Path) -> int:
    from onbeat.realtime.library import Library, find_audio_files

    files: list[Path] = []
    missing = 0
    for item in args.paths:
        try:
            found = find_audio_files([item])
        except AudioFileError as exc:
            _say(f"skipped: {exc}")
            missing += 1
            continue
        if not found:
            _say(f"skipped: no audio files in {item!r}")
            missing += 1
        files += [f for f in found if f not in files]
    if not files:
        raise OnbeatError("nothing to index: no audio files found")
    embedder = _embedder(config)
    with Library(db) as lib:
        counts = _index_files(lib, embedder, files, args.scene)
        counts["skipped"] += missing
        print(f"onbeat: {_summary(counts, lib)}", file=sys.stderr)
    if counts["skipped"] == sum(counts.values()):
        raise OnbeatError(f"nothing indexed: none of the {len(files)} file(s) could be read")
    return 0


def _reindex(args: argparse.Namespace, config: OnbeatConfig, db: Path) -> int:
    from onbeat.realtime.library import Library

    with Library(db, create=False) as lib:
        tracks = lib.tracks()
        if not tracks:
            print(f"onbeat: the library {db} is empty", file=sys.stderr)
            return 0
        embedder = _embedder(config)
        counts = _index_files(lib, embedder, [Path(t.path) for t in tracks], None)
        print(f"onbeat: {_summary(counts, lib)}", file=sys.stderr)
    if counts["skipped"] == len(tracks):
        raise OnbeatError("nothing re-indexed: none of the tracks' files could be read")
    return 0


def _current_model_id() -> str | None:
    """The id of the embedding new tracks get (the similarity head's, or the tagger's)."""
    from onbeat.models.registry import weights_path
    from onbeat.realtime.library import similarity_head

    path = weights_path("tags")
    return similarity_head(path)[1] if path.exists() else None


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _list(args: argparse.Namespace, config: OnbeatConfig, db: Path) -> int:
    from onbeat.realtime.library import Library

    if not db.exists():
        print(f"onbeat: no library at {db} (add tracks with `onbeat library add`)")
        return 0
    with Library(db, create=False) as lib:
        tracks = lib.tracks()
    model = _current_model_id()
    if not tracks:
        print(f"onbeat: the library {db} is empty")
        return 0
    title_w = min(40, max(5, *(len(t.title) for t in tracks)))
    scene_w = min(24, max(6, *(len(",".join(t.scenes)) for t in tracks)))
    print(
        f"{'id':>5}  {'length':>8}  {'windows':>7}  {'scenes':{scene_w}}  {'title':{title_w}}  path"
    )
    stale = 0
    for t in tracks:
        mark = ""
        if model is not None and t.model_id != model:
            mark, stale = " (other model: reindex)", stale + 1
        print(
            f"{t.id:>5}  {_minutes(t.duration_s):>8}  {t.n_windows:>7}  "
            f"{','.join(t.scenes)[:scene_w]:{scene_w}}  {t.title[:title_w]:{title_w}}  "
            f"{t.path}{mark}"
        )
    hours = sum(t.duration_s for t in tracks) / 3600
    windows = sum(t.n_windows for t in tracks)
    print(
        f"{len(tracks)} track(s), {hours:.2f} h, {windows} windows"
        + (f", {stale} indexed with another model" if stale else "")
        + f"; library {db}"
    )
    return 0


def _remove(args: argparse.Namespace, config: OnbeatConfig, db: Path) -> int:
    from onbeat.realtime.library import Library

    with Library(db, create=False) as lib:
        ids: set[int] = set()
        for item in args.items:
            found = lib.resolve(item)
            if not found:
                _say(f"no track matches {item!r}")
            ids.update(t.id for t in found)
        n = lib.remove(ids)
        print(
            f"onbeat: removed {n} track(s); library {db}: {lib.count()} track(s)", file=sys.stderr
        )
    if n == 0:
        raise OnbeatError("nothing removed")
    return 0


def _query(args: argparse.Namespace, config: OnbeatConfig, db: Path) -> int:
    from onbeat.realtime.library import Library

    if args.k < 1:
        raise OnbeatError(f"-k {args.k} must be at least 1")
    scoring = args.scoring or config.library.scoring
    with Library(db, create=False) as lib:
        embedder = _embedder(config)
        t_load = time.perf_counter()
        index = lib.index(embedder.model_id, scoring)
        t_load = time.perf_counter() - t_load
        if len(index) == 0:
            stale = lib.count()
            raise OnbeatError(
                f"the library {db} holds no tracks indexed with {embedder.model_id}"
                + (f" ({stale} with another model: run `onbeat library reindex`)" if stale else "")
            )
        t0 = time.perf_counter()
        emb = embedder.embed_file(args.file)
        t1 = time.perf_counter()
        hits = index.top(index.file_distances(emb.vectors), args.k)
        t2 = time.perf_counter()
        paths = {t.id: t.path for t in lib.tracks()}
    print(f"{'rank':>4}  {'distance':>8}  {'id':>5}  {'scenes':16}  title  (path)")
    for rank, (row, distance) in enumerate(hits, 1):
        tid = int(index.ids[row])
        print(
            f"{rank:>4}  {distance:8.4f}  {tid:>5}  {','.join(index.scenes[row])[:16]:16}  "
            f"{index.titles[row]}  ({paths.get(tid, '?')})"
        )
    print(
        f"onbeat: {emb.vectors.shape[0]} windows of {args.file} embedded in {t1 - t0:.2f} s; "
        f"{scoring} scoring over {len(index)} track(s) ({index.windows.shape[0]} windows, "
        f"{index.nbytes / 2**20:.1f} MiB, loaded in {t_load:.2f} s): {1e3 * (t2 - t1):.2f} ms",
        file=sys.stderr,
    )
    return 0
