"""Training data: item loaders, cached engine features and frame targets.

Loaders yield :class:`Item` records (audio path and label times) for

* the renders of :mod:`onbeat.training.render` (``manifest.jsonl``; beats, downbeats, onsets),
* the Frets-on-Fire songs of :mod:`onbeat.training.fof` (``manifest.json``; beats, downbeats),
* the LMMS demo songs of :mod:`onbeat.training.lmms` (the same manifest format),
* the Böck onset set (``onsets/bock``: ``audio/NAME.*``, ``annotations/NAME.onsets``,
  ``splits/8-fold_cv_random_K.fold``; onsets only).

Features come from :class:`onbeat.realtime.features.SpectralFeatures` itself (never
re-implemented here) at 44.1 kHz and hop 441, so training and live inputs cannot drift; they are
cached as ``.npy`` under a key that includes :func:`~onbeat.realtime.features.feature_fingerprint`.

Frame convention: frame ``k`` is the causal window that *ends* at ``(k + 1) * hop`` samples.
An event at ``t`` seconds is assigned to frame ``round(t * fps)``, the frame whose window ends
0 to 10 ms after the event (never before it).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf

__all__ = [
    "FPS",
    "HOP",
    "SAMPLE_RATE",
    "Item",
    "augmented_items",
    "beat_targets",
    "bock_folds",
    "bock_items",
    "cached_features",
    "compute_features",
    "default_data_root",
    "event_targets",
    "feature_extractor",
    "feature_key",
    "fof_items",
    "lmms_items",
    "load_audio",
    "onset_targets",
    "pairs",
    "read_beats",
    "read_times",
    "render_items",
    "time_to_frame",
]

SAMPLE_RATE = 44100
HOP = 441
FPS = SAMPLE_RATE / HOP
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


def default_data_root() -> Path:
    """``../shared/data`` beside the repository (``$ONBEAT_DATA`` overrides it)."""
    env = os.environ.get("ONBEAT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Item:
    """One labelled audio file.

    Attributes
    ----------
    name : str
        Unique name.
    audio : Path
        Audio file (any rate and channel count; :func:`load_audio` makes it 44.1 kHz mono).
    beats : ndarray or None
        Beat times in seconds (None: no beat labels).
    downbeats : ndarray or None
        Downbeat times (a subset of ``beats``; None: no downbeat labels).
    onsets : ndarray or None
        Onset times (None: no onset labels).
    split : str
        ``train``, ``valid``, ``test`` or, for the Böck set, ``fold K``.
    set : str
        Source set (``groove``, ``pop909``, ``asap``, ``fof``, ``bock``, ``pseudo-*``).
    keep : ndarray or None
        Segments ``(n, 2)`` in seconds where the labels hold (None: everywhere); the training
        targets of every other frame are masked (-1). Pseudo-labelled recordings use it.
    """

    name: str
    audio: Path
    beats: F64 | None = field(repr=False)
    downbeats: F64 | None = field(repr=False)
    onsets: F64 | None = field(repr=False)
    split: str
    set: str
    keep: F64 | None = field(default=None, repr=False)


# --------------------------------------------------------------------------------------------
# Label files


def read_times(path: str | Path) -> F64:
    """First column of a text file of times (empty file: empty array)."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    return np.asarray([float(r[0]) for r in rows], dtype=np.float64)


