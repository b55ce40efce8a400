"""The main window: scrolling plots in the centre, panels in movable docks, one update timer.

Everything here runs on the Qt main thread; the analysis runs in the engine process
(:mod:`onbeat.gui.engine_process`). :meth:`MainWindow.tick`, called by a ``QTimer`` at the
configured rate, receives the engine's events, copies the newest frames and audio from the shared
read-only views, and updates plot items that were created once. Nothing in this module calls a
detector; tracker controls only send :class:`~onbeat.realtime.commands.Command` objects to the
engine's command queue.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import math
import time
from typing import Any

from onbeat.gui.engine_process import EngineOptions, EngineProcess
from onbeat.gui.panels import (
    BeatPanel,
    ControlsPanel,
    InputPanel,
    OscPanel,
    SimilarPanel,
    TagsPanel,
)
from onbeat.gui.plots import ScrollingPlots, TempoPlot
from onbeat.gui.runner import SourceSpec
from onbeat.gui.settings import GuiSettings, save_settings
from onbeat.gui.state import DisplayState
from onbeat.realtime.commands import Command
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.errors import OnbeatError
from PyQt6 import QtCore, QtGui, QtWidgets

__all__ = ["MainWindow"]

log = logging.getLogger(__name__)

_MAX_EVENTS_PER_TICK = 4096
_AUDIO_FILTER = "Audio files (*.wav *.flac *.ogg *.opus *.mp3 *.aiff *.aif);;All files (*)"


def _b64(data: QtCore.QByteArray) -> str:
    return base64.b64encode(bytes(data.data())).decode("ascii")


def _unb64(text: str) -> QtCore.QByteArray | None:
    try:
        return QtCore.QByteArray(base64.b64decode(text.encode("ascii"), validate=True))
    except ValueError:
        return None


class MainWindow(QtWidgets.QMainWindow):
    """The onbeat visualizer.

    Parameters
    ----------
    config : OnbeatConfig
        Engine configuration.
    settings : GuiSettings
        Display settings and the saved layout.
    save : bool
        Write settings and layout back when the window closes.
    runner : EngineProcess, optional
        The engine process to use (default: a new one, launched now, in the background).
    """

    def __init__(
        self,
        config: OnbeatConfig,
        settings: GuiSettings,
        *,
        save: bool = True,
        runner: EngineProcess | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.settings = settings
        self._save = save
        self.setWindowTitle("onbeat")
        self.resize(1600, 960)
        self.state = DisplayState()
        if runner is None:
            cap = max(400, math.ceil(10.0 * config.frame_rate_hz)) + 200
            options = EngineOptions(
                capacity_frames=cap, margin_frames=200, log_level=logging.getLogger().level
            )
            runner = EngineProcess(config, options)
        self.runner = runner
        self.views = runner.views
        self.ticks = 0
        self._fps_count = 0
        self._fps_wall = time.monotonic()
        self.measured_fps = 0.0
        self._status_key = ""
        self._closed = False
        self.last_error = ""
        self._tempo_seen = -1
        self._drawn_now = -1.0
        self._drawn_written = -1
        self._tempo_wall = 0.0
        self._shown_error = ""
        self._build()
        self._restore_layout()
        self._deferred = False
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._on_timer)
        self.set_fps(settings.fps)
        self.timer.start()

    # ------------------------------------------------------------------ construction
    def _dock(
        self, title: str, widget: QtWidgets.QWidget, area: QtCore.Qt.DockWidgetArea
    ) -> QtWidgets.QDockWidget:
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock_{title.lower().replace(' ', '_')}")
        dock.setWidget(widget)
        dock.setFeatures(
            QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        self.view_menu.addAction(dock.toggleViewAction())
        return dock

    def _build(self) -> None:
        s = self.settings
        menu = self.menuBar()
        assert menu is not None
        file_menu = menu.addMenu("&File")
        view_menu = menu.addMenu("&View")
        assert file_menu is not None and view_menu is not None
        self.view_menu: QtWidgets.QMenu = view_menu

        # toolbar: sources and transport
        bar = QtWidgets.QToolBar("transport")
        bar.setObjectName("toolbar_transport")
        bar.setMovable(False)
        self.addToolBar(bar)
        self.act_open = QtGui.QAction("Open file…", self)
        self.act_open.setShortcut(QtGui.QKeySequence.StandardKey.Open)
        self.act_open.triggered.connect(self.open_file_dialog)
        self.act_demo = QtGui.QAction("Demo", self)
        self.act_demo.triggered.connect(lambda: self.start_source(SourceSpec("demo")))
        self.act_live = QtGui.QAction("Live input", self)
        self.act_live.triggered.connect(self.start_live)
        self.act_start = QtGui.QAction("■ Stop", self)
        self.act_start.setShortcut(QtGui.QKeySequence("Ctrl+Space"))
        self.act_start.triggered.connect(self.toggle_running)
        self.act_audible = QtGui.QAction("Audible", self)
        self.act_audible.setCheckable(True)
        self.act_audible.setChecked(s.audible)
        self.act_audible.setToolTip("play replayed files through the default output")
        for a in (self.act_open, self.act_demo, self.act_live):
            bar.addAction(a)
        bar.addSeparator()
        bar.addAction(self.act_start)
        bar.addAction(self.act_audible)
        bar.addSeparator()
        self.source_label = QtWidgets.QLabel("")
        self.source_label.setFont(_bold(13))
        bar.addWidget(self.source_label)
        spacer = QtWidgets.QWidget()
        spacer.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred
        )
        bar.addWidget(spacer)
        bar.addWidget(QtWidgets.QLabel("fps "))
        self.fps_box = QtWidgets.QSpinBox()
        self.fps_box.setRange(30, 60)
        self.fps_box.setValue(s.fps)
        self.fps_box.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.fps_box.valueChanged.connect(self.set_fps)
        bar.addWidget(self.fps_box)
        for a in (self.act_open, self.act_demo, self.act_live, self.act_start):
            file_menu.addAction(a)
        file_menu.addSeparator()
        quit_action = QtGui.QAction("Quit", self)
        quit_action.setShortcut(QtGui.QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        # centre: the scrolling plots
        self.plots = ScrollingPlots(s.window_s, s.lookahead_s)
        self.setCentralWidget(self.plots)

        # docks
        right = QtCore.Qt.DockWidgetArea.RightDockWidgetArea
        bottom = QtCore.Qt.DockWidgetArea.BottomDockWidgetArea
        self.beat_panel = BeatPanel()
        self.controls = ControlsPanel(s.nudge_ms)
        self.input_panel = InputPanel()
        self.tempo_plot = TempoPlot(s.tempo_history_s)
        self.tags_panel = TagsPanel()
        self.similar_panel = SimilarPanel()
        self.osc_panel = OscPanel(s.osc_targets)
        self.dock_beat = self._dock("Beat", self.beat_panel, right)
        self.dock_controls = self._dock("Controls", self.controls, right)
        self.dock_input = self._dock("Input", self.input_panel, right)
        self.dock_tempo = self._dock("Tempo", self.tempo_plot, bottom)
        self.dock_tags = self._dock("Tags", self.tags_panel, bottom)
        self.dock_similar = self._dock("Sounds like", self.similar_panel, bottom)
        self.dock_osc = self._dock("OSC", self.osc_panel, bottom)
        # the OSC targets are set up once: they share the tempo history's place, behind it
        self.tabifyDockWidget(self.dock_tempo, self.dock_osc)
        self.dock_tempo.raise_()
        self.setCorner(QtCore.Qt.Corner.BottomRightCorner, right)
        self.resizeDocks(
            [self.dock_tempo, self.dock_tags, self.dock_similar],
            [330, 470, 370],
            QtCore.Qt.Orientation.Horizontal,
        )
        self.resizeDocks([self.dock_tempo], [250], QtCore.Qt.Orientation.Vertical)
        self.resizeDocks([self.dock_beat], [430], QtCore.Qt.Orientation.Horizontal)
        self.resizeDocks(
            [self.dock_beat, self.dock_controls, self.dock_input],
            [330, 280, 190],
            QtCore.Qt.Orientation.Vertical,
        )
        self.controls.command.connect(self.send_command)
        self.input_panel.refresh_requested.connect(self.refresh_devices)
        self.osc_panel.changed.connect(self._osc_changed)
        status = self.statusBar()
        assert status is not None
        self.status_text = QtWidgets.QLabel("")
        status.addWidget(self.status_text, 1)
        self.health_text = QtWidgets.QLabel("")
        status.addPermanentWidget(self.health_text)
        self.refresh_devices()

    def _restore_layout(self) -> None:
        s = self.settings
        if s.geometry:
            data = _unb64(s.geometry)
            if data is not None:
                self.restoreGeometry(data)
        if s.window_state:
            data = _unb64(s.window_state)
            if data is not None:
                self.restoreState(data)

    # ------------------------------------------------------------------ settings
    def set_fps(self, fps: int) -> None:
        """Change the refresh rate (30 to 60 frames per second)."""
        fps = max(30, min(60, int(fps)))
        self.settings = dataclasses.replace(self.settings, fps=fps)
        self.timer.setInterval(int(1000 / fps))

    def _osc_changed(self) -> None:
        self.settings = dataclasses.replace(self.settings, osc_targets=self.osc_panel.targets())

    def current_settings(self) -> GuiSettings:
        """Settings with the current layout and panel values."""
        return dataclasses.replace(
            self.settings,
            nudge_ms=float(self.controls.nudge_ms.value()),
            audible=self.act_audible.isChecked(),
            device=self.input_panel.selected_device(),
            osc_targets=self.osc_panel.targets(),
            geometry=_b64(self.saveGeometry()),
            window_state=_b64(self.saveState()),
        )

    # ------------------------------------------------------------------ sources
    def refresh_devices(self) -> None:
        """Re-scan the input devices (an empty list when there is no sound card or PortAudio)."""
        from onbeat.realtime.sources import list_input_devices

        try:
            names = [d.name for d in list_input_devices()]
        except OnbeatError as exc:
            log.info("no input devices: %s", exc)
            names = []
        self.input_panel.set_devices(names, self.settings.device)

    def start_source(self, spec: SourceSpec) -> bool:
        """Start analysing ``spec``; False (and a message in the status bar) when it fails."""
        if spec.kind in ("file", "demo") and not spec.fast:
            spec = dataclasses.replace(spec, audible=self.act_audible.isChecked())
        try:
            self.runner.start(spec)
        except OnbeatError as exc:
            self.last_error = str(exc)
            self._shown_error = self.runner.error
            self.show_message(f"cannot start {spec.describe()}: {exc}")
            return False
        self.state.reset()
        self.plots.clear()
        self._drawn_now, self._drawn_written = -1.0, -1
        changes: dict[str, Any] = {"source": spec.kind if spec.kind != "array" else "file"}
        if spec.kind == "file":
            changes["last_file"] = spec.path
        if spec.kind == "live":
            changes["device"] = spec.device
        self.settings = dataclasses.replace(self.settings, **changes)
        self.source_label.setText(spec.describe())
        self.setWindowTitle(f"onbeat — {spec.describe()}")
        self.show_message(f"started {spec.describe()}")
        return True

    def start_live(self) -> bool:
        """Analyse the selected input device."""
        return self.start_source(SourceSpec("live", device=self.input_panel.selected_device()))

    def open_file_dialog(self) -> None:
        """Ask for an audio file and replay it."""
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Replay an audio file", self.settings.last_file, _AUDIO_FILTER
        )
        if path:
            self.start_source(SourceSpec("file", path=path))

    def toggle_running(self) -> None:
        """Stop the running stream, or restart the last source."""
        if self.runner.running:
            self.runner.stop()
            self.show_message("stopped")
        elif self.runner.spec is not None:
            self.start_source(self.runner.spec)
        else:
            self.start_source(SourceSpec("demo"))

    # ------------------------------------------------------------------ commands
    def send_command(self, kind: str, args: tuple[float, ...]) -> bool:
        """Send a tracker command to the engine (applied before its next frame)."""
        try:
            cmd = Command(kind, tuple(float(a) for a in args), origin="gui")
        except ValueError as exc:
            self.show_message(str(exc))
            return False
        if not self.runner.send(cmd):
            self.controls.feedback.set(f"{kind}: no stream is running")
            return False
        self.controls.feedback.set(f"{kind} sent")
        return True

    # ------------------------------------------------------------------ the timer
    def quiet_delay_ms(self) -> int:
        """Milliseconds until the display may update without overlapping an analysis frame.

        The engine publishes a frame every hop (10 ms) and the wall time it did so. An update
        (drain, copy, paint: a few ms) that starts within the first third of the gap after a
        frame ends before the next one; otherwise it waits until just after the next frame. Two
        processes then rarely run at once, so the display does not compete with the analysis
        for a CPU shared under a hypervisor, nor for its caches. 0 when no stream runs.
        """
        views = self.views
        lay = views.layout
        if lay is None or not self.runner.running:
            return 0
        period = 1.0 / lay.frame_rate_hz
        since = time.monotonic() - views.frame_wall_s
        if since < period / 3 or since > 2 * period:  # in the gap, or no frames are coming
            return 0
        return max(1, math.ceil(1000 * (period - since) + 0.5))

    def _on_timer(self) -> None:
        """The refresh timer: update now, or just after the next analysis frame."""
        if self._deferred:
            return
        delay = self.quiet_delay_ms()
        if delay <= 0:
            self.tick()
            return
        self._deferred = True
        QtCore.QTimer.singleShot(delay, QtCore.Qt.TimerType.PreciseTimer, self._deferred_tick)

    def _deferred_tick(self) -> None:
        self._deferred = False
        if not self._closed:
            self.tick()

    def tick(self) -> None:
        """One display update: drain events, copy the newest frames, update the items."""
        wall = time.monotonic()
        state = self.state
        runner = self.runner
        runner.pump()
        if runner.error != self._shown_error:
            self._shown_error = runner.error
            if runner.error:
                self.show_message(f"engine: {runner.error}")
                self._update_status()
        sub = runner.subscription
        fresh = False
        if sub is not None and sub.pending():
            state.apply(sub.drain(_MAX_EVENTS_PER_TICK), wall)
            fresh = True
        views = self.views
        state.advance(views.time_s, wall)
        now = state.now_s
        audio = views.audio
        written = audio.refresh() if audio is not None else -1
        # Nothing new (stopped, paused or between two hops): leave the plots as they are.
        if fresh or now != self._drawn_now or written != self._drawn_written:
            self._drawn_now, self._drawn_written = now, written
            if views.layout is not None:
                self.plots.update_frames(views, now)
            if audio is not None and audio.sample_rate_hz > 0:
                self.plots.update_wave(audio, audio.sample_rate_hz, now, audio.end_s - now)
            self.plots.update_marks(state)
        self.beat_panel.show_state(state, wall)
        self.input_panel.show_state(state, self._device_text())
        if state.tempo.count != self._tempo_seen or wall - self._tempo_wall >= 0.25:
            # the history scrolls by a pixel every few hundred ms: no need to redraw it each tick
            self._tempo_seen, self._tempo_wall = state.tempo.count, wall
            self.tempo_plot.update_tempo(state)
        self.tags_panel.show_state(state)
        self.similar_panel.show_state(state)
        if state.last_command:
            self.controls.feedback.set(state.last_command)
        self.ticks += 1
        self._fps_count += 1
        if wall - self._fps_wall >= 1.0:
            self.measured_fps = self._fps_count / (wall - self._fps_wall)
            self._fps_count = 0
            self._fps_wall = wall
            self._update_status()

    def _device_text(self) -> str:
        st = self.state
        info = self.runner.info
        if info is not None and info.live:
            text = f"{info.device}\n{info.live_rate_hz} Hz · {1000 * info.latency_s:.1f} ms in"
            if st.device_state in ("lost", "reopened"):
                text += f" · {st.device_state}"
            return text
        if st.source:
            rate = (info.device_rate_hz if info is not None else 0) or st.sample_rate_hz
            return f"{st.source} (replay)\n{rate} Hz"
        return "no input"

    def _update_status(self) -> None:
        st = self.state
        run = "running" if self.runner.running else (f"ended ({st.ended})" if st.ended else "idle")
        if self.runner.error:
            run = f"error: {self.runner.error}"
        text = f"{run} · {st.now_s:7.1f} s · display {self.measured_fps:4.1f} fps"
        if text != self._status_key:
            self._status_key = text
            self.status_text.setText(text)
        self.act_start.setText("■ Stop" if self.runner.running else "▶ Start")
        h = st.health
        dropped = self.runner.dropped
        if h is not None:
            self.health_text.setText(
                f"xruns {h.xruns} · overflows {h.overflows} · dropped (GUI) {dropped}"
            )

    def show_message(self, text: str) -> None:
        """Show ``text`` in the status bar for a few seconds (and log it)."""
        bar = self.statusBar()
        if bar is not None:
            bar.showMessage(text, 5000)
        log.info("%s", text)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the timer and the engine process, and save the settings (once)."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        self.runner.close()
        if self._save:
            save_settings(self.current_settings())

    def closeEvent(self, event: QtGui.QCloseEvent | None) -> None:
        self.shutdown()
        super().closeEvent(event)


def _bold(point_size: int) -> QtGui.QFont:
    f = QtGui.QFont()
    f.setPointSize(point_size)
    f.setBold(True)
    return f
