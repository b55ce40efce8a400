"""The reference library: indexed tracks, nearest-track search and live scene cues.

Store
    :class:`Library` is a SQLite database (stdlib :mod:`sqlite3`, WAL journal) in the user data
    folder (:func:`default_db_path`: ``$XDG_DATA_HOME/onbeat/library.sqlite``, else
    ``~/.local/share/onbeat/library.sqlite``). Table ``tracks`` holds one row per file: path,
    title, content SHA-256, duration, scene labels, the embedding model's id, when it was added
    and indexed, the number of windows and the mean and standard deviation of its L2-normalised
    window embeddings (float32 blobs). Table ``windows`` holds every window's start and embedding,
    for later similarity evaluation. Each add or re-index is one transaction, so an interrupted or
    failing add leaves the database as it was before that file.

Embedding
    :class:`Embedder` computes, offline, exactly the embedding the live tagger publishes in
    :attr:`~onbeat.realtime.events.TagsEvent.embedding`: the file is decoded, mixed to mono,
    resampled to the tagger's rate, cut into ``window_s`` windows every :data:`WINDOW_HOP_S`
    (the live grid), and each window goes through :meth:`TaggerSpec.log_mel` and
    :meth:`TagCNN.embed` (in NumPy, :mod:`onbeat.models.tagger_np`, no torch; batched). When a
    similarity head trained on this tagger's trunk ships (``similarity.safetensors``,
    :func:`similarity_head`), the embedding is the head's output on the same trunk pass instead
    (trained for same-track retrieval under microphone degradation; ``onbeat eval similarity``).
    Windows below the tagger's gate are skipped, like live. The model's id (weights name and a
    hash of the weights file, :func:`weights_id`) is stored per track; tracks indexed by another
    model are not searched until they are re-indexed (``onbeat library reindex``), so the
    embedding function can be swapped.

Search
    :class:`LibraryIndex` holds, for one model, every stored window embedding as one contiguous
    float32 matrix sorted by track, with each track's first row (``library.scoring = "window"``,
    the default), and the unit-normalised track means. A query window's distance to a track is
    ``1 -`` its best cosine over that track's windows: one brute-force matrix-vector product
    (``einsum``, so no BLAS thread pool wakes up on the tagger's worker thread) and a per-track
    maximum (``np.maximum.reduceat``). Scoring against the best window instead of the track mean
    raised same-track recall@1 from 0.61 to 0.81 on degraded 3 s windows (``onbeat eval
    similarity``). ``scoring = "mean"`` compares with the track means only (``1 -`` cosine; the
    matrix is one row per track). Memory: 4 × dim bytes per window (128-d: 49 MiB per 100k
    windows, about 42 h of audio at one window per 1.5 s; 488 MiB per million); a query costs
    about one pass over that matrix (``benchmarks/bench_library.py``).

Live
    :class:`LibraryMatcher` runs on the tagger's worker thread (inline in ``replay --fast``),
    never on the analysis thread: each tags window's embedding is compared with the library, the
    ``k`` nearest tracks and the current scene go out as a
    :class:`~onbeat.realtime.events.SimilarEvent`. It reloads the index when another process
    changes the database. :class:`SceneTracker` is the scene-cue logic: the scene switches to X
    once the references labelled X have stayed the closest (by ``hysteresis`` over the current
    scene) for ``dwell_s``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from onbeat.realtime.clock import RateLimitedLog
from onbeat.realtime.errors import AudioFileError, ConfigError, OnbeatError
from onbeat.realtime.events import SimilarEvent

if TYPE_CHECKING:
    from onbeat.realtime.config import LibraryConfig, OnbeatConfig
    from onbeat.realtime.tags import Tagger

__all__ = [
    "AUDIO_EXTENSIONS",
    "SCHEMA_VERSION",
    "TRUNK_NAME",
    "WINDOW_HOP_S",
    "AddResult",
    "Embedder",
    "FileEmbedding",
    "Library",
    "LibraryIndex",
    "LibraryMatcher",
    "SceneTracker",
    "Track",
    "attach_library",
    "default_db_path",
    "file_sha256",
    "find_audio_files",
    "resolve_db_path",
    "same_weights",
    "similarity_head",
    "similarity_trunk_path",
    "weights_id",
]

log = logging.getLogger(__name__)

#: Stream seconds between the starts of two indexed windows (the live tagger's default hop).
WINDOW_HOP_S = 1.5
#: Version of the database layout this code writes.
SCHEMA_VERSION = 1
#: File name endings that a directory walk picks up (explicit files are tried whatever they end in).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc", ".w64", ".caf"}
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tracks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    duration_s REAL NOT NULL,
    scenes TEXT NOT NULL DEFAULT '[]',
    model_id TEXT NOT NULL,
    added_s REAL NOT NULL,
    indexed_s REAL NOT NULL,
    n_windows INTEGER NOT NULL,
    mean BLOB NOT NULL,
    std BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    track_id INTEGER NOT NULL REFERENCES tracks(id) ON DELETE CASCADE,
    start_s REAL NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (track_id, start_s)
);
CREATE INDEX IF NOT EXISTS tracks_model ON tracks(model_id);
"""


# ---------------------------------------------------------------------------------- helpers
def default_db_path() -> Path:
    """``$XDG_DATA_HOME/onbeat/library.sqlite`` (an absolute ``XDG_DATA_HOME`` only), else
    ``~/.local/share/onbeat/library.sqlite``."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return root / "onbeat" / "library.sqlite"


def resolve_db_path(db_path: str | os.PathLike[str] | None) -> Path:
    """The database path: ``db_path`` (``~`` expanded) or :func:`default_db_path`."""
    if db_path is None or str(db_path) == "":
        return default_db_path()
    return Path(db_path).expanduser()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def weights_id(path: str | os.PathLike[str]) -> str:
    """The id of an embedding model: its weights file stem and the first 16 hex digits of the
    file's SHA-256 (``tags:0123456789abcdef``). Any retraining changes it."""
    p = Path(path)
    return f"{p.stem}:{file_sha256(p)[:16]}"