def read_beats(path: str | Path) -> tuple[F64, F64]:
    """A ``time beat_in_bar`` file as ``(beats, downbeats)``."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    t = np.asarray([float(r[0]) for r in rows], dtype=np.float64)
    b = np.asarray([int(float(r[1])) if len(r) > 1 else 0 for r in rows])
    return t, t[b == 1]


# --------------------------------------------------------------------------------------------
# Loaders


def manifest_records(root: str | Path) -> Iterator[dict[str, Any]]:
    """The records of ``ROOT/manifest.jsonl``, first of each name, skipping lines cut short by
    a stopped run."""
    seen: set[str] = set()
    for line in (Path(root) / "manifest.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec["name"] not in seen:
            seen.add(rec["name"])
            yield rec


def render_items(
    root: str | Path = "data/renders",
    split: str | Sequence[str] | None = None,
    sets: Iterable[str] | None = None,
) -> list[Item]:
    """Renders listed in ``ROOT/manifest.jsonl`` (optionally of some splits and sets)."""
    root = Path(root)
    splits = {split} if isinstance(split, str) else (set(split) if split else None)
    wanted = set(sets) if sets else None
    out = []
    for rec in manifest_records(root):
        if splits is not None and rec["split"] not in splits:
            continue
        if wanted is not None and rec["set"] not in wanted:
            continue
        beats, downbeats = read_beats(root / rec["beats"])
        out.append(
            Item(
                rec["name"],
                root / rec["audio"],
                beats,
                downbeats,
                read_times(root / rec["onsets"]),
                rec["split"],
                rec["set"],
            )
        )
    return out


def _manifest_songs(root: str | Path, set_name: str = "fof") -> list[tuple[dict[str, Any], Item]]:
    """Each manifest row of ``ROOT/manifest.json`` with its song as an item (split ``test``
    unless the row names one; a relative audio path is under ``ROOT``)."""
    root = Path(root)
    out = []
    for s in json.loads((root / "manifest.json").read_text())["songs"]:
        beats, downbeats = read_beats(root / s["beats"])
        split = s.get("split", "test")
        out.append((s, Item(s["name"], root / s["audio"], beats, downbeats, None, split, set_name)))
    return out


def fof_items(root: str | Path = "data/fof") -> list[Item]:
    """Frets-on-Fire songs from ``ROOT/manifest.json`` (beats already offset-corrected).

    Their split is ``test``: a chart grid, reported as its own set.
    """
    return [it for _, it in _manifest_songs(root)]


def lmms_items(root: str | Path = "data/lmms", split: str | None = None) -> list[Item]:
    """LMMS demo songs from ``ROOT/manifest.json`` (:mod:`onbeat.training.lmms`), optionally of
    one split (``train`` or ``test``, fixed per song)."""
    return [it for _, it in _manifest_songs(root, "lmms") if split is None or it.split == split]


def fof_train_items(root: str | Path = "data/fof", hold_out: Sequence[str] = ()) -> list[Item]:
    """Frets-on-Fire songs as beat training items, except those named by ``hold_out``.

    Parameters
    ----------
    root : str or Path
        Folder written by :mod:`onbeat.training.fof`.
    hold_out : sequence of str
        Name prefixes (``sectoid``, ``muldjord_chaos_god``) of the songs kept out of training:
        the songs a cross-validation fold evaluates on.

    Returns
    -------
    list of Item
        Split ``train``. A chart without a time signature only implies 4/4 from its first
        beat, so such songs carry no downbeat labels (masked in the loss).
    """
    return [
        replace(
            it, split="train", downbeats=it.downbeats if s.get("time_signature_in_chart") else None
        )
        for s, it in _manifest_songs(root)
        if not any(it.name.startswith(h) for h in hold_out if h)
    ]


def bock_folds(root: str | Path | None = None) -> dict[int, list[str]]:
    """Fold number to file names, from ``splits/8-fold_cv_random_K.fold``."""
    base = Path(root) if root else default_data_root() / "onsets" / "bock"
    folds = {}
    for f in sorted((base / "splits").glob("*.fold")):
        k = int(f.stem.rsplit("_", 1)[-1])
        folds[k] = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    return folds


def bock_items(root: str | Path | None = None, folds: Iterable[int] | None = None) -> list[Item]:
    """Böck onset set items (of some folds; all folds by default). Files without an
    annotation are left out."""
    base = Path(root) if root else default_data_root() / "onsets" / "bock"
    audio = {p.stem: p for p in (base / "audio").iterdir() if p.is_file()}
    all_folds = bock_folds(base)
    chosen = sorted(all_folds) if folds is None else list(folds)
    out = []
    for k in chosen:
        for name in all_folds[k]:
            ann = base / "annotations" / f"{name}.onsets"
            if name not in audio or not ann.exists():
                continue
            out.append(Item(name, audio[name], None, None, read_times(ann), f"fold {k}", "bock"))
    return out


def augmented_items(
    items: Iterable[Item],
    out_dir: str | Path,
    copies: int,
    *,
    seed: int = 0,
    speed: tuple[float, float] = (0.9, 1.1),
    room: bool = True,
) -> list[Item]:
    """Audio-domain augmented copies of onset-labelled items, written once and reused.

    Each copy plays the recording at a random speed (resampled with soxr, so tempo and pitch
    change together and every onset time is divided by the speed), then (with ``room``)
    applies the renderer's microphone chain (:func:`onbeat.training.render.augment`: room
    reverb, microphone band-pass and presence peak, EQ tilt, soft clipping, coloured or babble
    noise at 10-40 dB SNR, level).
    None of these moves an attack in time, so the scaled labels stay exact.

    Parameters
    ----------
    items : iterable of Item
        Items with onset labels (e.g. :func:`bock_items` of the training folds).
    out_dir : path
        ``NAME__augK.flac`` and ``NAME__augK.onsets`` go here. A copy whose two files exist is
        reused, so an interrupted run continues where it stopped and the copies are identical
        from run to run (the random draw depends only on ``seed``, the name and ``K``).
    copies : int
        Copies per item (0: none).
    seed : int
        Base seed.
    speed : (float, float)
        Range of the playback-speed factor.
    room : bool
        Apply the microphone chain after the speed change (False: speed and a random level
        only). Copies of either kind live side by side (``__augK`` / ``__spdK``).

    Returns
    -------
    list of Item
        One per copy, ``split`` and ``set`` taken from the source with ``" aug"`` appended to
        the set name.
    """
    from onbeat.training.render import augment

    if copies < 0:
        raise ValueError(f"copies = {copies} must be >= 0")
    lo, hi = speed
    if not 0.5 <= lo <= hi <= 2.0:
        raise ValueError(f"speed range {speed} must satisfy 0.5 <= low <= high <= 2")
    out = Path(out_dir)
    result = []
    for it in items:
        if it.onsets is None:
            raise ValueError(f"{it.name}: augmented copies need onset labels")
        for k in range(copies):
            name = f"{it.name}__{'aug' if room else 'spd'}{k}"
            wav, ann = out / f"{name}.flac", out / f"{name}.onsets"
            if not (wav.exists() and ann.exists()):
                key = hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:12]
                rng = np.random.default_rng(int(key, 16))
                s = float(rng.uniform(lo, hi))
                x = load_audio(it.audio)
                if abs(s - 1.0) > 1e-6:
                    import soxr

                    x = soxr.resample(x, SAMPLE_RATE * s, SAMPLE_RATE, quality="HQ")
                if room:
                    y, _ = augment(x, SAMPLE_RATE, rng)
                else:
                    peak_db = float(rng.uniform(-30, -1))
                    y = x * np.float32(10 ** (peak_db / 20) / (np.max(np.abs(x)) + 1e-12))
                onsets = np.asarray(it.onsets, dtype=np.float64) / s
                out.mkdir(parents=True, exist_ok=True)
                tmp = out / f".{name}.{os.getpid()}.tmp.flac"
                sf.write(tmp, y, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
                ann.write_text("".join(f"{t:.6f}\n" for t in onsets))
                os.replace(tmp, wav)
            result.append(Item(name, wav, None, None, read_times(ann), it.split, f"{it.set} aug"))
    return result


# --------------------------------------------------------------------------------------------
# Audio and features


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> F32:
    """Mono float32 audio at ``sample_rate`` (resampled with soxr when needed)."""
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != sample_rate:
        import soxr

        x = soxr.resample(x, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(x, dtype=np.float32)


_EXTRACTORS: dict[Any, Any] = {}


def feature_extractor(config: Any | None = None) -> Any:
    """A prepared :class:`~onbeat.realtime.features.SpectralFeatures` at 44.1 kHz, hop 441
    (one per config, reused)."""
    from onbeat.realtime.config import FeatureConfig
    from onbeat.realtime.features import SpectralFeatures
    from onbeat.realtime.stages import StreamContext

    cfg = config if config is not None else FeatureConfig()
    if cfg.hop_size != HOP:
        raise ValueError(f"training features use hop {HOP} at {SAMPLE_RATE} Hz")
    if cfg not in _EXTRACTORS:
        f = SpectralFeatures(cfg)
        f.prepare(StreamContext(SAMPLE_RATE, HOP))
        _EXTRACTORS[cfg] = f
    return _EXTRACTORS[cfg]


def feature_key(config: Any | None = None) -> str:
    """The engine's feature fingerprint for ``config`` at 44.1 kHz."""
    from onbeat.realtime.config import FeatureConfig
    from onbeat.realtime.features import feature_fingerprint

    return feature_fingerprint(config if config is not None else FeatureConfig(), SAMPLE_RATE)


