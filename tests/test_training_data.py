"""Training data: target builders, label helpers, augmentation, loaders and MIDI rendering.

Tests that need the research data (``../shared/data``), libfluidsynth, a General MIDI soundfont
or the ``train`` extra (pretty_midi) skip with the reason when those are absent.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from onbeat.training import datasets as D
from onbeat.training.render import (
    HEAVY_RIFFS,
    augment,
    beats_in_bar,
    generate_heavy,
    groove_grid_shift,
    loud_master,
    merge_onsets,
    split_of,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------------------------ targets


def test_time_to_frame_rounds_to_causal_frame():
    # frame k ends at (k + 1) / 100 s; an event at t goes to round(100 t)
    assert D.time_to_frame([0.0, 0.004, 0.006, 0.1, 1.234]).tolist() == [0, 0, 1, 10, 123]
    assert D.time_to_frame([0.1], delay=0.02).tolist() == [12]
    assert D.event_targets([0.1], 20, widen=None, delay=0.01)[11] == 1.0


def test_event_targets_widening_and_range():
    y = D.event_targets([0.10, 0.50, 0.51, 5.0, -1.0], 60, widen=0.5)
    assert y.dtype == np.float32 and y.shape == (60,)
    assert y[10] == 1.0 and y[9] == 0.5 and y[11] == 0.5
    assert y[50] == 1.0 and y[51] == 1.0  # a neighbour that is an event stays 1
    assert y[49] == 0.5 and y[52] == 0.5
    assert np.count_nonzero(y) == 7  # 5.0 s and -1 s fall outside
    plain = D.event_targets([0.10], 20, widen=None)
    assert plain.sum() == 1.0 and plain[10] == 1.0


def test_event_targets_at_edges_and_empty():
    y = D.event_targets([0.0, 0.19], 20)
    assert y[0] == 1.0 and y[1] == 0.5 and y[19] == 1.0 and y[18] == 0.5
    assert not D.event_targets([], 10).any()
    assert not D.event_targets(None, 10).any()


def test_beat_targets_columns_and_masking():
    y = D.beat_targets([0.5, 1.0, 1.5, 2.0], [0.5, 2.0], 300)
    assert y.shape == (300, 2)
    assert y[[50, 100, 150, 200], 0].tolist() == [1.0] * 4
    assert y[[50, 200], 1].tolist() == [1.0, 1.0] and y[100, 1] == 0.0
    masked = D.beat_targets([0.5], None, 100)
    assert (masked[:, 1] == -1).all() and masked[50, 0] == 1.0
    zeros = D.beat_targets([0.5], None, 100, mask_missing=False)
    assert not zeros[:, 1].any()
    assert D.onset_targets([0.2], 50).shape == (50, 1)


# ------------------------------------------------------------------------------ label helpers


def test_merge_onsets_anchors_clusters_at_first():
    got = merge_onsets([1.0, 0.0, 0.015, 0.019, 0.03, 0.5, 0.52, 1.0])
    assert got.tolist() == [0.0, 0.03, 0.5, 1.0]


def test_beats_in_bar_with_pickup_and_changes():
    db = [0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0]
    assert beats_in_bar(db).tolist() == [3, 4, 1, 2, 3, 4, 1, 2, 3, 1, 2]
    assert beats_in_bar([0, 0, 0, 0, 0]).tolist() == [1, 2, 3, 4, 1]


def test_groove_grid_shift_follows_on_beat_hits():
    grid = np.arange(0.0, 20.0, 0.5)
    rng = np.random.default_rng(0)
    hits = grid[::2] - 0.015 + rng.normal(0, 0.003, grid[::2].size)
    hits = np.concatenate([hits, grid[1::2] + 0.25])  # off-beat hits are ignored
    assert abs(groove_grid_shift(grid, hits) + 0.015) < 0.002
    assert groove_grid_shift(grid, [0.01, 0.51]) == 0.0  # too few hits


def test_split_is_deterministic_and_balanced():
    names = [f"piece{i}" for i in range(2000)]
    splits = [split_of("x", n) for n in names]
    assert splits == [split_of("x", n) for n in names]
    share = {s: splits.count(s) / len(names) for s in ("train", "valid", "test")}
    assert 0.75 < share["train"] < 0.85 and 0.07 < share["valid"] < 0.13
    assert 0.07 < share["test"] < 0.13


def test_augment_is_seeded_bounded_and_causal():
    sr = 44100
    x = np.zeros(2 * sr)
    x[sr] = 1.0
    x[sr + 1 : sr + 2000] = 0.3 * np.exp(-np.arange(1999) / 300)
    for seed in range(12):
        y, info = augment(x, sr, np.random.default_rng(seed))
        y2, _ = augment(x, sr, np.random.default_rng(seed))
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.array_equal(y, y2)
        assert np.max(np.abs(y)) <= 1.0 and "peak_dbfs" in info
        if "noise" not in info:  # nothing can precede the impulse but noise
            assert np.max(np.abs(y[: sr - 1])) < 1e-6


def test_augmented_copies_scale_labels_with_speed_and_are_reused(tmp_path):
    sr = 44100
    clicks_s = np.array([0.5, 1.25, 2.0, 2.6, 3.3])
    x = np.zeros(4 * sr, np.float32)
    for t in clicks_s:
        i = round(t * sr)
        x[i : i + 400] = np.hanning(800)[400:] * np.sign(np.sin(np.arange(400) * 0.3))
    wav = tmp_path / "src.wav"
    sf.write(wav, x, sr)
    item = D.Item("src", wav, None, None, clicks_s, "fold 0", "bock")
    out = tmp_path / "aug"
    copies = D.augmented_items([item], out, 3, seed=7)
    assert [c.name for c in copies] == ["src__aug0", "src__aug1", "src__aug2"]
    assert all(c.split == "fold 0" and c.set == "bock aug" for c in copies)
    for c in copies:
        y = D.load_audio(c.audio)
        speed = clicks_s[-1] / c.onsets[-1]
        assert 0.9 <= speed <= 1.1
        np.testing.assert_allclose(c.onsets, clicks_s / speed, atol=2e-6)
        assert abs(y.size - x.size / speed) < 2
        # every labelled click is the loudest moment of its neighbourhood in the copy
        env = np.abs(y)
        for t in c.onsets:
            i = round(t * sr)
            assert np.max(env[i : i + 400]) > 3 * np.median(env[max(0, i - 4000) : i - 200]) + 1e-6
    speeds = {round(float(clicks_s[-1] / c.onsets[-1]), 6) for c in copies}
    assert len(speeds) == 3  # different draws per copy
    # reused, not rewritten; and a fresh folder gets identical copies
    mtimes = [c.audio.stat().st_mtime_ns for c in copies]
    again = D.augmented_items([item], out, 3, seed=7)
    assert [c.audio.stat().st_mtime_ns for c in again] == mtimes
    other = D.augmented_items([item], tmp_path / "aug2", 1, seed=7)
    assert np.array_equal(D.load_audio(other[0].audio), D.load_audio(copies[0].audio))
    # speed only: the resampled source at some level, nothing added
    (spd,) = D.augmented_items([item], out, 1, seed=7, room=False)
    assert spd.name == "src__spd0"
    y = D.load_audio(spd.audio)
    speed = clicks_s[-1] / spd.onsets[-1]
    ref = soxr.resample(x, sr * speed, sr, quality="HQ")[: y.size]
    gain = float(np.dot(y, ref) / np.dot(ref, ref))
    assert 10 ** (-31 / 20) < gain < 1.0
    # equal up to 16-bit FLAC and the label file's 1 µs rounding of the speed
    assert np.linalg.norm(y - gain * ref) < 0.01 * np.linalg.norm(y)
    with pytest.raises(ValueError, match="copies"):
        D.augmented_items([item], out, -1)


# ------------------------------------------------------------------------------ features


def test_cached_features_match_engine_and_are_reused(tmp_path, prepared_features):
    sr = 48000  # resampled to 44.1 kHz
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal(sr).astype(np.float32)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.stack([x, x], axis=1), sr)
    cache = tmp_path / "cache"
    f1 = D.cached_features(wav, cache)
    assert f1.dtype == np.float32
    assert f1.shape == (44100 // 441, prepared_features.layout.dims)
    files = list(cache.glob("*.npy"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    f2 = D.cached_features(wav, cache)
    assert np.array_equal(f1, f2) and files[0].stat().st_mtime_ns == mtime
    expect = prepared_features.batch(D.load_audio(wav))
    np.testing.assert_allclose(f1, expect, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------ FoF helpers


def test_fof_beat_grid_and_offset_calibration(tmp_path):
    mido = pytest.importorskip("mido", reason="mido (train extra) not installed")
    from onbeat.training import fof

    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    tr.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    tr.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0))
    tr.append(mido.MetaMessage("set_tempo", tempo=250000, time=480 * 6))
    mid.tracks.append(tr)
    path = tmp_path / "notes.mid"
    mid.save(path)
    t, bib, info = fof.beat_grid(path, 4.0)
    np.testing.assert_allclose(t[:8], [0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.25])
    assert bib[:8].tolist() == [1, 2, 3, 1, 2, 3, 1, 2]
    assert info["bpm"] == [120.0, 240.0]

    # clicks 30 ms after a 120 bpm grid: the calibration finds +30 ms
    sr = 44100
    grid = np.arange(0.5, 20.0, 0.5)
    x = np.zeros(21 * sr, np.float32)
    rng = np.random.default_rng(3)
    for b in grid + 0.030:
        i = round(b * sr)
        x[i : i + 3000] += (rng.standard_normal(3000) * np.exp(-np.arange(3000) / 400)).astype(
            np.float32
        )
    lat = fof.envelope_latency()
    assert 0.0 < lat < 0.040
    offset, _ = fof.calibrate_offset(fof.onset_envelope(x), grid, lat)
    assert abs(offset - 0.030) <= 0.004


def test_fof_train_items_hold_out_and_chart_downbeats(tmp_path):
    songs = []
    for name, in_chart in [("bandA_one", True), ("bandA_two", False), ("bandB_one", True)]:
        (tmp_path / f"{name}.beats").write_text("0.5 1\n1.0 2\n1.5 3\n2.0 4\n2.5 1\n")
        songs.append(
            {
                "name": name,
                "audio": f"/nowhere/{name}.ogg",
                "beats": f"{name}.beats",
                "time_signature_in_chart": in_chart,
            }
        )
    (tmp_path / "manifest.json").write_text(json.dumps({"songs": songs}))
    items = D.fof_train_items(tmp_path, hold_out=("bandB",))
    assert [it.name for it in items] == ["bandA_one", "bandA_two"]
    assert all(it.split == "train" and it.set == "fof" for it in items)
    np.testing.assert_allclose(items[0].beats, [0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(items[0].downbeats, [0.5, 2.5])
    # a chart without a time signature gives no downbeat labels: the loss masks them
    assert items[1].downbeats is None
    y = D.beat_targets(items[1].beats, items[1].downbeats, 300)
    assert (y[:, 1] == -1).all() and y[:, 0].max() == 1.0
    assert [it.name for it in D.fof_train_items(tmp_path)] == [
        "bandA_one",
        "bandA_two",
        "bandB_one",
    ]
    assert D.fof_train_items(tmp_path, hold_out=("band",)) == []


# ------------------------------------------------------------------------------ data sets


def _need_shared_data() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"research data not found at {SHARED_DATA}")


def test_bock_loader_reads_folds_and_annotations():
    _need_shared_data()
    base = SHARED_DATA / "onsets" / "bock"
    if not base.is_dir():
        pytest.skip(f"{base} not found")
    folds = D.bock_folds(base)
    assert len(folds) >= 1
    items = D.bock_items(base)
    assert len(items) > 100
    assert len({it.name for it in items}) == len(items)
    for it in items[:20]:
        assert it.audio.exists() and it.onsets is not None
        assert np.all(np.diff(it.onsets) >= 0)
    one = D.bock_items(base, folds=[min(folds)])
    assert 0 < len(one) < len(items)
    x = D.load_audio(one[0].audio)
    assert x.ndim == 1 and x.dtype == np.float32 and x.size > 44100


def _need_renderer(shared: bool = True):
    if shared:
        _need_shared_data()
        pytest.importorskip("pretty_midi", reason="pretty_midi (train extra) not installed")
    from onbeat.training import render

    try:
        render.FluidSynth().close()
    except RuntimeError as exc:
        pytest.skip(f"libfluidsynth unavailable: {exc}")
    fonts = render.find_soundfonts()
    if not fonts.gm:
        pytest.skip("no General MIDI soundfont (apt-get install timgm6mb-soundfont)")
    return render


def _check_rendered(items, tmp_path, max_s: float) -> None:
    """Audio format, label ranges, and the audio's onset strength peaking just after the
    labelled onsets."""
    for it in items:
        info = sf.info(str(it.audio))
        assert info.samplerate == 44100 and info.channels == 1
        dur = info.frames / info.samplerate
        assert 5.0 < dur <= max_s + 1e-6
        assert it.beats is not None and it.onsets is not None and it.downbeats is not None
        assert it.beats.size >= 4 and it.onsets.size >= 4
        assert np.all(np.diff(it.beats) > 0) and np.all(np.diff(it.onsets) > 0.02)
        assert it.beats[0] >= 0 and it.beats[-1] <= dur
        assert it.onsets[0] >= 0 and it.onsets[-1] <= dur
        assert set(np.round(it.downbeats, 6)) <= set(np.round(it.beats, 6))
        x = D.load_audio(it.audio)
        feats = D.cached_features(it.audio, tmp_path / "cache")
        assert feats.shape[0] == x.size // 441
        f = D.feature_extractor()
        env = feats[:, f.layout.pdiff_mask()].mean(axis=1)
        env = (env - env.mean()) / env.std()
        ends = (np.arange(env.size) + 1) / 100.0
        lags = np.arange(-0.2, 0.2, 0.002)
        score = np.array([np.interp(it.onsets + lag, ends, env).mean() for lag in lags])
        best = lags[np.argmax(score)]
        assert 0.0 <= best <= 0.07, best
        assert score.max() > 0.5


def test_render_two_items_with_aligned_labels(tmp_path):
    render = _need_renderer()
    for sub in ("groove", "pop909"):
        if not (SHARED_DATA / "midi" / sub).is_dir():
            pytest.skip(f"{SHARED_DATA / 'midi' / sub} not found")
    out = tmp_path / "renders"
    args = ["--out", str(out), "--sets", "groove,pop909", "--max-files", "1"]
    args += ["--max-seconds", "10", "--seed", "0"]
    assert render.main(args) == 0
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 2
    splits = json.loads((out / "splits.json").read_text())
    assert splits["pop909"]["n_pieces"] > 800

    items = D.render_items(out)
    assert {it.set for it in items} == {"groove", "pop909"}
    _check_rendered(items, tmp_path, 10.0)

    # resumable: a second run renders nothing new
    assert render.main(args) == 0
    assert (out / "manifest.jsonl").read_text().splitlines() == lines


def test_heavy_songs_sit_on_their_grid():
    """Generated heavy parts: every note on a sixteenth of the beat grid (within the human
    jitter), downbeats every bar, and drum hits both on and off the beat."""
    from onbeat.training.render import SKANK_MIN_BPM, TEMPO_SCALE, _heavy_grid

    # a skank, after the slowest time stretch, read at twice its tempo is out of 55-215 BPM
    assert 2 * SKANK_MIN_BPM / max(TEMPO_SCALE) > 215

    for seed in range(6):
        rng = np.random.default_rng(seed)
        beats, bib = _heavy_grid(rng, 40.0)
        ibi = np.diff(beats)
        assert np.all(ibi > 60 / 190) and np.all(ibi < 60 / 95)
        assert set(np.unique(bib).tolist()) in ({1, 2, 3}, {1, 2, 3, 4})
        parts, info = generate_heavy(beats, bib, rng)
        assert [p.name for p in parts] == ["drums", "guitar", "guitar2", "bass"]
        assert parts[0].is_drum and all(p.program in (29, 30) for p in parts[1:3])
        assert all(s.split("/")[1] in HEAVY_RIFFS for s in info["sections"])
        if 60 / np.median(ibi) < SKANK_MIN_BPM:  # else a backbeat at twice the tempo
            assert not any(s.startswith("skank/") for s in info["sections"])
        idx = np.arange(len(beats), dtype=float)
        pos = np.interp([n[0] for p in parts for n in p.notes], beats, idx)
        off16 = np.abs(pos * 4 - np.round(pos * 4)) / 4  # beats from the nearest sixteenth
        assert np.quantile(off16, 0.99) < 0.08
        drum_pos = np.interp([n[0] for n in parts[0].notes], beats, idx)
        near_beat = np.abs(drum_pos - np.round(drum_pos)) < 0.05
        assert 0.3 < near_beat.mean() < 1.0


def test_edm_songs_sit_on_a_steady_grid_with_loaded_off_beats():
    """Generated EDM parts: a steady grid in the style's tempo range, every note on a sixteenth,
    four-on-the-floor kicks exactly on the beats, and a top that loads the "and" (so a model
    must learn that an off-beat hit is not a beat); drums prefer electronic kits; the same seed
    gives the same song."""
    from onbeat.training.render import (
        EDM_KITS,
        EDM_SECTIONS,
        EDM_STYLES,
        EDM_TEMPO_BPM,
        _edm_grid,
        generate_edm,
    )

    off_and = []
    for seed, style in itertools.product(range(3), EDM_STYLES):
        rng = np.random.default_rng(seed)
        beats, bib = _edm_grid(rng, 40.0, style)
        lo, hi = EDM_TEMPO_BPM[style]
        assert lo <= 60 / np.diff(beats).mean() <= hi
        np.testing.assert_allclose(np.diff(beats), np.diff(beats)[0])
        assert bib[:8].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]
        parts, info = generate_edm(beats, bib, rng, style)
        assert info["style"] == style and set(info["sections"]) <= set(EDM_SECTIONS)
        assert info["sections"][0] == "intro"
        assert parts[0].is_drum and parts[0].kits == EDM_KITS
        idx = np.arange(len(beats), dtype=float)
        pos = np.interp([n[0] for p in parts for n in p.notes], beats, idx)
        assert np.quantile(np.abs(pos * 4 - np.round(pos * 4)) / 4, 0.99) < 0.03
        kicks = np.interp([n[0] for n in parts[0].notes if n[2] == 36], beats, idx)
        if EDM_STYLES[style][0] == ("four",):  # kicks on every beat, and only there
            assert np.max(np.abs(kicks - np.round(kicks))) < 0.03
        top = [n[0] for p in parts for n in p.notes if not (p.is_drum and n[2] in (36, 49))]
        frac = np.interp(top, beats, idx) % 1
        off_and.append(np.mean(np.abs(frac - 0.5) < 0.05))
    assert np.mean(off_and) > 0.15  # the "and" is loaded across styles
    r1 = np.random.default_rng(5)
    g1 = _edm_grid(r1, 30.0, "house")
    a = generate_edm(*g1, r1, "house")[0]
    r2 = np.random.default_rng(5)
    g2 = _edm_grid(r2, 30.0, "house")
    b = generate_edm(*g2, r2, "house")[0]
    assert [p.notes for p in a] == [p.notes for p in b]


def test_displaced_sections_move_the_band_and_keep_the_grid():
    """The ``displaced`` set: a displaced section starts its drums (the crash) and its riff the
    drawn number of sixteenths late while the beat grid (the labels) stays; the first section
    and the one after a displaced section are never displaced; ``displace_p`` 0 leaves a
    ``heavy`` song exactly as before (same random stream)."""
    from onbeat.training.render import DISPLACE_SHIFTS, _heavy_grid

    def song(seed: int, **kw: float):
        rng = np.random.default_rng(seed)
        beats, bib = _heavy_grid(rng, 60.0)
        return beats, *generate_heavy(beats, bib, rng, **kw)

    _, plain, info = song(4)
    _, same, info0 = song(4, displace_p=0.0)
    assert info0 == info and [p.notes for p in same] == [p.notes for p in plain]

    moved = {"d": 0, "r": 0}
    for seed in range(12):
        beats, parts, info = song(seed, displace_p=1.0)
        secs, starts = info["sections"], info["section_beats"]
        shifted = ["/+" in s for s in secs]
        assert not shifted[0] and any(shifted)
        assert not any(a and b for a, b in itertools.pairwise(shifted))
        idx = np.arange(len(beats), dtype=float)
        for sec, start in zip(secs, starts, strict=True):
            d, r = (int(x) for x in (sec.split("/+")[1][:-1].split("d") if "/+" in sec else (0, 0)))
            assert {d, r} <= {0, *DISPLACE_SHIFTS}
            moved["d"] += d > 0
            moved["r"] += r > 0
            if not sec.startswith("none"):  # the section's crash, d sixteenths after its start
                crash = [n[0] for n in parts[0].notes if n[2] == 49]
                pos = np.interp(crash, beats, idx) - (start + d / 4)
                assert np.min(np.abs(pos)) < 0.1, (sec, start)
            # the riff's first note: its first non-rest slot, r sixteenths late
            riff = HEAVY_RIFFS[sec.split("/")[1]]
            first = next(k for k, c in enumerate(riff) if c != ".") + r
            gtr = np.interp([n[0] for n in parts[1].notes], beats, idx)
            assert np.min(np.abs(gtr - (start + first / 4))) < 0.1, (sec, start)
        pos = np.interp([n[0] for p in parts for n in p.notes], beats, idx)
        off16 = np.abs(pos * 4 - np.round(pos * 4)) / 4  # still on a sixteenth of the grid
        assert np.quantile(off16, 0.99) < 0.08
    assert moved["d"] > 0 and moved["r"] > 0


def test_loud_master_compresses_and_stays_in_range():
    """Loud hits over a quiet bed: the master narrows the level gap between them."""
    rng = np.random.default_rng(3)
    sr = 44100
    t = np.arange(2 * sr) / sr
    hit = (t * 4) % 1 < 0.1
    x = np.sin(2 * np.pi * 110 * t) * np.where(hit, 1.0, 0.05)
    y, info = loud_master(x, sr, rng)
    assert y.shape == x.shape and np.max(np.abs(y)) <= 1.0

    def gap_db(v: np.ndarray) -> float:  # hit level over bed level (the bed after 0.2 s)
        bed = ~hit & ((t * 4) % 1 > 0.8)
        return float(10 * np.log10(np.mean(v[hit] ** 2) / np.mean(v[bed] ** 2)))

    assert gap_db(y) < gap_db(x) - 6.0
    assert info["ratio"] >= 3 and info["drive"] >= 1.2


def _render_generated(tmp_path, set_name: str, n: int, seconds: float):
    """Render ``n`` items of a generated set (no research data) and check them; returns the
    output folder, the items and their manifest records by name."""
    render = _need_renderer(shared=False)
    out = tmp_path / set_name
    args = ["--out", str(out), "--sets", set_name, "--max-files", str(n)]
    assert render.main([*args, "--max-seconds", str(seconds)]) == 0
    items = D.render_items(out)
    assert len(items) == n and {it.set for it in items} == {set_name}
    _check_rendered(items, tmp_path, seconds)
    return out, items, {r["name"]: r for r in D.manifest_records(out)}


def test_render_heavy_items_without_source_data(tmp_path):
    """The generated heavy set needs no research data: two items, labels aligned."""
    _, _, recs = _render_generated(tmp_path, "heavy", 2, 10.0)
    assert all(r["master"]["ratio"] >= 3 for r in recs.values())


def test_render_edm_items_without_source_data(tmp_path, monkeypatch):
    """The generated EDM set needs no research data: two items, labels aligned, mastered loud,
    a style and its sections recorded; with the analog-kick chance at 1 every song's kicks are
    the synthesized sweep (a part of its own in the record) and the labels do not change."""
    from onbeat.training import render

    _, _, recs = _render_generated(tmp_path / "a", "edm", 2, 10.0)
    assert all(r["master"]["ratio"] >= 3 and r["style"] for r in recs.values())
    assert all(r["sections"][0] == "intro" for r in recs.values())
    monkeypatch.setattr(render, "ANALOG_KICK_P", 1.0)
    out, _, recs2 = _render_generated(tmp_path / "b", "edm", 2, 10.0)
    for name, rec in recs2.items():
        parts = [p["part"] for p in rec["parts"]]
        assert "analog_kick" in parts and "analog_kick" not in [
            p["part"] for p in recs[name]["parts"]
        ]
        for f in ("beats", "onsets"):
            a = (tmp_path / "a" / "edm" / rec[f]).read_text()
            assert (out / rec[f]).read_text() == a


def test_analog_kick_is_a_falling_sine_placed_on_the_kick_notes():
    """The synthesized kick falls in pitch (period grows) and decays; each kick note adds it at its
    time, scaled by velocity."""
    from onbeat.training.render import SAMPLE_RATE, _analog_kicks, analog_kick

    for seed in range(5):
        k = analog_kick(np.random.default_rng(seed), SAMPLE_RATE)
        assert 0.2 * SAMPLE_RATE <= k.size <= SAMPLE_RATE and abs(k[-1]) < 1e-3
        sign = np.signbit(k[: k.size // 2]).astype(int)
        crossings = np.flatnonzero(np.diff(sign) != 0)
        gaps = np.diff(crossings[crossings > 0.002 * SAMPLE_RATE])
        assert gaps[-3:].mean() > gaps[:3].mean()  # pitch falls
        first, last = np.abs(k[: k.size // 8]).max(), np.abs(k[-k.size // 8 :]).max()
        assert last < 0.3 * first  # decays
        sr = SAMPLE_RATE
        x = _analog_kicks([(0.5, 0.5, 36, 127), (1.8, 1.8, 36, 64)], k, 3 * sr)
        assert np.abs(x[: sr // 2]).max() == 0
        a, b = np.abs(x[sr // 2 :][:400]).max(), np.abs(x[int(1.8 * sr) :][:400]).max()
        np.testing.assert_allclose(b / a, (64 / 127) ** 2, rtol=1e-6)  # velocity 64 is softer


def test_render_displaced_items_and_their_sections(tmp_path):
    """The ``displaced`` set renders without research data; the displaced sections recovered
    from a manifest record sit on the item's own label grid, and training crops never start
    inside one nor within the lead before it."""
    from onbeat.training.datasets import FPS
    from onbeat.training.render import displaced_spans_s
    from onbeat.training.tasks import DISPLACED_LEAD_S, displaced_crop_starts

    out, items, recs = _render_generated(tmp_path, "displaced", 3, 30.0)
    spans = {it.name: displaced_spans_s(recs[it.name]) for it in items}
    assert any(spans.values())  # at 30 s, a displaced section in some of three songs
    for it in items:
        for a, b in spans[it.name]:
            assert b > a
            # section bounds are grid beats of the item (labels), where they fall inside it
            for t in (a, b):
                if 0.5 < t < it.beats[-1] - 0.5:
                    assert np.min(np.abs(it.beats - t)) < 0.005
    n = [3000] * len(items)
    starts = displaced_crop_starts(items, n, 500, [out])
    for it, st in zip(items, starts, strict=True):
        assert st is not None
        t = st / FPS
        for a, b in spans[it.name]:
            assert not np.any((t >= a - DISPLACED_LEAD_S) & (t < b))
    other = D.Item("x", tmp_path / "x.flac", np.array([1.0]), None, None, "train", "heavy")
    assert displaced_crop_starts([other], [3000], 500, [out]) == [None]


def test_offbeat_weights_mark_half_beats_and_plain_beats():
    from onbeat.training.loop import offbeat_weights

    n = 60
    beats = np.array([0.1, 0.3, 0.5])  # 20-frame beat period at 100 frames/s
    y = D.beat_targets(beats, np.array([0.1]), n)
    w = offbeat_weights(y, 5.0)
    assert w.shape == y.shape
    b = np.flatnonzero(y[:, 0] == 1.0)
    mids = [(b[0] + b[1]) // 2, (b[1] + b[2]) // 2]
    for m in mids:  # the half-beat frame and its two neighbours
        assert np.all(w[m - 1 : m + 2, 0] == 5.0)
    assert np.count_nonzero(w[:, 0] != 1.0) == 6
    assert np.all(w[b, 0] == 1.0)  # positives keep their own (pos_weight) weighting
    plain = b[y[b, 1] == 0.0]
    assert len(plain) == 2 and np.all(w[plain, 1] == 5.0)
    assert np.count_nonzero(w[:, 1] != 1.0) == 2
    assert np.all(offbeat_weights(y, 1.0) == 1.0)  # off: every frame alike


def test_nonbeat_onsets_mark_the_notes_between_beats():
    """Note onsets farther than 50 ms from every beat are marked with their two neighbours;
    onsets on (or near) a beat are not; an item without onset or beat labels gets None."""
    beats = np.array([0.5, 1.0, 1.5])
    onsets = np.array([0.5, 0.75, 1.02, 1.26, 1.5, 2.9, 9.0])  # 9 s: past the last frame
    m = D.nonbeat_onsets(onsets, beats, 300)
    assert m is not None and m.dtype == bool and m.shape == (300,)
    assert np.flatnonzero(m).tolist() == [74, 75, 76, 125, 126, 127, 289, 290, 291]
    assert D.nonbeat_onsets(None, beats, 300) is None
    assert D.nonbeat_onsets(onsets, None, 300) is None
    assert D.nonbeat_onsets(onsets, np.array([1.0]), 300)[50]  # one beat: 0.5 s is 0.5 s away


def test_onset_weight_stresses_the_marked_negatives_only():
    """``_batch`` gives the marked frames ``onset_weight`` in the beat output, except where the
    target is not a plain negative (a beat, its widened neighbours, padding)."""
    from onbeat.training.loop import _batch

    n = 100
    y = D.beat_targets(np.array([0.2, 0.6]), None, n)
    marks = np.zeros(n, dtype=bool)
    marks[[10, 20, 21, 40]] = True  # 20 is a beat, 21 its widened neighbour
    x = np.zeros((n, 3), np.float32)
    rng = np.random.default_rng(0)
    _, _, w = _batch([(x, y)], rng, 2, n, onset_marks=[marks], onset_weight=6.0)
    w0 = w[0, :, 0].numpy()
    assert w0[10] == 6.0 and w0[40] == 6.0
    assert w0[20] == 1.0 and w0[21] == 1.0
    assert np.count_nonzero(w0 == 6.0) == 2
    _, _, w1 = _batch([(x, y)], rng, 2, n, onset_marks=[marks], onset_weight=1.0)
    assert np.all(w1.numpy()[:, :, 0] == 1.0)  # weight 1: off
    _, _, w2 = _batch([(x, y)], rng, 2, n, onset_marks=[None], onset_weight=6.0)
    assert np.all(w2.numpy()[:, :, 0] == 1.0)  # no marks for that item


def test_mask_outside_keeps_only_the_segments():
    y = np.zeros((300, 2), np.float32)
    y[50, 0] = 1.0
    m = D.mask_outside(y, [[0.5, 1.0], [2.0, 2.5]])
    assert np.all(m[:50] == -1.0) and np.all(m[100:200] == -1.0) and np.all(m[250:] == -1.0)
    assert m[50, 0] == 1.0 and np.all(m[51:100] == 0.0) and np.all(m[200:250] == 0.0)
    assert np.all(y[:50] == 0.0)  # the input is not modified


def test_pseudo_label_agreement_windows():
    from onbeat.training.pseudo import PseudoConfig, agreeing_segments

    a = np.arange(0.0, 30.0, 0.5)  # 120 BPM for 30 s
    b = a.copy()
    b[(b >= 12.0) & (b < 20.0)] += 0.25  # off-beat in the middle: the trackers disagree there
    keep = agreeing_segments(a, b, 30.0, PseudoConfig(window_s=8.0, hop_s=2.0))
    assert keep.tolist() == [[0.0, 12.0], [20.0, 30.0]]
    assert agreeing_segments(a, a + 0.25, 30.0, PseudoConfig()).shape == (0, 2)


def test_pseudo_label_rules_and_tracker_decoding():
    from onbeat.training.pseudo import PseudoConfig, agreeing_segments, tracker_beats

    a = np.arange(0.0, 30.0, 0.5)
    # "none": every window with enough beats is kept, whatever the partner says; skip_s masks
    keep = agreeing_segments(a, a + 0.25, 30.0, PseudoConfig(partner="none", skip_s=4.0))
    assert keep.tolist() == [[4.0, 30.0]]
    sparse = a[(a < 10.0) | (a >= 20.0)]  # the middle of a gap with no beats is not kept
    keep = agreeing_segments(sparse, sparse, 30.0, PseudoConfig(partner="none"))
    assert keep.tolist() == [[0.0, 14.0], [16.0, 30.0]]  # 8 s windows with >= 6 beats
    with pytest.raises(ValueError, match="partner"):
        PseudoConfig(partner="madmom")
    # the live tracker over a clean 120 BPM activation (frame k dated k / 100 s) finds the grid
    act = np.zeros((3000, 2), np.float32)
    act[::50, 0] = 1.0
    act[::200, 1] = 1.0
    beats = tracker_beats(act)
    late = beats[beats > 10.0]
    assert late.size > 30
    assert np.abs(late - np.round(late * 2) / 2).max() < 0.015  # on the 0.5 s grid
    assert np.allclose(np.diff(late), 0.5, atol=0.015)


def test_pseudo_file_lists_need_no_musicnn_labels(tmp_path):
    from onbeat.training.pseudo import teacher_audio

    # labels of the tagger's teacher, when present, decide the list
    (tmp_path / "mer4q").mkdir()
    np.savez(tmp_path / "mer4q" / "a.npz", audio=np.array("/x/a.opus"))
    assert teacher_audio(tmp_path, "mer4q") == [Path("/x/a.opus")]
    # without them: the set's own files (the 4Q clips under ../shared/data)
    _need_shared_data()
    files = teacher_audio(tmp_path / "none", "mer4q")
    assert len(files) > 500 and all(f.suffix == ".opus" and f.exists() for f in files)


def test_subset_of_a_render_folder_filters_by_section_and_style(tmp_path, capsys):
    """``python -m onbeat.training.subset``: the kept records' files are linked, not copied, the
    splits stay, the loader reads the subset like any render folder, and a folder without a
    manifest is a one-line error with exit status 2."""
    from onbeat.training.subset import keep_record, main

    src = tmp_path / "src"
    src.mkdir()
    recs = [
        {"name": "h0", "split": "train", "sections": ["rock_heavy/push", "skank/chug8"]},
        {"name": "h3", "split": "train", "sections": ["skank/push"], "median_ibi_s": 0.35},
        {"name": "h1", "split": "train", "sections": ["punk/chug8", "halftime/push"]},
        {"name": "h2", "split": "valid", "sections": ["gallop/gallop"]},
        {"name": "e0", "split": "train", "style": "breaks"},
        {"name": "e1", "split": "train", "style": "house"},
        {"name": "e1_tempo0", "split": "train", "style": "house", "stretch_of": "e1"},
    ]
    for r in recs:
        stem = r["name"]
        r.update(audio=f"{stem}.flac", beats=f"{stem}.beats", onsets=f"{stem}.onsets")
        r["set"] = "heavy" if stem.startswith("h") else "edm"
        sf.write(src / r["audio"], np.zeros(4410, np.float32), 44100)
        (src / r["beats"]).write_text("0.5 1\n1.0 2\n")
        (src / r["onsets"]).write_text("0.5\n")
    (src / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    by = {r["name"]: r for r in recs}
    assert not keep_record(by["h0"], ["skank"]) and keep_record(by["h1"], ["skank"])
    assert keep_record(by["e0"], styles=["breaks"]) and not keep_record(by["e1"], styles=["breaks"])

    out = tmp_path / "noskank"
    assert main(["--src", str(src), "--out", str(out), "--drop-section", "skank"]) == 0
    names = [json.loads(line)["name"] for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert names == ["h1", "h2", "e0", "e1", "e1_tempo0"]  # h0 and h3 had skank sections
    assert (out / "h1.flac").is_symlink() and (out / "h1.flac").resolve() == (src / "h1.flac")
    assert not (out / "h0.flac").exists()
    assert [it.name for it in D.render_items(out, split="valid")] == ["h2"]
    assert len(D.render_items(out, split="train")) == 4

    # --below-bpm: only the slower skank songs go (h3 is at 171 BPM; h0 has no tempo: dropped)
    assert keep_record(by["h3"], ["skank"], below_bpm=150.0)
    assert not keep_record(by["h3"], ["skank"], below_bpm=180.0)
    out3 = tmp_path / "slow_skank"
    args = ["--drop-section", "skank", "--below-bpm", "150"]
    assert main(["--src", str(src), "--out", str(out3), *args]) == 0
    assert sorted(it.name for it in D.render_items(out3, split="train")) == [
        "e0",
        "e1",
        "e1_tempo0",
        "h1",
        "h3",
    ]
    assert main(["--src", str(src), "--out", str(out3), *args[:2]]) == 0  # re-run: h3 unlinked
    assert not (out3 / "h3.flac").exists() and (out3 / "h1.flac").exists()

    out2 = tmp_path / "breaks"
    assert main(["--src", str(src), "--out", str(out2), "--style", "breaks"]) == 0
    assert [it.name for it in D.render_items(out2, split="train")] == ["e0"]

    # --drop-variants: the songs as written, without their tempo/pitch variants
    assert not keep_record(by["e1_tempo0"], drop_variants=True) and keep_record(
        by["e1"], (), (), None, True
    )
    out4 = tmp_path / "originals"
    assert main(["--src", str(src), "--out", str(out4), "--drop-variants"]) == 0
    assert "e1_tempo0" not in {it.name for it in D.render_items(out4)}
    assert {"e1", "e0"} <= {it.name for it in D.render_items(out4)}
    assert not (out4 / "e1_tempo0.flac").exists()

    assert main(["--src", str(tmp_path / "none"), "--out", str(out2)]) == 2
    err = capsys.readouterr().out.strip().splitlines()[-1]
    assert err.startswith("error: no manifest.jsonl")


def _write_midi(path: Path, bpm: float, beats: int, num: int = 4, den: int = 4, late_s=0.0):
    """A composed GM file: a kick on every beat, a hi-hat on every eighth, a bass note per bar,
    every note ``late_s`` after the notated grid."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(num, den, 0.0))
    beat_s = 60.0 / bpm * (4 / den) * (3 if num % 3 == 0 and num > 3 else 1)
    drums = pretty_midi.Instrument(0, is_drum=True)
    bass = pretty_midi.Instrument(33)
    for k in range(beats):
        t = k * beat_s + late_s
        drums.notes.append(pretty_midi.Note(110, 36, t, t + 0.1))
        for h in (0.0, 0.5):
            drums.notes.append(pretty_midi.Note(70, 42, t + h * beat_s, t + h * beat_s + 0.05))
        if k % num == 0:
            bass.notes.append(pretty_midi.Note(100, 40, t, t + beat_s))
    pm.instruments += [drums, bass]
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return beat_s


