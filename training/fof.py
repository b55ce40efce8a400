"""Beat labels for the Frets-on-Fire songs (Debian ``fretsonfire-songs-muldjord`` and
``fretsonfire-songs-sectoid``): real full-mix recordings with a chart grid.

For each song (``song.ogg`` with its ``notes.mid`` chart; *Metal madness* is left out, its two
halves need different offsets):

1. the beat grid comes from the chart's tempo map and time signature (4/4 when it has none);
2. the constant offset between grid and audio is calibrated by maximising the mean onset
   strength at the beat times over offsets from -100 to +150 ms. The onset strength is the mean
   SuperFlux ``pdiff`` of :class:`onbeat.realtime.features.SpectralFeatures`, a function of
   frame *end* time. That causal envelope peaks after an attack starts: 20 ms for drum kits
   (:data:`DRUM_ENVELOPE_LATENCY_S`, measured on Groove MIDI drums rendered through five
   soundfont kits against their note-on times; 13.5 ms for instant-attack noise bursts, see
   :func:`envelope_latency`). That latency is subtracted, so the beats sit at attack starts as
   the note-on labels of the renders do. The manifest also keeps the raw envelope peak lag;
3. ``OUT/NAME.beats`` (``time beat_in_bar``, offset applied) and ``OUT/manifest.json`` (the
   audio path, left where Debian installed it, and the offsets) are written.

The grid is a chart, not independent tapping: report it as its own set.

Usage::

    python -m onbeat.training.fof --out data/fof
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from onbeat.training.datasets import FPS, SAMPLE_RATE, feature_extractor, load_audio

__all__ = [
    "DRUM_ENVELOPE_LATENCY_S",
    "Song",
    "active_range",
    "beat_grid",
    "calibrate_offset",
    "envelope_latency",
    "find_songs",
    "main",
    "onset_envelope",
]

log = logging.getLogger("onbeat.training.fof")

SONGS_DIR = Path("/usr/share/games/fretsonfire/data/songs")
EXCLUDE = ("metal madness",)
OFFSETS_S = np.round(np.arange(-0.100, 0.1505, 0.001), 4)
DRUM_ENVELOPE_LATENCY_S = 0.020
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Song:
    """One song: its name, pack (``muldjord`` or ``sectoid``), audio and chart."""

    name: str
    pack: str
    title: str
    audio: Path
    chart: Path


def find_songs(root: Path = SONGS_DIR) -> list[Song]:
    """Every ``*/*/song.ogg`` with a ``notes.mid`` beside it, less the excluded songs."""
    out = []
    for audio in sorted(root.glob("*/*/song.ogg")):
        d = audio.parent
        chart = d / "notes.mid"
        if not chart.exists() or d.name.lower() in EXCLUDE:
            continue
        pack = d.parent.name
        name = f"{pack}_{re.sub(r'[^a-z0-9]+', '_', d.name.lower()).strip('_')}"
        out.append(Song(name, pack, d.name, audio, chart))
    return out