def compute_features(audio_path: str | Path, config: Any | None = None) -> F32:
    """Engine features of a whole file: ``(frames, dims)`` float32, no caching."""
    feats: F32 = feature_extractor(config).batch(load_audio(audio_path))
    return feats


def cached_features(
    audio_path: str | Path, cache_dir: str | Path, config: Any | None = None, *, mmap: bool = False
) -> F32:
    """Engine features of a file, cached in ``cache_dir``.

    Parameters
    ----------
    audio_path : path
        Any rate and channel count: it is mixed to mono and resampled to 44.1 kHz.
    cache_dir : path
        Where ``STEM-KEY.npy`` files go; ``KEY`` hashes the absolute path, size, mtime and the
        feature fingerprint, so a changed file or feature setting is recomputed.
    config : FeatureConfig, optional
        The engine's default :class:`~onbeat.realtime.config.FeatureConfig` when None.
    mmap : bool
        Return a read-only memory map of the cache file instead of loading it (for training sets
        larger than memory: random crops then read only what they touch).

    Returns
    -------
    ndarray of float32, shape (frames, dims)
        Frame ``k`` ends at sample ``(k + 1) * 441``.
    """
    p = Path(audio_path).resolve()
    fp = feature_key(config)
    st = p.stat()
    key = hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}|{fp}".encode()).hexdigest()[:16]
    cache = Path(cache_dir)
    out = cache / f"{p.stem}-{key}.npy"
    if out.exists():
        try:
            if mmap:
                return np.load(out, mmap_mode="r")  # type: ignore[no-any-return]
            return np.load(out).astype(np.float32, copy=False)
        except (ValueError, OSError):
            pass  # a file cut short: recompute
    x = compute_features(p, config)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, x)
    os.replace(tmp, out)
    return np.load(out, mmap_mode="r") if mmap else x  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Targets


