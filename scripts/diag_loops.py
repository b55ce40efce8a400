"""Which part of a drum loop does a beat model hear as the beat?

``python scripts/diag_loops.py --models models/weights,runs/export_be3 --bpm 95,120,150``

The synthetic band loop of :func:`onbeat.realtime.demo.demo_song` (kick on 1 and 3, snare on 2
and 4, eighth hats, a bass note on every beat, chords) is rebuilt here from the same voices with
one layer removed or changed at a time, and each model's beat activation (the torch sequence
forward over the cached features, as ``tune_tracker.py`` replays it) is folded over the bar:
the mean peak within ±20 ms of each beat (``b1``-``b4``) and of each "and" (``&1``-``&4``),
bar 2 onwards. A model that hears only the snare shows high ``b2``/``b4`` and low ``b1``/``b3``,
and the tracker then halves the tempo.

Variants: ``full`` (the demo loop), ``no_hats``, ``no_snare``, ``no_bass``, ``no_chords``,
``sf_kick``, ``sf_snare`` and ``sf_both`` (the kick, the snare or both taken from the FluidR3 GM
kit, as the rendered training songs have them), ``click_kick`` (a
noise click on the kick), ``loud_kick`` (kick +5 dB) and ``high_kick`` (a sweep from 260 Hz).

Written in session 21, when networks fine-tuned on the generated EDM songs fired on the snare
and not on the sine kick at 120 and 150 BPM (BENCHMARKS.md, issue 3 "Session 21").
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from onbeat.realtime import demo

VARIANTS = (
    "full",
    "no_hats",
    "no_snare",
    "no_bass",
    "no_chords",
    "click_kick",
    "loud_kick",
    "high_kick",
    "sf_kick",
    "sf_snare",
    "sf_both",
)


def _kit_hit(key: int) -> np.ndarray:
    """One hit of GM drum ``key`` (velocity 110) from the first installed General MIDI font's
    standard kit (FluidR3 where installed), peak 1."""
    from onbeat.training.render import SAMPLE_RATE, FluidSynth, find_soundfonts

    gm = sorted(find_soundfonts().gm, key=lambda f: "FluidR3" not in f.name)
    if not gm:
        raise SystemExit(
            "the sf_* variants need a GM soundfont (apt-get install fluid-soundfont-gm)"
        )
    n = int(0.4 * SAMPLE_RATE)
    events = [(0, 1, key, 110), (int(0.3 * SAMPLE_RATE), 0, key, 0)]
    x = FluidSynth().render(events, n, soundfont=gm[0], bank=128, program=0, drum=True)
    return np.asarray(x, dtype=np.float64) / np.abs(x).max()


def _kick(variant: str, sr: int) -> np.ndarray | None:
    """The kick a variant plays instead of the demo's (None: the demo's own)."""
    if variant in ("sf_kick", "sf_both"):
        return _kit_hit(36)
    k = demo._kick(sr)
    t = np.arange(k.size) / sr
    if variant == "click_kick":
        noise = np.diff(np.random.default_rng(1).standard_normal(k.size), prepend=0.0)
        return k + 0.5 * noise * np.exp(-t * 300)
    if variant == "loud_kick":
        return 1.8 * k
    if variant == "high_kick":
        freq = 60 + 200 * np.exp(-t * 40)
        return np.sin(2 * np.pi * np.cumsum(freq) / sr) * np.exp(-t * 14)
    return None


def loop(variant: str, bpm: float, sr: int = 44100, seconds: float = 30.0) -> tuple:
    """The demo loop at ``bpm`` with one layer changed; returns ``(samples, beats_s)``."""
    song = demo.demo_song(
        duration_s=seconds,
        bpm=bpm,
        sample_rate_hz=sr,
        mute=[variant.removeprefix("no_")] if variant.startswith("no_") else (),
        kick=_kick(variant, sr),
        snare=0.9 * _kit_hit(38) if variant in ("sf_snare", "sf_both") else None,
    )
    return song.samples, song.beats_s


def fold(act: np.ndarray, beats: np.ndarray, fps: float = 100.0) -> list[float]:
    """Mean activation peak (±2 frames) at each beat and each "and" of the bar, bar 2 on."""
    period = float(np.median(np.diff(beats)))
    out = []
    for pos in range(4):
        for half in (0.0, 0.5):
            peaks = []
            for t in beats[pos::4][1:] + half * period:
                i = round(t * fps)
                if i + 3 < act.size:
                    peaks.append(act[max(0, i - 2) : i + 3].max())
            out.append(float(np.mean(peaks)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--models", default="models/weights", help="comma-separated model folders")
    ap.add_argument("--bpm", default="95,120,150")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--audio-dir", default=str(ROOT / "runs" / "diag_loops"))
    args = ap.parse_args()
    import tune_tracker as tt  # (puts benchmarks/ on sys.path)

    audio_dir = Path(args.audio_dir)
    audio_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("ONBEAT_CACHE", str(audio_dir / "cache"))

    class It:
        audio: Path

    items = []
    for bpm in (float(b) for b in args.bpm.split(",")):
        for v in args.variants.split(","):
            if v not in VARIANTS:
                raise SystemExit(f"unknown variant {v!r} ({', '.join(VARIANTS)})")
            x, beats = loop(v, bpm)
            it = It()
            it.audio = audio_dir / f"{v}_{bpm:g}.wav"
            sf.write(it.audio, x, 44100)
            items.append((bpm, v, it, beats))
    head = " ".join(f"{p}{k + 1}" for k in range(4) for p in ("b", "&"))
    print(f"{'model':24s} {'bpm':>4s} {'variant':10s} {head.replace(' ', '   ')}")
    for md in args.models.split(","):
        run = tt.model_activations(Path(md))
        for bpm, v, it, beats in items:
            vals = fold(run(it)[:, 0], beats)
            print(f"{md[-24:]:24s} {bpm:4g} {v:10s} " + " ".join(f"{a:.2f}" for a in vals))


if __name__ == "__main__":
    main()
