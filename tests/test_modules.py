"""Tracker-module beat labels (``onbeat.training.modules``), on a ProTracker module that the test
writes itself: libopenmpt renders it, and its row grid is known exactly (speed 6, tempo 125:
one row every 0.12 s, a beat every 4 rows = 125 BPM)."""

from __future__ import annotations

import ctypes.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("openmpt") is None,
    reason="libopenmpt is not installed (apt-get install libopenmpt0; .ci installs it)",
)

ROW_S = 6 * 2.5 / 125  # speed 6 ticks of 2.5 / tempo s


def _sample(n: int, freq: float, decay: float, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8363.0
    x = np.sin(2 * np.pi * freq * t) * 0.6 + rng.normal(0, 0.3, n)
    x = np.clip(x * np.exp(-t / decay) * 127, -127, 127).astype(np.int8)
    x[:2] = 0
    return x.tobytes()


def _cell(sample: int, period: int, effect: int = 0, param: int = 0) -> bytes:
    return bytes(
        [
            (sample & 0xF0) | ((period >> 8) & 0x0F),
            period & 0xFF,
            ((sample & 0x0F) << 4) | (effect & 0x0F),
            param,
        ]
    )


def make_mod(n_orders: int = 3, drum_every: int = 4, tick_every: int = 2) -> bytes:
    """A 4-channel M.K. module: a low drum every ``drum_every`` rows on channel 1 and a short
    high tick every ``tick_every`` rows on channel 2, pattern 0 played ``n_orders`` times."""
    samples = [_sample(3000, 60.0, 0.08, 1), _sample(800, 900.0, 0.02, 2)]
    head = b"onbeat test".ljust(20, b"\0")
    for i in range(31):
        if i < len(samples):
            head += f"s{i}".encode().ljust(22, b"\0")
            head += struct.pack(">HBBHH", len(samples[i]) // 2, 0, 64 if i == 0 else 40, 0, 1)
        else:
            head += b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)
    head += bytes([n_orders, 127]) + bytes(128) + b"M.K."
    pattern = b""
    for row in range(64):
        c1 = _cell(1, 428) if row % drum_every == 0 else bytes(4)
        c2 = _cell(2, 214) if row % tick_every == 0 else bytes(4)
        pattern += c1 + c2 + bytes(8)
    return head + pattern + b"".join(samples)


@pytest.fixture(scope="module")
def rendered():
    from onbeat.training.modules import render_module

    return render_module(make_mod())


def test_rows_are_logged_at_their_exact_times(rendered) -> None:
    r = rendered
    assert r.row.tolist() == list(range(64)) * 3
    assert r.pattern.tolist() == [0] * 192
    expected = np.arange(192) * ROW_S
    # logged at the middle of the 16-frame block in which the row began
    np.testing.assert_allclose(r.row_s, expected, atol=0.5e-3)
    assert r.duration_s == pytest.approx(192 * ROW_S, abs=0.01)
    assert 192 * ROW_S <= r.audio.shape[0] / 44100 <= 192 * ROW_S + 0.5  # and the last tail
    assert r.audio.shape[1] == 2 and np.abs(r.audio).max() > 0.01


def test_onsets_are_the_rows_with_notes_and_the_audio_has_them(rendered) -> None:
    r = rendered
    np.testing.assert_allclose(r.onsets_s, np.arange(0, 192, 2) * ROW_S, atol=0.5e-3)
    # the drum rows carry more energy than the rows between them
    x = r.audio.mean(axis=1)
    n = int(0.03 * 44100)
    e = np.array([np.sum(x[int(t * 44100) : int(t * 44100) + n] ** 2) for t in r.row_s[:-1]])
    assert e[r.row[:-1] % 4 == 0].mean() > 3 * e[r.row[:-1] % 4 == 1].mean()


def test_beat_grid_and_bars(rendered) -> None:
    from onbeat.training.modules import beat_grid

    t, bib = beat_grid(rendered, 4, 16)
    np.testing.assert_allclose(t, np.arange(48) * 4 * ROW_S, atol=0.5e-3)
    assert bib.tolist() == [1, 2, 3, 4] * 12
    t6, bib6 = beat_grid(rendered, 6, 16)  # a measure that is not whole beats: counted on
    assert t6.shape[0] == 3 * 11 and bib6[:5].tolist() == [1, 2, 3, 4, 1]


def test_level_follows_the_reference_and_refuses_doubt(rendered) -> None:
    from onbeat.training.modules import choose_level

    beat_s = 4 * ROW_S
    at_beat = np.arange(48) * beat_s
    level, scores = choose_level(rendered, at_beat)
    assert level == 4 and scores["4"] == pytest.approx(1.0)
    assert "2" not in scores  # 250 BPM: outside the tracker's range
    level, _ = choose_level(rendered, at_beat[::2])  # a reference at half tempo
    assert level == 8
    level, _ = choose_level(rendered, at_beat[:24] + 0.5 * beat_s)  # off the grid
    assert level is None


def test_it_highlight_and_split() -> None:
    from onbeat.training.modules import it_highlight, module_split

    head = bytearray(b"IMPM" + bytes(0x40))
    head[0x1E], head[0x1F] = 6, 24
    assert it_highlight(bytes(head)) == (6, 24)
    head[0x1E] = 0
    assert it_highlight(bytes(head)) is None
    assert it_highlight(make_mod()) is None
    assert module_split("pingus-data") == module_split("pingus-data")
    splits = {module_split(f"pkg{i}") for i in range(200)}
    assert splits == {"train", "valid", "test"}


def test_cli_writes_a_render_folder_that_training_reads(tmp_path: Path) -> None:
    from onbeat.training.datasets import render_items
    from onbeat.training.modules import main

    mod = tmp_path / "song.mod"
    mod.write_bytes(make_mod(n_orders=4))
    bad = tmp_path / "broken.xm"
    bad.write_bytes(b"not a module at all" * 10)
    out = tmp_path / "out"
    assert main(["--out", str(out), "--files", str(mod), str(bad)]) == 0
    recs = [json.loads(ln) for ln in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 1 and recs[0]["rows_per_beat"] == 4 and recs[0]["set"] == "modules"
    skipped = [json.loads(ln) for ln in (out / "skipped.jsonl").read_text().splitlines()]
    assert [s["name"] for s in skipped] == ["mod_local_broken"]
    assert "libopenmpt cannot read it" in skipped[0]["skipped"]
    (item,) = render_items(out)
    assert item.beats is not None and item.downbeats is not None
    np.testing.assert_allclose(item.beats, np.arange(item.beats.shape[0]) * 4 * ROW_S, atol=1e-3)
    np.testing.assert_allclose(item.downbeats, item.beats[::4], atol=1e-6)
    assert item.onsets is not None and item.onsets.shape[0] == 128
    assert json.loads((out / "splits.json").read_text())["modules"]["n_pieces"] == 1
    # resumable: a second run renders nothing new
    assert main(["--out", str(out), "--files", str(mod), str(bad)]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 1


def test_cli_missing_file_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    from onbeat.training.modules import main

    assert main(["--out", str(tmp_path / "o"), "--files", str(tmp_path / "nope.mod")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("modules: no such file") and "\n" not in err


def test_tempo_and_pitch_factors_keep_the_rows_exact() -> None:
    from onbeat.training.modules import render_module

    data = make_mod()
    for tempo in (0.8, 1.25):
        r = render_module(data, tempo_factor=tempo, pitch_factor=1.12)
        # the rows follow the new tempo, and the wrap-around at the end is still dropped
        assert r.row.tolist() == list(range(64)) * 3
        # libopenmpt plays a tick as a whole number of samples (882 / tempo, rounded), so the
        # rows lie on a constant period within a sample per tick of the exact one
        period, start = np.polyfit(np.arange(192), r.row_s, 1)
        assert period == pytest.approx(ROW_S / tempo, abs=6 / 44100)
        np.testing.assert_allclose(r.row_s, start + np.arange(192) * period, atol=0.5e-3)
        assert r.duration_s == pytest.approx(192 * ROW_S / tempo, abs=0.02)
        assert abs(r.audio.shape[0] / 44100 - 192 * ROW_S / tempo) < 0.5
    # transposing alone moves no row
    r = render_module(data, pitch_factor=0.8)
    np.testing.assert_allclose(r.row_s, np.arange(192) * ROW_S, atol=0.5e-3)


def test_variant_factors_spread_and_stay_in_range() -> None:
    from onbeat.training.modules import BPM_RANGE, STRETCH_RANGE, variant_factors

    rec = {"name": "mod_x_song", "median_ibi_s": 0.48}  # 125 BPM
    f = [variant_factors(rec, k, 3) for k in range(3)]
    assert f == [variant_factors(rec, k, 3) for k in range(3)]  # deterministic
    tempos = [t for t, _ in f]
    assert tempos == sorted(tempos)  # one per stratum, slow to fast
    assert STRETCH_RANGE[0] <= tempos[0] and tempos[-1] <= STRETCH_RANGE[1]
    assert all(2 ** (-3 / 12) <= p <= 2 ** (3 / 12) for _, p in f)
    fast = {"name": "mod_x_fast", "median_ibi_s": 60 / 200}  # 200 BPM: only a little faster
    for k in range(4):
        t, _ = variant_factors(fast, k, 4)
        assert 200 * t <= BPM_RANGE[1] + 1e-9


def test_cli_stretch_adds_exact_training_variants(tmp_path: Path) -> None:
    from onbeat.training.datasets import manifest_records, render_items
    from onbeat.training.modules import main

    mod = tmp_path / "song.mod"
    mod.write_bytes(make_mod(n_orders=4))
    out = tmp_path / "out"
    assert main(["--out", str(out), "--files", str(mod), "--stretch", "2"]) == 0
    recs = {r["name"]: r for r in manifest_records(out)}
    assert set(recs) == {"mod_local_song", "mod_local_song_tempo0", "mod_local_song_tempo1"}
    items = {it.name: it for it in render_items(out, split="train")}
    for k in range(2):
        rec = recs[f"mod_local_song_tempo{k}"]
        assert rec["stretch_of"] == "mod_local_song" and rec["split"] == "train"
        tempo = rec["tempo_factor"]
        beats = items[rec["name"]].beats
        assert beats is not None
        # a constant grid at the new tempo (to a sample per tick, as above)
        beat_s, start = np.polyfit(np.arange(beats.shape[0]), beats, 1)
        assert beat_s == pytest.approx(4 * ROW_S / tempo, abs=4 * 6 / 44100)
        np.testing.assert_allclose(beats, start + np.arange(beats.shape[0]) * beat_s, atol=1e-3)
        assert abs(start) < 1e-3
        assert "peak_dbfs" in rec["augment"]
    assert (
        recs["mod_local_song_tempo0"]["tempo_factor"]
        < 1.0
        < recs["mod_local_song_tempo1"]["tempo_factor"]
    )
    # resumable: nothing is rendered twice
    assert main(["--out", str(out), "--files", str(mod), "--stretch", "2"]) == 0
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 3


def test_songs_sharing_a_file_name_get_their_own_outputs(tmp_path: Path) -> None:
    from onbeat.training.datasets import manifest_records
    from onbeat.training.modules import main

    a, b = tmp_path / "inside" / "music.mod", tmp_path / "outside" / "music.mod"
    for p, n in ((a, 3), (b, 4)):
        p.parent.mkdir()
        p.write_bytes(make_mod(n_orders=n))
    out = tmp_path / "out"
    assert main(["--out", str(out), "--files", str(a), str(b)]) == 0
    recs = {r["name"]: r for r in manifest_records(out)}
    assert set(recs) == {"mod_local_music", "mod_local_music_2"}
    assert recs["mod_local_music"]["n_beats"] == 48 and recs["mod_local_music_2"]["n_beats"] == 64
    assert len((out / "mod_local_music.beats").read_text().splitlines()) == 48