def time_to_frame(
    times: npt.ArrayLike, fps: float = FPS, delay: float = 0.0
) -> npt.NDArray[np.int64]:
    """Frame index of event times: ``round((t + delay) * fps)``; with ``delay`` 0, the causal
    frame whose window ends 0-10 ms after the event. A positive ``delay`` (seconds) lets a causal
    model see more of the attack before it must fire."""
    return np.round((np.asarray(times, dtype=np.float64) + delay) * fps).astype(np.int64)


def event_targets(
    times: npt.ArrayLike | None,
    n_frames: int,
    *,
    fps: float = FPS,
    widen: float | None = 0.5,
    delay: float = 0.0,
) -> F32:
    """Frame targets of events: 1 at each event's frame (:func:`time_to_frame`), ``widen`` (if
    given) at its two neighbours (never lowering a 1). Events outside ``[0, n_frames)`` are
    dropped.

    Returns
    -------
    ndarray of float32, shape (n_frames,)
    """
    y = np.zeros(n_frames, dtype=np.float32)
    if times is None:
        return y
    idx = time_to_frame(times, fps, delay)
    idx = idx[(idx >= 0) & (idx < n_frames)]
    if widen:
        for d in (-1, 1):
            j = idx + d
            j = j[(j >= 0) & (j < n_frames)]
            y[j] = np.maximum(y[j], np.float32(widen))
    y[idx] = 1.0
    return y