#: Stem of a similarity head's own trunk (a frozen tagger) beside ``similarity.safetensors``.
TRUNK_NAME = "similarity_trunk"


def same_weights(a: str, b: str) -> bool:
    """Whether two :func:`weights_id` values name the same weights file content (the hash part;
    the stem differs for a copy, e.g. ``tags:…`` and ``similarity_trunk:…``)."""
    return a.rpartition(":")[2] == b.rpartition(":")[2]


def similarity_trunk_path(
    tagger_path: str | os.PathLike[str], head_path: str | os.PathLike[str]
) -> Path | None:
    """The weights file whose trunk the head ``head_path`` reads, or None when neither fits.

    The tagger itself when the head was trained on its trunk (its spec's ``trunk_id`` names the
    tagger's weights: one trunk pass serves tags and embedding); else the head's own trunk,
    ``similarity_trunk.safetensors`` beside it, when that is the trunk the head was trained on
    and reads the same log-mel as the tagger.
    """
    from onbeat.models.tagger_np import SimilaritySpec, TaggerSpec

    tagger, head = Path(tagger_path), Path(head_path)
    trunk_id = SimilaritySpec.from_json(
        json.loads(head.with_suffix(".json").read_text())["spec"]
    ).trunk_id
    if same_weights(trunk_id, weights_id(tagger)):
        return tagger
    own = head.with_name(f"{TRUNK_NAME}.safetensors")
    if not (own.exists() and own.with_suffix(".json").exists()):
        return None
    if not same_weights(trunk_id, weights_id(own)):
        return None

    def key(p: Path) -> tuple[object, ...]:
        spec = json.loads(p.with_suffix(".json").read_text())["spec"]
        return TaggerSpec.from_json(spec).input_key

    return own if key(own) == key(tagger) else None


def similarity_head(
    tagger_path: str | os.PathLike[str], head_path: str | os.PathLike[str] | None = None
) -> tuple[Any | None, str]:
    """The similarity model for a tagger, and the id of the embedding the library then stores.

    The head (``head_path``, else ``similarity.safetensors`` beside the tagger's weights: a
    weights folder is one set, so an ``ONBEAT_MODELS`` folder with a new tagger and no head
    gets the tagger's own embedding) is used when :func:`similarity_trunk_path` finds the trunk
    it was trained on: the tagger's own (one trunk pass per window) or its own frozen copy beside it
    (``similarity_trunk.safetensors``; a second trunk pass on the same log-mel). The model id is
    then the head's :func:`weights_id` (``similarity:<hash>``; the head's spec pins its trunk).
    Otherwise the embedding is the tagger's hidden layer and the id the tagger's
    (``tags:<hash>``).

    Returns
    -------
    model : NumpySimilarity or None
        Head and trunk for NumPy inference (:mod:`onbeat.models.tagger_np`).
    model_id : str
    """
    from onbeat.models.tagger_np import NumpySimilarity, load_head_np, load_tagger_np

    tagger = Path(tagger_path)
    tagger_id = weights_id(tagger)
    beside = tagger.with_name("similarity.safetensors")
    p = Path(head_path) if head_path is not None else beside
    if not p.exists() or not p.with_suffix(".json").exists():
        return None, tagger_id
    trunk = similarity_trunk_path(tagger, p)
    head, _ = load_head_np(p)
    if trunk is None:
        level = logging.WARNING if p == beside else logging.DEBUG
        log.log(
            level,
            "similarity head %s was trained on %s, which is neither %s nor a %s beside it: "
            "using the tagger's embedding",
            p,
            head.spec.trunk_id,
            tagger_id,
            TRUNK_NAME,
        )
        return None, tagger_id
    own = None if trunk == tagger else load_tagger_np(trunk)[0]
    return NumpySimilarity(head, own), weights_id(p)


