"""Synthesized demo and test audio, generated on the fly (nothing is downloaded or bundled).

:func:`demo_song` renders a short band-like loop (kick, snare, hi-hat, bass and chords) with known
beats and downbeats; :func:`click_track` renders plain clicks. Both are deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Synth", "click_track", "demo_song"]


@dataclass(frozen=True, slots=True)
class Synth:
    """A rendered signal with its ground truth.

    Attributes
    ----------
    samples : ndarray of float32, shape (n,)
        Mono audio in [-1, 1].
    sample_rate_hz : int
        Its rate.
    beats_s : ndarray
        Beat times.
    downbeats_s : ndarray
        Downbeat times.
    onsets_s : ndarray
        Every percussive or note onset.
    """

    samples: npt.NDArray[np.float32]
    sample_rate_hz: int
    beats_s: npt.NDArray[np.float64]
    downbeats_s: npt.NDArray[np.float64]
    onsets_s: npt.NDArray[np.float64]


def _add(out: npt.NDArray[np.float64], start: int, sound: npt.NDArray[np.float64]) -> None:
    end = min(out.shape[0], start + sound.shape[0])
    if start < end:
        out[start:end] += sound[: end - start]


def _kick(sr: int) -> npt.NDArray[np.float64]:
    t = np.arange(int(0.25 * sr)) / sr
    freq = 45 + 90 * np.exp(-t * 35)
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return np.sin(phase) * np.exp(-t * 14)


def _snare(sr: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(int(0.18 * sr)) / sr
    noise = rng.standard_normal(t.shape[0]) * np.exp(-t * 28)
    body = 0.5 * np.sin(2 * np.pi * 190 * t) * np.exp(-t * 30)
    return 0.5 * noise + body


def _hat(sr: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    t = np.arange(int(0.05 * sr)) / sr
    white = rng.standard_normal(t.shape[0])
    bright = np.diff(white, prepend=0.0)  # crude high-pass
    return np.asarray(0.25 * bright * np.exp(-t * 90), dtype=np.float64)


def _tone(
    sr: int, freq_hz: float, dur_s: float, *, harmonics: int = 6, decay: float = 3.0
) -> npt.NDArray[np.float64]:
    t = np.arange(int(dur_s * sr)) / sr
    x = np.zeros_like(t)
    for h in range(1, harmonics + 1):
        if freq_hz * h < sr / 2:
            x += np.sin(2 * np.pi * freq_hz * h * t) / h
    release = np.minimum(1.0, (t[-1] - t) / 0.03) if t.size else t  # no click at the end
    env = np.minimum(1.0, t / 0.005) * np.exp(-t * decay) * release
    return x * env


def demo_song(
    *,
    duration_s: float = 30.0,
    bpm: float = 120.0,
    sample_rate_hz: int = 44100,
    seed: int = 0,
    bpm_after: float | None = None,
    change_s: float = 15.0,
    break_span_s: tuple[float, float] | None = None,
    mute: Collection[str] = (),
    kick: npt.NDArray[np.float64] | None = None,
    snare: npt.NDArray[np.float64] | None = None,
) -> Synth:
    """A 4/4 band loop: kick on 1 and 3, snare on 2 and 4, eighth hi-hats, bass and chords.

    The first beat falls at 0.5 s.

    Parameters
    ----------
    duration_s, bpm, sample_rate_hz, seed
        Length, tempo, rate and random seed.
    bpm_after : float, optional
        Tempo after ``change_s`` (a sudden tempo step), if given.
    change_s : float
        When the tempo step happens.
    break_span_s : (float, float), optional
        A break: drums and bass are silent between these times, the chords go on. The ground
        truth keeps every beat of the grid.
    mute : collection of str
        Layers left out (``"kick"``, ``"snare"``, ``"hats"``, ``"bass"``, ``"chords"``); the
        rest is unchanged, sample for sample (``scripts/diag_loops.py`` probes models so).
    kick, snare : ndarray, optional
        Sounds (at ``sample_rate_hz``, peak about 1) played instead of the synthesized ones.
    """
    unknown = set(mute) - {"kick", "snare", "hats", "bass", "chords"}
    if unknown:
        raise ValueError(f"unknown layers to mute: {', '.join(sorted(unknown))}")
    sr = sample_rate_hz
    rng = np.random.default_rng(seed)
    n = int(duration_s * sr)
    out = np.zeros(n)
    period = 60.0 / bpm
    first = 0.5
    if bpm_after is None:
        beats = np.arange(first, duration_s - 0.05, period)
    else:
        before = np.arange(first, change_s, period)
        after = np.arange(before[-1] + 60.0 / bpm_after, duration_s - 0.05, 60.0 / bpm_after)
        beats = np.concatenate([before, after])
    synth_kick, synth_snare, hat = _kick(sr), _snare(sr, rng), _hat(sr, rng)
    kick = synth_kick if kick is None else kick
    snare = synth_snare if snare is None else snare
    roots = [55.0, 43.65, 49.0, 41.2]  # A1, F1, G1, E1
    chords = [
        (220.0, 261.6, 329.6),
        (174.6, 220.0, 261.6),
        (196.0, 246.9, 293.7),
        (164.8, 207.7, 246.9),
    ]
    onsets = []
    for i, b in enumerate(beats):
        s = round(b * sr)
        bar, pos = divmod(i, 4)
        if i + 1 < len(beats):
            period = beats[i + 1] - b
        if break_span_s is None or not break_span_s[0] <= b < break_span_s[1]:
            if pos in (0, 2) and "kick" not in mute:
                _add(out, s, (0.9 if pos == 0 else 0.7) * kick)
            elif pos in (1, 3) and "snare" not in mute:
                _add(out, s, 0.6 * snare)
            onsets.append(b)
            if "hats" not in mute:
                _add(out, s, hat)
                _add(out, s + int(period / 2 * sr), 0.7 * hat)
                onsets.append(b + period / 2)
            if "bass" not in mute:
                root = roots[bar % 4] * (2 if pos == 3 else 1)
                _add(out, s, 0.35 * _tone(sr, root, period * 0.9, harmonics=4, decay=4.0))
        elif pos == 0:
            onsets.append(b)
        if pos == 0 and "chords" not in mute:
            for f in chords[bar % 4]:
                _add(out, s, 0.08 * _tone(sr, f, 4 * period, harmonics=5, decay=0.8))
    out /= max(1.0, np.max(np.abs(out)) / 0.8)
    return Synth(
        samples=out.astype(np.float32),
        sample_rate_hz=sr,
        beats_s=beats,
        downbeats_s=beats[::4],
        onsets_s=np.unique(np.round(np.asarray(onsets), 6)),
    )


def click_track(
    *,
    duration_s: float = 10.0,
    bpm: float = 120.0,
    sample_rate_hz: int = 44100,
    first_s: float = 0.5,
    accent_every: int = 4,
    amplitude: float = 0.5,
) -> Synth:
    """Decaying sine clicks at a steady tempo; every ``accent_every``-th is louder and higher."""
    sr = sample_rate_hz
    n = int(duration_s * sr)
    out = np.zeros(n)
    beats = np.arange(first_s, duration_s - 0.02, 60.0 / bpm)
    t = np.arange(int(0.02 * sr)) / sr
    for i, b in enumerate(beats):
        accent = accent_every > 0 and i % accent_every == 0
        f = 1760.0 if accent else 880.0
        a = amplitude if accent else 0.6 * amplitude
        _add(out, round(b * sr), a * np.sin(2 * np.pi * f * t) * np.exp(-t * 300))
    return Synth(
        samples=out.astype(np.float32),
        sample_rate_hz=sr,
        beats_s=beats,
        downbeats_s=beats[::accent_every] if accent_every > 0 else beats[:0],
        onsets_s=beats.copy(),
    )