def test_midi_beat_grid_follows_the_file_and_refuses_performances(tmp_path):
    """``midi_beat_grid``: the notated beats and bars, moved onto notes that sit a constant
    late, fast tempi halved on the downbeats, and files off any grid or in sixteenth-note
    meters refused."""
    pretty_midi = pytest.importorskip("pretty_midi")
    from onbeat.training.render import midi_beat_grid

    beat_s = _write_midi(tmp_path / "a.mid", 100.0, 32)
    grid, info = midi_beat_grid(pretty_midi.PrettyMIDI(str(tmp_path / "a.mid")))
    np.testing.assert_allclose(grid[:, 0], np.arange(32) * beat_s, atol=1e-6)
    assert grid[:8, 1].tolist() == [1, 2, 3, 4, 1, 2, 3, 4] and info["grid_shift_s"] == 0.0

    _write_midi(tmp_path / "w.mid", 120.0, 24, 3, 4)  # waltz
    grid, _ = midi_beat_grid(pretty_midi.PrettyMIDI(str(tmp_path / "w.mid")))
    assert grid[:6, 1].tolist() == [1, 2, 3, 1, 2, 3]

    # quantized 60 ms after the notated grid (planetblupi's files): the labels follow the notes
    _write_midi(tmp_path / "late.mid", 100.0, 32, late_s=0.06)
    grid, info = midi_beat_grid(pretty_midi.PrettyMIDI(str(tmp_path / "late.mid")))
    assert info["grid_shift_s"] == pytest.approx(0.06, abs=2e-3)
    np.testing.assert_allclose(grid[:31, 0], np.arange(31) * beat_s + 0.06, atol=2e-3)

    beat_s = _write_midi(tmp_path / "fast.mid", 240.0, 64)  # past 215 BPM: every other beat
    grid, info = midi_beat_grid(pretty_midi.PrettyMIDI(str(tmp_path / "fast.mid")))
    assert info["level"] == 0.5 and np.median(np.diff(grid[:, 0])) == pytest.approx(2 * beat_s)
    assert grid[0, 0] == 0.0 and grid[:4, 1].tolist() == [1, 2, 1, 2]

    pm = pretty_midi.PrettyMIDI(initial_tempo=100.0)  # performed: notes at random times
    ins = pretty_midi.Instrument(0)
    for t in np.sort(np.random.default_rng(0).uniform(0, 20, 80)):
        ins.notes.append(pretty_midi.Note(80, 60, t, t + 0.2))
    pm.instruments.append(ins)
    with pytest.raises(ValueError, match="off the grid"):
        midi_beat_grid(pm)
    _write_midi(tmp_path / "odd.mid", 100.0, 32, 7, 16)
    with pytest.raises(ValueError, match="7/16"):
        midi_beat_grid(pretty_midi.PrettyMIDI(str(tmp_path / "odd.mid")))