def find_audio_files(items: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to index: each FILE as given, each DIR walked recursively for audio files.

    Directory entries are filtered by :data:`AUDIO_EXTENSIONS` (case-insensitive); hidden files
    and folders are skipped. The result is sorted within each directory and free of duplicates.

    Raises
    ------
    AudioFileError
        For an item that does not exist.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        p = Path(item).expanduser()
        if not p.exists():
            raise AudioFileError(f"{str(p)!r} does not exist")
        if p.is_dir():
            found = [
                f
                for f in sorted(p.rglob("*"))
                if f.is_file()
                and f.suffix.lower() in AUDIO_EXTENSIONS
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
        else:
            found = [p]
        for f in found:
            r = f.resolve()
            if r not in seen:
                seen.add(r)
                out.append(r)
    return out


def _blob(x: npt.ArrayLike) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def _vec(blob: bytes) -> npt.NDArray[np.float32]:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


def _unit_rows(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    n = np.sqrt(np.einsum("ij,ij->i", x, x))
    out: npt.NDArray[np.float32] = (x / np.maximum(n, 1e-12)[:, None]).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------- embedding
@dataclass(frozen=True, slots=True, eq=False)
class FileEmbedding:
    """The window embeddings of one audio file.

    Attributes
    ----------
    title : str
        ``artist - title`` from the file's tags when it has them, else the file name stem.
    duration_s : float
        Length of the decoded audio.
    starts_s : ndarray of float64, shape (windows,)
        Start of each kept window in the file.
    vectors : ndarray of float32, shape (windows, dim)
        L2-normalised embeddings.
    gated : int
        Windows skipped as silence (below the tagger's gate).
    """

    title: str
    duration_s: float
    starts_s: npt.NDArray[np.float64]
    vectors: npt.NDArray[np.float32]
    gated: int

    @property
    def mean(self) -> npt.NDArray[np.float32]:
        """Mean of the window embeddings (not re-normalised)."""
        out: npt.NDArray[np.float32] = self.vectors.mean(axis=0).astype(np.float32)
        return out

    @property
    def std(self) -> npt.NDArray[np.float32]:
        """Per-dimension standard deviation of the window embeddings."""
        out: npt.NDArray[np.float32] = self.vectors.std(axis=0).astype(np.float32)
        return out


def _title(path: Path) -> str:
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            title = (getattr(f, "title", "") or "").strip()
            artist = (getattr(f, "artist", "") or "").strip()
    except Exception:
        return path.stem
    if title:
        return f"{artist} - {title}" if artist else title
    return path.stem


class Embedder:
    """Offline window embeddings of audio with the tagging CNN: the live tagger's embedding.

    Parameters
    ----------
    weights : path, optional
        A ``tags.safetensors`` file (default: the shipped one; ``ONBEAT_MODELS`` overrides).
    head : path, optional
        A ``similarity.safetensors`` head; see :func:`similarity_head` for which is used.
    gate_dbfs : float
        Windows whose RMS level is below this are skipped (the live tagger's ``tags.gate_dbfs``).
    batch : int
        Windows per forward pass.

    Raises
    ------
    OnbeatError
        When no tagging model exists.
    """

    def __init__(
        self,
        weights: Path | None = None,
        *,
        head: Path | None = None,
        gate_dbfs: float = -50.0,
        batch: int = 32,
    ) -> None:
        from onbeat.models.registry import weights_path
        from onbeat.models.tagger_np import load_tagger_np

        path = Path(weights) if weights is not None else weights_path("tags")
        if not path.exists():
            raise OnbeatError(f"no tagging model at {path}: the library embeds with the tags model")
        self.net, _ = load_tagger_np(path)
        self.spec = self.net.spec
        self.head, self.model_id = similarity_head(path, head)
        self.dim = int(self.head.spec.dim if self.head is not None else self.spec.hidden)
        self.gate_dbfs = float(gate_dbfs)
        self.batch = max(1, int(batch))
        self.window_n = self.spec.window_samples
        self.hop_n = round(WINDOW_HOP_S * self.spec.sample_rate_hz)
        self._fb = self.spec.filterbank()

    # ------------------------------------------------------------------ windows
    def _file_windows(
        self, path: Path, total: list[int]
    ) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
        """``(start sample, window)`` of the file at the tagger's rate, every hop.

        The file is decoded block by block, mixed to mono and resampled as a stream, so a long
        DJ mix is never held in memory whole. A file shorter than one window gives one window,
        zero-padded. ``total[0]`` ends up as the number of samples at the tagger's rate.
        """
        import soxr
        from onbeat.realtime.sources import FileSource

        src = FileSource(path)
        rate = self.spec.sample_rate_hz
        resampler = None
        if src.sample_rate_hz != rate:
            resampler = soxr.ResampleStream(src.sample_rate_hz, rate, 1, "float32", quality="HQ")
        pending = np.zeros(0, np.float32)
        start = 0  # sample index of pending[0]
        emitted = False
        blocks = src.blocks(65536)
        while True:
            block = next(blocks, None)
            if block is None:
                y = np.zeros(0, np.float32)
                if resampler is not None:
                    y = resampler.resample_chunk(y, last=True)
            else:
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                mono = np.nan_to_num(mono, nan=0.0, posinf=1.0, neginf=-1.0)  # a copy
                y = resampler.resample_chunk(mono) if resampler is not None else mono
            y = np.asarray(y, np.float32).reshape(-1)
            total[0] += y.shape[0]
            pending = np.concatenate([pending, y]) if pending.size else y
            while pending.shape[0] >= self.window_n:
                yield start, pending[: self.window_n].copy()
                emitted = True
                pending = pending[self.hop_n :]
                start += self.hop_n
            if block is None:
                break
        if not emitted and total[0] > 0:
            window = np.zeros(self.window_n, np.float32)
            window[: pending.shape[0]] = pending
            yield 0, window

    def _gated(self, x: npt.NDArray[np.float32]) -> bool:
        rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
        return 20.0 * math.log10(max(rms, 1e-7)) < self.gate_dbfs

    def embed_windows(self, windows: Sequence[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
        """L2-normalised embeddings of mono windows at the tagger's rate, shape ``(n, dim)``."""
        out = np.zeros((len(windows), self.dim), np.float32)
        for i in range(0, len(windows), self.batch):
            mel = np.stack([self.spec.log_mel(w, self._fb) for w in windows[i : i + self.batch]])
            if self.head is not None:
                shared = self.net.trunk_map(mel) if self.head.shares_trunk else None
                h = self.head.embed(mel, shared)
            else:
                h = self.net.embed(mel)
                h = h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-9)
            out[i : i + h.shape[0]] = h
        return out

    def embed_file(self, path: str | os.PathLike[str]) -> FileEmbedding:
        """Decode ``path`` and embed its windows.

        Raises
        ------
        AudioFileError
            When the file is missing, unreadable or corrupt, or holds only silence.
        """
        p = Path(path)
        starts: list[int] = []
        vectors: list[npt.NDArray[np.float32]] = []
        batch: list[npt.NDArray[np.float32]] = []
        gated = 0
        total = [0]
        windows = self._file_windows(p, total)
        while True:
            try:
                item = next(windows, None)
            except AudioFileError:
                raise
            except (RuntimeError, ValueError, OSError, MemoryError) as exc:
                # libsndfile and soxr report corrupt data in several ways
                reason = str(exc).split("\n")[0].strip() or type(exc).__name__
                raise AudioFileError(f"cannot decode {str(p)!r}: {reason}") from None
            if item is None:
                break
            start, w = item
            if self._gated(w):
                gated += 1
                continue
            starts.append(start)
            batch.append(w)
            if len(batch) == self.batch:
                vectors.append(self.embed_windows(batch))
                batch = []
        if batch:
            vectors.append(self.embed_windows(batch))
        if not starts:
            raise AudioFileError(
                f"{str(p)!r} holds only silence (every window below {self.gate_dbfs} dBFS)"
            )
        rate = self.spec.sample_rate_hz
        return FileEmbedding(
            title=_title(p),
            duration_s=total[0] / rate,
            starts_s=np.asarray(starts, np.float64) / rate,
            vectors=np.concatenate(vectors),
            gated=gated,
        )


# ---------------------------------------------------------------------------------- the store
@dataclass(frozen=True, slots=True, eq=False)
class Track:
    """One indexed file.

    Attributes
    ----------
    id : int
        Row id (stable across re-indexing).
    path : str
        Absolute path when indexed.
    title : str
        Display title.
    sha256 : str
        Content hash when indexed.
    duration_s : float
        Decoded length.
    scenes : tuple of str
        Scene labels.
    model_id : str
        Embedding model (:func:`weights_id`).
    added_s, indexed_s : float
        Unix times of the first add and the last indexing.
    n_windows : int
        Windows stored.
    mean, std : ndarray of float32
        Statistics of the L2-normalised window embeddings.
    """

    id: int
    path: str
    title: str
    sha256: str
    duration_s: float
    scenes: tuple[str, ...]
    model_id: str
    added_s: float
    indexed_s: float
    n_windows: int
    mean: npt.NDArray[np.float32]
    std: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`Library.add_file` did.

    Attributes
    ----------
    status : str
        ``"added"``, ``"reindexed"`` (content or model changed), ``"relabelled"`` (unchanged
        audio, new scene labels) or ``"unchanged"`` (nothing to do).
    track_id : int
        The track's row id.
    n_windows : int
        Windows stored for it.
    """

    status: str
    track_id: int
    n_windows: int


_TRACK_COLUMNS = (
    "id, path, title, sha256, duration_s, scenes, model_id, added_s, indexed_s, n_windows,"
    " mean, std"
)


def _track(row: Sequence[Any]) -> Track:
    return Track(
        id=int(row[0]),
        path=str(row[1]),
        title=str(row[2]),
        sha256=str(row[3]),
        duration_s=float(row[4]),
        scenes=tuple(json.loads(row[5])),
        model_id=str(row[6]),
        added_s=float(row[7]),
        indexed_s=float(row[8]),
        n_windows=int(row[9]),
        mean=_vec(row[10]),
        std=_vec(row[11]),
    )


class Library:
    """The reference-track database.

    Parameters
    ----------
    path : path
        The SQLite file.
    create : bool
        Create the file (and its folder) when missing; otherwise a missing file is an error.
    timeout_s : float
        How long to wait for another process's write to finish.

    Raises
    ------
    OnbeatError
        When the file is missing (``create=False``), is not an onbeat library, or cannot be
        opened.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, timeout_s: float = 10.0
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise OnbeatError(
                    f"no library at {self.path} (add tracks with `onbeat library add`)"
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OnbeatError(f"cannot create the library folder: {exc}") from None
        try:
            # autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT)
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise OnbeatError(f"cannot open the library {self.path}: {exc}") from None
        self._generation = 0  # bumped by this connection's own commits
        self._index: LibraryIndex | None = None
        self._index_key: tuple[int, int] | None = None
        try:
            db = self._db
            db.execute("PRAGMA foreign_keys = ON")
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "meta" not in tables:
                raise OnbeatError(f"{self.path} is a database, but not an onbeat library")
            db.execute("PRAGMA journal_mode = WAL")
            if "meta" not in tables:  # a new library
                with self.transaction():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                    db.execute(
                        "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or int(row[0]) > SCHEMA_VERSION:
                raise OnbeatError(
                    f"the library {self.path} was written by a newer onbeat "
                    f"(layout {None if row is None else row[0]}, this one reads {SCHEMA_VERSION})"
                )
        except sqlite3.Error as exc:
            self._db.close()
            raise OnbeatError(f"{self.path} is not a usable onbeat library: {exc}") from None
        except OnbeatError:
            self._db.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any exception
        (``KeyboardInterrupt`` included)."""
        db = self._db
        if db.in_transaction:
            raise RuntimeError("nested library transaction")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self._generation += 1

    # ------------------------------------------------------------------ reading
    def tracks(self) -> list[Track]:
        """Every track, by id."""
        rows = self._db.execute(f"SELECT {_TRACK_COLUMNS} FROM tracks ORDER BY id").fetchall()
        return [_track(r) for r in rows]

    def track(self, track_id: int) -> Track | None:
        """The track with this id, or None."""
        row = self._db.execute(
            f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE id = ?", (int(track_id),)
        ).fetchone()
        return _track(row) if row is not None else None

    def find(self, path: str | os.PathLike[str]) -> Track | None:
        """The track indexed from ``path`` (resolved), or None."""
        row = self._db.execute(
            f"SELECT {_TRACK_COLUMNS} FROM tracks WHERE path = ?", (str(Path(path).resolve()),)
        ).fetchone()
        return _track(row) if row is not None else None

    def count(self, model_id: str | None = None) -> int:
        """Tracks in the library (of one model when ``model_id`` is given)."""
        if model_id is None:
            row = self._db.execute("SELECT COUNT(*) FROM tracks").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM tracks WHERE model_id = ?", (model_id,)
            ).fetchone()
        return int(row[0])

    def window_embeddings(
        self, track_id: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """Start times and L2-normalised embeddings of one track's windows, in time order."""
        rows = self._db.execute(
            "SELECT start_s, embedding FROM windows WHERE track_id = ? ORDER BY start_s",
            (int(track_id),),
        ).fetchall()
        starts = np.asarray([r[0] for r in rows], np.float64)
        if not rows:
            return starts, np.zeros((0, 0), np.float32)
        return starts, np.stack([_vec(r[1]) for r in rows])

    def check(self) -> list[str]:
        """Consistency problems (empty when consistent): SQLite's integrity and foreign-key
        checks, and every track's ``n_windows`` against its stored windows."""
        db = self._db
        problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"orphan row in {r[0]}" for r in db.execute("PRAGMA foreign_key_check")]
        for tid, n, got in db.execute(
            "SELECT t.id, t.n_windows, (SELECT COUNT(*) FROM windows w WHERE w.track_id = t.id)"
            " FROM tracks t"
        ):
            if n != got:
                problems.append(f"track {tid}: n_windows {n} but {got} windows stored")
        return problems

    # ------------------------------------------------------------------ writing
    def add_file(
        self,
        path: str | os.PathLike[str],
        embedder: Embedder,
        *,
        scenes: Sequence[str] | None = None,
    ) -> AddResult:
        """Index one file, or re-index it when its content or the model changed.

        Parameters
        ----------
        path : path
            The audio file.
        embedder : Embedder
            The embedding model.
        scenes : sequence of str, optional
            Scene labels to set; None keeps a re-added track's labels (none for a new one).

        Returns
        -------
        AddResult

        Raises
        ------
        AudioFileError
            When the file is missing, unreadable, corrupt or silent; the database is unchanged.
        """
        p = Path(path).expanduser().resolve()
        if not p.is_file():
            raise AudioFileError(f"{str(p)!r} is not a file")
        try:
            sha = file_sha256(p)
        except OSError as exc:
            raise AudioFileError(f"cannot read {str(p)!r}: {exc.strerror}") from None
        labels = None if scenes is None else tuple(dict.fromkeys(s for s in scenes if s))
        old = self.find(p)
        if old is not None and old.sha256 == sha and old.model_id == embedder.model_id:
            if labels is None or labels == old.scenes:
                return AddResult("unchanged", old.id, old.n_windows)
            with self.transaction() as db:
                db.execute(
                    "UPDATE tracks SET scenes = ? WHERE id = ?", (json.dumps(list(labels)), old.id)
                )
            return AddResult("relabelled", old.id, old.n_windows)
        emb = embedder.embed_file(p)  # before the transaction: a failure here writes nothing
        if labels is None:
            labels = old.scenes if old is not None else ()
        now = time.time()
        values = (
            emb.title,
            sha,
            emb.duration_s,
            json.dumps(list(labels)),
            embedder.model_id,
            now,
            int(emb.vectors.shape[0]),
            _blob(emb.mean),
            _blob(emb.std),
        )
        with self.transaction() as db:
            if old is None:
                cur = db.execute(
                    "INSERT INTO tracks(title, sha256, duration_s, scenes, model_id, indexed_s,"
                    " n_windows, mean, std, path, added_s)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, str(p), now),
                )
                assert cur.lastrowid is not None
                track_id = int(cur.lastrowid)
            else:
                track_id = old.id
                db.execute("DELETE FROM windows WHERE track_id = ?", (track_id,))
                db.execute(
                    "UPDATE tracks SET title = ?, sha256 = ?, duration_s = ?, scenes = ?,"
                    " model_id = ?, indexed_s = ?, n_windows = ?, mean = ?, std = ? WHERE id = ?",
                    (*values, track_id),
                )
            self._insert_windows(db, track_id, emb.starts_s, emb.vectors)
        return AddResult("added" if old is None else "reindexed", track_id, emb.vectors.shape[0])

    def _insert_windows(
        self,
        db: sqlite3.Connection,
        track_id: int,
        starts_s: npt.NDArray[np.float64],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        db.executemany(
            "INSERT INTO windows(track_id, start_s, embedding) VALUES (?, ?, ?)",
            ((track_id, float(s), _blob(v)) for s, v in zip(starts_s, vectors, strict=True)),
        )

    def remove(self, track_ids: Iterable[int]) -> int:
        """Delete tracks (and their windows) by id, in one transaction; returns how many."""
        ids = sorted({int(i) for i in track_ids})
        if not ids:
            return 0
        with self.transaction() as db:
            n = 0
            for i in ids:
                n += db.execute("DELETE FROM tracks WHERE id = ?", (i,)).rowcount
        return n

    def resolve(self, item: str) -> list[Track]:
        """Tracks named by ``item``: an indexed file's path, a folder (every track under it), or
        a track id."""
        p = Path(item).expanduser().resolve()
        t = self.find(p)
        if t is not None:
            return [t]
        under = [x for x in self.tracks() if Path(x.path).is_relative_to(p) and Path(x.path) != p]
        if under:
            return under
        if item.strip().isdigit():
            t = self.track(int(item))
            if t is not None:
                return [t]
        return []

    # ------------------------------------------------------------------ search
    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def index(self, model_id: str, scoring: str = "window") -> LibraryIndex:
        """The search index of the tracks embedded by ``model_id``, rebuilt only when the
        database changed (here or in another process) since the last call.

        Parameters
        ----------
        model_id : str
            The embedding model.
        scoring : {"window", "mean"}
            ``window`` loads every stored window (best-window scoring), ``mean`` only the
            track means; see :class:`LibraryIndex`.
        """
        if scoring not in ("window", "mean"):
            raise ValueError(f"scoring {scoring!r} must be 'window' or 'mean'")
        key = (self._data_version(), self._generation)
        cached = self._index
        if (
            cached is None
            or self._index_key != key
            or cached.model_id != model_id
            or cached.scoring != scoring
        ):
            db = self._db
            own = not db.in_transaction
            if own:
                db.execute("BEGIN")  # one snapshot for the tracks and their windows
            try:
                rows = db.execute(
                    "SELECT id, title, scenes, mean FROM tracks WHERE model_id = ? ORDER BY id",
                    (model_id,),
                ).fetchall()
                means = [_vec(r[3]) for r in rows]
                windows: npt.NDArray[np.float32] | None = None
                rows_of: npt.NDArray[np.int64] | None = None
                if scoring == "window" and rows:
                    windows, rows_of = self._load_windows(model_id, len(means[0]))
            finally:
                if own:
                    db.execute("COMMIT")
            ids = np.asarray([int(r[0]) for r in rows], np.int64)
            track_rows = None if rows_of is None else np.searchsorted(ids, rows_of)
            self._index = LibraryIndex.from_arrays(
                model_id,
                ids,
                [str(r[1]) for r in rows],
                [tuple(json.loads(r[2])) for r in rows],
                np.stack(means) if means else np.zeros((0, 0), np.float32),
                windows,
                track_rows,
            )
            self._index_key = key
            return self._index
        return cached

    def _load_windows(
        self, model_id: str, dim: int
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Every window embedding of ``model_id``'s tracks, ordered by track id then start, as
        one preallocated ``(windows, dim)`` matrix (filled in chunks, so the blobs are never all
        held as Python objects), and each window's track id."""
        db = self._db
        join = "FROM windows w JOIN tracks t ON t.id = w.track_id WHERE t.model_id = ?"
        total = int(db.execute(f"SELECT COUNT(*) {join}", (model_id,)).fetchone()[0])
        mat = np.empty((total, dim), np.float32)
        tids = np.empty(total, np.int64)
        cur = db.execute(
            f"SELECT w.track_id, w.embedding {join} ORDER BY w.track_id, w.start_s", (model_id,)
        )
        i = 0
        while chunk := cur.fetchmany(8192):
            n = min(len(chunk), total - i)
            tids[i : i + n] = [r[0] for r in chunk[:n]]
            blob = b"".join(r[1] for r in chunk[:n])
            mat[i : i + n] = np.frombuffer(blob, dtype="<f4").reshape(n, dim)
            i += n
        return mat[:i], tids[:i]

    def changed(self) -> bool:
        """Whether the database changed since :meth:`index` was last built."""
        return self._index_key != (self._data_version(), self._generation)


@dataclass(frozen=True, slots=True, eq=False)
class LibraryIndex:
    """Brute-force cosine search over tracks: best window (default) or track mean.

    With ``scoring == "window"`` the distance of a query to a track is ``1 - max cos`` over
    the track's window embeddings: one ``einsum`` matrix-vector product over :attr:`windows`
    and a per-track ``np.maximum.reduceat`` at :attr:`window_starts` (no per-track Python loop).
    With ``scoring == "mean"`` it is ``1 - cos`` to the track's mean embedding.

    Attributes
    ----------
    model_id : str
        The embedding model of every row.
    ids : ndarray of int64, shape (n,)
        Track ids.
    titles : tuple of str
        Track titles.
    scenes : tuple of tuple of str
        Scene labels per track.
    matrix : ndarray of float32, shape (n, dim)
        Unit-normalised track means.
    scene_names : tuple of str
        Every scene label, sorted.
    scene_rows : tuple of ndarray of intp
        For each scene name, the rows labelled with it.
    windows : ndarray of float32, shape (windows, dim)
        Unit-normalised window embeddings, C-contiguous, sorted by track row (empty, 0 rows,
        with ``scoring == "mean"``). A track stored without windows gets its mean as its one
        window.
    window_starts : ndarray of intp, shape (n,)
        Row in :attr:`windows` of each track's first window (increasing; track ``r`` owns rows
        ``window_starts[r]`` up to ``window_starts[r + 1]``).
    scoring : {"window", "mean"}
        What :meth:`distances` compares with.
    """

    model_id: str
    ids: npt.NDArray[np.int64]
    titles: tuple[str, ...]
    scenes: tuple[tuple[str, ...], ...]
    matrix: npt.NDArray[np.float32]
    scene_names: tuple[str, ...] = ()
    scene_rows: tuple[npt.NDArray[np.intp], ...] = field(default=())
    windows: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    window_starts: npt.NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp))
    scoring: str = "mean"

    @classmethod
    def build(
        cls,
        model_id: str,
        ids: Sequence[int],
        titles: Sequence[str],
        scenes: Sequence[tuple[str, ...]],
        means: Sequence[npt.ArrayLike],
        windows: Sequence[npt.ArrayLike] | None = None,
    ) -> LibraryIndex:
        """An index of tracks from their ids, titles, scene labels, mean embeddings and,
        optionally, window embeddings.

        Parameters
        ----------
        model_id : str
            The embedding model.
        ids, titles, scenes, means : sequences, one item per track
            Track ids, titles, scene labels and mean embeddings.
        windows : sequence of array_like of shape (windows_i, dim), optional
            Each track's window embeddings: best-window scoring. None: track-mean scoring.
        """
        m = (
            np.stack([np.asarray(x, np.float32).reshape(-1) for x in means])
            if len(means)
            else np.zeros((0, 0), np.float32)
        )
        w = rows = None
        if windows is not None:
            if len(windows) != len(means):
                raise ValueError(f"{len(windows)} window sets for {len(means)} tracks")
            dim = m.shape[1] if len(means) else 0
            parts = [np.asarray(x, np.float32).reshape(-1, dim) for x in windows]
            w = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
            rows = np.repeat(np.arange(len(parts)), [p.shape[0] for p in parts])
        return cls.from_arrays(model_id, np.asarray(ids, np.int64), titles, scenes, m, w, rows)

    @classmethod
    def from_arrays(
        cls,
        model_id: str,
        ids: npt.NDArray[np.int64],
        titles: Sequence[str],
        scenes: Sequence[tuple[str, ...]],
        means: npt.NDArray[np.float32],
        windows: npt.NDArray[np.float32] | None = None,
        window_rows: npt.ArrayLike | None = None,
    ) -> LibraryIndex:
        """An index from arrays: ``means`` ``(n, dim)``; ``windows`` ``(w, dim)`` with the track
        row of each in ``window_rows`` (None: track-mean scoring).

        ``windows`` is normalised in place (and reordered by track when it is not already), so
        pass an array the index may own.
        """
        n = int(ids.shape[0])
        m = _unit_rows(np.asarray(means, np.float32)) if n else np.zeros((0, 0), np.float32)
        names = tuple(sorted({s for labels in scenes for s in labels}))
        scene_rows = tuple(
            np.asarray([i for i, labels in enumerate(scenes) if s in labels], np.intp)
            for s in names
        )
        scoring = "mean"
        w = np.zeros((0, m.shape[1]), np.float32)
        starts = np.zeros(0, np.intp)
        if windows is not None:
            scoring = "window"
            rows = np.asarray(window_rows, np.intp).reshape(-1)
            w = np.asarray(windows, np.float32)
            if w.shape[0] != rows.shape[0]:
                raise ValueError(f"{w.shape[0]} windows but {rows.shape[0]} track rows")
            if n and w.shape[0] and w.shape[1] != m.shape[1]:
                raise ValueError(f"windows have {w.shape[1]} dimensions, means {m.shape[1]}")
            counts = np.bincount(rows, minlength=n)[:n] if rows.size else np.zeros(n, np.intp)
            empty = np.flatnonzero(counts == 0)
            if empty.size:  # a track without windows competes with its mean
                w = np.concatenate([w.reshape(-1, m.shape[1]), m[empty]])
                rows = np.concatenate([rows, empty])
                counts[empty] = 1
            if rows.size > 1 and bool(np.any(rows[1:] < rows[:-1])):
                order = np.argsort(rows, kind="stable")
                w, rows = w[order], rows[order]
            w = np.ascontiguousarray(w, np.float32)
            norms = np.sqrt(np.einsum("ij,ij->i", w, w))
            w /= np.maximum(norms, 1e-12)[:, None]
            starts = np.zeros(n, np.intp)
            if n > 1:
                starts[1:] = np.cumsum(counts[:-1])
        return cls(
            model_id,
            ids,
            tuple(titles),
            tuple(scenes),
            np.ascontiguousarray(m),
            names,
            scene_rows,
            w,
            starts,
            scoring,
        )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the search matrices."""
        return int(self.matrix.nbytes + self.windows.nbytes + self.window_starts.nbytes)

    def _check_dim(self, dim: int) -> None:
        if dim != self.matrix.shape[1]:
            raise ValueError(
                f"query has {dim} dimensions, the library's {self.model_id} embeddings "
                f"have {self.matrix.shape[1]}"
            )

    def distances(self, query: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Cosine distance of one query embedding to every track, shape ``(n,)``: ``1 -`` the
        best cosine over the track's windows (``scoring == "window"``) or ``1 -`` the cosine to
        its mean.

        Real-time safety: one pass over the matrix, no BLAS (``einsum``), no per-track loop.

        Raises
        ------
        ValueError
            When the query's dimension differs from the index's.
        """
        q = np.asarray(query, np.float32).reshape(-1)
        if len(self) == 0:
            return np.zeros(0, np.float32)
        self._check_dim(q.shape[0])
        q = q / max(float(np.sqrt(q @ q)), 1e-12)
        # einsum, not matmul: it never wakes the BLAS thread pool on the tagger's thread
        if self.scoring == "window":
            cos = np.maximum.reduceat(np.einsum("ij,j->i", self.windows, q), self.window_starts)
        else:
            cos = np.einsum("ij,j->i", self.matrix, q)
        out: npt.NDArray[np.float32] = (1.0 - cos).astype(np.float32, copy=False)
        return out

    def file_distances(
        self, vectors: npt.ArrayLike, *, chunk_values: int = 1 << 24
    ) -> npt.NDArray[np.float32]:
        """Distance of a whole file, given its window embeddings ``(m, dim)``, to every track.

        ``scoring == "window"``: ``1 -`` the mean over the file's windows of each track's
        best-window cosine (every part of the file must find a close part of the track). ``mean``:
        ``1 -`` the cosine of the file's mean embedding to the track's mean. Uses BLAS (an
        offline call, not for the tagger's thread); the file's windows go through in chunks so
        at most ``chunk_values`` similarities are held at once.

        Raises
        ------
        ValueError
            When the dimension differs from the index's, or ``vectors`` is empty.
        """
        v = np.asarray(vectors, np.float32)
        v = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(1, -1)
        if v.shape[0] == 0:
            raise ValueError("no window embeddings to query with")
        if len(self) == 0:
            return np.zeros(0, np.float32)
        self._check_dim(v.shape[1])
        if self.scoring != "window":
            return self.distances(v.mean(axis=0))
        v = _unit_rows(v)
        step = max(1, chunk_values // max(1, self.windows.shape[0]))
        total = np.zeros(len(self), np.float64)
        for i in range(0, v.shape[0], step):
            sims = self.windows @ v[i : i + step].T  # (windows, chunk)
            total += np.maximum.reduceat(sims, self.window_starts, axis=0).sum(axis=1)
        out: npt.NDArray[np.float32] = (1.0 - total / v.shape[0]).astype(np.float32)
        return out

    def nearest(self, query: npt.ArrayLike, k: int) -> list[tuple[int, float]]:
        """The ``k`` nearest tracks as ``(row, distance)``, nearest first."""
        return self.top(self.distances(query), k)

    @staticmethod
    def top(d: npt.NDArray[np.float32], k: int) -> list[tuple[int, float]]:
        """Rows of the ``k`` smallest distances in ``d``, smallest first."""
        n = d.shape[0]
        k = min(int(k), n)
        if k <= 0:
            return []
        rows = np.argpartition(d, k - 1)[:k] if k < n else np.arange(n)
        rows = rows[np.argsort(d[rows], kind="stable")]
        return [(int(r), float(d[r])) for r in rows]

    def scene_distances(self, d: npt.NDArray[np.float32]) -> dict[str, float]:
        """For each scene, the distance of its closest labelled reference."""
        pairs = zip(self.scene_names, self.scene_rows, strict=True)
        return {s: float(d[rows].min()) for s, rows in pairs}


# ---------------------------------------------------------------------------------- scene cues
class SceneTracker:
    """Scene cues with dwell time and hysteresis (pure logic, fed one window at a time).

    Each window brings, per scene, the distance of that scene's closest reference. The scene
    whose references are closest is the challenger when it is not the current scene and beats
    the current scene's distance by at least ``hysteresis`` (any scene qualifies while there is
    no current scene). A challenger that stays the challenger for ``dwell_s`` of stream time
    becomes the scene; a window in which it does not qualify restarts the wait.

    Parameters
    ----------
    dwell_s : float
        How long a challenger must stay the closest before the scene switches.
    hysteresis : float
        Cosine-distance margin a challenger needs over the current scene.
    """

    def __init__(self, *, dwell_s: float, hysteresis: float) -> None:
        self.dwell_s = float(dwell_s)
        self.hysteresis = float(hysteresis)
        self.scene = ""
        self._candidate = ""
        self._since_s = 0.0

    def reset(self) -> None:
        """No scene, no challenger."""
        self.scene = self._candidate = ""
        self._since_s = 0.0

    def update(self, time_s: float, distances: Mapping[str, float]) -> bool:
        """Fold in one window; returns True when the scene changed.

        Parameters
        ----------
        time_s : float
            Stream time of the window.
        distances : mapping of str to float
            Scene to the distance of its closest reference (empty: no labelled references).
        """
        if not distances:
            self._candidate = ""
            return False
        best = min(distances, key=lambda s: (distances[s], s))
        current = distances.get(self.scene, math.inf) if self.scene else math.inf
        if best == self.scene or (self.scene and distances[best] > current - self.hysteresis):
            self._candidate = ""
            return False
        if best != self._candidate:
            self._candidate, self._since_s = best, float(time_s)
        if float(time_s) - self._since_s >= self.dwell_s:
            self.scene, self._candidate = best, ""
            return True
        return False


# ---------------------------------------------------------------------------------- live
class LibraryMatcher:
    """Nearest tracks and scene cues for each live tagger window.

    Runs where the tagger computes (its worker thread; inline in fast replay), never on the
    analysis thread or in the audio callback.

    Parameters
    ----------
    config : LibraryConfig
        Database, ``k``, dwell and hysteresis.
    refresh_s : float
        How often (stream time) to check whether another process changed the database.
    """

    def __init__(self, config: LibraryConfig, *, refresh_s: float = 2.0) -> None:
        self.config = config
        self.path = resolve_db_path(config.db_path)
        self.refresh_s = float(refresh_s)
        self.scenes = SceneTracker(dwell_s=config.dwell_s, hysteresis=config.hysteresis)
        self.library: Library | None = None
        self.index: LibraryIndex | None = None
        self.model_id = ""
        self._checked_s = -math.inf
        self._log = RateLimitedLog(log, 10.0)

    def prepare(self, model_id: str) -> None:
        """Open the database and load the index of ``model_id``'s tracks (before any audio),
        scored as ``config.scoring`` says.

        Raises
        ------
        OnbeatError
            When the database cannot be opened.
        """
        if self.library is None:
            self.library = Library(self.path, create=self.config.enabled == "on")
        self.model_id = model_id
        self.index = self.library.index(model_id, self.config.scoring)
        stale = self.library.count() - len(self.index)
        if stale:
            log.warning(
                "%d library track(s) were indexed with another model than %s and are not "
                "searched: run `onbeat library reindex`",
                stale,
                model_id,
            )
        log.info(
            "library %s: %d track(s), %d window(s), %d scene(s), %s scoring, %.1f MiB",
            self.path,
            len(self.index),
            self.index.windows.shape[0],
            len(self.index.scene_names),
            self.index.scoring,
            self.index.nbytes / 2**20,
        )

    def reset(self) -> None:
        """A new stream: no scene yet."""
        self.scenes.reset()
        self._checked_s = -math.inf

    def close(self) -> None:
        """Close the database."""
        if self.library is not None:
            self.library.close()
            self.library = None

    def match(
        self, embedding: npt.ArrayLike, sample_index: int, time_s: float
    ) -> SimilarEvent | None:
        """The nearest tracks and the scene for one window's embedding (None on a failure,
        which is logged at most every 10 s).

        Real-time safety: tagger worker thread only; one matrix-vector product over the
        library's windows (or track means) and a per-track maximum. A database change is picked
        up here, within ``refresh_s``, by reloading the index on this thread.
        """
        try:
            lib = self.library
            if lib is not None and time_s - self._checked_s >= self.refresh_s:
                self._checked_s = time_s
                if lib.changed():
                    self.index = lib.index(self.model_id, self.config.scoring)
            index = self.index
            if index is None:
                return None
            d = index.distances(embedding)
            nearest = tuple(
                (index.titles[r], round(dist, 4)) for r, dist in index.top(d, self.config.k)
            )
            changed = self.scenes.update(time_s, index.scene_distances(d))
        except Exception as exc:
            self._log(logging.ERROR, "library matching failed: %s", exc)
            return None
        return SimilarEvent(
            sample_index=sample_index,
            time_s=time_s,
            emitted_s=time_s,
            nearest=nearest,
            scene=self.scenes.scene,
            scene_changed=changed,
        )


def attach_library(tagger: Tagger | None, config: OnbeatConfig) -> LibraryMatcher | None:
    """Give the live tagger a :class:`LibraryMatcher` when ``library.enabled`` asks for one.

    ``auto`` attaches it when the database exists and holds tracks; ``on`` requires the tagger
    and the database; ``off`` never attaches it.

    Raises
    ------
    ConfigError
        ``library.enabled = on`` without the tagger, or without a database.
    """
    lib = config.library
    if lib.enabled == "off":
        return None
    path = resolve_db_path(lib.db_path)
    if tagger is None:
        if lib.enabled == "on":
            raise ConfigError(
                "library.enabled = on needs the tagger, which is off (tags.enabled) or has no "
                "weights"
            )
        return None
    if lib.enabled == "auto" and not _has_tracks(path):
        return None
    if lib.enabled == "on" and not path.exists():
        raise ConfigError(
            f"library.enabled = on but there is no library at {path} "
            "(add tracks with `onbeat library add`)"
        )
    matcher = LibraryMatcher(lib)
    tagger.matcher = matcher
    return matcher


def _has_tracks(path: Path) -> bool:
    """Whether ``path`` is a library with at least one track (read-only; never creates it)."""
    if not path.is_file():
        return False
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT EXISTS(SELECT 1 FROM tracks)").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        log.warning("library %s is unusable (%s); no live similarity", path, exc)
        return False
    return bool(row[0])
