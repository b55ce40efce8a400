"""Render human-timed MIDI to augmented audio with beat, downbeat and onset labels.

Sources (read from ``../shared/data/midi`` or ``--data-root``; research use, never copied here):

* ``groove``: Groove MIDI drum performances, played to a metronome. The beat grid is the MIDI
  tempo and time signature, moved by a constant per performance onto the drummer's on-beat
  hits (:func:`groove_grid_shift`; drummers play ~12 ms ahead of the click on
  average). Most items are layered with a generated bass line and chords on
  that grid (random key, progression, pattern and GM programs); some stay drums only.
* ``pop909``: piano arrangements (melody, bridge and accompaniment tracks) with random GM
  programs; beats and downbeats from ``beat_midi.txt``. About half get a generated drum part on
  the annotated beats, the rest stay drum-less.
* ``asap``: expressive piano performances with their beat annotations.
* ``heavy``: generated rock/metal songs, no source data (:func:`generate_heavy`): a drifting
  100-180 BPM grid, sections of double-kick, skank, gallop, half-time or blast-beat drums under
  two distorted power-chord guitars (palm-muted chugs, off-beat stabs, open chords) and a bass,
  mastered loud (:func:`loud_master`: compressor and saturation) before the augmentation.
* ``displaced``: the same generated songs, except that about half of the sections play the
  drums, the riff or both a sixteenth, an eighth or three sixteenths late while the labels keep
  the grid (``generate_heavy``'s ``displace_p``), so a model learns to keep the beat through
  sections that accent the "and".
* ``edm``: generated electronic dance music, no source data (:func:`generate_edm`): house,
  trance, techno, dembow, garage and breakbeat styles on a steady grid; four-on-the-floor,
  broken or rock kicks under open hats, off-beat and rolling basses, chord stabs on the "and"
  or in 3-3-2 figures and 16th arpeggios, in intro, groove, build (snare roll), drop and
  breakdown sections, with side-chain pumping; electronic drum kits preferred; mastered loud.
* ``gamemidi``: composed General MIDI game music from Debian packages
  (:data:`GAMEMIDI_PACKAGES`, fetched with ``apt-get download`` into ``$ONBEAT_DEBS``, default
  ``data/debs``; no research data): each file's own arrangement, drums and programs (some
  melodic parts get another program), labelled by its tempo map and time signatures
  (:func:`midi_beat_grid`); files performed off any grid are left out. Split by song.

Each item is a window of at most ``--max-seconds`` (60 s) after a random tempo warp
(0.85 to 1.2, labels scaled too) and transposition (+-5 semitones; never the drums). Every part
is rendered on its own with libfluidsynth (through ``ctypes``; one synth holds every soundfont),
mixed at random levels and augmented with :func:`augment` (EQ tilt, room reverb, microphone
colouring, soft clipping, noise at 10-40 dB SNR, level). Per item it writes:

* ``NAME.flac``: 44.1 kHz mono, 16 bit;
* ``NAME.beats``: ``time_s beat_in_bar`` per line (1 = downbeat);
* ``NAME.onsets``: note-on times of every rendered note, merged within 20 ms;

and appends one JSON line to ``manifest.jsonl``. Runs are resumable: items whose name is in the
manifest are skipped, so the same command continues a stopped run. The split of each *source
piece* (not of each render) is a hash of its name (80/10/10), stored in the manifest and listed
in ``splits.json``.

Usage::

    python -m onbeat.training.render --out data/renders --sets groove,pop909,asap \
        --max-files 200 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

__all__ = [
    "SAMPLE_RATE",
    "FluidSynth",
    "Item",
    "Part",
    "augment",
    "beats_in_bar",
    "default_data_root",
    "find_soundfonts",
    "groove_grid_shift",
    "main",
    "merge_onsets",
    "render_item",
    "source_items",
    "split_of",
]

log = logging.getLogger("onbeat.training.render")

SAMPLE_RATE = 44100
MAX_SECONDS = 60.0
# Time stretch of a render (times x scale, so the tempo is divided by it).
TEMPO_SCALE = (0.85, 1.2)
ONSET_MERGE_S = 0.020
MIN_ONSET_VELOCITY = 8
SETS = ("groove", "pop909", "asap")
Array = npt.NDArray[np.float64]


def default_data_root() -> Path:
    """``../shared/data`` beside the repository (``$ONBEAT_DATA`` overrides it)."""
    env = os.environ.get("ONBEAT_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# --------------------------------------------------------------------------------------------
# Splits


def split_of(set_name: str, piece: str) -> str:
    """Deterministic split of a source piece: ``sha1(set:piece) % 100`` < 80 train, < 90 valid."""
    h = int(hashlib.sha1(f"{set_name}:{piece}".encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 80 else ("valid" if h < 90 else "test")


def item_seed(seed: int, name: str) -> int:
    """A stable random seed for the item ``name`` of a run seeded with ``seed``."""
    return int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:12], 16)


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")


# --------------------------------------------------------------------------------------------
# libfluidsynth through ctypes


class FluidSynth:
    """A minimal offline libfluidsynth renderer (no audio driver, reverb and chorus off).

    Every soundfont stays loaded, so each part is rendered by one call to
    :meth:`render` without reloading anything. Events take effect at the next 64-sample block
    (at most 1.5 ms late).
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, polyphony: int = 256) -> None:
        name = ctypes.util.find_library("fluidsynth") or "libfluidsynth.so.3"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise RuntimeError(
                "libfluidsynth not found: apt-get install fluidsynth (or libfluidsynth3)"
            ) from exc
        vp, ci, cc, cd = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_double
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "new_fluid_settings": (vp, []),
            "delete_fluid_settings": (None, [vp]),
            "fluid_settings_setnum": (ci, [vp, cc, cd]),
            "fluid_settings_setint": (ci, [vp, cc, ci]),
            "new_fluid_synth": (vp, [vp]),
            "delete_fluid_synth": (None, [vp]),
            "fluid_synth_sfload": (ci, [vp, cc, ci]),
            "fluid_synth_program_select": (ci, [vp, ci, ci, ci, ci]),
            "fluid_synth_noteon": (ci, [vp, ci, ci, ci]),
            "fluid_synth_noteoff": (ci, [vp, ci, ci]),
            "fluid_synth_cc": (ci, [vp, ci, ci, ci]),
            "fluid_synth_pitch_bend": (ci, [vp, ci, ci]),
            "fluid_synth_system_reset": (ci, [vp]),
            "fluid_synth_all_sounds_off": (ci, [vp, ci]),
            "fluid_synth_get_active_voice_count": (ci, [vp]),
            "fluid_synth_write_float": (ci, [vp, ci, vp, ci, ci, vp, ci, ci]),
            "fluid_set_log_function": (vp, [ci, vp, vp]),
        }
        for fn, (res, args) in sigs.items():
            f = getattr(lib, fn)
            f.restype = res
            f.argtypes = args
        for level in (1, 2, 3, 4):  # ERR, WARN, INFO, DBG: silence (fatal stays)
            lib.fluid_set_log_function(level, None, None)
        self._lib = lib
        self.sample_rate = sample_rate
        self._settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self._settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setint(self._settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.chorus.active", 0)
        lib.fluid_settings_setint(self._settings, b"synth.polyphony", polyphony)
        lib.fluid_settings_setnum(self._settings, b"synth.gain", 0.4)
        self._synth = lib.new_fluid_synth(self._settings)
        if not self._synth:
            raise RuntimeError("new_fluid_synth failed")
        self._fonts: dict[str, int] = {}

    def close(self) -> None:
        """Free the synth."""
        if getattr(self, "_synth", None):
            self._lib.delete_fluid_synth(self._synth)
            self._lib.delete_fluid_settings(self._settings)
            self._synth = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def font(self, path: str | Path) -> int:
        """Load a soundfont once; returns its id."""
        key = str(path)
        if key not in self._fonts:
            sfid = self._lib.fluid_synth_sfload(self._synth, key.encode(), 0)
            if sfid < 0:
                raise RuntimeError(f"cannot load soundfont {key}")
            self._fonts[key] = sfid
        return self._fonts[key]

    def has_preset(self, path: str | Path, bank: int, program: int) -> bool:
        """Whether a soundfont has ``bank:program`` (tried on channel 15)."""
        sfid = self.font(path)
        return self._lib.fluid_synth_program_select(self._synth, 15, sfid, bank, program) == 0

    def _silence(self) -> None:
        """Reset every channel and let no voice of the previous part ring into the next."""
        lib, syn = self._lib, self._synth
        lib.fluid_synth_system_reset(syn)
        lib.fluid_synth_all_sounds_off(syn, -1)
        scratch = np.zeros(64, np.float32)
        p = scratch.ctypes.data
        for _ in range(4 * self.sample_rate // 64):  # at most 4 s of release
            if lib.fluid_synth_get_active_voice_count(syn) == 0:
                break
            lib.fluid_synth_write_float(syn, 64, p, 0, 1, p, 0, 1)

    def render(
        self,
        events: Sequence[tuple[int, int, int, int]],
        n_samples: int,
        *,
        soundfont: str | Path,
        bank: int,
        program: int,
        drum: bool,
    ) -> npt.NDArray[np.float32]:
        """Render one part to mono float32.

        ``events`` are ``(sample, kind, a, b)`` sorted by sample, kind 0 note-off (key a),
        1 note-on (key a, velocity b), 2 control change (number a, value b), 3 pitch bend (a).
        """
        lib, syn = self._lib, self._synth
        self._silence()
        chan = 9 if drum else 0
        sfid = self.font(soundfont)
        if lib.fluid_synth_program_select(syn, chan, sfid, bank, program) != 0:
            fallback = (bank, 0) if drum else (0, 0)
            if lib.fluid_synth_program_select(syn, chan, sfid, *fallback) != 0:
                raise RuntimeError(f"{soundfont} has no preset {bank}:{program}")
        # Render a whole number of the synth's 64-sample blocks, so that every render starts on
        # a block boundary (no samples left over from the previous one): deterministic output.
        total = -(-n_samples // 64) * 64
        left = np.zeros(total, np.float32)
        right = np.zeros(total, np.float32)
        lp, rp = left.ctypes.data, right.ctypes.data
        pos = 0
        for s, kind, a, b in events:
            s = min(max(int(s), 0), total)
            if s > pos:
                lib.fluid_synth_write_float(syn, s - pos, lp, pos, 1, rp, pos, 1)
                pos = s
            if kind == 1:
                lib.fluid_synth_noteon(syn, chan, a, b)
            elif kind == 0:
                lib.fluid_synth_noteoff(syn, chan, a)
            elif kind == 2:
                lib.fluid_synth_cc(syn, chan, a, b)
            else:
                lib.fluid_synth_pitch_bend(syn, chan, a)
        if pos < total:
            lib.fluid_synth_write_float(syn, total - pos, lp, pos, 1, rp, pos, 1)
        return 0.5 * (left[:n_samples] + right[:n_samples])


# --------------------------------------------------------------------------------------------
# Soundfonts


SF_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts")
GM_DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # Standard, Room, Power, Electronic, 808, Jazz, Brush


@dataclass(frozen=True)
class Soundfonts:
    """General MIDI soundfonts (programs and bank-128 kits) and single-kit drum fonts."""

    gm: tuple[Path, ...]
    kits: tuple[Path, ...]


def find_soundfonts(extra: Sequence[str | Path] = ()) -> Soundfonts:
    """Soundfonts installed by Debian (fluid-soundfont-gm, timgm6mb-soundfont,
    musescore-general-soundfont-small, avldrums.lv2-soundfont) plus ``extra``.

    A font whose name mentions ``LV2`` (the AVL drum kits, one kit at bank 0 program 0, GM note
    map) is a drum kit; every other font is taken as General MIDI.
    """
    found: dict[str, Path] = {}
    paths = [p for d in SF_DIRS if Path(d).is_dir() for p in sorted(Path(d).iterdir())]
    paths += [Path(p) for p in extra]
    for p in paths:
        if p.suffix.lower() in (".sf2", ".sf3") and p.is_file():
            found.setdefault(p.resolve().name, p.resolve())
    gm = tuple(p for p in found.values() if "lv2" not in p.name.lower())
    kits = tuple(p for p in found.values() if "lv2" in p.name.lower())
    return Soundfonts(gm, kits)


# --------------------------------------------------------------------------------------------
# Parts, windows and labels


@dataclass
class Part:
    """One instrument: notes ``(start, end, pitch, velocity)`` in seconds, controls
    ``(time, number, value)`` and pitch bends ``(time, value)``."""

    name: str
    notes: list[tuple[float, float, int, int]]
    program: int = 0
    is_drum: bool = False
    controls: list[tuple[float, int, int]] = field(default_factory=list)
    bends: list[tuple[float, int]] = field(default_factory=list)
    level_db: float = 0.0
    kits: tuple[int, ...] = ()  # drums: GM kits (bank 128) to prefer; () = any kit
    analog_kick_p: float = 0.0  # drums: chance that the kicks are a synthesized sine sweep


@dataclass
class Item:
    """One source piece, ready for :func:`render_item`.

    ``build(rng)`` reads the MIDI and returns the parts (it may generate accompaniment and
    choose programs with ``rng``), the beats as ``(n, 2)`` (time in seconds on the source
    timeline, beat in bar with 1 = downbeat) and a dict of what it chose.
    """

    name: str
    set: str
    piece: str
    split: str
    build: Callable[[np.random.Generator], tuple[list[Part], Array, dict[str, Any]]]


def beats_in_bar(is_downbeat: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Number beats within bars from downbeat flags (1 = downbeat).

    Beats before the first downbeat (a pickup) are counted back from it, with the bar length of
    the first whole bar (4 when there is none).
    """
    db = np.asarray(is_downbeat, dtype=bool)
    out = np.zeros(db.shape[0], dtype=np.int64)
    idx = np.flatnonzero(db)
    if idx.size == 0:
        return (np.arange(db.shape[0]) % 4 + 1).astype(np.int64)
    count = 0
    for i in range(idx[0], db.shape[0]):
        count = 1 if db[i] else count + 1
        out[i] = count
    bar = int(idx[1] - idx[0]) if idx.size > 1 else 4
    for i in range(idx[0]):
        out[i] = (bar - (idx[0] - i)) % bar + 1
    return out


def merge_onsets(times: npt.ArrayLike, within: float = ONSET_MERGE_S) -> Array:
    """Sort onset times and merge each cluster that starts within ``within`` seconds of its first
    onset into that first onset."""
    t = np.sort(np.asarray(times, dtype=np.float64))
    out: list[float] = []
    for x in t:
        if not out or x - out[-1] > within + 1e-9:
            out.append(float(x))
    return np.asarray(out, dtype=np.float64)


def _pm_to_parts(instruments: Sequence[Any], name: str) -> list[Part]:
    parts = []
    for k, ins in enumerate(instruments):
        notes = [(n.start, n.end, n.pitch, n.velocity) for n in ins.notes]
        if not notes:
            continue
        ctrl = [
            (c.time, c.number, c.value) for c in ins.control_changes if c.number in (64, 66, 67)
        ]
        bends = [(b.time, b.pitch) for b in ins.pitch_bends]
        parts.append(
            Part(
                f"{name}{k}" if len(instruments) > 1 else name,
                notes,
                int(ins.program),
                ins.is_drum,
                ctrl,
                bends,
            )
        )
    return parts


def _window(
    parts: list[Part], beats: Array, t0: float, t1: float, scale: float
) -> tuple[list[Part], Array]:
    """Keep notes starting in ``[t0, t1)`` and beats in ``[t0, t1)``, shifted to ``t0`` and
    stretched by ``scale``. Controls keep their last value before ``t0`` (sustain pedal)."""
    out = []
    for p in parts:
        notes = [
            ((s - t0) * scale, (min(e, t1) - t0) * scale, pi, v)
            for s, e, pi, v in p.notes
            if t0 <= s < t1
        ]
        if not notes:
            continue
        last: dict[int, int] = {}
        ctrl = []
        for t, num, val in sorted(p.controls):
            if t < t0:
                last[num] = val
            elif t < t1:
                ctrl.append(((t - t0) * scale, num, val))
        ctrl = [(0.0, num, val) for num, val in last.items()] + ctrl
        bend_last = None
        bends = []
        for t, val in sorted(p.bends):
            if t < t0:
                bend_last = val
            elif t < t1:
                bends.append(((t - t0) * scale, val))
        if bend_last is not None:
            bends.insert(0, (0.0, bend_last))
        out.append(dataclasses.replace(p, notes=notes, controls=ctrl, bends=bends))
    keep = (beats[:, 0] >= t0) & (beats[:, 0] < t1)
    b = beats[keep].copy()
    b[:, 0] = (b[:, 0] - t0) * scale
    return out, b


def _events(part: Part, sr: int, transpose: int) -> list[tuple[int, int, int, int]]:
    ev: list[tuple[int, int, int, int]] = []
    shift = 0 if part.is_drum else transpose
    for s, e, p, v in part.notes:
        key = int(np.clip(p + shift, 0, 127))
        a = round(s * sr)
        b = max(round(e * sr), a + 1)
        ev.append((a, 1, key, int(np.clip(v, 1, 127))))
        ev.append((b, 0, key, 0))
    for t, num, val in part.controls:
        ev.append((round(t * sr), 2, num, val))
    for t, val in part.bends:
        ev.append((round(t * sr), 3, val + 8192, 0))
    # at one sample: controls, then note-offs, then note-ons
    order = {2: 0, 3: 0, 0: 1, 1: 2}
    ev.sort(key=lambda x: (x[0], order[x[1]]))
    return ev


# --------------------------------------------------------------------------------------------
# Generated accompaniment


MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {
    "major": (
        (0, 4, 5, 3),
        (0, 5, 3, 4),
        (0, 3, 4, 3),
        (1, 4, 0, 0),
        (5, 3, 0, 4),
        (0, 0, 3, 3, 0, 0, 4, 3),
        (0, 3, 0, 4),
    ),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4), (0, 0, 3, 3)),
}
BASS_PROGRAMS: tuple[int, ...] = tuple(range(32, 40))  # acoustic, electric, slap, synth basses
# pianos, vibraphone, organs, guitars, strings, brass, saw lead, pads
CHORD_PROGRAMS: tuple[int, ...] = (0, 1, 2, 4, 5, 6, 7, 11, 16, 17, 18, 19, 24, 25, 26, 27, 28)
CHORD_PROGRAMS += (29, 30, 48, 49, 50, 51, 61, 62, 81, 88, 89, 90, 91, 92, 94, 95)
# pianos, organs, guitars, harp, strings, pads (piano twice as likely)
ACCOMP_PROGRAMS: tuple[int, ...] = (0, 0, 1, 2, 4, 5, 6, 7, 16, 17, 19, 24, 25, 26, 27, 46, 48)
ACCOMP_PROGRAMS += (49, 50, 88, 89, 90, 92, 95)
# keys, organ, harmonica, guitars, violin, strings, choir, brass, reeds, flutes, leads
MELODY_PROGRAMS: tuple[int, ...] = (0, 1, 4, 5, 8, 11, 12, 16, 22, 24, 25, 26, 27, 29, 40, 48)
MELODY_PROGRAMS += (52, 53, 56, 57, 60, 61, 64, 65, 66, 68, 71, 73, 75, 80, 81, 82, 85)
PIANO_PROGRAMS = (0, 0, 0, 1, 1, 2, 3, 4, 5, 6)
# Groove MIDI (Roland TD-11) pitches outside the GM drum map
GROOVE_DRUM_MAP = {22: 42, 26: 46, 58: 43}


def _beat_time(beats: Array, pos: npt.ArrayLike) -> Array:
    """Time of fractional beat index ``pos`` on a beat grid (extrapolated at both ends)."""
    pos = np.asarray(pos, dtype=np.float64)
    n = beats.shape[0]
    idx = np.arange(n, dtype=np.float64)
    t = np.interp(pos, idx, beats)
    if n >= 2:
        lo, hi = beats[1] - beats[0], beats[-1] - beats[-2]
        t = np.where(pos < 0, beats[0] + pos * lo, t)
        t = np.where(pos > n - 1, beats[-1] + (pos - (n - 1)) * hi, t)
    return t


def _bars(bib: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """``(first beat index, beats)`` of each bar (a leading pickup is its own bar)."""
    starts = [0, *[i for i in range(1, len(bib)) if bib[i] == 1]]
    ends = [*starts[1:], len(bib)]
    return [(s, e - s) for s, e in zip(starts, ends, strict=True) if e > s]


def _swing(frac: float, amount: float) -> float:
    """Delay off-beat eighths: position 0.5 within a beat moves to ``amount``."""
    return amount if abs(frac - 0.5) < 1e-6 else frac


def _chord_tones(key: int, scale: tuple[int, ...], degree: int, seventh: bool) -> list[int]:
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    return [(key + scale[(degree + s) % 7]) % 12 for s in steps]


def _humanize(rng: np.random.Generator, sd: float, n: int) -> Array:
    return rng.normal(0.0, sd, n)


def _humanized(
    notes: list[tuple[float, float, int, int]],
    rng: np.random.Generator,
    sd: float,
    dur: float,
    min_len: float,
) -> list[tuple[float, float, int, int]]:
    """Notes moved by :func:`_humanize` timing errors; each lasts ``dur`` s (drums) or, with
    ``dur`` 0, its own length but at least ``min_len`` s."""
    d = _humanize(rng, sd, len(notes))
    return [
        (max(0.0, a + e), max(0.0, a + e) + (dur if dur > 0 else max(min_len, z - a)), p, v)
        for (a, z, p, v), e in zip(notes, d, strict=True)
    ]


def generate_band(
    beats: Array,
    bib: npt.NDArray[np.int64],
    rng: np.random.Generator,
    *,
    bass: bool = True,
    chords: bool = True,
    swing: float = 0.5,
) -> tuple[list[Part], dict[str, Any]]:
    """A bass line and chords on a beat grid: random key, mode, progression, harmonic rhythm,
    patterns, programs and human timing (the grid itself stays the label)."""
    mode = str(rng.choice(["major", "minor"]))
    scale = MAJOR if mode == "major" else MINOR
    key = int(rng.integers(12))
    progs = PROGRESSIONS[mode]
    prog = progs[int(rng.integers(len(progs)))]
    seventh = bool(rng.random() < 0.3)
    bars_per_chord = int(rng.choice([1, 1, 1, 2]))
    bars = _bars(bib)
    jitter = float(rng.uniform(0.003, 0.012))
    info: dict[str, Any] = {
        "key": key,
        "mode": mode,
        "progression": list(prog),
        "swing": round(swing, 3),
    }
    parts: list[Part] = []
    chord_of_bar = [prog[(b // bars_per_chord) % len(prog)] for b in range(len(bars))]

    if bass:
        pattern = str(
            rng.choice(["roots", "half", "eighths", "root_fifth", "syncopated", "walking", "whole"])
        )
        base_vel = int(rng.integers(70, 110))
        notes: list[tuple[float, float, int, int]] = []
        for b, (s, n) in enumerate(bars):
            tones = _chord_tones(key, scale, chord_of_bar[b], False)
            root = 33 + (tones[0] - 33) % 12  # A1..G#2
            fifth = root + 7
            pos: list[tuple[float, float, int]] = []  # (beat offset, length in beats, pitch)
            if pattern == "roots":
                pos = [(i, 0.9, root) for i in range(n)]
            elif pattern == "half":
                pos = [(i, 1.8, root if i % 4 == 0 else fifth) for i in range(0, n, 2)]
            elif pattern == "eighths":
                pos = [(i / 2, 0.45, root) for i in range(2 * n)]
            elif pattern == "root_fifth":
                pos = [(i, 0.9, root if i % 2 == 0 else fifth) for i in range(n)]
            elif pattern == "syncopated":
                pos = (
                    [(0, 1.4, root), (1.5, 0.4, root), (2.5, 0.9, fifth)]
                    if n >= 3
                    else [(0, n * 0.9, root)]
                )
                pos += [(i + 0.5, 0.4, root + 12) for i in range(3, n)]
            elif pattern == "walking":
                third = root + (tones[1] - tones[0]) % 12
                walk = [root, third, root + (tones[2] - tones[0]) % 12, third]
                pos = [(i, 0.95, walk[i % 4]) for i in range(n)]
            else:
                pos = [(0, n * 0.95, root)]
            for off, length, pitch in pos:
                frac = off - math.floor(off)
                p0 = s + math.floor(off) + _swing(frac, swing)
                t_on = float(_beat_time(beats, p0))
                t_off = float(_beat_time(beats, s + off + length))
                v = base_vel + (8 if off == 0 else 0) + int(rng.integers(-8, 9))
                notes.append((t_on, max(t_off, t_on + 0.05), int(pitch), int(np.clip(v, 30, 127))))
        j = _humanize(rng, jitter, len(notes))
        notes = [
            (max(0.0, a + d), max(0.0, e + d), p, v)
            for (a, e, p, v), d in zip(notes, j, strict=True)
        ]
        parts.append(
            Part("bass", notes, int(rng.choice(BASS_PROGRAMS)), level_db=float(rng.uniform(-6, 1)))
        )
        info["bass_pattern"] = pattern

    if chords:
        pattern = str(
            rng.choice(["whole", "beats", "offbeats", "half", "push", "backbeat", "arpeggio"])
        )
        base_vel = int(rng.integers(55, 100))
        notes = []
        for b, (s, n) in enumerate(bars):
            tones = _chord_tones(key, scale, chord_of_bar[b], seventh)
            voicing = sorted(55 + (t - 55) % 12 for t in tones)
            hits: list[tuple[float, float, list[int]]] = []
            if pattern == "whole":
                hits = [(0, n * 0.97, voicing)]
            elif pattern == "beats":
                hits = [(i, 0.8, voicing) for i in range(n)]
            elif pattern == "offbeats":
                hits = [(i + 0.5, 0.35, voicing) for i in range(n)]
            elif pattern == "half":
                hits = [(i, 1.9, voicing) for i in range(0, n, 2)]
            elif pattern == "push":
                hits = [(0, 1.4, voicing), (1.5, 1.0, voicing)] + (
                    [(2.5, n - 2.6, voicing)] if n > 3 else []
                )
            elif pattern == "backbeat":
                hits = [(i, 0.4, voicing) for i in range(1, n, 2)]
            else:
                seq = [*voicing, voicing[0] + 12]
                hits = [
                    (i / 2, 0.5, [seq[(i if i < len(seq) else 2 * len(seq) - i - 2) % len(seq)]])
                    for i in range(2 * n)
                ]
            for off, length, pitches in hits:
                frac = off - math.floor(off)
                t_on = float(_beat_time(beats, s + math.floor(off) + _swing(frac, swing)))
                t_off = float(_beat_time(beats, s + off + length))
                spread = float(rng.uniform(0, 0.005)) if len(pitches) > 1 else 0.0
                d = float(rng.normal(0, jitter))
                for k, p in enumerate(pitches):
                    v = base_vel + int(rng.integers(-10, 11))
                    on = max(0.0, t_on + d + k * spread)
                    notes.append((on, max(t_off + d, on + 0.05), int(p), int(np.clip(v, 25, 127))))
        parts.append(
            Part(
                "chords", notes, int(rng.choice(CHORD_PROGRAMS)), level_db=float(rng.uniform(-8, 0))
            )
        )
        info["chord_pattern"] = pattern
    return parts, info


DRUM_PATTERNS = {  # 8 eighth-note slots per 4-beat bar: kick, snare, hi-hat
    "rock": ("x...x...", "..x...x.", "xxxxxxxx"),
    "rock2": ("x...xx..", "..x...x.", "xxxxxxxx"),
    "pop": ("x..x.x..", "..x...x.", "xxxxxxxx"),
    "four_floor": ("x.x.x.x.", "..x...x.", ".x.x.x.x"),
    "halftime": ("x.....x.", "....x...", "xxxxxxxx"),
    "ballad": ("x.....x.", "..x...x.", "x.x.x.x."),
    "hiphop": ("x..x..x.", "..x...x.", "xxxxxxxx"),
    "sixteenths": ("x...x...", "..x...x.", "ssssssss"),
}


def generate_drums(
    beats: Array, bib: npt.NDArray[np.int64], rng: np.random.Generator
) -> tuple[Part, dict[str, Any]]:
    """A drum part on an annotated beat grid: a random pattern, crashes on phrase starts,
    human timing and velocities."""
    name = str(rng.choice(list(DRUM_PATTERNS)))
    kick, snare, hat = DRUM_PATTERNS[name]
    hat_note = int(rng.choice([42, 42, 42, 51, 46])) if name != "four_floor" else 46
    snare_note = 37 if (name == "ballad" and rng.random() < 0.5) else int(rng.choice([38, 38, 40]))
    jitter = float(rng.uniform(0.002, 0.010))
    notes: list[tuple[float, float, int, int]] = []

    def hit(pos: float, pitch: int, vel: int) -> None:
        t = float(_beat_time(beats, pos)) + float(rng.normal(0, jitter))
        v = int(np.clip(vel + rng.integers(-10, 11), 20, 127))
        notes.append((max(0.0, t), max(0.0, t) + 0.1, pitch, v))

    bar_no = 0
    for i in range(beats.shape[0]):
        k = (int(bib[i]) - 1) % 4
        if bib[i] == 1:
            if bar_no % 8 == 0 or (bar_no % 4 == 0 and rng.random() < 0.3):
                hit(i, 49, 100)
            bar_no += 1
        for half in (0, 1):
            slot = 2 * k + half
            pos = i + 0.5 * half
            if kick[slot] == "x":
                hit(pos, 36, 100 if half == 0 else 85)
            if snare[slot] == "x":
                hit(pos, snare_note, 100)
            if hat[slot] == "x":
                hit(pos, hat_note, 80 if half == 0 else 62)
            elif hat[slot] == "s":
                hit(pos, hat_note, 75 if half == 0 else 60)
                hit(pos + 0.25, hat_note, 50)
    return Part("drums", notes, 0, True, level_db=float(rng.uniform(-6, 2))), {"drum_pattern": name}


# --------------------------------------------------------------------------------------------
# Sources


def _groove_items(root: Path) -> Iterator[Item]:
    import pretty_midi

    base = root / "midi" / "groove"
    with open(base / "info.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        if r["beat_type"] != "beat" or float(r["duration"]) < 10.0:
            continue  # fills are a few seconds long
        piece = f"{r['session']}/{r['style']}"
        name = "groove_" + _safe(r["id"])
        path = base / r["midi_filename"]
        style = r["style"].split("/")[0]

        def build(
            rng: np.random.Generator, path: Path = path, style: str = style
        ) -> tuple[list[Part], Array, dict[str, Any]]:
            pm = pretty_midi.PrettyMIDI(str(path))
            b = np.asarray(pm.get_beats(), dtype=np.float64)
            bib = _groove_bib(pm, b)
            drums = [
                (s, e, GROOVE_DRUM_MAP.get(p, p), v)
                for s, e, p, v in (
                    (n.start, n.end, n.pitch, n.velocity) for i in pm.instruments for n in i.notes
                )
            ]
            shift = groove_grid_shift(b, [s for s, _, _, v in drums if v >= 40])
            b = b + shift
            parts = [Part("drums", drums, 0, True, level_db=float(rng.uniform(-3, 3)))]
            u = rng.random()
            info: dict[str, Any] = {"layers": "drums"}
            if u >= 0.25:
                swung = style in ("jazz", "blues", "neworleans", "shuffle")
                sw = float(rng.uniform(0.6, 0.67)) if swung else 0.5
                bass, chords = (
                    (True, True) if u >= 0.45 else ((True, False) if u >= 0.35 else (False, True))
                )
                band, binfo = generate_band(b, bib, rng, bass=bass, chords=chords, swing=sw)
                parts += band
                info = {"layers": "+".join(p.name for p in parts), **binfo}
            info["grid_shift_s"] = round(shift, 4)
            return parts, np.column_stack([b, bib]), info

        yield Item(name, "groove", piece, split_of("groove", piece), build)


def groove_grid_shift(beats: Array, hits: Sequence[float], min_hits: int = 8) -> float:
    """Median deviation (s) of on-beat hits from the metronome grid.

    Groove drummers play about 12 ms ahead of the click on average (-31 to +9 ms for 90 % of
    the performances), so the grid is moved onto the drums' own beat: the median deviation of
    the hits (any drum, velocity >= 40 in practice) that lie within 12 % of a beat period of a
    grid beat, 0 when fewer than ``min_hits`` do. Off-beat eighths and sixteenths fall outside
    that window; all drums count so that a ride or hi-hat keeping time (jazz, latin) does.
    """
    t = np.asarray(hits, dtype=np.float64)
    if beats.shape[0] < 2 or t.size < min_hits:
        return 0.0
    i = np.clip(np.searchsorted(beats, t), 1, beats.shape[0] - 1)
    i = np.where(np.abs(beats[i - 1] - t) < np.abs(beats[i] - t), i - 1, i)
    d = t - beats[i]
    near = np.abs(d) < 0.12 * float(np.median(np.diff(beats)))
    return float(np.median(d[near])) if near.sum() >= min_hits else 0.0


def downbeat_flags(pm: Any, beats: Array) -> npt.NDArray[np.bool_]:
    """Which of ``beats`` are the MIDI file's downbeats (its time signatures' bar starts)."""
    db = np.asarray(pm.get_downbeats(), dtype=np.float64)
    if db.size == 0:
        return np.zeros(beats.shape[0], dtype=bool)
    j = np.searchsorted(db, beats)  # a matching downbeat is one of the two neighbours
    lo, hi = db[np.clip(j - 1, 0, db.size - 1)], db[np.clip(j, 0, db.size - 1)]
    flags: npt.NDArray[np.bool_] = np.isclose(beats, lo, atol=1e-4) | np.isclose(
        beats, hi, atol=1e-4
    )
    return flags


def _groove_bib(pm: Any, beats: Array) -> npt.NDArray[np.int64]:
    return beats_in_bar(downbeat_flags(pm, beats))


def _pop909_items(root: Path) -> Iterator[Item]:
    import pretty_midi

    base = root / "midi" / "pop909"
    for d in sorted(p for p in base.iterdir() if p.is_dir() and p.name.isdigit()):
        ann = np.loadtxt(d / "beat_midi.txt", ndmin=2)
        if ann.shape[0] < 8 or ann.shape[1] < 3:
            continue
        db = np.flatnonzero(ann[:, 2] == 1)
        if db.size < 2 or np.median(np.diff(db)) != 4:
            continue  # 6-beat bars: beat level ambiguous (3/4 or 6/8 at eighths)
        beats = np.column_stack([ann[:, 0], beats_in_bar(ann[:, 2] == 1)])
        name = f"pop909_{d.name}"
        path = d / f"{d.name}.mid"

        def build(
            rng: np.random.Generator, path: Path = path, beats: Array = beats
        ) -> tuple[list[Part], Array, dict[str, Any]]:
            pm = pretty_midi.PrettyMIDI(str(path))
            parts = []
            for ins in pm.instruments:
                role = ins.name.strip().upper() or "PIANO"
                if role == "MELODY" and rng.random() < 0.2:
                    continue
                if role == "BRIDGE" and rng.random() < 0.3:
                    continue
                ins.program = int(
                    rng.choice(MELODY_PROGRAMS if role in ("MELODY", "BRIDGE") else ACCOMP_PROGRAMS)
                )
                for p in _pm_to_parts([ins], role.lower()):
                    p.level_db = (
                        float(rng.uniform(-4, 3)) if role == "MELODY" else float(rng.uniform(-6, 0))
                    )
                    parts.append(p)
            info: dict[str, Any] = {"layers": "+".join(p.name for p in parts)}
            if rng.random() < 0.5:
                drum, dinfo = generate_drums(beats[:, 0], beats[:, 1].astype(np.int64), rng)
                parts.append(drum)
                info = {"layers": info["layers"] + "+drums", **dinfo}
            return parts, beats, info

        yield Item(name, "pop909", d.name, split_of("pop909", d.name), build)


def _asap_items(root: Path) -> Iterator[Item]:
    import pretty_midi

    base = root / "midi" / "asap"
    with open(base / "metadata.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        ann = base / r["performance_annotations"]
        midi = base / r["midi_performance"]
        if not ann.exists() or not midi.exists():
            continue
        times, flags = [], []
        for line in ann.read_text().splitlines():
            cols = line.split("\t")
            if len(cols) < 3:
                continue
            kind = cols[2].split(",")[0].strip()
            if kind in ("b", "db", "bR"):
                times.append(float(cols[0]))
                flags.append(kind == "db")
        if len(times) < 8:
            continue
        beats = np.column_stack([np.asarray(times), beats_in_bar(flags)])
        piece = f"{r['composer']}/{r['title']}"
        name = "asap_" + _safe(str(Path(r["midi_performance"]).with_suffix("")))

        def build(
            rng: np.random.Generator, midi: Path = midi, beats: Array = beats
        ) -> tuple[list[Part], Array, dict[str, Any]]:
            pm = pretty_midi.PrettyMIDI(str(midi))
            inst = [i for i in pm.instruments if not i.is_drum]
            program = int(rng.choice(PIANO_PROGRAMS))
            notes = [(n.start, n.end, n.pitch, n.velocity) for i in inst for n in i.notes]
            ctrl = [
                (c.time, c.number, c.value)
                for i in inst
                for c in i.control_changes
                if c.number in (64, 66, 67)
            ]
            return [Part("piano", notes, program, False, ctrl)], beats, {"layers": "piano"}

        yield Item(name, "asap", piece, split_of("asap", piece), build)


# --------------------------------------------------------------------------------------------
# Generated heavy music (rock/metal): dense kicks, off-beat snares and stabs, distorted guitars


# 16 sixteenth slots per 4-beat bar: kick, snare, cymbal ("x" hit, "." rest)
HEAVY_DRUMS = {
    "double_kick": ("xxxxxxxxxxxxxxxx", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "double_kick8": ("x.x.x.x.x.x.x.x.", "....x.......x...", "x...x...x...x..."),
    "skank": ("x...x...x...x...", "..x...x...x...x.", "x.x.x.x.x.x.x.x."),
    "gallop": ("x.xxx.xxx.xxx.xx", "....x.......x...", "x...x...x...x..."),
    "rock_heavy": ("x.....x.x.......", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "punk": ("x.x...x.x.x.....", "....x.......x...", "x.x.x.x.x.x.x.x."),
    "halftime": ("x.........x.....", "........x.......", "x.x.x.x.x.x.x.x."),
    "blast": ("x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x.", "x.x.x.x.x.x.x.x."),
}
HEAVY_DRUM_WEIGHTS = (3, 2, 2, 2, 3, 2, 2, 0.5)
# A skank beat (snare on the off-beats, kick on the beats) at tempo T sounds like a kick-snare
# backbeat at 2T, so it is only drawn where 2T stays past the trackers' range (215 BPM) after the
# slowest time stretch (TEMPO_SCALE): 130 / 1.2 = 108 BPM, twice that 217. Labelled at T where 2T
# is in range (the first heavy render drew it at any tempo), it taught a model to halve a 150 BPM
# rock beat; session 10 drew it from 160 BPM, session 12 from 130 (renders_heavy2). Session 21
# found that even from 130 it still teaches the networks to fire on the kicks only of a kick/snare
# backbeat at 150 BPM (and, after EDM training, at 120); the beat fine-tunes since then leave the
# songs with skank sections out (python -m onbeat.training.subset --drop-section skank). The
# generator keeps drawing it, so the renders on disk stay reproducible.
SKANK_MIN_BPM = 130.0
# 16 slots per 4-beat bar: "P" palm-muted power chord, "O" open (rings to the next hit), "." rest
HEAVY_RIFFS = {
    "chug16": "PPPPPPPPPPPPPPPP",
    "chug8": "P.P.P.P.P.P.P.P.",
    "gallop": "P.PPP.PPP.PPP.PP",
    "open_whole": "O...............",
    "open_half": "O.......O.......",
    "syncopated": "O..P.PO..P.PO.P.",
    "offbeat_stabs": "..O...O...O...O.",
    "beat_chug": "O...P.P.O...P.P.",
    "push": "O.....O.....O...",
}
# root movements in semitones above the low root (E or D), one per bar
HEAVY_PROGRESSIONS = ((0, 0, 3, 5), (0, 1, 0, -2), (0, 5, 3, 1), (0, 0, 7, 5), (0, 3, 0, 6))
HEAVY_GUITARS = (29, 30, 30)  # overdriven, distortion
HEAVY_BASSES = (33, 34, 34, 38)  # finger, pick, synth


def _heavy_grid(rng: np.random.Generator, seconds: float) -> tuple[Array, npt.NDArray[np.int64]]:
    """A drifting beat grid: 100-180 BPM, a slow random walk of +-3 %, 4/4 (10 %: 3/4)."""
    bpm = float(rng.uniform(100, 180))
    per_bar = 3 if rng.random() < 0.1 else 4
    n = int(seconds * bpm / 60) + 8
    walk = np.cumsum(rng.normal(0, 0.004, n))
    walk = np.clip(walk - np.linspace(0, walk[-1], n), -0.03, 0.03)
    ibi = 60.0 / (bpm * (1 + walk))
    beats = 0.5 + np.concatenate([[0.0], np.cumsum(ibi[:-1])])
    bib = (np.arange(n) % per_bar + 1).astype(np.int64)
    return beats, bib


# Displaced sections (the ``displaced`` set): the band plays a section shifted off the beat by
# this many sixteenths while the beat labels keep the song's grid, as in metal sections where
# kick, snare and cymbals all accent the "and" (sectoid_escape / sectoid_war in the FoF songs,
# BENCHMARKS.md issue 3 "Session 12"). A listener, and a causal model, can only keep the beat
# there from the sections before it.
DISPLACE_SHIFTS = (2, 1, 3)  # sixteenths: the "and", the "e", the "a" (an anticipation)
DISPLACE_SHIFT_WEIGHTS = (0.7, 0.15, 0.15)
DISPLACE_PARTS = ("all", "drums", "riff")  # what moves; the rest stays on the grid
DISPLACE_PART_WEIGHTS = (0.5, 0.3, 0.2)


def generate_heavy(
    beats: Array,
    bib: npt.NDArray[np.int64],
    rng: np.random.Generator,
    displace_p: float = 0.0,
) -> tuple[list[Part], dict[str, Any]]:
    """Drums, two distorted guitars and a bass on a beat grid, in 4- or 8-bar sections that
    each draw a drum pattern, a riff and a progression; some sections drop the drums.

    With ``displace_p`` > 0, each section after the first that follows an undisplaced section is
    displaced with that probability: the drums, the riff (guitars and bass) or both play
    :data:`DISPLACE_SHIFTS` sixteenths late while the beat grid (the labels) stays. At 0 the
    random stream, and so every ``heavy`` song, is unchanged.
    """
    bars = _bars(bib)
    low = int(rng.choice([38, 40, 40, 42]))  # D2, E2, F#2
    jitter = float(rng.uniform(0.002, 0.008))
    drums: list[tuple[float, float, int, int]] = []
    gtr: list[tuple[float, float, int, int]] = []
    bass: list[tuple[float, float, int, int]] = []
    names = list(HEAVY_DRUMS)
    w = np.asarray(HEAVY_DRUM_WEIGHTS, dtype=np.float64)
    if 60.0 / float(np.median(np.diff(beats))) < SKANK_MIN_BPM:
        w[names.index("skank")] = 0.0
    w /= w.sum()
    cym = int(rng.choice([42, 51, 51, 59, 46]))
    sections: list[str] = []
    starts: list[int] = []  # first beat of each section
    prev_displaced = False
    b = 0
    while b < len(bars):
        length = int(rng.choice([4, 8]))
        drum = str(rng.choice(names, p=w))
        riff = str(rng.choice(list(HEAVY_RIFFS)))
        prog = HEAVY_PROGRESSIONS[int(rng.integers(len(HEAVY_PROGRESSIONS)))]
        no_drums = b > 0 and rng.random() < 0.1
        bass_follows = rng.random() < 0.7
        d_drums = d_riff = 0  # sixteenths late
        if displace_p > 0 and b > 0 and not prev_displaced and rng.random() < displace_p:
            shift = int(rng.choice(DISPLACE_SHIFTS, p=DISPLACE_SHIFT_WEIGHTS))
            moved = str(rng.choice(DISPLACE_PARTS, p=DISPLACE_PART_WEIGHTS))
            d_drums = shift if moved in ("all", "drums") and not no_drums else 0
            d_riff = shift if moved in ("all", "riff") else 0
        prev_displaced = bool(d_drums or d_riff)
        sections.append(
            f"{drum if not no_drums else 'none'}/{riff}"
            + (f"/+{d_drums}d{d_riff}r" if prev_displaced else "")
        )
        starts.append(bars[b][0])
        for k in range(b, min(b + length, len(bars))):
            s, n = bars[k]
            root = low + prog[(k - b) % len(prog)]
            kick, snare, cyms = HEAVY_DRUMS[drum]
            if not no_drums:
                if k == b:
                    drums.append((float(_beat_time(beats, s + d_drums / 4)), 0.0, 49, 110))
                for slot in range(4 * n):
                    pos = s + (slot + d_drums) / 4
                    t = float(_beat_time(beats, pos))
                    accent = 12 if slot % 4 == 0 else 0
                    for pat, pitch, vel in ((kick, 36, 95), (snare, 38, 105), (cyms, cym, 75)):
                        if pat[slot % 16] == "x":
                            v = int(np.clip(vel + accent + rng.integers(-10, 11), 20, 127))
                            drums.append((t, 0.0, pitch, v))
            hits = [i for i, c in enumerate(HEAVY_RIFFS[riff][: 4 * n]) if c != "."]
            for j, slot in enumerate(hits):
                kind = HEAVY_RIFFS[riff][slot]
                nxt = hits[j + 1] if j + 1 < len(hits) else 4 * n
                t_on = float(_beat_time(beats, s + (slot + d_riff) / 4))
                t_end = float(
                    _beat_time(beats, s + ((slot + 0.5 if kind == "P" else nxt) + d_riff) / 4)
                )
                v = int(rng.integers(95, 121) if kind == "O" else rng.integers(70, 95))
                for p in (root, root + 7, root + 12):
                    gtr.append((t_on, max(t_end, t_on + 0.04), p, v))
                if bass_follows:
                    bass.append((t_on, max(t_end, t_on + 0.05), root - 12, v))
            if not bass_follows:
                for i in range(2 * n):
                    t_on = float(_beat_time(beats, s + i / 2 + d_riff / 4))
                    t_end = float(_beat_time(beats, s + i / 2 + d_riff / 4 + 0.45))
                    bass.append((t_on, t_end, root - 12, int(rng.integers(80, 110))))
        b += length

    def human(notes: list[tuple[float, float, int, int]], dur: float) -> list[Any]:
        return _humanized(notes, rng, jitter, dur, 0.04)

    g1, g2 = (int(x) for x in rng.choice(HEAVY_GUITARS, 2))
    parts = [
        Part("drums", human(drums, 0.1), 0, True, level_db=float(rng.uniform(-2, 3))),
        Part("guitar", human(gtr, 0.0), g1, level_db=float(rng.uniform(-3, 1))),
        Part("guitar2", human(gtr, 0.0), g2, level_db=float(rng.uniform(-6, 0))),
        Part(
            "bass",
            human(bass, 0.0),
            int(rng.choice(HEAVY_BASSES)),
            level_db=float(rng.uniform(-5, 0)),
        ),
    ]
    return parts, {"sections": sections, "section_beats": starts, "low_root": low}


def _generated_heavy(set_name: str, displace_p: float) -> Callable[[Path], Iterator[Item]]:
    """The items of a generated set (no source data): :func:`generate_heavy` with
    ``displace_p`` on :func:`_heavy_grid`, mastered loud (:func:`loud_master`), named
    ``SET_NNNN`` so each set has its own splits."""

    def items(root: Path) -> Iterator[Item]:
        del root
        for k in range(2000):
            name = f"{set_name}_{k:04d}"

            def build(rng: np.random.Generator) -> tuple[list[Part], Array, dict[str, Any]]:
                beats, bib = _heavy_grid(rng, MAX_SECONDS * 1.3)
                parts, info = generate_heavy(beats, bib, rng, displace_p=displace_p)
                info = {"layers": "+".join(p.name for p in parts), "master": "loud", **info}
                return parts, np.column_stack([beats, bib]), info

            yield Item(name, set_name, name, split_of(set_name, name), build)

    return items


# ``displaced``: about half of the sections play off the beat (DISPLACE_SHIFTS) while the labels
# keep the grid
DISPLACE_P = 0.5


def displaced_spans_s(rec: dict[str, Any]) -> list[tuple[float, float]]:
    """The displaced sections of a rendered ``displaced`` item, as ``(start_s, end_s)`` in the
    item's own time (after its window and tempo warp), from its manifest record.

    The source grid is drawn again from the item's seed (the first draw of its build), so no
    re-render is needed; sections are ``rec["sections"]`` and ``rec["section_beats"]``.
    """
    if not rec.get("section_beats"):
        return []
    rng = np.random.default_rng(item_seed(int(rec["seed"]), rec["name"]))
    beats, _ = _heavy_grid(rng, MAX_SECONDS * 1.3)
    t0 = float(rec["source_window_s"][0])
    scale = float(rec["tempo_scale"])
    starts = [int(b) for b in rec["section_beats"]] + [len(beats) - 1]
    spans = []
    for k, sec in enumerate(rec["sections"]):
        if "/+" in sec:
            a, b = beats[starts[k]], beats[starts[k + 1]]
            spans.append((round((a - t0) * scale, 3), round((b - t0) * scale, 3)))
    return spans


def loud_master(
    x: npt.ArrayLike, sr: int, rng: np.random.Generator
) -> tuple[Array, dict[str, Any]]:
    """A loud master bus: a peak compressor (threshold -24 to -10 dB, ratio 3-10, 1-10 ms
    attack, 40-150 ms release) then tanh saturation (drive 1.2-4).

    The detector runs on the peaks of 32-sample blocks (0.7 ms) and its gain is interpolated
    back to every sample, so a minute of audio costs a few tens of milliseconds.
    """
    y = np.asarray(x, dtype=np.float64)
    y = y / (np.max(np.abs(y)) + 1e-12)
    ratio = float(rng.uniform(3, 10))
    thr_db = float(rng.uniform(-24, -10))
    block = 32
    n_blocks = -(-y.size // block)
    peaks = np.abs(np.pad(y, (0, n_blocks * block - y.size))).reshape(n_blocks, block).max(axis=1)
    att = math.exp(-block / (float(rng.uniform(0.001, 0.010)) * sr))
    rel = math.exp(-block / (float(rng.uniform(0.040, 0.150)) * sr))
    env = np.empty(n_blocks)
    e = 0.0
    for i, p in enumerate(peaks.tolist()):
        c = att if p > e else rel
        e = c * e + (1.0 - c) * p
        env[i] = e
    over_db = np.maximum(20 * np.log10(env + 1e-9) - thr_db, 0.0)
    gain_db = -over_db * (1 - 1 / ratio)
    centres = (np.arange(n_blocks) + 0.5) * block
    y = y * 10 ** (np.interp(np.arange(y.size), centres, gain_db) / 20)
    drive = float(rng.uniform(1.2, 4.0))
    y = np.tanh(drive * y / (np.max(np.abs(y)) + 1e-12))
    info = {"ratio": round(ratio, 1), "threshold_db": round(thr_db, 1), "drive": round(drive, 2)}
    return y, info


# --------------------------------------------------------------------------------------------
# Generated electronic dance music (the ``edm`` set): four-on-the-floor and broken kicks under
# an off-beat-heavy top (open hats, off-beat and rolling basses, stabs on the "and", 3-3-2
# figures), builds, drops and breakdowns. Added in session 20 after the LMMS demo songs
# (real electronic productions) showed the beat model firing on the "and" as often as on the
# beat there (BENCHMARKS.md, issue 3 "Session 20").

# 16 sixteenth slots per 4-beat bar ("x" hit, "." rest)
EDM_KICKS = {
    "four": "x...x...x...x...",
    "four_push": "x...x...x...x..x",
    "broken": "x.....x...x.....",
    "garage": "x.....x.x.....x.",
    "rock": "x.......x.......",
}
EDM_CLAPS = {
    "backbeat": "....x.......x...",
    "dembow": "...x..x....x..x.",
    "garage": "....x.......x..x",
    "none": "................",
}
EDM_HATS = {
    "off_open": "..x...x...x...x.",
    "eighths": "x.x.x.x.x.x.x.x.",
    "sixteenths": "xxxxxxxxxxxxxxxx",
    "rolling": ".xxx.xxx.xxx.xxx",
    "none": "................",
}
# bass and chord-stab rhythms: a note lasts to the next hit (at most a beat)
EDM_BASS = {
    "offbeat": "..x...x...x...x.",
    "rolling": ".xxx.xxx.xxx.xxx",
    "eighths": "x.x.x.x.x.x.x.x.",
    "tresillo": "x..x..x.x..x..x.",
    "syncopated": "x..x..x...x..x..",
    "whole": "x...............",
    "quarters": "x...x...x...x...",
}
EDM_STABS = {
    "offbeat": "..x...x...x...x.",
    "tresillo": "x..x..x.x..x..x.",
    "push": "x.....x.....x...",
    "anticipated": "...x.......x....",
    "pad": "x...............",
}
# styles: the pattern pools (kicks, claps, hats, basses, stabs); tempo ranges in EDM_TEMPO_BPM
EDM_STYLES: dict[str, tuple[tuple[str, ...], ...]] = {
    "house": (("four",), ("backbeat",), ("off_open", "eighths"),
              ("offbeat", "syncopated", "quarters"),
              ("offbeat", "push", "pad", "anticipated")),
    "trance": (("four",), ("backbeat", "none"), ("off_open", "sixteenths"),
               ("offbeat", "rolling"), ("pad", "tresillo", "offbeat")),
    "techno": (("four", "four_push"), ("none", "backbeat"), ("off_open", "sixteenths", "rolling"),
               ("rolling", "offbeat", "eighths", "quarters"), ("pad", "offbeat")),
    "dembow": (("four",), ("dembow",), ("eighths", "off_open"), ("tresillo", "whole"),
               ("tresillo", "pad")),
    "garage": (("garage", "broken"), ("garage", "backbeat"), ("sixteenths", "off_open"),
               ("syncopated", "tresillo"), ("push", "anticipated", "pad")),
    # a backbeat with no kick under it (breakbeat, electro, big beat): without it, a network
    # trained on the other styles learned that a snare beat is no beat at dance tempi and
    # fired on every other beat of a rock loop (BENCHMARKS.md, issue 3 "Session 20")
    "breaks": (("rock", "broken"), ("backbeat",), ("eighths", "sixteenths", "off_open"),
               ("eighths", "syncopated", "offbeat", "quarters"), ("push", "pad", "offbeat")),
}  # fmt: skip
EDM_TEMPO_BPM = {
    "house": (118, 130),
    "trance": (128, 145),
    "techno": (125, 145),
    "dembow": (88, 105),
    "garage": (128, 138),
    "breaks": (120, 150),
}
EDM_BASSES = (38, 39, 87, 81, 33)  # synth basses, bass+lead, saw, finger bass
EDM_STAB_PROGRAMS = (81, 80, 90, 62, 63, 50, 4, 16)  # saw, square, polysynth, synth brass...
EDM_PADS = (88, 89, 90, 91, 94, 95, 50, 51)
EDM_LEADS = (80, 81, 84, 98, 99, 87)
EDM_KITS = (24, 25, 0, 16)  # Electronic, TR-808, Standard, Power
# section kinds and what plays: kick, clap, hats, bass, stabs, lead, snare roll
EDM_SECTIONS = {
    "intro": (True, False, True, False, False, False, False),
    "drop": (True, True, True, True, True, True, False),
    "groove": (True, True, True, True, False, False, False),
    "breakdown": (False, False, False, False, True, True, False),
    "build": (False, False, True, True, True, False, True),
}


# A synthesized kick (a sine sweep, as a TR-808 or TR-909 makes it) in place of the kit's kicks:
# the soundfont kits' kicks all have a click, and a network trained on them and on off-beat
# basses heard a sine kick under a bass note on the beat as an off-beat bass (BENCHMARKS.md,
# issue 3 "Session 21"). Drawn from its own random stream, so every other draw is unchanged.
ANALOG_KICK_P = 0.4
KICK_PITCHES = frozenset({35, 36})


def analog_kick(rng: np.random.Generator, sr: int) -> Array:
    """One drum machine's kick: a sine falling from ``f0`` to ``f1`` with an exponential decay,
    and sometimes a short noise click; the parameters are drawn from ``rng``."""
    f1 = rng.uniform(40.0, 65.0)
    f0 = f1 + rng.uniform(30.0, 200.0)
    sweep, decay = rng.uniform(15.0, 60.0), rng.uniform(6.0, 25.0)
    t = np.arange(int(min(1.0, 6.0 / decay) * sr)) / sr
    freq = f1 + (f0 - f1) * np.exp(-t * sweep)
    x = np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * decay)
    click = rng.uniform(0.0, 0.4) if rng.random() < 0.5 else 0.0
    x += click * np.diff(rng.standard_normal(t.size), prepend=0.0) * np.exp(-t * 300.0)
    fade = min(t.size, int(0.005 * sr))
    x[t.size - fade :] *= np.linspace(1.0, 0.0, fade)
    return x


def _analog_kicks(notes: Sequence[tuple[float, float, int, int]], kick: Array, n: int) -> Array:
    """``kick`` at each of ``notes``' times (seconds), scaled by velocity, in ``n`` samples."""
    out = np.zeros(n, np.float64)
    for t, _, _, v in notes:
        s = round(t * SAMPLE_RATE)
        e = min(n, s + kick.size)
        if 0 <= s < e:
            out[s:e] += (v / 127.0) ** 2 * kick[: e - s]
    return out


def _edm_grid(
    rng: np.random.Generator, seconds: float, style: str
) -> tuple[Array, npt.NDArray[np.int64]]:
    """A steady sequencer grid in the style's tempo range, 4/4."""
    lo, hi = EDM_TEMPO_BPM[style]
    bpm = float(rng.uniform(lo, hi))
    n = int(seconds * bpm / 60) + 8
    beats = 0.5 + np.arange(n) * 60.0 / bpm
    return beats, (np.arange(n) % 4 + 1).astype(np.int64)


def _pump(beats: Array, depth: int) -> list[tuple[float, int, int]]:
    """Side-chain pumping as expression (CC 11): ducked on each beat, back up by the "and"."""
    ctrl = []
    for i in range(len(beats) - 1):
        ibi = beats[i + 1] - beats[i]
        for frac, val in ((0.0, 127 - depth), (0.15, 127 - depth // 2), (0.3, 115), (0.5, 127)):
            ctrl.append((float(beats[i] + frac * ibi), 11, int(val)))
    return ctrl


def generate_edm(
    beats: Array, bib: npt.NDArray[np.int64], rng: np.random.Generator, style: str
) -> tuple[list[Part], dict[str, Any]]:
    """Drums, bass, chord stabs or pads and a lead on a steady grid, in 4- or 8-bar sections
    (intro, groove, build with a snare roll, drop, breakdown without drums); side-chain pumping
    on the bass and chords when the kick is four on the floor. The labels are the grid."""
    kick_pool, clap_pool, hat_pool, bass_pool, stab_pool = EDM_STYLES[style]
    bars = _bars(bib)
    mode = MINOR if rng.random() < 0.7 else MAJOR
    key = int(rng.integers(12))
    prog = PROGRESSIONS["minor" if mode == MINOR else "major"]
    chords = prog[int(rng.integers(len(prog)))]
    jitter = float(rng.uniform(0.0, 0.003))  # sequenced: nearly on the grid
    drums: list[tuple[float, float, int, int]] = []
    bass: list[tuple[float, float, int, int]] = []
    stabs: list[tuple[float, float, int, int]] = []
    lead: list[tuple[float, float, int, int]] = []
    kick_on_beats = False
    order = ["intro"] + [
        str(x)
        for x in rng.choice(list(EDM_SECTIONS), size=len(bars), p=[0.05, 0.43, 0.2, 0.12, 0.2])
    ]
    sections: list[str] = []
    b = 0
    for kind in order:
        if b >= len(bars):
            break
        length = int(rng.choice([4, 8, 8]))
        has_kick, has_clap, has_hats, has_bass, has_stabs, has_lead, roll = EDM_SECTIONS[kind]
        kick = EDM_KICKS[str(rng.choice(kick_pool))]
        clap = EDM_CLAPS[str(rng.choice(clap_pool))]
        hats = EDM_HATS[str(rng.choice(hat_pool))]
        bass_pat = EDM_BASS[str(rng.choice(bass_pool))]
        stab_pat = EDM_STABS[str(rng.choice(stab_pool))]
        hat_note = 46 if hats == EDM_HATS["off_open"] else int(rng.choice([42, 42, 44]))
        arp_step = int(rng.choice([1, 2, 3]))  # sixteenths per arp note (3: a 3-against-4 figure)
        sections.append(kind)
        kick_on_beats = kick_on_beats or (has_kick and kick.startswith("x...x"))
        n_sec = min(length, len(bars) - b)
        for k in range(b, b + n_sec):
            s, n = bars[k]
            degree = chords[(k - b) % len(chords)]
            tones = _chord_tones(key, mode, degree, rng.random() < 0.3)
            root = 36 + (tones[0] - 36) % 12
            voicing = sorted(60 + (t - 60) % 12 for t in tones)
            if k == b and kind in ("drop", "groove"):
                drums.append((float(_beat_time(beats, s)), 0.0, 49, 110))
            for slot in range(4 * n):
                t = float(_beat_time(beats, s + slot / 4))
                nxt = float(_beat_time(beats, s + (slot + 1) / 4))
                accent = 10 if slot % 4 == 0 else 0
                if has_kick and kick[slot % 16] == "x":
                    drums.append((t, 0.0, 36, 115))
                if has_clap and clap[slot % 16] == "x":
                    drums.append((t, 0.0, int(rng.choice([39, 38, 40])), 100))
                if has_hats and hats[slot % 16] == "x":
                    drums.append((t, 0.0, hat_note, 70 + accent // 2))
                if roll:
                    frac = (k - b + slot / (4 * n)) / n_sec
                    every = 4 if frac < 0.5 else (2 if frac < 0.75 else 1)
                    if slot % every == 0:
                        drums.append((t, 0.0, 38, int(50 + 70 * frac)))
                if has_bass and bass_pat[slot % 16] == "x":
                    end = _next_hit_time(beats, s, slot, bass_pat, n)
                    pitch = root + (12 if bass_pat == EDM_BASS["rolling"] and slot % 2 else 0)
                    bass.append((t, end, pitch, int(rng.integers(85, 115))))
                if has_stabs and stab_pat[slot % 16] == "x":
                    end = _next_hit_time(beats, s, slot, stab_pat, n)
                    if stab_pat != EDM_STABS["pad"]:
                        end = min(end, t + 0.6 * (nxt - t) * 4)
                    v = int(rng.integers(70, 105))
                    stabs.extend((t, end, p, v) for p in voicing)
                if has_lead and slot % arp_step == 0:
                    seq = [*voicing, voicing[0] + 12]
                    p = seq[(slot // arp_step) % len(seq)] + 12
                    lead.append((t, t + 0.8 * arp_step * (nxt - t), p, int(rng.integers(60, 95))))
        b += n_sec

    def human(notes: list[tuple[float, float, int, int]], dur: float) -> list[Any]:
        return _humanized(notes, rng, jitter, dur, 0.03)

    pump = _pump(beats, int(rng.integers(40, 90))) if kick_on_beats and rng.random() < 0.7 else []
    parts = [
        Part("drums", human(drums, 0.1), 0, True, level_db=float(rng.uniform(-1, 3)),
             kits=EDM_KITS, analog_kick_p=ANALOG_KICK_P),
        Part("bass", human(bass, 0.0), int(rng.choice(EDM_BASSES)), controls=list(pump),
             level_db=float(rng.uniform(-4, 1))),
        Part("stabs", human(stabs, 0.0),
             int(rng.choice(EDM_PADS if rng.random() < 0.4 else EDM_STAB_PROGRAMS)),
             controls=list(pump), level_db=float(rng.uniform(-8, -1))),
        Part("lead", human(lead, 0.0), int(rng.choice(EDM_LEADS)),
             level_db=float(rng.uniform(-12, -4))),
    ]  # fmt: skip
    parts = [p for p in parts if p.notes]
    info = {"style": style, "sections": sections, "pump": bool(pump)}
    return parts, info


def _next_hit_time(beats: Array, s: int, slot: int, pattern: str, n: int) -> float:
    """End of a note that starts at ``slot``: the next hit of the pattern in the bar, or the
    bar's end, at most a beat later."""
    nxt = next((j for j in range(slot + 1, 4 * n) if pattern[j % 16] == "x"), 4 * n)
    nxt = min(nxt, slot + 4)
    return float(_beat_time(beats, s + nxt / 4)) - 0.01


def _generated_edm(set_name: str) -> Callable[[Path], Iterator[Item]]:
    """The items of the generated ``edm`` set: a style, its grid and :func:`generate_edm`,
    mastered loud, named ``edm_NNNN``."""

    def items(root: Path) -> Iterator[Item]:
        del root
        for k in range(2000):
            name = f"{set_name}_{k:04d}"

            def build(rng: np.random.Generator) -> tuple[list[Part], Array, dict[str, Any]]:
                style = str(rng.choice(list(EDM_STYLES)))
                beats, bib = _edm_grid(rng, MAX_SECONDS * 1.3, style)
                parts, info = generate_edm(beats, bib, rng, style)
                info = {"layers": "+".join(p.name for p in parts), "master": "loud", **info}
                return parts, np.column_stack([beats, bib]), info

            yield Item(name, set_name, name, split_of(set_name, name), build)

    return items


# --------------------------------------------------------------------------------------------
# MIDI game music from Debian packages (no research data)

#: Debian packages with multi-track General MIDI compositions, nearly all with drums, found by a
#: survey of bookworm (``apt-file``, session 23; every MIDI-carrying package is in main).
#: Licences from their ``debian/copyright``: simutrans-data Artistic-1.0, openttd-openmsx
#: GPL-2, planetblupi-music-midi GPL-3+, pianobooster CC-BY (music), crimson GPL-2+ or
#: CC-BY-SA-1.0, liquidwar-data GPL-2+, timidity's example CC-BY-3.0. Left out: ``mma`` (short
#: feature demos, some arrangements of songs under copyright), ``pd-mrpeach`` and ``playmidi``
#: (songs under copyright), and packages whose MIDI is performed off any grid or a fixture.
GAMEMIDI_PACKAGES: tuple[str, ...] = (
    "simutrans-data", "openttd-openmsx", "planetblupi-music-midi", "pianobooster", "crimson",
    "liquidwar-data", "timidity",
)  # fmt: skip
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".mid.gz", ".midi.gz")
#: Share of note onsets within 1/16 beat of the file's eighth-note grid below which a file is
#: taken as performed off the grid (chance is about 0.25), after a constant shift of the grid.
GRID_MIN_SHARE = 0.45
#: Notated tempi outside the trackers' range are halved or doubled into it, before the
#: render's own tempo warp.
GAMEMIDI_BPM = (55.0, 215.0)


def _is_midi(path: Path) -> bool:
    return path.name.lower().endswith(MIDI_SUFFIXES)


def _read_midi(path: Path) -> Any:
    import gzip
    import io

    import pretty_midi

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return pretty_midi.PrettyMIDI(io.BytesIO(data))


def grid_share(beats: Array, times: npt.ArrayLike) -> float:
    """Share of ``times`` (inside the beats' span) within 1/16 beat of an eighth of the grid."""
    t = np.asarray(times, dtype=np.float64)
    t = t[(t >= beats[0]) & (t <= beats[-1])]
    if t.size == 0 or beats.shape[0] < 2:
        return 0.0
    e = np.interp(t, beats, np.arange(beats.shape[0], dtype=np.float64)) * 2.0
    d = np.abs(e - np.round(e)) / 2.0  # beats
    return float(np.mean(d <= 1.0 / 16.0))


def midi_beat_grid(pm: Any) -> tuple[Array, dict[str, Any]]:
    """Beats ``(n, 2)`` (time, beat in bar) of a composed MIDI file, from its tempo map and time
    signatures (``pretty_midi``: the dotted quarter in compound meters).

    The grid is moved by the notes' median deviation when they sit off it by a constant
    (:func:`groove_grid_shift`; some game files are quantized to a grid 20 ticks late), and a
    notated tempo outside :data:`GAMEMIDI_BPM` is halved or doubled into it.

    Raises
    ------
    ValueError
        When the notes are off any grid (performed, not composed: :data:`GRID_MIN_SHARE`), or
        the file has fewer than 8 beats of notes.
    """
    notes = [(n.start, n.end, ins.is_drum) for ins in pm.instruments for n in ins.notes]
    if not notes:
        raise ValueError("no notes")
    odd = sorted({f"{ts.numerator}/{ts.denominator}" for ts in pm.time_signature_changes
                  if ts.denominator > 8})  # fmt: skip
    if odd:  # pretty_midi counts every sixteenth as a beat there
        raise ValueError(f"time signature {', '.join(odd)}")
    starts = np.asarray([n[0] for n in notes])
    end = max(n[1] for n in notes)
    b = np.asarray(pm.get_beats(), dtype=np.float64)
    b = b[b <= end]
    if b.shape[0] < 8:
        raise ValueError(f"only {b.shape[0]} beats")
    is_db = downbeat_flags(pm, b)
    share = grid_share(b, starts)
    shift = 0.0
    if share < GRID_MIN_SHARE:
        drums = [s for s, _, d in notes if d]
        shift = groove_grid_shift(b, drums if len(drums) >= 8 else starts.tolist())
        share = grid_share(b + shift, starts)
        if share < GRID_MIN_SHARE:
            raise ValueError(f"notes off the grid ({share:.2f} within 1/16 beat)")
        b = b + shift
    bpm = 60.0 / float(np.median(np.diff(b)))
    level = 1.0
    if bpm > GAMEMIDI_BPM[1]:
        first = int(np.flatnonzero(is_db)[0]) % 2 if is_db.any() else 0
        b, is_db, level = b[first::2], is_db[first::2], 0.5
    elif bpm < GAMEMIDI_BPM[0]:
        mid = 0.5 * (b[:-1] + b[1:])
        b = np.insert(b, np.arange(1, b.shape[0]), mid)
        is_db = np.insert(is_db, np.arange(1, is_db.shape[0]), False)
        level = 2.0
    info = {
        "grid_share": round(share, 3),
        "grid_shift_s": round(shift, 4),
        "notated_bpm": round(bpm, 2),
        "level": level,
    }
    return np.column_stack([b, beats_in_bar(is_db)]), info


def _merged_parts(parts: list[Part]) -> list[Part]:
    """One part per (drums, program): some files split an instrument over hundreds of tracks,
    and every part is rendered on its own."""
    out: dict[tuple[bool, int], Part] = {}
    for p in parts:
        key = (p.is_drum, p.program)
        if key not in out:
            out[key] = dataclasses.replace(p, name=f"gm{len(out)}", notes=list(p.notes))
            continue
        q = out[key]
        q.notes += p.notes
        q.controls = sorted(q.controls + p.controls)
        q.bends = sorted(q.bends + p.bends)
    return list(out.values())


def _gamemidi_items(root: Path) -> Iterator[Item]:
    """The MIDI files of :data:`GAMEMIDI_PACKAGES`, fetched into ``$ONBEAT_DEBS`` (default
    ``data/debs``) with ``apt-get download`` on first use; byte-identical copies once. Each
    item keeps its file's arrangement and programs (30 % of the melodic parts get another GM
    program; 30 % of songs with four or more melodic parts lose one), split by song."""
    del root
    from onbeat.training.debpkg import fetch_package, repeat_suffix

    work = Path(os.environ.get("ONBEAT_DEBS", "data/debs"))
    seen: set[str] = set()
    names: dict[str, int] = {}
    for pkg in GAMEMIDI_PACKAGES:
        files = fetch_package(pkg, work, _is_midi)
        if files is None:
            log.warning("gamemidi: package %s not available", pkg)
            continue
        for path in files:
            digest = hashlib.sha1(path.read_bytes()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            stem = path.name.split(".")[0]
            name = "gamemidi_" + _safe(f"{pkg}_{stem}")
            extra = repeat_suffix(name, names)  # the same file name in two folders
            stem, name = stem + extra, name + extra
            piece = f"{pkg}/{stem}"

            def build(
                rng: np.random.Generator, path: Path = path
            ) -> tuple[list[Part], Array, dict[str, Any]]:
                pm = _read_midi(path)
                beats, info = midi_beat_grid(pm)
                parts = _merged_parts(_pm_to_parts(pm.instruments, "gm"))
                melodic = [p for p in parts if not p.is_drum]
                if len(melodic) >= 4 and rng.random() < 0.3:
                    parts.remove(melodic[int(rng.integers(len(melodic)))])
                for p in parts:
                    if not p.is_drum and rng.random() < 0.3:
                        p.program = int(rng.choice(ACCOMP_PROGRAMS))
                    p.level_db = float(rng.uniform(-4, 2))
                info["layers"] = "+".join(p.name for p in parts)
                info["source"] = str(path)
                return parts, beats, info

            yield Item(name, "gamemidi", piece, split_of("gamemidi", piece), build)


# --------------------------------------------------------------------------------------------
# MMA accompaniment grooves: songs written by "Musical MIDI Accompaniment" (Debian ``mma``,
# GPL) over its groove library (about 2,000 grooves in some 280 style files: ballroom, jazz,
# latin, rock, country, folk...). Each song draws a style file, a tempo, a key, a chord
# progression and a sequence of the file's grooves (variations, fills, intro, ending); mma
# writes it on its beat grid, so its quarter notes (the tempo map) and the grooves' bar lengths
# label the beats and bars exactly (:func:`mma_beat_grid`; not the time signature it writes).

#: Where the groove library lives (``apt-get install mma``); ``ONBEAT_MMA_LIB`` moves it.
MMA_LIB = Path("/usr/share/mma/lib")
#: Chord progressions as (semitones above the key, quality) per bar; a bar may hold two chords.
MMA_PROGRESSIONS: tuple[tuple[tuple[tuple[int, str], ...], ...], ...] = (
    (((0, ""),), ((7, ""),), ((9, "m"),), ((5, ""),)),  # I V vi IV
    (((0, ""),), ((5, ""),), ((7, "7"),), ((0, ""),)),  # I IV V7 I
    (((2, "m7"),), ((7, "7"),), ((0, "maj7"),), ((0, "maj7"),)),  # ii V I
    (((0, ""),), ((9, "m"),), ((2, "m"),), ((7, "7"),)),  # I vi ii V
    (((9, "m"),), ((5, ""),), ((0, ""),), ((7, ""),)),  # vi IV I V
    (((0, "m"),), ((8, ""),), ((3, ""),), ((10, ""),)),  # i VI III VII
    (((0, "m"),), ((5, "m"),), ((7, "7"),), ((0, "m"),)),  # i iv V7 i
    (((0, ""), (5, "")), ((7, ""), (0, "")), ((9, "m"), (5, "")), ((7, "7"),)),
    tuple(((d, "7"),) for d in (0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7)),  # 12-bar blues
)
_MMA_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
#: Tempo ranges (BPM of mma's quarter note) by words in the style's file or groove names; the
#: render's warp (:data:`TEMPO_SCALE`) keeps them within 55-215 BPM
_MMA_TEMPO_WORDS: tuple[tuple[tuple[str, ...], tuple[float, float]], ...] = (
    (("slow", "ballad", "lullaby", "hymn", "spiritual"), (66.0, 95.0)),
    (("fast", "quick", "bebop", "jive", "polka", "ska", "punk", "twist", "charleston",
      "bluegrass", "dixie", "vienese", "march", "samba", "merengue"), (140.0, 180.0)),
)  # fmt: skip
_MMA_TEMPO_DEFAULT = (75.0, 165.0)


def mma_grooves(path: Path) -> list[tuple[str, int]]:
    """The grooves a style file defines (its ``DefGroove`` lines), in file order, each with its
    bar length in quarter notes (the ``Time`` before it: mma's beat is the quarter note).
    Grooves under an eighth-note meter (``Time N/8``, or ``Timesig N 8``, where a bar of mma's
    four "quarters" holds six triplet eighths) are left out: their felt beat is not mma's."""
    out: list[tuple[str, int]] = []
    beats: int | None = 4
    eighths = False  # under "Timesig 6 8" mma's "quarter" is a third of the felt beat
    for line in path.read_text(errors="replace").splitlines():
        words = line.split("//")[0].replace("/", " ").split()
        key = words[0].lower() if words else ""
        if key == "time" and len(words) >= 2:
            beats = int(words[1]) if words[1].isdigit() and words[2:3] in ([], ["4"]) else None
        elif key == "timesig" and len(words) >= 3:
            eighths = words[2] == "8"
        elif key == "defgroove" and len(words) >= 2 and beats is not None and not eighths:
            out.append((words[1], beats))
    return out


def mma_song(
    style: Path, grooves: Sequence[tuple[str, int]], rng: np.random.Generator
) -> tuple[str, float, list[int]]:
    """An mma song over the grooves (:func:`mma_grooves`) of the style file ``style``:
    ``(text, tempo_bpm, quarters of each bar)``.

    Sections of 4 or 8 bars each play a main groove or a variation (the first groove twice as
    often), 40 % of them end on a one-bar fill where the file has one; half of the songs open on
    the file's intro and close on its ending. Bars long enough for 75 s at the drawn tempo.
    """
    length_of = dict(grooves)
    names = [g for g, _ in grooves]
    low = [g.lower() for g in names]
    intro = [g for g, g_l in zip(names, low, strict=True) if "intro" in g_l]
    end = [g for g, g_l in zip(names, low, strict=True) if "end" in g_l]
    fill = [g for g, g_l in zip(names, low, strict=True) if "fill" in g_l or "break" in g_l]
    main = [g for g in names if g not in intro and g not in end and g not in fill]
    if not main:
        raise ValueError(f"{style}: no main groove")
    words = (style.stem + " " + main[0]).lower()
    lo, hi = _MMA_TEMPO_DEFAULT
    for keys, rng_bpm in _MMA_TEMPO_WORDS:
        if any(k in words for k in keys):
            lo, hi = rng_bpm
            break
    bpm = float(rng.uniform(lo, hi))
    key = int(rng.integers(12))
    prog = MMA_PROGRESSIONS[int(rng.integers(len(MMA_PROGRESSIONS)))]
    n_bars = max(24, math.ceil(75.0 * bpm / 60.0 / 4.0))
    lines = [f"Tempo {bpm:.2f}", f"Use {style.with_suffix('')}"]
    bar_quarters: list[int] = []

    def play(groove: str, n: int) -> None:
        lines.append(f"Groove {groove}")
        for _ in range(n):
            k = len(bar_quarters)
            lines.append(" ".join(_MMA_KEYS[(key + d) % 12] + q for d, q in prog[k % len(prog)]))
            bar_quarters.append(length_of[groove])

    if intro and rng.random() < 0.5:
        play(intro[int(rng.integers(len(intro)))], 4)
    weights = np.ones(len(main))
    weights[0] = min(2.0, float(len(main)))
    weights /= weights.sum()
    while len(bar_quarters) < n_bars:
        length = int(rng.choice([4, 8]))
        groove = main[int(rng.choice(len(main), p=weights))]
        if fill and rng.random() < 0.4:
            play(groove, length - 1)
            play(fill[int(rng.integers(len(fill)))], 1)
        else:
            play(groove, length)
    if end and rng.random() < 0.5:
        play(end[int(rng.integers(len(end)))], 2)
    return "\n".join(lines) + "\n", bpm, bar_quarters


def mma_beat_grid(pm: Any, bar_quarters: Sequence[int]) -> Array:
    """Beats ``(n, 2)`` (time, beat in bar) of an mma song: every quarter note of its tempo map
    (mma's beat, whatever time signature label it writes), numbered by the song's bars, up to
    the last note."""
    pm.time_signature_changes = []  # pretty_midi then counts quarter notes
    end = max((n.end for ins in pm.instruments for n in ins.notes), default=0.0)
    q = np.asarray(pm.get_beats(), dtype=np.float64)
    bib = np.concatenate([np.arange(1, n + 1) for n in bar_quarters]).astype(np.float64)
    n = min(q.shape[0], bib.shape[0], int(np.searchsorted(q, end, side="right")))
    if n < 8:
        raise ValueError(f"only {n} beats")
    return np.column_stack([q[:n], bib[:n]])


def run_mma(song: str, timeout_s: float = 120.0) -> Any:
    """Write ``song`` to MIDI with the ``mma`` program and read it (``pretty_midi``).

    Raises
    ------
    RuntimeError
        When ``mma`` is missing or fails.
    """
    import shutil
    import subprocess
    import tempfile

    exe = shutil.which("mma")
    if exe is None:
        raise RuntimeError("mma not found: apt-get install mma")
    with tempfile.TemporaryDirectory(prefix="onbeat-mma-") as tmp:
        src, mid = Path(tmp) / "song.mma", Path(tmp) / "song.mid"
        src.write_text(song)
        res = subprocess.run(
            [exe, str(src), "-f", str(mid)], capture_output=True, text=True, timeout=timeout_s
        )
        if res.returncode != 0 or not mid.exists():
            msg = (res.stdout + res.stderr).strip().splitlines()
            raise RuntimeError(f"mma failed: {msg[-1] if msg else res.returncode}")
        return _read_midi(mid)


def _mma_items(root: Path) -> Iterator[Item]:
    """One item per style file of the mma groove library (:data:`MMA_LIB`), split by file."""
    del root
    lib = Path(os.environ.get("ONBEAT_MMA_LIB", MMA_LIB))
    if not lib.is_dir():
        raise RuntimeError(f"mma groove library {lib} not found: apt-get install mma")
    for path in sorted(lib.glob("*/*.mma")):
        grooves = mma_grooves(path)
        if not grooves:
            continue
        lib_name = f"{path.parent.name}/{path.stem}"
        name = "mma_" + _safe(lib_name.replace("/", "_"))

        def build(
            rng: np.random.Generator,
            path: Path = path,
            lib_name: str = lib_name,
            grooves: list[tuple[str, int]] = grooves,
        ) -> tuple[list[Part], Array, dict[str, Any]]:
            song, bpm, bar_quarters = mma_song(path.resolve(), grooves, rng)
            pm = run_mma(song)
            beats = mma_beat_grid(pm, bar_quarters)
            parts = _merged_parts(_pm_to_parts(pm.instruments, "mma"))
            for p in parts:
                if not p.is_drum and rng.random() < 0.2:
                    p.program = int(rng.choice(ACCOMP_PROGRAMS))
                p.level_db = float(rng.uniform(-4, 2))
            info = {
                "layers": "+".join(p.name for p in parts),
                "source": lib_name,
                "mma_bpm": round(bpm, 2),
                "bar_quarters": sorted(set(bar_quarters)),
            }
            return parts, beats, info

        yield Item(name, "mma", lib_name, split_of("mma", lib_name), build)


# need no research data (generated, or fetched from Debian)
GENERATED_SETS = frozenset({"heavy", "displaced", "edm", "gamemidi", "mma"})

SOURCES: dict[str, Callable[[Path], Iterator[Item]]] = {
    "groove": _groove_items,
    "pop909": _pop909_items,
    "asap": _asap_items,
    "heavy": _generated_heavy("heavy", 0.0),
    "displaced": _generated_heavy("displaced", DISPLACE_P),
    "edm": _generated_edm("edm"),
    "gamemidi": _gamemidi_items,
    "mma": _mma_items,
}


def source_items(set_name: str, root: Path | None = None) -> list[Item]:
    """Every usable piece of a source set (file parsing of the MIDI is deferred)."""
    return list(SOURCES[set_name](root or default_data_root()))


def _order(items: list[Item], seed: int) -> list[Item]:
    """A seeded order that covers distinct pieces before repeating one."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(items))
    seen: dict[str, int] = {}
    keyed = []
    for rank, i in enumerate(perm):
        it = items[int(i)]
        k = seen.get(it.piece, 0)
        seen[it.piece] = k + 1
        keyed.append((k, rank, it))
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [it for _, _, it in keyed]


# --------------------------------------------------------------------------------------------
# Audio effects


def _biquad_shelf(kind: str, f0: float, gain_db: float, sr: int) -> tuple[Array, Array]:
    """RBJ audio-EQ-cookbook shelving filter (slope 1)."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / sr
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / 2 * math.sqrt(2.0)
    sq = 2 * math.sqrt(a_) * alpha
    if kind == "low":
        b = [
            a_ * ((a_ + 1) - (a_ - 1) * cw + sq),
            2 * a_ * ((a_ - 1) - (a_ + 1) * cw),
            a_ * ((a_ + 1) - (a_ - 1) * cw - sq),
        ]
        a = [
            (a_ + 1) + (a_ - 1) * cw + sq,
            -2 * ((a_ - 1) + (a_ + 1) * cw),
            (a_ + 1) + (a_ - 1) * cw - sq,
        ]
    else:
        b = [
            a_ * ((a_ + 1) + (a_ - 1) * cw + sq),
            -2 * a_ * ((a_ - 1) + (a_ + 1) * cw),
            a_ * ((a_ + 1) + (a_ - 1) * cw - sq),
        ]
        a = [
            (a_ + 1) - (a_ - 1) * cw + sq,
            2 * ((a_ - 1) - (a_ + 1) * cw),
            (a_ + 1) - (a_ - 1) * cw - sq,
        ]
    return np.asarray(b) / a[0], np.asarray(a) / a[0]


def _biquad_peak(f0: float, gain_db: float, q: float, sr: int) -> tuple[Array, Array]:
    """RBJ audio-EQ-cookbook peaking filter."""
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / sr
    alpha = math.sin(w0) / (2 * q)
    b = [1 + alpha * a_, -2 * math.cos(w0), 1 - alpha * a_]
    a = [1 + alpha / a_, -2 * math.cos(w0), 1 - alpha / a_]
    return np.asarray(b) / a[0], np.asarray(a) / a[0]


def _rms(x: Array) -> float:
    """RMS over the louder half of 50 ms blocks (ignores silence)."""
    n = 2205
    m = x.shape[0] // n
    if m == 0:
        return float(np.sqrt(np.mean(x**2) + 1e-20))
    e = np.mean(x[: m * n].reshape(m, n) ** 2, axis=1)
    e = np.sort(e)[m // 2 :]
    return float(np.sqrt(np.mean(e) + 1e-20))


def _coloured_noise(kind: str, n: int, rng: np.random.Generator, sr: int) -> Array:
    if kind == "white":
        return rng.standard_normal(n)
    if kind in ("pink", "brown"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / sr)
        f[0] = f[1]
        spec /= np.sqrt(f) if kind == "pink" else f
        return np.fft.irfft(spec, n)
    # babble-ish: several voices of band-limited noise, each with a syllable-rate envelope
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        lo = rng.uniform(150, 400)
        hi = rng.uniform(2000, 4000)
        sos = signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos")
        voice = signal.sosfilt(sos, rng.standard_normal(n))
        env_sos = signal.butter(2, rng.uniform(3, 7), fs=sr, output="sos")
        env = np.maximum(signal.sosfilt(env_sos, rng.standard_normal(n)), 0.0) ** 1.5
        out += voice * env
    return out


def augment(
    x: npt.ArrayLike, sr: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], dict[str, Any]]:
    """Random room, microphone, EQ, clipping, noise and level (all causal, no time shift).

    Returns the augmented mono signal, peak at most 1, and the parameters drawn.
    """
    y = np.asarray(x, dtype=np.float64).copy()
    n = y.shape[0]
    info: dict[str, Any] = {}
    sig_rms = _rms(y)
    if rng.random() < 0.6:  # room reverb: exponentially decaying noise, damped highs
        rt60 = float(rng.uniform(0.2, 1.2))
        wet = float(rng.uniform(0.05, 0.45))
        m = int(rt60 * sr)
        t = np.arange(m) / sr
        ir = rng.standard_normal(m) * np.exp(-6.908 * t / rt60)
        ir = signal.sosfilt(signal.butter(1, rng.uniform(3000, 9000), fs=sr, output="sos"), ir)
        pre = int(rng.uniform(0.003, 0.03) * sr)
        ir = np.concatenate([np.zeros(pre), ir])
        ir /= np.sqrt(np.sum(ir**2))
        rev = signal.oaconvolve(y, ir)[:n]
        y = (1 - wet) * y + wet * rev
        info["reverb"] = {"rt60": round(rt60, 3), "wet": round(wet, 3)}
    if rng.random() < 0.5:  # microphone band-pass and presence peak
        lo = float(rng.uniform(60, 200))
        hi = float(rng.uniform(6000, 14000))
        y = signal.sosfilt(signal.butter(2, [lo, hi], btype="bandpass", fs=sr, output="sos"), y)
        f0, g = float(rng.uniform(1000, 5000)), float(rng.uniform(-6, 6))
        b, a = _biquad_peak(f0, g, 1.0, sr)
        y = signal.lfilter(b, a, y)
        info["mic"] = {"band": [round(lo), round(hi)], "peak_hz": round(f0), "peak_db": round(g, 1)}
    if rng.random() < 0.7:  # EQ tilt
        tilt = float(rng.uniform(-6, 6))
        b, a = _biquad_shelf("low", float(rng.uniform(150, 500)), tilt, sr)
        y = signal.lfilter(b, a, y)
        b, a = _biquad_shelf("high", float(rng.uniform(2000, 6000)), -tilt, sr)
        y = signal.lfilter(b, a, y)
        info["tilt_db"] = round(tilt, 2)
    if rng.random() < 0.15:  # soft clipping
        drive = float(rng.uniform(1.5, 5.0))
        y = np.tanh(drive * y / (np.max(np.abs(y)) + 1e-12)) * (np.max(np.abs(y)) + 1e-12)
        info["drive"] = round(drive, 2)
    sig_rms = _rms(y)
    if rng.random() < 0.5 and sig_rms > 0:
        kind = str(rng.choice(["white", "pink", "brown", "babble"]))
        snr = float(rng.uniform(10, 40))
        nz = _coloured_noise(kind, n, rng, sr)
        nz *= sig_rms / (np.sqrt(np.mean(nz**2)) + 1e-20) * 10 ** (-snr / 20)
        y = y + nz
        info["noise"] = {"kind": kind, "snr_db": round(snr, 1)}
    peak_db = float(rng.uniform(-30, -1))
    y *= 10 ** (peak_db / 20) / (np.max(np.abs(y)) + 1e-12)
    info["peak_dbfs"] = round(peak_db, 1)
    return np.clip(y, -1.0, 1.0).astype(np.float32), info


# --------------------------------------------------------------------------------------------
# Rendering one item


def _choose_window(
    first: float, last: float, end: float, length: float, rng: np.random.Generator
) -> tuple[float, float]:
    lead = float(rng.uniform(0.05, 1.0))
    if end - first + lead <= length:
        t0 = max(0.0, first - lead)
        return t0, min(end + 0.3, t0 + length)
    if rng.random() < 0.3:
        t0 = max(0.0, first - lead)
    else:
        t0 = float(rng.uniform(first, max(first, last - length)))
    return t0, t0 + length


def render_item(
    item: Item,
    out_dir: Path,
    synth: FluidSynth,
    fonts: Soundfonts,
    *,
    seed: int = 0,
    max_seconds: float = MAX_SECONDS,
) -> dict[str, Any]:
    """Render, augment and label one item into ``out_dir``; returns its manifest record."""
    t_start = time.monotonic()
    rng = np.random.default_rng(item_seed(seed, item.name))
    parts, source_beats, info = item.build(rng)
    scale = float(rng.uniform(*TEMPO_SCALE))
    transpose = int(rng.integers(-5, 6))
    starts = np.concatenate([[n[0] for n in p.notes] for p in parts])
    ends = np.concatenate([[n[1] for n in p.notes] for p in parts])
    t0, t1 = _choose_window(
        float(starts.min()), float(starts.max()), float(ends.max()), max_seconds / scale, rng
    )
    wparts, beats = _window(parts, source_beats, t0, t1, scale)
    if not wparts:
        raise ValueError("no notes in window")
    duration = (t1 - t0) * scale
    n = int(duration * SAMPLE_RATE)
    gm = fonts.gm[int(rng.integers(len(fonts.gm)))]
    rendered: list[dict[str, Any]] = []
    mix = np.zeros(n, np.float64)
    krng = np.random.default_rng(item_seed(seed, item.name + "/analog_kick"))
    for p in wparts:  # (the labels below read wparts, kicks included)
        kicks = [x for x in p.notes if x[2] in KICK_PITCHES] if p.analog_kick_p > 0 else []
        if kicks and krng.random() < p.analog_kick_p:
            k = _analog_kicks(kicks, analog_kick(krng, SAMPLE_RATE), n)
            level_db = p.level_db + float(krng.uniform(-3.0, 3.0))
            mix += k / _rms(k) * 10 ** (level_db / 20)
            rendered.append({"part": "analog_kick", "level_db": round(level_db, 2),
                             "notes": len(kicks)})  # fmt: skip
            p = dataclasses.replace(p, notes=[x for x in p.notes if x[2] not in KICK_PITCHES])
        if p.is_drum:
            preferred = [
                (f, 128, k) for f in fonts.gm for k in p.kits if synth.has_preset(f, 128, k)
            ]
            kits = preferred or [
                (f, 128, k) for f in fonts.gm for k in GM_DRUM_KITS if synth.has_preset(f, 128, k)
            ] + [(f, 0, 0) for f in fonts.kits]
            font, bank, prog = kits[int(rng.integers(len(kits)))]
        else:
            font, bank, prog = gm, 0, p.program
        x = synth.render(
            _events(p, SAMPLE_RATE, transpose),
            n,
            soundfont=font,
            bank=bank,
            program=prog,
            drum=p.is_drum,
        ).astype(np.float64)
        r = _rms(x)
        if r < 1e-7:
            continue
        mix += x / r * 10 ** (p.level_db / 20)
        rendered.append(
            {
                "part": p.name,
                "soundfont": Path(font).name,
                "bank": bank,
                "program": prog,
                "level_db": round(p.level_db, 2),
                "notes": len(p.notes),
            }
        )
    fade = min(n, int(0.02 * SAMPLE_RATE))
    mix[n - fade :] *= np.linspace(1.0, 0.0, fade)
    if info.get("master") == "loud":
        mix, info["master"] = loud_master(mix, SAMPLE_RATE, rng)
    audio, fx = augment(mix, SAMPLE_RATE, rng)

    onset_times = [s for p in wparts for s, _, _, v in p.notes if v >= MIN_ONSET_VELOCITY]
    onsets = merge_onsets([t for t in onset_times if t < duration - 0.02])
    if onsets.size == 0:
        raise ValueError("no onsets in window")
    keep = (beats[:, 0] >= onsets[0] - 0.1) & (beats[:, 0] <= min(onsets[-1] + 0.1, duration))
    beats = beats[keep]

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / item.name
    tmp = out_dir / f".{item.name}.tmp.flac"
    sf.write(tmp, audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    _write_text(stem.with_suffix(".beats"), "".join(f"{t:.6f} {int(b)}\n" for t, b in beats))
    _write_text(stem.with_suffix(".onsets"), "".join(f"{t:.6f}\n" for t in onsets))
    os.replace(tmp, stem.with_suffix(".flac"))
    return {
        "name": item.name,
        "set": item.set,
        "piece": item.piece,
        "split": item.split,
        "audio": f"{item.name}.flac",
        "beats": f"{item.name}.beats",
        "onsets": f"{item.name}.onsets",
        "duration_s": round(duration, 3),
        "n_beats": int(beats.shape[0]),
        "n_downbeats": int(np.sum(beats[:, 1] == 1)),
        "median_ibi_s": round(float(np.median(np.diff(beats[:, 0]))), 4)
        if len(beats) > 1
        else None,
        "n_onsets": int(onsets.size),
        "has_drums": any(p.is_drum for p in wparts),
        "parts": rendered,
        "tempo_scale": round(scale, 4),
        "transpose": transpose,
        "source_window_s": [round(t0, 3), round(t1, 3)],
        "seed": seed,
        "augment": fx,
        **{k: v for k, v in info.items() if k not in ("layers",)},
        "layers": info.get("layers", ""),
        "render_s": round(time.monotonic() - t_start, 2),
    }


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# CLI


def write_splits(out: Path, sets: Sequence[str], items: dict[str, list[Item]]) -> None:
    """``splits.json``: the validation and test pieces of every set (all pieces, rendered or
    not), and how they are assigned."""
    data: dict[str, Any] = {
        "method": "sha1('SET:PIECE') first 8 hex digits as int, % 100: <80 train, <90 valid, "
        "else test",
    }
    for s in sets:
        pieces = sorted({(it.piece, it.split) for it in items[s]})
        data[s] = {
            "n_pieces": len(pieces),
            "valid": [p for p, sp in pieces if sp == "valid"],
            "test": [p for p, sp in pieces if sp == "test"],
        }
    _write_text(out / "splits.json", json.dumps(data, indent=1) + "\n")


def _read_manifest(path: Path) -> set[str]:
    done: set[str] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                done.add(json.loads(line)["name"])
            except (json.JSONDecodeError, KeyError):
                continue
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=Path("data/renders"))
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--max-files", type=int, default=200, help="items per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--max-seconds", type=float, default=MAX_SECONDS)
    ap.add_argument(
        "--renders-per-piece",
        type=int,
        default=1,
        help="renders of each source item (different draws)",
    )
    ap.add_argument("--soundfont", action="append", default=[], help="extra .sf2/.sf3")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    warnings.filterwarnings("ignore", module="pretty_midi")

    root = args.data_root or default_data_root()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    for s in sets:
        if s not in SOURCES:
            ap.error(f"unknown set {s!r} (choose from {', '.join(SOURCES)})")
    if not root.is_dir() and any(s not in GENERATED_SETS for s in sets):
        ap.error(f"data root {root} not found (--data-root)")
    fonts = find_soundfonts(args.soundfont)
    if not fonts.gm:
        ap.error("no General MIDI soundfont found: apt-get install fluid-soundfont-gm")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    done = _read_manifest(manifest)

    items = {s: source_items(s, root) for s in sets}
    write_splits(out, sets, items)
    queues = []
    for s in sets:
        chosen = _order(items[s], args.seed)[: args.max_files]
        q = []
        for it in chosen:
            for k in range(args.renders_per_piece):
                name = it.name if k == 0 else f"{it.name}_r{k}"
                q.append(Item(name, it.set, it.piece, it.split, it.build))
        queues.append(q)
    todo = [it for group in _interleave(queues) for it in group if it.name not in done]
    total = sum(len(q) for q in queues)
    log.info(
        "%d items planned, %d done, %d to render into %s (fonts: %s; kits: %s)",
        total,
        total - len(todo),
        len(todo),
        out,
        [f.name for f in fonts.gm],
        [f.name for f in fonts.kits],
    )
    synth = FluidSynth()
    t_all = time.monotonic()
    audio_s = 0.0
    for k, it in enumerate(todo):
        try:
            rec = render_item(it, out, synth, fonts, seed=args.seed, max_seconds=args.max_seconds)
        except Exception as exc:
            log.warning("skip %s: %s: %s", it.name, type(exc).__name__, exc)
            continue
        with open(manifest, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        audio_s += rec["duration_s"]
        el = time.monotonic() - t_all
        log.info(
            "[%d/%d] %s %s %.1fs audio in %.1fs (%.1fx real time overall)",
            k + 1,
            len(todo),
            it.name,
            it.split,
            rec["duration_s"],
            rec["render_s"],
            audio_s / max(el, 1e-9),
        )
    synth.close()
    log.info(
        "finished: %d items, %.0f s audio in %.0f s", len(todo), audio_s, time.monotonic() - t_all
    )
    return 0


def _interleave(queues: list[list[Item]]) -> Iterator[list[Item]]:
    for i in range(max((len(q) for q in queues), default=0)):
        yield [q[i] for q in queues if i < len(q)]


if __name__ == "__main__":
    raise SystemExit(main())