def beat_grid(chart: Path, duration_s: float) -> tuple[F64, npt.NDArray[np.int64], dict[str, Any]]:
    """Beat times and beats in bar from a chart's tempo map and time signatures, up to
    ``duration_s``.

    The grid starts at tick 0. A beat is a quarter note for ``N/4``, a dotted quarter for
    compound ``6/8``, ``9/8``, ``12/8``, else one ``1/denominator`` note.
    """
    import mido

    mid = mido.MidiFile(str(chart))
    tpq = mid.ticks_per_beat
    tempos: list[tuple[int, int]] = []
    sigs: list[tuple[int, int, int]] = []
    for track in mid.tracks:
        at = 0
        for msg in track:
            at += msg.time
            if msg.type == "set_tempo":
                tempos.append((at, msg.tempo))
            elif msg.type == "time_signature":
                sigs.append((at, msg.numerator, msg.denominator))
    tempos = sorted(set(tempos)) or [(0, 500000)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0, 500000))
    charted = bool(sigs)
    sigs = sorted(set(sigs)) or [(0, 4, 4)]
    if sigs[0][0] > 0:
        sigs.insert(0, (0, 4, 4))

    # seconds at each tempo change
    starts = [0.0]
    for (t0, us0), (t1, _) in itertools.pairwise(tempos):
        starts.append(starts[-1] + (t1 - t0) * us0 / 1e6 / tpq)
    ticks_at = np.asarray([t for t, _ in tempos], dtype=np.float64)
    secs_at = np.asarray(starts)
    us_at = np.asarray([u for _, u in tempos], dtype=np.float64)

    def seconds(tick: float) -> float:
        i = int(np.searchsorted(ticks_at, tick, side="right") - 1)
        return float(secs_at[i] + (tick - ticks_at[i]) * us_at[i] / 1e6 / tpq)

    times: list[float] = []
    bib: list[int] = []
    tick = 0.0
    si = 0
    count = 0
    while True:
        while si + 1 < len(sigs) and tick >= sigs[si + 1][0]:
            si += 1
            count = 0  # a new time signature starts a bar
        _, num, den = sigs[si]
        compound = den == 8 and num % 3 == 0 and num > 3
        beat_ticks = tpq * 4 / den * (3 if compound else 1)
        per_bar = num // 3 if compound else num
        t = seconds(tick)
        if t > duration_s:
            break
        times.append(t)
        bib.append(count % per_bar + 1)
        count += 1
        tick += beat_ticks
    bpms = sorted({round(6e7 / u, 3) for u in us_at})
    info = {
        "bpm": bpms if len(bpms) > 1 else bpms[0],
        "time_signatures": sigs,
        "time_signature_in_chart": charted,
    }
    return np.asarray(times), np.asarray(bib, dtype=np.int64), info


def onset_envelope(x: npt.NDArray[np.float32]) -> F64:
    """Mean SuperFlux ``pdiff`` per frame (frame ``k`` ends at ``(k + 1) / FPS`` s)."""
    f = feature_extractor()
    feats = f.batch(x)
    env: F64 = feats[:, f.layout.pdiff_mask()].mean(axis=1).astype(np.float64)
    return env


def _score(env: F64, times: F64, offsets: F64) -> F64:
    """Mean z-scored envelope at ``times + offset`` for each offset (linear interpolation)."""
    e = (env - env.mean()) / (env.std() + 1e-12)
    ends = (np.arange(e.shape[0]) + 1) / FPS
    return np.asarray([np.interp(times + o, ends, e).mean() for o in offsets])


def envelope_latency(seed: int = 0) -> float:
    """Lag (s) at which :func:`onset_envelope` best matches onsets with an instant attack
    (decaying noise and tone bursts at random times), measured the same way as the offsets."""
    rng = np.random.default_rng(seed)
    sr = SAMPLE_RATE
    x = np.zeros(30 * sr, np.float32)
    t = np.sort(rng.uniform(0.5, 29.5, 120))
    t = t[np.concatenate([[True], np.diff(t) > 0.12])]
    n = 6000
    tt = np.arange(n) / sr
    for s in t:
        i = round(s * sr)
        burst = rng.standard_normal(n) * 0.3 + 0.4 * np.sin(2 * np.pi * rng.uniform(80, 2000) * tt)
        x[i : i + n] += (burst * np.exp(-tt * rng.uniform(15, 40))).astype(np.float32)
    lags = np.round(np.arange(0.0, 0.060, 0.0005), 4)
    sc = _score(onset_envelope(x), t, lags)
    return float(lags[int(np.argmax(sc))])


def active_range(x: npt.NDArray[np.float32], floor_db: float = -40.0) -> tuple[float, float]:
    """First and last time (s, 50 ms resolution) where the RMS is within ``floor_db`` of the
    loudest 50 ms."""
    n = int(0.05 * SAMPLE_RATE)
    m = x.shape[0] // n
    e = np.sqrt(np.mean(x[: m * n].reshape(m, n) ** 2, axis=1) + 1e-20)
    on = np.flatnonzero(20 * np.log10(e / e.max()) > floor_db)
    return float(on[0] * n / SAMPLE_RATE), float((on[-1] + 1) * n / SAMPLE_RATE)


