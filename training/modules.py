"""Beat labels for tracker modules (MOD, XM, S3M, IT) shipped in Debian game packages: sample-based
music, rendered by libopenmpt, with an exact row grid.

A tracker song is a list of patterns of rows; the player advances one row every ``speed`` ticks
of ``2.5 / tempo`` s (both may change inside a song). The time of every row is therefore known
exactly, and musicians lay out beats on a fixed number of rows (the "rows per beat" highlight:
stored in IT files, 4 by convention elsewhere). This module

1. finds the module files of :data:`PACKAGES` (``apt-get download`` + ``dpkg-deb -x`` into a
   work folder, no root needed; or, with ``--system``, the packages already installed), skipping
   byte-identical copies;
2. renders each one once through (no loop-back) with libopenmpt (Debian ``libopenmpt0``, through
   ctypes: there is no Python binding on PyPI), 44.1 kHz, in blocks of :data:`CHUNK` frames,
   reading the player's order/pattern/row after each block, so every row start is known to
   within half a block (0.18 ms); note-on cells of each new row are the onsets;
3. chooses the metrical level: the grid of every ``rows_per_beat`` in :data:`LEVELS` (and the
   file's own highlight) whose median tempo lies in 55-215 BPM is scored against librosa's
   offline beat tracker on the audio (F, ±70 ms); the best grid is kept if its F reaches
   ``min_f`` (default 0.5) and leads every other level's by ``margin`` (0.1), else the song is
   left out (recorded in ``skipped.jsonl``): the row grid fixes the timing exactly, librosa only
   picks which rows are beats. Trackers
   often run 8 rows or 6 rows per beat (fast speeds, triplet feels), so the convention alone is
   wrong for about half of the songs (measured on the 206 Debian modules: 91 at 4 rows, 58 at 8,
   26 at 6);
4. writes ``OUT/NAME.flac``, ``NAME.beats`` (``time beat_in_bar``; bars of
   ``rows_per_measure`` rows, 16 by default or the IT highlight) and ``NAME.onsets``, and one
   ``manifest.jsonl`` line per song in the render-folder format of :mod:`onbeat.training.render`,
   so ``onbeat train beats --extra-renders OUT`` and the benchmarks' ``modules-valid`` /
   ``modules-test`` sets read it. The split is by package (``sha1('modules:PACKAGE')``: <80
   train, <90 valid, else test), so one composer's songs never straddle splits;
5. with ``--stretch N``, renders ``N`` variants of every kept *training* song
   (``NAME_tempoK``): libopenmpt plays it at another tempo (``play.tempo_factor``, 0.8-1.25,
   one stratum per variant, kept inside 55-215 BPM) and transposed (``play.pitch_factor``,
   +-3 semitones), so the rows and labels stay exact while only the spacing of the notes
   changes, as if the musician had set another tempo; then the renders' room, microphone, EQ,
   noise and level augmentation (:func:`onbeat.training.render.augment`) colours it. The
   original's level is kept. Valid and test songs are never varied.

The Debian packages are GPL/LGPL/BSD/Zlib (see ``PACKAGES``); nothing rendered is committed.

Usage::

    apt-get install libopenmpt0
    python -m onbeat.training.modules --out data/modules [--stretch 2]
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from onbeat.training.datasets import SAMPLE_RATE, manifest_records
from onbeat.training.debpkg import fetch_package, repeat_suffix
from onbeat.training.fof import (
    DRUM_ENVELOPE_LATENCY_S,
    active_range,
    calibrate_offset,
    onset_envelope,
)
from onbeat.training.render import augment, item_seed, split_of, write_splits

__all__ = [
    "Rendered",
    "beat_grid",
    "choose_level",
    "find_modules",
    "it_highlight",
    "main",
    "module_split",
    "render_module",
]

log = logging.getLogger("onbeat.training.modules")

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

#: Debian 12 packages that ship tracker modules (found with ``apt-file``; 208 unique files,
#: about 8 h played once through). Licences as their ``debian/copyright`` declares: GPL/LGPL
#: except biniax2-data and tomatoes-data (Zlib), pekka-kana-2-data (BSD-2), ballz-data (BSD-3),
#: clanlib-doc (zlib-style), monsterz-data (public domain). gemdropx is left out: its music is
#: only "used with permission".
PACKAGES: tuple[str, ...] = (
    "ironseed-data", "tecnoballz-data", "pekka-kana-2-data", "heroes-sound-tracks",
    "pingus-data", "freedroid-data", "rafkill-data", "pachi-data", "biniax2-data",
    "open-invaders-data", "bomberclone-data", "madbomber-data", "bb", "penguin-command",
    "gl-117-data", "rockdodger", "tuxmath-data", "bugsquish", "circuslinux-data", "njam-data",
    "flobopuyo", "ri-li-data", "tomatoes-data", "sdlbasic", "vodovod", "sludge-doc",
    "criticalmass-data", "gltron", "vectoroids", "gambas3-examples", "fb-music-high",
    "black-box", "monsterz-data", "dodgindiamond2", "solarwolf", "gweled", "clanlib-doc",
    "ballz-data", "vor", "pathogen", "libplib-doc", "ceferino-data", "cuyo-data",
)  # fmt: skip

SUFFIXES = (".mod", ".xm", ".s3m", ".it", ".xm.gz", ".mod.gz", ".s3m.gz", ".it.gz")
#: Rows per beat tried when choosing the level (with the file's own highlight).
LEVELS = (2, 3, 4, 6, 8, 12, 16)
#: Frames rendered between two reads of the player's position.
CHUNK = 16
BPM_RANGE = (55.0, 215.0)
#: Songs shorter than this (jingles) are left out.
MIN_DURATION_S = 12.0
#: libopenmpt stops a song at its first loop-back; this caps a song that never loops back.
MAX_DURATION_S = 600.0
#: Tempo factors of the training variants (``--stretch``), log-uniform, each variant in its own
#: stratum of this range and the song's tempo kept inside :data:`BPM_RANGE`.
STRETCH_RANGE = (0.8, 1.25)
#: Transposition of the training variants, uniform in +-this many semitones.
PITCH_SEMITONES = 3.0


# --------------------------------------------------------------------------------------------
# libopenmpt through ctypes


class ModuleError(RuntimeError):
    """A file libopenmpt cannot open, or libopenmpt itself missing."""


_LIB: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _LIB
    if _LIB is not None:
        return _LIB
    try:
        lib = ctypes.CDLL("libopenmpt.so.0")
    except OSError as e:
        raise ModuleError("libopenmpt is not installed (apt-get install libopenmpt0)") from e
    p, i32, f = ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_float)
    lib.openmpt_module_create_from_memory2.restype = p
    lib.openmpt_module_create_from_memory2.argtypes = [
        p, ctypes.c_size_t, p, p, p, p, ctypes.POINTER(ctypes.c_int), p, p,
    ]  # fmt: skip
    lib.openmpt_module_destroy.argtypes = [p]
    lib.openmpt_module_read_float_stereo.restype = ctypes.c_size_t
    lib.openmpt_module_read_float_stereo.argtypes = [p, i32, ctypes.c_size_t, f, f]
    for name in ("row", "pattern", "order", "speed", "tempo"):
        fn = getattr(lib, f"openmpt_module_get_current_{name}")
        fn.restype, fn.argtypes = i32, [p]
    lib.openmpt_module_get_num_channels.restype = i32
    lib.openmpt_module_get_num_channels.argtypes = [p]
    lib.openmpt_module_get_pattern_row_channel_command.restype = ctypes.c_uint8
    lib.openmpt_module_get_pattern_row_channel_command.argtypes = [p, i32, i32, i32, ctypes.c_int]
    lib.openmpt_module_set_repeat_count.argtypes = [p, i32]
    lib.openmpt_module_get_duration_seconds.restype = ctypes.c_double
    lib.openmpt_module_get_duration_seconds.argtypes = [p]
    lib.openmpt_module_ctl_set_floatingpoint.restype = ctypes.c_int
    lib.openmpt_module_ctl_set_floatingpoint.argtypes = [p, ctypes.c_char_p, ctypes.c_double]
    _LIB = lib
    return lib


_NOTE = 0  # OPENMPT_MODULE_COMMAND_NOTE


@dataclass(frozen=True, slots=True)
class Rendered:
    """A module played once through.

    Attributes
    ----------
    audio : ndarray of float32, shape (samples, 2)
        44.1 kHz stereo.
    row_s : ndarray of float64
        Start time (s) of every row played, in playing order.
    row : ndarray of int64
        That row's index inside its pattern.
    pattern : ndarray of int64
        Its pattern.
    onsets_s : ndarray of float64
        Start times of the rows holding at least one note-on cell.
    duration_s : float
        libopenmpt's length of one play-through.
    """

    audio: npt.NDArray[np.float32]
    row_s: F64
    row: npt.NDArray[np.int64]
    pattern: npt.NDArray[np.int64]
    onsets_s: F64
    duration_s: float


def module_bytes(path: str | Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip-compressed (libopenmpt does not do that)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data


def render_module(
    data: bytes,
    sr: int = SAMPLE_RATE,
    max_s: float = MAX_DURATION_S,
    chunk: int = CHUNK,
    tempo_factor: float = 1.0,
    pitch_factor: float = 1.0,
) -> Rendered:
    """Render a module's bytes once through and log its rows.

    Parameters
    ----------
    data : bytes
        A MOD/XM/S3M/IT file's content.
    sr : int
        Output rate (Hz).
    max_s : float
        Stop after this much audio.
    chunk : int
        Frames rendered between two reads of the position; a row's start is logged at the
        middle of the block in which it began (error at most ``chunk / 2`` frames).
    tempo_factor : float
        Playback speed of the rows (libopenmpt ``play.tempo_factor``): the song is played as
        its musician would have at ``tempo_factor`` times the tempo. Samples keep their sound;
        only the time between rows changes, and the logged rows follow it exactly.
    pitch_factor : float
        Transposition as a frequency ratio (``play.pitch_factor``); row times do not change.

    Raises
    ------
    ModuleError
        If libopenmpt is missing or cannot read ``data``.
    """
    lib = _lib()
    buf = ctypes.create_string_buffer(data, len(data))
    err = ctypes.c_int(0)
    mod = lib.openmpt_module_create_from_memory2(
        buf, len(data), None, None, None, None, ctypes.byref(err), None, None
    )
    if not mod:
        raise ModuleError(f"libopenmpt cannot read it (error {err.value})")
    try:
        for key, value in (
            (b"play.tempo_factor", tempo_factor),
            (b"play.pitch_factor", pitch_factor),
        ):
            if value != 1.0 and not lib.openmpt_module_ctl_set_floatingpoint(mod, key, value):
                raise ModuleError(f"libopenmpt refused {key.decode()} = {value}")
        lib.openmpt_module_set_repeat_count(mod, 0)
        # libopenmpt's duration is computed at the file's own tempo
        duration = float(lib.openmpt_module_get_duration_seconds(mod)) / tempo_factor
        n_ch = int(lib.openmpt_module_get_num_channels(mod))
        left, right = (ctypes.c_float * chunk)(), (ctypes.c_float * chunk)()
        limit = int(max_s * sr)
        out = np.zeros((min(limit, int((duration + 1.0) * sr)) + chunk, 2), np.float32)
        rows: list[tuple[float, int, int]] = []
        onsets: list[float] = []
        prev: tuple[int, int, int] | None = None
        frame = 0
        while frame < limit:
            n = int(lib.openmpt_module_read_float_stereo(mod, sr, chunk, left, right))
            if n == 0:
                break
            if frame + n > out.shape[0]:
                out = np.concatenate([out, np.zeros((sr * 10, 2), np.float32)])
            out[frame : frame + n, 0] = np.frombuffer(left, np.float32, n)
            out[frame : frame + n, 1] = np.frombuffer(right, np.float32, n)
            pos = (
                int(lib.openmpt_module_get_current_order(mod)),
                int(lib.openmpt_module_get_current_pattern(mod)),
                int(lib.openmpt_module_get_current_row(mod)),
            )
            if pos != prev:
                t = (frame + 0.5 * n) / sr
                rows.append((t, pos[1], pos[2]))
                cmd = lib.openmpt_module_get_pattern_row_channel_command
                if any(0 < cmd(mod, pos[1], pos[2], c, _NOTE) <= 120 for c in range(n_ch)):
                    onsets.append(t)
                prev = pos
            frame += n
    finally:
        lib.openmpt_module_destroy(mod)
    arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    arr = arr[arr[:, 0] < duration - 1e-3]  # at the end the player wraps to row 0 of order 0
    onsets = [t for t in onsets if t < duration - 1e-3]
    return Rendered(
        out[:frame],
        arr[:, 0],
        arr[:, 2].astype(np.int64),
        arr[:, 1].astype(np.int64),
        np.asarray(onsets, dtype=np.float64),
        duration,
    )


def it_highlight(data: bytes) -> tuple[int, int] | None:
    """An Impulse Tracker file's pattern highlight ``(rows_per_beat, rows_per_measure)``, or
    None (another format, or no highlight set)."""
    if data[:4] != b"IMPM" or len(data) < 0x20:
        return None
    rpb, rpm = data[0x1E], data[0x1F]
    if rpb < 1 or rpm < rpb:
        return None
    return int(rpb), int(rpm)


# --------------------------------------------------------------------------------------------
# Labels


def beat_grid(r: Rendered, rows_per_beat: int, rows_per_measure: int) -> tuple[F64, F64]:
    """Beats at the rows whose index in their pattern is a multiple of ``rows_per_beat``, and
    their beat in bar (1 at multiples of ``rows_per_measure``; counted on when the measure is
    not a whole number of beats)."""
    on = (r.row % rows_per_beat) == 0
    t = r.row_s[on]
    if rows_per_measure % rows_per_beat == 0:
        bib = (r.row[on] % rows_per_measure) // rows_per_beat + 1
    else:
        bib = np.arange(t.shape[0]) % 4 + 1
    return t, bib.astype(np.float64)


def _median_bpm(beats: F64) -> float:
    if beats.shape[0] < 3:
        return 0.0
    return float(60.0 / np.median(np.diff(beats)))


def choose_level(
    r: Rendered,
    reference_s: F64,
    hint: int | None = None,
    min_f: float = 0.5,
    margin: float = 0.1,
) -> tuple[int | None, dict[str, float]]:
    """The rows per beat whose grid agrees best with ``reference_s`` (an offline tracker's
    beats), among :data:`LEVELS` and ``hint`` with a median tempo in :data:`BPM_RANGE`.

    Returns the level (None when the best grid's F is under ``min_f`` or within ``margin`` of
    another level's: the level is then in doubt) and every candidate's F (±70 ms).
    """
    import mir_eval

    scores: dict[str, float] = {}
    if reference_s.shape[0] < 4:
        return None, scores
    for rpb in sorted({*LEVELS, *([hint] if hint else [])}):
        t, _ = beat_grid(r, rpb, rpb * 4)
        if BPM_RANGE[0] <= _median_bpm(t) <= BPM_RANGE[1]:
            scores[str(rpb)] = float(mir_eval.beat.f_measure(reference_s, t))
    if not scores:
        return None, scores
    ranked = sorted(scores, key=lambda k: (scores[k], k == str(hint), k == "4"), reverse=True)
    best = ranked[0]
    runner_up = scores[ranked[1]] if len(ranked) > 1 else 0.0
    ok = scores[best] >= min_f and scores[best] - runner_up >= margin
    return (int(best) if ok else None), scores


def librosa_beats(x: npt.NDArray[np.float32], sr: int = SAMPLE_RATE) -> F64:
    """librosa's offline beat tracker (dynamic programming over its onset strength)."""
    import librosa

    _, b = librosa.beat.beat_track(y=x, sr=sr, units="time")
    return np.asarray(b, dtype=np.float64)


def module_split(package: str) -> str:
    """Fixed split of a package: ``sha1('modules:PACKAGE')`` % 100 < 80 train, < 90 valid,
    else test."""
    return split_of("modules", package)


# --------------------------------------------------------------------------------------------
# Finding the files


@dataclass(frozen=True, slots=True)
class ModuleFile:
    """One module file of a package."""

    package: str
    path: Path
    #: set by :func:`unique_names` when two files of a package share a file name
    alias: str | None = None

    @property
    def name(self) -> str:
        if self.alias is not None:
            return self.alias
        stem = self.path.name
        for s in SUFFIXES:
            if stem.lower().endswith(s):
                stem = stem[: -len(s)]
                break
        return "mod_" + re.sub(r"[^A-Za-z0-9]+", "_", f"{self.package}_{stem}").strip("_")


def unique_names(files: Sequence[ModuleFile]) -> list[ModuleFile]:
    """The files with every repeated name after the first suffixed ``_2``, ``_3`` ... (two songs
    of one package may share a file name in different folders: each needs its own outputs)."""
    seen: dict[str, int] = {}
    out = []
    for f in files:
        extra = repeat_suffix(f.name, seen)
        out.append(ModuleFile(f.package, f.path, f.name + extra) if extra else f)
    return out


def _is_module(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(SUFFIXES)


def find_modules(
    packages: Iterable[str], work: Path | None = None, system: bool = False
) -> tuple[list[ModuleFile], list[str]]:
    """Module files of ``packages``, byte-identical copies dropped (first package wins).

    With ``system``, the installed packages' files (``dpkg -L``); otherwise each package is
    fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` under ``work``.
    Returns the files and the packages that could not be read.
    """
    found: list[ModuleFile] = []
    missing: list[str] = []
    seen: set[str] = set()
    for pkg in packages:
        if system:
            r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False)
            paths = [Path(ln) for ln in r.stdout.splitlines()] if r.returncode == 0 else []
            paths = sorted(p for p in paths if _is_module(p))
            if r.returncode != 0:
                missing.append(pkg)
        else:
            assert work is not None
            paths = fetch_package(pkg, work, _is_module)
            if paths is None:
                missing.append(pkg)
                paths = []
        for p in paths:
            digest = hashlib.sha1(p.read_bytes()).hexdigest()
            if digest not in seen:
                seen.add(digest)
                found.append(ModuleFile(pkg, p))
    return found, missing


# --------------------------------------------------------------------------------------------
# One song


def _labels_in(
    r: Rendered, mono: F32, rows_per_beat: int, rows_per_measure: int
) -> tuple[F64, F64, F64]:
    """Beats, beat in bar and onsets of a rendered song inside its audible range."""
    a0, a1 = active_range(mono)
    beats, bib = beat_grid(r, rows_per_beat, rows_per_measure)
    keep = (beats >= a0 - 0.05) & (beats <= a1)
    ons = r.onsets_s[(r.onsets_s >= a0 - 0.05) & (r.onsets_s <= a1)]
    return beats[keep], bib[keep], ons


def _write_song(
    out: Path, name: str, audio: npt.NDArray[np.float32], beats: F64, bib: F64, ons: F64
) -> dict[str, Any]:
    """Write ``NAME.flac`` / ``.beats`` / ``.onsets``; returns the record fields they give."""
    sf.write(out / f"{name}.flac", audio, SAMPLE_RATE, subtype="PCM_16")
    (out / f"{name}.beats").write_text(
        "".join(f"{t:.6f} {int(b)}\n" for t, b in zip(beats, bib, strict=True))
    )
    (out / f"{name}.onsets").write_text("".join(f"{t:.6f}\n" for t in ons))
    return {
        "set": "modules",
        "audio": f"{name}.flac",
        "beats": f"{name}.beats",
        "onsets": f"{name}.onsets",
        "duration_s": round(audio.shape[0] / SAMPLE_RATE, 3),
        "n_beats": int(beats.shape[0]),
        "n_downbeats": int((bib == 1).sum()),
        "median_ibi_s": round(float(np.median(np.diff(beats))), 4) if beats.size > 1 else 0.0,
        "n_onsets": int(ons.shape[0]),
    }


def process(mf: ModuleFile, out: Path, min_f: float = 0.5) -> dict[str, Any]:
    """Render one module and write its FLAC and labels; returns its manifest record, or a record
    with ``"skipped"`` giving the reason."""
    data = module_bytes(mf.path)
    base = {"name": mf.name, "package": mf.package, "source": str(mf.path)}
    try:
        r = render_module(data)
    except ModuleError as e:
        return {**base, "skipped": str(e)}
    dur = r.audio.shape[0] / SAMPLE_RATE
    if dur < MIN_DURATION_S:
        return {**base, "skipped": f"only {dur:.1f} s"}
    mono = r.audio.mean(axis=1)
    peak = float(np.abs(r.audio).max())
    if peak <= 1e-4:
        return {**base, "skipped": "silent"}
    ref = librosa_beats(mono)
    hl = it_highlight(data)
    level, scores = choose_level(r, ref, hint=hl[0] if hl else None, min_f=min_f)
    base["level_f"] = scores
    if level is None:
        best = max(scores.values(), default=0.0)
        return {**base, "skipped": f"no grid agrees with librosa (best F {best:.2f})"}
    rpm = hl[1] if hl and hl[0] == level else level * 4
    beats, bib, ons = _labels_in(r, mono, level, rpm)
    lag, sc = calibrate_offset(onset_envelope(mono), beats, DRUM_ENVELOPE_LATENCY_S)
    return {
        **base,
        **_write_song(out, mf.name, r.audio / max(peak, 1.0), beats, bib, ons),
        "piece": mf.package,
        "split": module_split(mf.package),
        "rows_per_beat": level,
        "rows_per_measure": rpm,
        "it_highlight": list(hl) if hl else None,
        "measured_lag_s": round(lag, 4),
        "peak_score": round(float(sc.max()), 3),
    }


def variant_name(name: str, k: int) -> str:
    """Name of the ``k``-th tempo variant of the song ``name``."""
    return f"{name}_tempo{k}"


def variant_factors(rec: dict[str, Any], k: int, n: int, seed: int = 0) -> tuple[float, float]:
    """Tempo and pitch factor of variant ``k`` of ``n`` of a kept song (its manifest record).

    The log tempo range :data:`STRETCH_RANGE`, narrowed so that the song's median tempo stays in
    :data:`BPM_RANGE`, is cut into ``n`` strata and variant ``k`` draws from stratum ``k``, so a
    song's variants spread from slower to faster. Deterministic in ``(seed, name, k)``.
    """
    rng = np.random.default_rng(item_seed(seed, variant_name(rec["name"], k)))
    bpm = 60.0 / float(rec["median_ibi_s"])
    lo = np.log(max(STRETCH_RANGE[0], BPM_RANGE[0] / bpm))
    hi = np.log(min(STRETCH_RANGE[1], BPM_RANGE[1] / bpm))
    if hi < lo:  # a tempo already at the edge of the range: play it as it is
        lo = hi = 0.0
    u = (k + rng.random()) / n
    tempo = float(np.exp(lo + u * (hi - lo)))
    pitch = float(2.0 ** (rng.uniform(-PITCH_SEMITONES, PITCH_SEMITONES) / 12.0))
    return tempo, pitch


def process_variant(
    rec: dict[str, Any], k: int, n: int, out: Path, seed: int = 0
) -> dict[str, Any]:
    """Render variant ``k`` of ``n`` of a kept song: played faster or slower and transposed by
    libopenmpt (:func:`variant_factors`), so its rows, beats and onsets stay exact, then passed
    through the renders' room, microphone, EQ, noise and level augmentation
    (:func:`onbeat.training.render.augment`). The song's level (rows per beat) is the one chosen
    for the original. Returns its manifest record (same package and split), or a record with
    ``"skipped"``."""
    name = variant_name(rec["name"], k)
    base = {"name": name, "package": rec["package"], "stretch_of": rec["name"]}
    src = Path(rec["source"])
    if not src.is_file():
        return {**base, "skipped": f"source module missing: {src}"}
    tempo, pitch = variant_factors(rec, k, n, seed)
    r = render_module(module_bytes(src), tempo_factor=tempo, pitch_factor=pitch)
    mono = r.audio.mean(axis=1)
    beats, bib, ons = _labels_in(r, mono, int(rec["rows_per_beat"]), int(rec["rows_per_measure"]))
    y, aug = augment(mono, SAMPLE_RATE, np.random.default_rng(item_seed(seed, name + "/aug")))
    return {
        **base,
        **_write_song(out, name, y, beats, bib, ons),
        "source": rec["source"],
        "piece": rec["piece"],
        "split": rec["split"],
        "rows_per_beat": rec["rows_per_beat"],
        "rows_per_measure": rec["rows_per_measure"],
        "tempo_factor": round(tempo, 4),
        "pitch_factor": round(pitch, 4),
        "augment": aug,
    }


# --------------------------------------------------------------------------------------------
# CLI


def _append(path: Path, rec: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_splits(out: Path) -> None:
    # render.write_splits reads only each item's piece (here the package) and split
    recs = [SimpleNamespace(piece=r["piece"], split=r["split"]) for r in manifest_records(out)]
    write_splits(out, ["modules"], {"modules": recs})  # type: ignore[dict-item]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.modules",
        description="Render the tracker modules of Debian game packages with exact beat labels.",
    )
    ap.add_argument("--out", type=Path, default=Path("data/modules"))
    ap.add_argument(
        "--packages", default=",".join(PACKAGES), help="comma-separated Debian packages"
    )
    ap.add_argument(
        "--system", action="store_true", help="read installed packages instead of downloading"
    )
    ap.add_argument("--work", type=Path, default=None, help="unpacked packages (OUT/.debs)")
    ap.add_argument(
        "--files",
        nargs="+",
        type=Path,
        default=None,
        help="module files of your own instead of the Debian packages (package name 'local')",
    )
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--min-f", type=float, default=0.5)
    ap.add_argument(
        "--stretch",
        type=int,
        default=0,
        metavar="N",
        help="also render N tempo/pitch variants of every kept training song (valid and test "
        "songs are never varied)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the variants")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    out: Path = a.out
    try:
        _lib()
        out.mkdir(parents=True, exist_ok=True)
        if a.files:
            for f in a.files:
                if not f.is_file():
                    raise OSError(f"no such file: {f}")
            files, missing = [ModuleFile("local", f) for f in a.files], []
        else:
            files, missing = find_modules(
                [p.strip() for p in a.packages.split(",") if p.strip()],
                work=a.work or out / ".debs",
                system=a.system,
            )
    except (ModuleError, OSError, subprocess.CalledProcessError) as e:
        print(f"modules: {e}", file=sys.stderr)
        return 2
    if missing:
        print(
            f"modules: could not read {len(missing)} package(s): {' '.join(missing)}",
            file=sys.stderr,
        )
    if not files:
        print("modules: no module files found", file=sys.stderr)
        return 2
    files = unique_names(files)
    manifest, skipped = out / "manifest.jsonl", out / "skipped.jsonl"
    done = {r["name"] for r in manifest_records(out)} if manifest.exists() else set()
    if skipped.exists():
        done |= {json.loads(ln)["name"] for ln in skipped.read_text().splitlines() if ln.strip()}
    todo = [f for f in files if f.name not in done][: a.max_files]
    for i, mf in enumerate(todo):
        try:
            rec = process(mf, out, a.min_f)
        except Exception as e:  # one bad file must not stop a long run
            rec = {"name": mf.name, "package": mf.package, "skipped": f"{type(e).__name__}: {e}"}
        _append(skipped if "skipped" in rec else manifest, rec)
        state = rec.get("skipped") or f"{rec['rows_per_beat']} rows/beat, {rec['n_beats']} beats"
        print(f"[{i + 1}/{len(todo)}] {mf.name}: {state}", flush=True)
    if a.stretch > 0 and manifest.exists():
        recs = list(manifest_records(out))
        done |= {r["name"] for r in recs}
        bases = [r for r in recs if r["split"] == "train" and "stretch_of" not in r]
        jobs = [(r, k) for r in bases for k in range(a.stretch)]
        jobs = [(r, k) for r, k in jobs if variant_name(r["name"], k) not in done]
        for i, (r, k) in enumerate(jobs):
            try:
                rec = process_variant(r, k, a.stretch, out, a.seed)
            except Exception as e:  # as above
                rec = {"name": variant_name(r["name"], k), "skipped": f"{type(e).__name__}: {e}"}
            _append(skipped if "skipped" in rec else manifest, rec)
            state = (
                rec.get("skipped") or f"tempo x{rec['tempo_factor']:.3f}, {rec['n_beats']} beats"
            )
            print(f"[variant {i + 1}/{len(jobs)}] {rec['name']}: {state}", flush=True)
    if manifest.exists():
        _write_splits(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