def onset_targets(
    onsets: npt.ArrayLike | None,
    n_frames: int,
    *,
    fps: float = FPS,
    widen: float | None = 0.5,
    delay: float = 0.0,
) -> F32:
    """Onset targets, shape ``(n_frames, 1)``."""
    return event_targets(onsets, n_frames, fps=fps, widen=widen, delay=delay)[:, None]


def beat_targets(
    beats: npt.ArrayLike | None,
    downbeats: npt.ArrayLike | None,
    n_frames: int,
    *,
    fps: float = FPS,
    widen: float | None = 0.5,
    mask_missing: bool = True,
    delay: float = 0.0,
) -> F32:
    """Beat and downbeat targets, shape ``(n_frames, 2)``.

    A missing label set (None) gives a column of -1 (masked by the training loss) when
    ``mask_missing``, else zeros.
    """
    cols = []
    for t in (beats, downbeats):
        if t is None and mask_missing:
            cols.append(np.full(n_frames, -1.0, dtype=np.float32))
        else:
            cols.append(event_targets(t, n_frames, fps=fps, widen=widen, delay=delay))
    return np.stack(cols, axis=1)


def nonbeat_onsets(
    onsets: npt.ArrayLike | None,
    beats: npt.ArrayLike | None,
    n_frames: int,
    *,
    fps: float = FPS,
    tolerance_s: float = 0.05,
    delay: float = 0.0,
) -> npt.NDArray[np.bool_] | None:
    """Frames of the note onsets that are not beats: each labelled onset farther than
    ``tolerance_s`` from every beat, with its two neighbouring frames (the ``widen`` of
    :func:`event_targets`). None when the item has no onset or no beat labels.

    Returns
    -------
    ndarray of bool, shape (n_frames,), or None
    """
    if onsets is None or beats is None:
        return None
    on = np.asarray(onsets, dtype=np.float64)
    bt = np.asarray(beats, dtype=np.float64)
    if on.size == 0 or bt.size == 0:
        return None
    far = np.min(np.abs(on[:, None] - bt[None, :]), axis=1) > tolerance_s
    return event_targets(on[far], n_frames, fps=fps, widen=1.0, delay=delay) > 0.0


def mask_outside(y: F32, keep: npt.ArrayLike, fps: float = FPS) -> F32:
    """Targets ``y`` with every frame outside the ``keep`` segments (seconds) set to -1."""
    inside = np.zeros(y.shape[0], dtype=bool)
    for lo, hi in np.asarray(keep, dtype=np.float64).reshape(-1, 2):
        inside[max(0, int(np.ceil(lo * fps))) : max(0, int(np.floor(hi * fps)))] = True
    out = y.copy()
    out[~inside] = -1.0
    return out


def pairs(
    items: Iterable[Item],
    cache_dir: str | Path,
    kind: str = "beats",
    *,
    widen: float | None = 0.5,
    delay: float = 0.0,
    config: Any | None = None,
    mmap: bool = False,
) -> Iterator[tuple[F32, F32]]:
    """``(features, targets)`` for :func:`onbeat.training.loop.train`; ``kind`` is ``beats``
    (beat and downbeat columns) or ``onsets`` (one column). With ``mmap`` the features are
    read-only memory maps of the cache files."""
    for it in items:
        x = cached_features(it.audio, cache_dir, config, mmap=mmap)
        n = x.shape[0]
        if kind == "onsets":
            y = onset_targets(it.onsets, n, widen=widen, delay=delay)
        elif kind == "beats":
            y = beat_targets(it.beats, it.downbeats, n, widen=widen, delay=delay)
        else:
            raise ValueError(f"kind must be 'beats' or 'onsets', not {kind!r}")
        if it.keep is not None:
            y = mask_outside(y, it.keep)
        yield x, y
