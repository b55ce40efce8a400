"""The desktop visualizer: read-only views, display state, and the window, offscreen.

Qt runs on the ``offscreen`` platform (set below, before Qt is imported). The window tests skip,
saying why, when PyQt6, pyqtgraph or pytest-qt is missing or Qt cannot load its system libraries
(libEGL, libxkbcommon, fontconfig: see ``.ci/install_system.sh``). One smoke test also runs the
real ``xcb`` platform under ``xvfb-run`` when it is installed.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt6")


def _qt_problem() -> str:
    """Why the Qt tests cannot run here ("" when they can)."""
    try:
        import pytestqt  # noqa: F401
    except ImportError:
        return "pytest-qt is not installed (pip install -e '.[dev]')"
    try:
        import pyqtgraph  # noqa: F401
        from PyQt6 import QtGui, QtWidgets  # noqa: F401
    except ImportError as exc:
        return (
            f"PyQt6/pyqtgraph cannot be loaded ({exc}); install the gui extra and the Qt system "
            "libraries (libegl1 libxkbcommon0 libfontconfig1 libgl1 libglib2.0-0)"
        )
    return ""


QT_PROBLEM = _qt_problem()
needs_qt = pytest.mark.skipif(bool(QT_PROBLEM), reason=QT_PROBLEM or "Qt available")


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path, monkeypatch):
    """Never read or write the user's real GUI settings, nor match against their library."""
    monkeypatch.setenv("ONBEAT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


# ---------------------------------------------------------------------- views (no Qt)
class _FakeAnalyzer:
    """Just what FrameViews reads from an Analyzer."""

    def __init__(self, bands: int = 5, beats: bool = True) -> None:
        from onbeat.realtime.features import FeatureLayout

        layout = FeatureLayout((1024, 2048), (3, bands))
        self.features = SimpleNamespace(
            layout=layout,
            output=np.zeros(layout.dims, dtype=np.float32),
            filterbanks=(
                SimpleNamespace(center_hz=np.array([100.0, 200.0, 400.0])),
                SimpleNamespace(center_hz=np.geomspace(50.0, 8000.0, bands)),
            ),
        )
        self.onsets = SimpleNamespace(activation=0.0)
        if beats:
            self.beats = SimpleNamespace(activation=0.0)
        self.ctx = SimpleNamespace(frame_rate_hz=100.0)
        self.hop = 441
        self.rate_hz = 44100
        self._hop_audio = np.zeros(self.hop, dtype=np.float32)

    def latest_hop(self):
        return self._hop_audio

    def step(self, views, k: int) -> None:
        """Write frame ``k`` (values tagged with k) and call the hook."""
        block = self.features.layout.block("logfilt", 2048)
        self.features.output[block] = k + np.arange(block.stop - block.start) / 10
        self.onsets.activation = float(k)
        if hasattr(self, "beats"):
            self.beats.activation = -float(k)
        self._hop_audio[:] = k + np.arange(self.hop) / self.hop  # sample j of frame k: k + j/hop
        views(self, k + 1, (k + 1) * self.hop)


def test_views_mirror_the_newest_frames():
    from onbeat.realtime.views import FrameViews

    views = FrameViews(50, margin_frames=10)
    an = _FakeAnalyzer()
    spec = np.zeros((8, 5), dtype=np.float32)
    onset = np.zeros(8, dtype=np.float32)
    beat = np.zeros(8, dtype=np.float32)
    assert views.copy_latest(spec, onset, beat) == (0, 0.0)
    for k in range(3):
        an.step(views, k)
    have, t = views.copy_latest(spec, onset, beat)
    assert have == 3
    assert t == pytest.approx(3 * 441 / 44100)
    np.testing.assert_array_equal(onset, [0, 0, 0, 0, 0, 0, 1, 2])  # zero-padded, oldest first
    for k in range(3, 123):  # wraps the 50-frame ring twice
        an.step(views, k)
    have, t = views.copy_latest(spec, onset, beat)
    assert have == 8
    assert t == pytest.approx(123 * 441 / 44100)
    np.testing.assert_array_equal(onset, np.arange(115, 123))
    np.testing.assert_array_equal(beat, -np.arange(115, 123))
    np.testing.assert_allclose(spec[:, 0], np.arange(115, 123))
    np.testing.assert_allclose(spec[-1], 122 + np.arange(5) / 10)
    lay = views.layout
    assert lay is not None and lay.bands == 5 and lay.frame_size == 2048 and lay.has_beats
    with pytest.raises(ValueError, match="at most 40"):
        views.copy_latest(np.zeros((41, 5), dtype=np.float32), None, None)


def test_views_allocate_once_per_stream():
    import tracemalloc

    from onbeat.realtime.views import FrameViews

    views = FrameViews(200)
    an = _FakeAnalyzer(beats=False)
    an.step(views, 0)
    rings = views._rings
    assert rings is not None
    ids = (id(rings.spectrum), id(rings.onset), id(rings.beat))
    for k in range(1, 300):
        an.step(views, k)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for k in range(300, 1300):
        an.step(views, k)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    this_file = [tracemalloc.Filter(True, "*views.py")]
    grown = sum(
        s.size_diff
        for s in after.filter_traces(this_file).compare_to(
            before.filter_traces(this_file), "filename"
        )
    )
    assert grown < 1024, f"views.py allocated {grown} bytes over 1000 frames"
    assert views._rings is rings
    assert (id(rings.spectrum), id(rings.onset), id(rings.beat)) == ids
    assert not views.layout.has_beats
    # a new analyzer (a new stream) gets fresh rings and a new generation
    gen = views.generation
    _FakeAnalyzer().step(views, 0)
    assert views.generation == gen + 1 and views.frames == 1


def test_shared_views_mirror_the_newest_frames_and_audio():
    """The shared-memory writer and a reader attached by name see what FrameViews sees."""
    from onbeat.realtime.views import SharedFrameViews, SharedViewsReader

    writer = SharedFrameViews(50, margin_frames=10)
    reader = SharedViewsReader(50, margin_frames=10)
    an = _FakeAnalyzer()
    spec = np.zeros((8, 5), dtype=np.float32)
    onset = np.zeros(8, dtype=np.float32)
    beat = np.zeros(8, dtype=np.float32)
    try:
        assert reader.copy_latest(spec, onset, beat) == (0, 0.0)  # not attached yet
        assert reader.layout is None and reader.audio is None
        for k in range(3):
            an.step(writer, k)
        reader.attach(writer.segment_name)
        have, t = reader.copy_latest(spec, onset, beat)
        assert have == 3
        assert t == pytest.approx(3 * 441 / 44100) and reader.time_s == pytest.approx(t)
        assert 0 <= time.monotonic() - reader.frame_wall_s < 5.0  # one system-wide clock
        np.testing.assert_array_equal(onset, [0, 0, 0, 0, 0, 0, 1, 2])
        for k in range(3, 123):  # wraps the 50-frame ring twice
            an.step(writer, k)
        have, t = reader.copy_latest(spec, onset, beat)
        assert have == 8 and t == pytest.approx(123 * 441 / 44100)
        np.testing.assert_array_equal(onset, np.arange(115, 123))
        np.testing.assert_array_equal(beat, -np.arange(115, 123))
        np.testing.assert_allclose(spec[-1], 122 + np.arange(5) / 10)
        lay = reader.layout
        assert lay is not None and lay.bands == 5 and lay.frame_size == 2048 and lay.has_beats
        np.testing.assert_allclose(lay.center_hz, np.geomspace(50.0, 8000.0, 5))
        # the audio ring holds the newest hops, contiguous, like a one-channel RingBuffer
        audio = reader.audio
        assert audio is not None and audio.capacity == 50 * 441 and audio.channels == 1
        assert audio.refresh() == 123 * 441 and audio.end_s == pytest.approx(t)
        w = audio.window(audio.written, 3 * 441)
        assert w.shape == (3 * 441, 1) and not w.flags.writeable
        np.testing.assert_allclose(
            w[:, 0], np.repeat([120, 121, 122], 441) + np.tile(np.arange(441) / 441, 3), rtol=1e-6
        )
        with pytest.raises(ValueError, match="at most 40"):
            reader.copy_latest(np.zeros((41, 5), dtype=np.float32), None, None)
        # a new stream (a new analyzer) reuses the segment under a new generation
        gen, name = reader.generation, writer.segment_name
        an2 = _FakeAnalyzer()
        an2.step(writer, 0)
        assert writer.segment_name == name
        have, _ = reader.copy_latest(spec, onset, beat)
        assert reader.generation == gen + 1 and have == 1 and onset[-1] == 0.0
        assert reader.audio is not None and reader.audio.generation != audio.generation
    finally:
        reader.close()
        writer.close()


def test_shared_views_writer_does_not_allocate_and_reader_drops_torn_copies():
    import tracemalloc

    from onbeat.realtime.views import SharedFrameViews, SharedViewsReader

    writer = SharedFrameViews(200, margin_frames=20)
    reader = SharedViewsReader(200, margin_frames=20)
    an = _FakeAnalyzer(beats=False)
    try:
        for k in range(300):
            an.step(writer, k)
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for k in range(300, 1300):
            an.step(writer, k)
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        this_file = [tracemalloc.Filter(True, "*views.py")]
        grown = sum(
            s.size_diff
            for s in after.filter_traces(this_file).compare_to(
                before.filter_traces(this_file), "filename"
            )
        )
        assert grown < 1024, f"views.py allocated {grown} bytes over 1000 frames"
        reader.attach(writer.segment_name)
        assert reader.layout is not None and not reader.layout.has_beats
        out = np.zeros(100, dtype=np.float32)
        assert reader.copy_latest(None, out, None)[0] == 100
        # a writer that laps the reader by more than the margin during the copy: dropped
        k = 1300

        class WriterRunsDuringCopy(np.ndarray):
            frames = 0
            analyzer = an

            def __setitem__(self, key, value):
                nonlocal k
                super().__setitem__(key, value)
                for _ in range(self.frames):
                    self.analyzer.step(writer, k)
                    k += 1

        racing = np.zeros(100, dtype=np.float32).view(WriterRunsDuringCopy)
        racing.frames = 20  # within the margin: the copied frames were not overwritten
        assert reader.copy_latest(None, racing, None)[0] == 100
        racing.frames = 21
        assert reader.copy_latest(None, racing, None)[0] == 0
        # a new stream starting during the copy (the generation moves): dropped too
        racing.frames, racing.analyzer = 1, _FakeAnalyzer(beats=False)
        assert reader.copy_latest(None, racing, None)[0] == 0
        assert reader.copy_latest(None, out, None)[0] == 1  # the new stream's first frame
    finally:
        reader.close()
        writer.close()


# ---------------------------------------------------------------------- state (no Qt)
def _beat(i: int, t: float, now: float, *, bpm: float = 120.0, locked: bool = True):
    from onbeat.realtime.events import BeatEvent

    return BeatEvent(
        sample_index=round(t * 44100),
        time_s=t,
        emitted_s=now,
        beat_index=i,
        beat_in_bar=i % 4 + 1,
        bpm=bpm,
        confidence=0.9,
        phase=0.0,
        is_downbeat=i % 4 == 0,
        locked=locked,
        predicted=t > now,
    )


def test_state_flash_prediction_and_bounded_memory():
    from onbeat.gui.state import DisplayState
    from onbeat.realtime.events import OnsetEvent, TempoEvent

    st = DisplayState(onsets=16, beats=8)
    st.apply([TempoEvent(0, 0.2, 0.2, bpm=120.0, confidence=0.8, locked=True, beats_per_bar=4)], 0)
    st.apply([_beat(0, 0.5, 0.2), _beat(1, 1.0, 0.2)], 0.0)
    assert not st.advance(0.4, 0.0)  # no beat has reached the playhead yet
    assert st.advance(0.55, 1.0) and st.flash.beat_in_bar == 1 and st.flash.downbeat
    assert not st.advance(0.6, 1.1)  # the same beat flashes once
    assert st.flash_level(1.0) == pytest.approx(1.0) and st.flash_level(2.0) < 0.01
    st.apply([_beat(1, 1.01, 0.8)], 1.2)  # a revised prediction replaces, not appends
    assert st.beats.count == 2
    out = np.zeros(8)
    n, down = st.predicted_beats(2.0, out)  # from 0.8: beat 1 (1.01), then extrapolated
    np.testing.assert_allclose(out[:n], [1.01, 1.51, 2.01, 2.51])
    assert down.tolist() == [False, False, False, True]  # beat 4 is the next downbeat
    assert st.advance(1.05, 2.0) and st.flash.beat_in_bar == 2 and not st.flash.downbeat
    for k in range(1000):  # rings stay their size
        st.apply([OnsetEvent(k, k * 0.01, k * 0.01, strength=1.0)], 3.0)
    assert st.onsets.time_s.shape == (16,) and st.onsets.count == 1000
    assert st.onsets.between(9.84, 10.0).shape[0] == 16


def test_settings_round_trip_and_bad_files(tmp_path):
    from onbeat.gui.settings import GuiSettings, OscTarget, load_settings, save_settings

    s = GuiSettings(fps=45, osc_targets=(OscTarget("10.0.0.2", 7000, 12.5, False),))
    path = save_settings(s)
    assert path is not None and path.parent == tmp_path / "config"
    assert load_settings() == s
    path.write_text("{not json")
    assert load_settings() == GuiSettings()
    path.write_text('{"fps": 500, "window_s": "x", "nudge_ms": 5, "bogus": 1}')
    loaded = load_settings()
    assert loaded.fps == 60 and loaded.window_s == 8.0 and loaded.nudge_ms == 5.0


# ---------------------------------------------------------------------- the window
@pytest.fixture
def window(qtbot):
    from onbeat.gui.app import create_app
    from onbeat.gui.settings import GuiSettings
    from onbeat.gui.window import MainWindow
    from onbeat.realtime.config import OnbeatConfig

    create_app()
    w = MainWindow(OnbeatConfig(), GuiSettings(), save=False)
    w.timer.stop()  # the tests drive tick() themselves
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()


def _replay(window, samples, rate: int, name: str = "click"):
    """Replay ``samples`` as fast as possible, then run display updates until all is shown."""
    from onbeat.gui.runner import SourceSpec

    assert window.start_source(
        SourceSpec("array", samples=samples, sample_rate_hz=rate, name=name, fast=True)
    )
    assert window.runner.wait(60.0), "the replay did not finish"
    assert not window.runner.error
    for _ in range(5):
        window.tick()
    from PyQt6 import QtWidgets

    QtWidgets.QApplication.processEvents()


@needs_qt
def test_window_opens(window):
    from onbeat.gui.runner import SourceSpec

    assert window.isVisible()
    assert window.windowTitle() == "onbeat"
    docks = {d.windowTitle() for d in (window.dock_beat, window.dock_tempo, window.dock_tags)}
    assert docks == {"Beat", "Tempo", "Tags"}
    window.tick()  # no stream yet: nothing to draw, nothing fails
    assert window.beat_panel.bpm.text() == "—"
    assert window.input_panel.devices.count() >= 1  # "default input" even with no sound card
    assert not window.start_source(SourceSpec("file", path="/nonexistent/x.wav"))
    assert "does not exist" in window.last_error


@needs_qt
def test_click_track_marks_onsets(window):
    from onbeat.realtime.demo import click_track

    song = click_track(duration_s=6.0, bpm=120.0)
    _replay(window, song.samples, song.sample_rate_hz)
    st = window.state
    assert st.ended == "eof"
    plots = window.plots
    # every click in the visible window carries an onset marker at its time (relative to now)
    x = plots.onset_marks.getData()[0][0::2]  # one vertical tick (two points) per onset
    clicks = song.onsets_s[song.onsets_s >= st.now_s - plots.window_s] - st.now_s
    assert len(clicks) >= 10
    assert plots.onset_count == len(clicks)
    for c in clicks:
        assert np.min(np.abs(x - c)) < 0.03, f"no onset marker near {c:.2f} s"
    # the activation curve and the spectrogram are filled
    cx, cy = plots.onset_curve.getData()
    assert cx is not None and len(cx) >= 500 and np.max(cy) == pytest.approx(1.0, abs=0.05)
    pixels = plots.spectrogram.pixels
    assert pixels.shape[0] > 50 and np.unique(pixels).size > 50  # many colours, not one
    assert window.beat_panel.flash.position == 0 or st.counts.get("beat", 0) > 0


@needs_qt
@pytest.mark.parametrize("kind", ["click", "demo"])
def test_replay_drives_bpm_and_flash(window, kind):
    from onbeat.realtime.demo import click_track, demo_song

    if kind == "click":
        song = click_track(duration_s=12.0, bpm=120.0)
    else:
        song = demo_song(duration_s=12.0)
    _replay(window, song.samples, song.sample_rate_hz, name=kind)
    st = window.state
    if st.counts.get("beat", 0) == 0:
        pytest.skip(f"no BeatEvent for the {kind} track (no beat tracker, or it never locked)")
    panel = window.beat_panel
    assert float(panel.bpm.text()) == pytest.approx(120.0, abs=2.0)
    assert panel.lock.text() in ("LOCKED", "SEARCHING")
    # the flash shows the position in the bar of the newest beat that reached the playhead
    assert 1 <= st.flash.beat_in_bar <= st.beats_per_bar
    assert panel.flash.position == st.flash.beat_in_bar
    assert panel.flash.downbeat == (st.flash.beat_in_bar == 1)
    # past beats are drawn as lines, downbeats apart, and beats are extrapolated ahead
    lines = window.plots.marks[2]
    assert lines.times(0).size + lines.times(1).size >= 8
    assert lines.times(1).size >= 2 and np.all(lines.times(1) <= 0)
    assert lines.times(2).size + lines.times(3).size >= 1
    assert np.all(np.concatenate([lines.times(2), lines.times(3)]) > 0)
    # the tempo history holds the tracker's tempo
    assert window.state.tempo.count > 0
    assert window.tempo_plot.curve.getData()[1][-1] == pytest.approx(120.0, abs=2.0)


@needs_qt
def test_waveform_peaks_follow_the_ring(window):
    """Incremental peak decimation equals min/max over the ring's newest samples, after wraps."""
    from onbeat.realtime.ringbuffer import RingBuffer

    rate = 8000
    ring = RingBuffer(int(1.5 * window.plots.window_s * rate), 2)
    rng = np.random.default_rng(3)
    plots = window.plots
    for step in range(400):  # ~3 ring wraps, driver-like block sizes
        n = int(rng.integers(0, 400))
        ring.write(rng.uniform(-1, 1, (n, 2)).astype(np.float32))
        plots.update_wave(ring, rate, ring.written / rate, 0.0)
        if step % 97 == 0 or step == 399:
            x, y = plots.wave.getData()
            spb = plots._wave_key[0]
            k = len(y) // 2
            expect = ring.window((ring.written // spb) * spb, k * spb).reshape(k, -1)
            np.testing.assert_array_equal(y[0::2], expect.min(axis=1))
            np.testing.assert_array_equal(y[1::2], expect.max(axis=1))
            # bin centres, the newest one half a bin before the newest complete bin's end
            end = (ring.written // spb) * spb / rate - ring.written / rate
            assert x[-1] == pytest.approx(end - 0.5 * spb / rate)
            assert x[0] == pytest.approx(end - (k - 0.5) * spb / rate)


@needs_qt
def test_synthetic_beats_drive_the_display(window):
    """The display logic on its own, with tracker events made by hand."""
    from onbeat.realtime.events import TagsEvent, TempoEvent

    st = window.state
    wall = time.monotonic()
    st.apply([TempoEvent(0, 1.9, 1.9, bpm=128.0, confidence=0.75, locked=True, beats_per_bar=4)], 0)
    st.apply([_beat(i, 0.5 + 60 / 128 * i, 1.9, bpm=128.0) for i in range(6)], wall)
    st.now_s = 2.4  # just past beat 4 (a downbeat), before beat 5
    window.tick()
    panel = window.beat_panel
    assert panel.bpm.text() == "128.0"
    assert panel.lock.text() == "LOCKED"
    assert panel.confidence.value() == 90
    assert panel.flash.position == 1 and panel.flash.downbeat and panel.flash.level > 0.5
    assert st.flash.beat_index == 4
    # beat 5 (at 2.84 s) is drawn as a predicted beat ahead of the playhead
    pred_x = window.plots.marks[2].times(2)
    assert np.any(np.abs(pred_x - (0.5 + 60 / 128 * 5 - 2.4)) < 1e-6)
    down_x = window.plots.marks[2].times(1)
    assert np.any(np.abs(down_x - (0.5 + 60 / 128 * 4 - 2.4)) < 1e-6)
    st.apply(
        [
            TagsEvent(
                0,
                2.4,
                2.4,
                genre=(("electronic", 0.7), ("rock", 0.3)),
                mood_quadrant=(("Q1", 0.6), ("Q2", 0.2), ("Q3", 0.1), ("Q4", 0.1)),
                valence=0.5,
                arousal=-0.25,
                voice=0.1,
                energy=0.8,
            )
        ],
        wall,
    )
    window.tick()
    tags = window.tags_panel
    assert not tags.canvas.isHidden() and tags.waiting.isHidden()
    np.testing.assert_allclose(tags.genre_bars.opts["width"][:2], [0.7, 0.3])
    assert tags.point.getData()[0][0] == pytest.approx(0.5)


def _similar(t: float, nearest, scene: str = "", changed: bool = False):
    from onbeat.realtime.events import SimilarEvent

    return SimilarEvent(round(t * 44100), t, t, tuple(nearest), scene, changed)


@needs_qt
def test_similar_events_drive_the_sounds_like_panel(window):
    """SimilarEvents, pickled through a pipe as the engine process sends them, fill the rows
    (title, distance, bar) and the scene; without them the panel shows how to build a library."""
    import multiprocessing

    from onbeat.gui.panels import SimilarPanel
    from onbeat.gui.state import DisplayState

    panel = window.similar_panel
    window.tick()
    assert not panel.hint.isHidden() and panel.body.isHidden()
    assert panel.hint.text().replace("\n", " ") == SimilarPanel.HINT
    assert "onbeat library add DIR" in panel.hint.text()

    here, there = multiprocessing.Pipe()
    try:

        def through_pipe(events) -> None:  # the engine process's message, handled as the GUI does
            there.send(("events", events, 0))
            window.runner._handle(here.recv())
            window.tick()

        through_pipe([_similar(2.0, [("Ünïcode – Title", 0.125), ("b", 0.5)])])
        assert panel.hint.isHidden() and not panel.body.isHidden()
        assert panel.shown() == [("Ünïcode – Title", 0.125), ("b", 0.5)]
        assert [r.isHidden() for r in panel.rows] == [False, False, True, True, True]
        assert panel.rows[0].fill == pytest.approx(0.875) and panel.rows[1].fill == 0.5
        assert panel.scene.text() == "—" and panel.since.text() == "no scene yet"

        far = [("club mix", 0.02), ("other", 0.3), ("far away", 1.4)]
        through_pipe([_similar(63.5, far, "dancefloor", True)])
        assert panel.shown() == far
        assert [r.isHidden() for r in panel.rows] == [False, False, False, True, True]
        assert panel.rows[2].fill == 0.0  # further than unrelated: an empty bar
        assert panel.scene.text() == "dancefloor" and panel.since.text() == "since 1:03"
        from onbeat.gui import theme

        assert theme.DOWNBEAT in panel.scene.styleSheet()  # a new scene stands out
        through_pipe([_similar(70.0, far[:1], "dancefloor")])  # same scene, later
        assert panel.shown() == far[:1] and panel.since.text() == "since 1:03"
        assert theme.ACCENT in panel.scene.styleSheet()
    finally:
        here.close()
        there.close()
    # a new stream forgets them: the hint again
    window.state.reset()
    window.tick()
    assert not panel.hint.isHidden() and panel.body.isHidden()
    st = DisplayState()
    assert st.similar_version == 0 and st.nearest == () and st.scene == ""


@needs_qt
def test_reference_library_reaches_the_panel(qtbot, tmp_path):
    """End to end: a library of one file, the same audio replayed in the engine process."""
    import soundfile as sf
    from onbeat.gui.app import create_app
    from onbeat.gui.settings import GuiSettings
    from onbeat.gui.window import MainWindow
    from onbeat.models.registry import weights_path
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from onbeat.realtime.demo import demo_song
    from onbeat.realtime.library import Embedder, Library

    if not weights_path("tags").exists():
        pytest.skip("no tagging model: no embeddings, no reference library")
    song = demo_song(duration_s=12.0)
    ref = tmp_path / "Reference loop.wav"
    sf.write(ref, song.samples, song.sample_rate_hz)
    db = tmp_path / "library.sqlite"
    with Library(db) as lib:
        lib.add_file(ref, Embedder(), scenes=["groove"])
    config = apply_overrides(
        OnbeatConfig(),
        {"library.enabled": "on", "library.db_path": str(db), "library.dwell_s": 0.0},
    )
    create_app()
    w = MainWindow(config, GuiSettings(), save=False)
    w.timer.stop()
    qtbot.addWidget(w)
    w.show()
    try:
        _replay(w, song.samples, song.sample_rate_hz, name="demo")
        assert w.state.counts.get("similar", 0) > 0
        panel = w.similar_panel
        assert panel.hint.isHidden() and not panel.body.isHidden()
        (title, distance), *_ = panel.shown()
        assert title == "Reference loop" and distance < 0.05
        assert panel.rows[0].fill > 0.95
        assert panel.scene.text() == "groove"
    finally:
        w.shutdown()


@needs_qt
def test_controls_send_tracker_commands(window, qtbot):
    """Every control sends its tracker command to the engine process, which applies each one
    on the analysis thread, in order, and reports it back as a CommandEvent."""
    from onbeat.gui.runner import SourceSpec
    from onbeat.realtime.commands import CommandEvent
    from PyQt6 import QtCore

    assert not window.send_command("tap", ())  # nothing runs yet
    assert window.start_source(SourceSpec("demo", duration_s=20.0))
    assert window.runner.running
    c = window.controls
    c.nudge_ms.setValue(15.0)
    left = QtCore.Qt.MouseButton.LeftButton
    for button in (c.tap, c.nudge_back, c.nudge_fwd, c.resync, c.double, c.halve):
        qtbot.mouseClick(button, left)
    qtbot.mouseClick(c.freeze, left)
    qtbot.mouseClick(c.freeze, left)
    expected = [
        ("tap", ()),
        ("nudge", (-15.0,)),
        ("nudge", (15.0,)),
        ("resync", ()),
        ("double", ()),
        ("halve", ()),
        ("freeze", (1.0,)),
        ("freeze", (0.0,)),
    ]
    applied: list[CommandEvent] = []

    def all_applied() -> None:
        window.runner.pump()
        events = window.runner.subscription.drain()
        applied.extend(e for e in events if isinstance(e, CommandEvent))
        assert len(applied) >= len(expected)

    qtbot.waitUntil(all_applied, timeout=10_000)
    assert [(e.kind, e.args) for e in applied] == expected
    assert all(e.origin == "gui" for e in applied)
    window.runner.stop()
    assert not window.runner.running
    assert not window.send_command("tap", ())  # stopped: nothing to take it


@needs_qt
def test_controls_reach_the_tracker_while_running(window, qtbot):
    """A live (paced) stream applies the command on the analysis thread and reports it."""
    from onbeat.gui.runner import SourceSpec
    from PyQt6 import QtCore

    assert window.start_source(SourceSpec("demo", duration_s=10.0))
    assert window.runner.running
    qtbot.mouseClick(window.controls.tap, QtCore.Qt.MouseButton.LeftButton)

    def reported() -> None:
        window.tick()
        assert window.state.last_command.startswith("tap()")

    qtbot.waitUntil(reported, timeout=5_000)
    assert window.controls.feedback.text().startswith("tap()")


@needs_qt
def test_analysis_runs_in_its_own_process(window, qtbot):
    """No analysis thread in the GUI process; start/stop and a new source restart it there."""
    import threading

    from onbeat.gui.runner import SourceSpec

    proc = window.runner._proc
    assert proc is not None and proc.pid != os.getpid()
    assert window.start_source(SourceSpec("demo", duration_s=30.0))
    names = {t.name for t in threading.enumerate()}
    assert not names & {"engine", "player"}, names
    qtbot.waitUntil(lambda: window.tick() or window.views.frames > 50, timeout=10_000)
    assert window.runner.pid == proc.pid
    window.toggle_running()  # stop
    assert not window.runner.running and window.runner.summary is not None
    assert window.runner.summary.reason == "stopped"
    window.toggle_running()  # start the same source again, in the same engine process
    assert window.runner.running and window.runner._proc is proc
    gen = window.views.generation
    qtbot.waitUntil(lambda: window.tick() or window.views.generation > gen, timeout=10_000)
    assert window.views.layout is not None
    window.shutdown()  # closing the window ends the engine process
    assert not proc.is_alive() and proc.exitcode == 0


@needs_qt
def test_display_updates_between_analysis_frames(window, qtbot, monkeypatch):
    """The refresh timer updates in the gap after a frame, or waits until just after the next."""
    import onbeat.gui.window as window_module
    from onbeat.gui.runner import SourceSpec

    assert window.quiet_delay_ms() == 0  # no stream: update at once
    assert window.start_source(SourceSpec("demo", duration_s=30.0))
    qtbot.waitUntil(lambda: window.tick() or window.views.frames > 5, timeout=10_000)
    period = 1.0 / window.views.layout.frame_rate_hz
    since = 0.0
    # the clock as seen from the newest frame's publication (read at the same moment)
    monkeypatch.setattr(window_module.time, "monotonic", lambda: window.views.frame_wall_s + since)
    for since, expected in ((0.1 * period, 0), (0.3 * period, 0), (3 * period, 0)):
        assert window.quiet_delay_ms() == expected, since
    since = 0.5 * period
    delay = window.quiet_delay_ms()
    assert math.ceil(500 * period) <= delay <= math.ceil(500 * period) + 1
    ticks = window.ticks
    window._on_timer()  # deferred: one update, just after the next frame
    assert window._deferred and window.ticks == ticks
    window._on_timer()  # a second timeout meanwhile does not queue another
    qtbot.waitUntil(lambda: not window._deferred, timeout=1_000)
    assert window.ticks == ticks + 1
    since = 0.1 * period
    window._on_timer()
    assert window.ticks == ticks + 2 and not window._deferred


@needs_qt
def test_engine_process_dying_shows_an_error(window, qtbot):
    """A killed engine process is reported in the window (no hang); a new start relaunches it."""
    import signal

    from onbeat.gui.runner import SourceSpec

    assert window.start_source(SourceSpec("demo", duration_s=30.0))
    qtbot.waitUntil(lambda: window.tick() or window.views.layout is not None, timeout=10_000)
    proc = window.runner._proc
    os.kill(proc.pid, signal.SIGKILL)
    t0 = time.monotonic()

    def reported() -> None:
        window.tick()
        assert "engine process stopped unexpectedly" in window.status_text.text()

    qtbot.waitUntil(reported, timeout=5_000)
    assert time.monotonic() - t0 < 5.0
    assert not window.runner.running and not window.runner.alive
    assert window.act_start.text() == "▶ Start"
    assert not window.send_command("tap", ())
    window.tick()  # drawing with the engine gone neither fails nor blocks
    assert window.start_source(SourceSpec("demo", duration_s=5.0))
    assert window.runner._proc is not proc and window.runner.running
    assert not window.runner.error


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


@needs_qt
def test_many_updates_do_not_grow_memory(window):
    from onbeat.gui.runner import SourceSpec
    from PyQt6 import QtWidgets

    assert window.start_source(SourceSpec("demo", duration_s=60.0))
    process = QtWidgets.QApplication.processEvents

    def ticks(n: int) -> None:
        for _ in range(n):
            window.tick()
            window.plots.canvas.viewport().repaint()  # paint every frame, as the screen would
            process()
            time.sleep(0.002)  # let stream time pass between frames, as the timer would

    deadline = time.monotonic() + 20
    while window.views.layout is None and time.monotonic() < deadline:
        window.runner.pump()  # the shared views are mapped when the engine names them
        time.sleep(0.01)
    ticks(300)  # warm-up: caches, first stream frames
    gc.collect()
    objects0, rss0 = len(gc.get_objects()), _rss_bytes()
    onsets0 = window.state.counts.get("onset", 0)
    ticks(2050)
    gc.collect()
    objects1, rss1 = len(gc.get_objects()), _rss_bytes()
    assert window.runner.running, "the demo ended before the updates did"
    assert window.state.counts.get("onset", 0) > 20
    assert window.state.counts.get("onset", 0) - onsets0 > 10  # events flowed while measured
    assert objects1 - objects0 < 300, f"{objects1 - objects0} more Python objects"
    if rss0 is not None and rss1 is not None:
        assert rss1 - rss0 < 16 * 2**20, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"


def _variance(image) -> float:
    """Pixel variance of a QImage (RGB32)."""
    from PyQt6 import QtGui

    img = image.convertToFormat(QtGui.QImage.Format.Format_RGB32)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    a = np.frombuffer(ptr, dtype=np.uint8).reshape(img.height(), img.bytesPerLine())
    return float(a[:, : 4 * img.width()].astype(np.float64).var())


@needs_qt
def test_screenshot_is_not_blank(window, tmp_path):
    from onbeat.realtime.demo import demo_song
    from PyQt6 import QtCore

    song = demo_song(duration_s=9.0)
    _replay(window, song.samples, song.sample_rate_hz, name="demo")
    path = tmp_path / "shot.png"
    assert window.grab().save(str(path))
    assert path.stat().st_size > 20_000
    canvas = window.plots.canvas
    for name in ("wave_plot", "spec_plot", "act_plot"):
        plot = getattr(window.plots, name)
        rect = canvas.mapFromScene(plot.vb.sceneBoundingRect()).boundingRect()
        area = canvas.grab(QtCore.QRect(rect)).toImage()
        assert area.width() > 100 and area.height() > 40
        assert _variance(area) > 50.0, f"{name} looks blank"


@needs_qt
def test_settings_and_layout_persist(qtbot, tmp_path):
    from onbeat.gui.app import create_app
    from onbeat.gui.settings import GuiSettings, load_settings
    from onbeat.gui.window import MainWindow
    from onbeat.realtime.config import OnbeatConfig

    create_app()
    w = MainWindow(OnbeatConfig(), load_settings(), save=True)
    qtbot.addWidget(w)
    w.fps_box.setValue(40)
    w.controls.nudge_ms.setValue(25.0)
    w.dock_osc.setFloating(True)
    w.close()
    saved = load_settings()
    assert saved.fps == 40 and saved.nudge_ms == 25.0 and saved.window_state
    assert saved != GuiSettings()
    w2 = MainWindow(OnbeatConfig(), saved, save=False)
    qtbot.addWidget(w2)
    assert w2.fps_box.value() == 40 and w2.timer.interval() == 25
    assert w2.controls.nudge_ms.value() == 25.0
    assert w2.dock_osc.isFloating()
    w2.shutdown()


@needs_qt
def test_app_refuses_bad_input(capsys):
    from onbeat.gui.app import main

    assert main(["/nonexistent/song.wav", "--no-save"]) == 2
    assert "does not exist" in capsys.readouterr().err
    os.environ["PYQTGRAPH_QT_LIB"] = "PySide6"
    try:
        assert main(["--demo", "--no-save"]) == 2
        assert "PyQt6 only" in capsys.readouterr().err
    finally:
        os.environ["PYQTGRAPH_QT_LIB"] = "PyQt6"


@needs_qt
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run is not installed")
def test_runs_on_a_virtual_x_server(tmp_path):
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the real xcb platform this time
    env["ONBEAT_CONFIG_DIR"] = str(tmp_path)
    shot = tmp_path / "xvfb.png"
    proc = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1920x1080x24",
            sys.executable,
            "-m",
            "onbeat.gui.app",
            "--demo",
            "--quit-after",
            "3",
            "--screenshot",
            str(shot),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert (tmp_path / "gui.json").exists()  # the settings were saved on exit