def test_render_gamemidi_items_from_a_debian_package_folder(tmp_path, monkeypatch):
    """The ``gamemidi`` set reads the MIDI files of its Debian packages (here a package folder
    already unpacked under ``$ONBEAT_DEBS``, so nothing is downloaded), renders each file's own
    arrangement with labels aligned to the audio, skips a duplicate file and a performed one,
    and splits by song."""
    pytest.importorskip("pretty_midi")
    from onbeat.training import render

    debs = tmp_path / "debs"
    pkg = debs / "fake-music"
    _write_midi(pkg / "usr/share/games/fake/song1.mid", 110.0, 40)
    _write_midi(pkg / "usr/share/games/fake/song2.mid", 140.0, 60, 3, 4)
    (pkg / "usr/share/games/fake/zz_copy.mid").write_bytes(
        (pkg / "usr/share/games/fake/song1.mid").read_bytes()
    )
    (pkg / ".done").write_text("")
    monkeypatch.setenv("ONBEAT_DEBS", str(debs))
    monkeypatch.setattr(render, "GAMEMIDI_PACKAGES", ("fake-music",))
    items = render.source_items("gamemidi")
    assert sorted(it.name for it in items) == [
        "gamemidi_fake-music-song1",
        "gamemidi_fake-music-song2",
    ]
    out, _, recs = _render_generated(tmp_path, "gamemidi", 2, 10.0)
    rec = recs["gamemidi_fake-music-song2"]
    assert rec["piece"] == "fake-music/song2" and rec["has_drums"] and rec["grid_share"] > 0.9
    beats, downbeats = D.read_beats(out / rec["beats"])
    assert len(beats) == pytest.approx(3 * len(downbeats), abs=3)  # a waltz
    assert 60 / rec["median_ibi_s"] == pytest.approx(140.0 / rec["tempo_scale"], rel=0.01)