def calibrate_offset(
    env: F64, beats: F64, latency: float, offsets: F64 = OFFSETS_S
) -> tuple[float, F64]:
    """Offset (s) to add to the grid that maximises the onset strength at the beats; returns it
    and the score per offset."""
    sc = _score(env, beats + latency, offsets)
    return float(offsets[int(np.argmax(sc))]), sc


def process(song: Song, out: Path, latency: float) -> dict[str, Any]:
    """Calibrate one song and write its ``.beats``; returns its manifest record."""
    x = load_audio(song.audio)
    duration = x.shape[0] / SAMPLE_RATE
    times, bib, info = beat_grid(song.chart, duration)
    env = onset_envelope(x)
    a0, a1 = active_range(x)
    active = (times >= a0) & (times <= a1 - 0.05)
    offset, sc = calibrate_offset(env, times[active], latency)
    half = times[active]
    mid = half[half.shape[0] // 2]
    o1, _ = calibrate_offset(env, half[half < mid], latency)
    o2, _ = calibrate_offset(env, half[half >= mid], latency)
    # how clear the peak is: best score against the best one at least 40 ms away
    i = int(np.argmax(sc))
    far = np.abs(OFFSETS_S - OFFSETS_S[i]) >= 0.040
    shifted = times + offset
    keep = (shifted >= max(0.0, a0 - 0.05)) & (shifted <= min(a1, duration))
    out.mkdir(parents=True, exist_ok=True)
    beats_file = out / f"{song.name}.beats"
    beats_file.write_text(
        "".join(f"{t:.6f} {int(b)}\n" for t, b in zip(shifted[keep], bib[keep], strict=True))
    )
    return {
        "name": song.name,
        "pack": song.pack,
        "title": song.title,
        "audio": str(song.audio),
        "chart": str(song.chart),
        "beats": beats_file.name,
        "duration_s": round(duration, 3),
        "n_beats": int(keep.sum()),
        **info,
        "offset_s": round(offset, 4),
        "envelope_peak_lag_s": round(offset + latency, 4),
        "offset_first_half_s": round(o1, 4),
        "offset_second_half_s": round(o2, 4),
        "peak_score": round(float(sc[i]), 3),
        "peak_margin": round(float(sc[i] - sc[far].max()), 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.fof",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=Path("data/fof"))
    ap.add_argument("--songs-dir", type=Path, default=SONGS_DIR)
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=None,
        help="envelope latency to subtract (default 20: drum kits; 0 gives raw peak lags)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    songs = find_songs(args.songs_dir)
    if not songs:
        ap.error(
            f"no songs under {args.songs_dir}: apt-get install fretsonfire-songs-muldjord "
            "fretsonfire-songs-sectoid"
        )
    latency = DRUM_ENVELOPE_LATENCY_S if args.latency_ms is None else args.latency_ms / 1000
    log.info(
        "onset envelope latency subtracted: %.1f ms (instant-attack bursts: %.1f ms)",
        1000 * latency,
        1000 * envelope_latency(),
    )
    records = []
    for s in songs:
        rec = process(s, args.out, latency)
        records.append(rec)
        log.info(
            "%-34s %s bpm  offset %+6.1f ms (halves %+6.1f / %+6.1f)  margin %.2f  %d beats",
            s.name,
            rec["bpm"],
            1000 * rec["offset_s"],
            1000 * rec["offset_first_half_s"],
            1000 * rec["offset_second_half_s"],
            rec["peak_margin"],
            rec["n_beats"],
        )
    manifest = {
        "method": "offset maximising the mean z-scored SuperFlux pdiff envelope at grid beats, "
        "over -100..+150 ms in 1 ms steps (envelope at frame end times), less the envelope "
        "latency for drum attacks; envelope_peak_lag_s is the offset before that correction; "
        "beats files have offset_s applied",
        "envelope_latency_s": latency,
        "excluded": list(EXCLUDE),
        "songs": records,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
