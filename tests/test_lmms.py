"""The LMMS demo-song set (:mod:`onbeat.training.lmms`): project parsing, the beat grid, the
fixed split, the loader, and a real headless LMMS render of a Debian demo song.

The render test needs ``lmms`` (Debian, installed by ``.ci/install_system.sh``) and skips with
the reason where it is absent.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.training import datasets as D
from onbeat.training import lmms

HEAD = '<?xml version="1.0"?>\n<!DOCTYPE lmms-project>\n<lmms-project version="1.0">\n'


def _project(body_head: str) -> str:
    return HEAD + body_head + "\n<song><trackcontainer/></song>\n</lmms-project>\n"


def _write_mmpz(path: Path, xml: str) -> None:
    raw = xml.encode()
    path.write_bytes(struct.pack(">I", len(raw)) + zlib.compress(raw))  # Qt's qCompress


def test_read_project_plain_and_compressed(tmp_path):
    xml = _project('<head timesig_numerator="3" bpm="96.5" timesig_denominator="4"/>')
    (tmp_path / "Some Song (Demo).mmp").write_text(xml)
    _write_mmpz(tmp_path / "Other-Song.mmpz", xml)
    a = lmms.read_project(tmp_path / "Some Song (Demo).mmp")
    b = lmms.read_project(tmp_path / "Other-Song.mmpz")
    assert (a.bpm, a.numerator, a.denominator) == (96.5, 3, 4)
    assert (b.bpm, b.numerator, b.denominator) == (96.5, 3, 4)
    assert a.name == "lmms_Some_Song_Demo" and b.name == "lmms_Other_Song"
    # an automated tempo is a <bpm> child, not an attribute: refused, not guessed
    (tmp_path / "auto.mmp").write_text(
        HEAD + '<head timesig_numerator="4"><bpm id="7" value="120"/></head></lmms-project>'
    )
    with pytest.raises(ValueError, match="automated"):
        lmms.read_project(tmp_path / "auto.mmp")


def test_find_projects_keeps_quarter_note_meters(tmp_path):
    demos = tmp_path / "demos" / "Someone"
    demos.mkdir(parents=True)
    (tmp_path / "shorties").mkdir()
    (tmp_path / "templates").mkdir()
    sig = '<head timesig_numerator="{n}" bpm="120" timesig_denominator="{d}"/>'
    (demos / "four.mmp").write_text(_project(sig.format(n=4, d=4)))
    (demos / "eight.mmp").write_text(_project(sig.format(n=8, d=4)))
    (demos / "one.mmp").write_text(_project(sig.format(n=1, d=1)))
    (tmp_path / "shorties" / "six8.mmp").write_text(_project(sig.format(n=6, d=8)))
    (tmp_path / "shorties" / "broken.mmpz").write_bytes(b"\0\0\0\5not zlib")
    (tmp_path / "templates" / "t.mmp").write_text(_project(sig.format(n=4, d=4)))
    names = [p.name for p in lmms.find_projects(tmp_path)]
    assert names == ["lmms_eight", "lmms_four"]


def test_beat_labels_grid_from_zero():
    t, bib = lmms.beat_labels(120.0, 4, 0.9, 3.1)
    np.testing.assert_allclose(t, [1.0, 1.5, 2.0, 2.5, 3.0])
    assert bib.tolist() == [3, 4, 1, 2, 3]  # bars count from 0 s, not from the first label


@settings(max_examples=50, deadline=None)
@given(
    bpm=st.floats(40, 240),
    num=st.integers(2, 8),
    start=st.floats(0, 30),
    length=st.floats(0, 60),
)
def test_beat_labels_invariants(bpm, num, start, length):
    t, bib = lmms.beat_labels(bpm, num, start, start + length)
    assert ((t >= start) & (t <= start + length)).all()
    np.testing.assert_allclose(np.diff(t), 60.0 / bpm, rtol=1e-9)
    downs = t[bib == 1]
    # downbeats fall on whole bars from 0 s
    np.testing.assert_allclose(np.round(downs * bpm / 60 / num), downs * bpm / 60 / num, atol=1e-6)
    assert set(bib.tolist()) <= set(range(1, num + 1))


def test_split_is_fixed_and_two_way():
    names = [f"lmms_song{i}" for i in range(200)]
    splits = [lmms.lmms_split(n) for n in names]
    assert splits == [lmms.lmms_split(n) for n in names]
    assert set(splits) == {"train", "test"}
    assert 60 <= splits.count("test") <= 140


def test_lmms_items_reads_the_manifest(tmp_path):
    songs = []
    for name, split in [("lmms_a", "train"), ("lmms_b", "test")]:
        (tmp_path / f"{name}.beats").write_text("0.5 1\n1.0 2\n1.5 1\n")
        songs.append(
            {"name": name, "audio": f"{name}.flac", "beats": f"{name}.beats", "split": split}
        )
    (tmp_path / "manifest.json").write_text(json.dumps({"songs": songs}))
    items = D.lmms_items(tmp_path)
    assert [(it.name, it.split, it.set) for it in items] == [
        ("lmms_a", "train", "lmms"),
        ("lmms_b", "test", "lmms"),
    ]
    assert items[0].audio == tmp_path / "lmms_a.flac"  # relative to the folder
    np.testing.assert_allclose(items[0].downbeats, [0.5, 1.5])
    assert [it.name for it in D.lmms_items(tmp_path, "test")] == ["lmms_b"]


def test_cli_without_lmms_is_one_line_error(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "onbeat.training.lmms", "--out", str(tmp_path), "--lmms", "no-lmms"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["error: no-lmms not found: apt-get install lmms"]


SHORT_DEMO = lmms.PROJECTS_DIR / "shorties" / "Greshz-CoolSnip.mmpz"


@pytest.mark.skipif(
    shutil.which("lmms") is None, reason="lmms not installed (apt-get install lmms)"
)
@pytest.mark.skipif(not SHORT_DEMO.exists(), reason=f"{SHORT_DEMO} not installed (lmms-common)")
def test_real_render_sits_on_the_sequencer_grid(tmp_path):
    proj = lmms.read_project(SHORT_DEMO)
    assert proj.bpm == 140.0
    rec = lmms.process(proj, tmp_path)
    info = sf.info(tmp_path / rec["audio"])
    assert info.samplerate == 44100 and info.duration > 10.0
    t, _ = D.read_beats(tmp_path / rec["beats"])
    np.testing.assert_allclose(np.diff(t), 60.0 / 140.0, atol=1e-5)
    assert rec["n_beats"] == t.shape[0] > 20
    # the song's onsets sit on the grid: the calibration lag (less the drum-envelope latency)
    # is within a few ms of zero, well inside its -100..+150 ms search
    assert abs(rec["measured_lag_s"]) <= 0.012
    assert rec["split"] == lmms.lmms_split(proj.name)