_STYLE = """// a style file as mma's library writes them
Time 4
DefGroove Foo       The main groove.
DefGroove FooSus    With strings.
  DefGroove FooFill   A one-bar fill.
DefGroove FooIntro  Four bars in.
Time 3/4  // a waltz bar
DefGroove FooEnd    Two bars out.
Time 6/8
DefGroove FooEight  Eighth-note beats: left out.
Time 4
Timesig 6 8
DefGroove FooSix   Six triplet eighths in mma's bar of 4: left out.
Timesig 4 4
DefGroove FooBack  4/4 again.
"""


def test_mma_song_draws_grooves_tempo_and_chords(tmp_path):
    """An mma song uses its style file's grooves by role (main and variations in sections of 4
    or 8 bars, fills on a section's last bar, intro first, ending last), a tempo from the
    style's words, enough bars for 75 s, and says each bar's length in quarter notes."""
    from onbeat.training.render import mma_grooves, mma_song

    style = tmp_path / "stdlib" / "slowfoo.mma"
    style.parent.mkdir()
    style.write_text(_STYLE)
    grooves = mma_grooves(style)
    assert grooves == [
        ("Foo", 4), ("FooSus", 4), ("FooFill", 4), ("FooIntro", 4), ("FooEnd", 3), ("FooBack", 4)
    ]  # fmt: skip
    seen: set[str] = set()
    for seed in range(20):
        text, bpm, bar_quarters = mma_song(style, grooves, np.random.default_rng(seed))
        lines = text.splitlines()
        assert lines[0] == f"Tempo {bpm:.2f}" and lines[1] == f"Use {style.with_suffix('')}"
        assert 66.0 <= bpm <= 95.0  # "slow" in the style's name
        bars = [ln for ln in lines[2:] if not ln.startswith("Groove")]
        assert len(bars) == len(bar_quarters) >= max(24, int(75 * bpm / 240))
        grooves_used = [ln.split()[1] for ln in lines if ln.startswith("Groove")]
        seen.update(grooves_used)
        if "FooIntro" in grooves_used:
            assert grooves_used[0] == "FooIntro"
        if "FooEnd" in grooves_used:
            assert grooves_used[-1] == "FooEnd" and lines[-3] == "Groove FooEnd"
            assert bar_quarters[-2:] == [3, 3] and set(bar_quarters[:-2]) == {4}
        else:
            assert set(bar_quarters) == {4}
        for k, ln in enumerate(lines):  # a fill plays one bar, then a new section starts
            if ln == "Groove FooFill":
                assert k + 2 == len(lines) or lines[k + 2].startswith("Groove")
    assert seen == {g for g, _ in grooves}
    only_fills = tmp_path / "fills.mma"
    only_fills.write_text("DefGroove BarFill x\n")
    with pytest.raises(ValueError, match="no main groove"):
        mma_song(only_fills, mma_grooves(only_fills), np.random.default_rng(0))


@pytest.mark.skipif(shutil.which("mma") is None, reason="mma not installed (apt-get install mma)")
def test_render_mma_items_labels_the_grooves_grid(tmp_path, monkeypatch):
    """The ``mma`` set renders songs that mma writes over a style file, with mma's quarter-note
    beats and its bars: a waltz has three beats a bar, a swing four, and the beats sit on
    notes (swung eighths or not); a style in 6/8 is left out."""
    pytest.importorskip("pretty_midi")
    from onbeat.training import render

    lib = tmp_path / "lib" / "stdlib"
    lib.mkdir(parents=True)
    for name in ("waltz", "swing", "ballad68"):
        src = Path("/usr/share/mma/lib/stdlib") / f"{name}.mma"
        if not src.exists():
            pytest.skip(f"mma library lacks {src}")
        (lib / src.name).write_text(src.read_text())
    monkeypatch.setenv("ONBEAT_MMA_LIB", str(tmp_path / "lib"))
    items = render.source_items("mma")
    assert sorted(it.name for it in items) == ["mma_stdlib-swing", "mma_stdlib-waltz"]
    out, _, recs = _render_generated(tmp_path, "mma", 2, 20.0)
    for name, per_bar in (("mma_stdlib-waltz", 3), ("mma_stdlib-swing", 4)):
        rec = recs[name]
        assert rec["has_drums"] and per_bar in rec["bar_quarters"]
        tempo = 60.0 / rec["median_ibi_s"]
        assert tempo == pytest.approx(rec["mma_bpm"] / rec["tempo_scale"], rel=0.01)
        assert 55.0 <= tempo <= 215.0
        beats, downbeats = D.read_beats(out / rec["beats"])
        assert len(beats) == pytest.approx(per_bar * len(downbeats), abs=per_bar)
        onsets = np.loadtxt(out / rec["onsets"], ndmin=1)
        near = np.min(np.abs(beats[:, None] - onsets[None, :]), axis=1) <= 0.03
        assert near.mean() >= 0.8, name
