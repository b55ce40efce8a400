"""The side panels: beat flash and tempo, input level and device, tags, "sounds like" (nearest
reference tracks and the scene), controls, OSC targets.

Panels only display what they are given and emit Qt signals for user actions; the window wires
them to the engine. Labels are only re-set when their text changes (a tick costs nothing when
nothing changed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from onbeat.gui import theme
from onbeat.gui.settings import OscTarget
from onbeat.gui.state import DisplayState
from PyQt6 import QtCore, QtGui, QtWidgets

__all__ = [
    "BeatFlash",
    "BeatPanel",
    "ControlsPanel",
    "InputPanel",
    "LevelMeter",
    "MatchBar",
    "OscPanel",
    "SimilarPanel",
    "TagsPanel",
]


def _font(point_size: int, *, bold: bool = False) -> QtGui.QFont:
    f = QtGui.QFont()
    f.setPointSize(point_size)
    f.setBold(bold)
    return f


class _Label(QtWidgets.QLabel):
    """A label that skips ``setText`` when the text is unchanged."""

    def set(self, text: str) -> None:
        if text != self.text():
            self.setText(text)


# ---------------------------------------------------------------------- level meter
class LevelMeter(QtWidgets.QWidget):
    """Horizontal input meter: RMS bar, peak bar and a peak-hold tick, in dBFS."""

    FLOOR_DBFS = -60.0

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(28)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed
        )
        self.rms_dbfs = -120.0
        self.peak_dbfs = -120.0
        self.hold_dbfs = -120.0
        grad = QtGui.QLinearGradient(0, 0, 1, 0)
        grad.setCoordinateMode(QtGui.QGradient.CoordinateMode.ObjectBoundingMode)
        grad.setColorAt(0.0, QtGui.QColor("#1fbf75"))
        grad.setColorAt(0.75, QtGui.QColor("#d8e03a"))
        grad.setColorAt(1.0, QtGui.QColor("#ff4f4f"))
        self._brush = QtGui.QBrush(grad)
        self._back = QtGui.QColor(theme.PANEL)

    def _x(self, dbfs: float) -> float:
        f = (max(self.FLOOR_DBFS, min(0.0, dbfs)) - self.FLOOR_DBFS) / -self.FLOOR_DBFS
        return f * self.width()

    def set_levels(self, rms_dbfs: float, peak_dbfs: float, hold_dbfs: float) -> None:
        """Update the meter (repaints only when a level moved by 0.25 dB or more)."""
        new = (rms_dbfs, peak_dbfs, hold_dbfs)
        old = (self.rms_dbfs, self.peak_dbfs, self.hold_dbfs)
        if any(abs(a - b) >= 0.25 for a, b in zip(new, old, strict=True)):
            self.rms_dbfs, self.peak_dbfs, self.hold_dbfs = new
            self.update()

    def paintEvent(self, event: QtGui.QPaintEvent | None) -> None:
        p = QtGui.QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, self._back)
        p.setOpacity(0.45)
        p.fillRect(QtCore.QRectF(0, 0, self._x(self.peak_dbfs), h), self._brush)
        p.setOpacity(1.0)
        p.fillRect(QtCore.QRectF(0, h * 0.2, self._x(self.rms_dbfs), h * 0.6), self._brush)
        x = self._x(self.hold_dbfs)
        p.fillRect(QtCore.QRectF(x - 2, 0, 3, h), QtGui.QColor(theme.FOREGROUND))
        p.setPen(QtGui.QColor(theme.BACKGROUND))
        for db in (-48, -36, -24, -12, -6):
            xt = self._x(db)
            p.drawLine(QtCore.QPointF(xt, 0), QtCore.QPointF(xt, h * 0.2))
        p.end()


# ---------------------------------------------------------------------- beat panel
class BeatFlash(QtWidgets.QWidget):
    """The big beat light with the bar position: one cell per beat, the downbeat in its own colour.

    The cell of the current beat lights up on every beat and fades; on a downbeat the whole panel
    flashes in the downbeat colour.
    """

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumSize(260, 150)
        # paints every pixel itself: Qt need not repaint the panels behind it on each flash
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.level = 0.0
        self.position = 0
        self.downbeat = False
        self.beats_per_bar = 4
        self._key: tuple[int, int, int, bool, int] = (-1, 0, 0, False, 4)
        self._big = _font(54, bold=True)
        self._small = _font(20, bold=True)
        self._note = _font(14)

    def set_flash(self, level: float, position: int, downbeat: bool, beats_per_bar: int) -> None:
        """Update; repaints only when the visible state changed."""
        key = (round(level * 40), position, 0, downbeat, beats_per_bar)
        if key == self._key:
            return
        self._key = key
        self.level, self.position, self.downbeat = level, position, downbeat
        self.beats_per_bar = max(1, min(beats_per_bar, 16))
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent | None) -> None:
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        w, h = float(self.width()), float(self.height())
        p.fillRect(QtCore.QRectF(0, 0, w, h), QtGui.QColor(theme.BACKGROUND))
        base = QtGui.QColor(theme.PANEL)
        glow = QtGui.QColor(theme.DOWNBEAT if self.downbeat else theme.BEAT)
        whole = self.level * (0.85 if self.downbeat else 0.35)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        p.setBrush(_mix(base, glow, whole))
        p.drawRoundedRect(QtCore.QRectF(2, 2, w - 4, h - 4), 12, 12)
        n = self.beats_per_bar
        gap = 8.0
        cell_w = (w - 24 - gap * (n - 1)) / n
        cell_h = h * 0.42
        top = h - cell_h - 12
        p.setFont(self._small)
        for i in range(n):
            r = QtCore.QRectF(12 + i * (cell_w + gap), top, cell_w, cell_h)
            pos = i + 1
            color = QtGui.QColor(theme.DOWNBEAT if pos == 1 else theme.BEAT)
            lit = self.level if pos == self.position else 0.0
            p.setPen(QtCore.Qt.PenStyle.NoPen)
            p.setBrush(_mix(QtGui.QColor(theme.BACKGROUND), color, 0.18 + 0.82 * lit))
            p.drawRoundedRect(r, 8, 8)
            p.setPen(QtGui.QColor(theme.FOREGROUND if lit > 0.3 else theme.MUTED))
            p.drawText(r, QtCore.Qt.AlignmentFlag.AlignCenter, str(pos))
        head = QtCore.QRectF(0, 6, w, top - 6)
        if self.position > 0:
            p.setFont(self._big)
            p.setPen(QtGui.QColor(theme.FOREGROUND))
            p.drawText(head, QtCore.Qt.AlignmentFlag.AlignCenter, str(self.position))
        else:
            p.setFont(self._note)
            p.setPen(QtGui.QColor(theme.MUTED))
            p.drawText(head, QtCore.Qt.AlignmentFlag.AlignCenter, "waiting for beats")
        p.end()


def _mix(a: QtGui.QColor, b: QtGui.QColor, f: float) -> QtGui.QColor:
    f = max(0.0, min(1.0, f))
    return QtGui.QColor(
        round(a.red() + (b.red() - a.red()) * f),
        round(a.green() + (b.green() - a.green()) * f),
        round(a.blue() + (b.blue() - a.blue()) * f),
    )


class BeatPanel(QtWidgets.QWidget):
    """Beat flash, BPM, confidence and the locked/searching badge."""

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.flash = BeatFlash()
        layout.addWidget(self.flash, stretch=3)
        row = QtWidgets.QHBoxLayout()
        self.bpm = _Label("—")
        self.bpm.setFont(_font(64, bold=True))
        self.bpm.setAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        unit = QtWidgets.QLabel("BPM")
        unit.setObjectName("muted")
        unit.setFont(_font(18, bold=True))
        row.addWidget(self.bpm, stretch=1)
        row.addWidget(unit)
        layout.addLayout(row)
        row = QtWidgets.QHBoxLayout()
        self.lock = _Label("NO BEATS")
        self.lock.setFont(_font(14, bold=True))
        self.lock.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.lock.setMinimumWidth(130)
        self.confidence = QtWidgets.QProgressBar()
        self.confidence.setRange(0, 100)
        self.confidence.setFormat("confidence %p %")
        self.confidence.setTextVisible(True)
        row.addWidget(self.lock)
        row.addWidget(self.confidence, stretch=1)
        layout.addLayout(row)
        self._lock_key = ""
        self._set_lock("none")
        self._bpm_known = True

    def _set_lock(self, key: str) -> None:
        if key == self._lock_key:
            return
        self._lock_key = key
        text, color = {
            "none": ("NO BEATS", theme.MUTED),
            "locked": ("LOCKED", theme.LOCKED),
            "searching": ("SEARCHING", theme.UNLOCKED),
        }[key]
        self.lock.set(text)
        self.lock.setStyleSheet(
            f"color: {color}; border: 2px solid {color}; border-radius: 6px; padding: 4px;"
        )

    def show_state(self, state: DisplayState, wall_s: float) -> None:
        """Refresh from the display state."""
        bpm = state.bpm
        known = math.isfinite(bpm) and bpm > 0
        self.bpm.set(f"{bpm:.1f}" if known else "—")
        if known != self._bpm_known:
            self._bpm_known = known
            self.bpm.setStyleSheet("" if known else f"color: {theme.MUTED};")
        conf = round(100 * max(0.0, min(1.0, state.confidence)))
        if conf != self.confidence.value():
            self.confidence.setValue(conf)
        has = state.beats.count > 0 or state.tempo.count > 0
        self._set_lock("none" if not has else "locked" if state.locked else "searching")
        f = state.flash
        self.flash.set_flash(
            state.flash_level(wall_s), f.beat_in_bar, f.downbeat, state.beats_per_bar
        )


# ---------------------------------------------------------------------- input panel
class InputPanel(QtWidgets.QWidget):
    """Input level meter, the device in use and the device selector."""

    refresh_requested = QtCore.pyqtSignal()

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.meter = LevelMeter()
        layout.addWidget(self.meter)
        self.level = _Label("-inf dBFS")
        self.level.setObjectName("muted")
        layout.addWidget(self.level)
        self.device = _Label("no input")
        self.device.setWordWrap(True)
        self.device.setFont(_font(13, bold=True))
        layout.addWidget(self.device)
        row = QtWidgets.QHBoxLayout()
        self.devices = QtWidgets.QComboBox()
        self.devices.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.devices.setMinimumContentsLength(14)
        refresh = QtWidgets.QPushButton("↻")
        refresh.setToolTip("re-scan the input devices")
        refresh.clicked.connect(self.refresh_requested)
        row.addWidget(self.devices, stretch=1)
        row.addWidget(refresh)
        layout.addLayout(row)
        layout.addStretch(1)

    def set_devices(self, names: Sequence[str], current: str) -> None:
        """Fill the selector (first entry: the system default)."""
        self.devices.blockSignals(True)
        self.devices.clear()
        self.devices.addItem("default input", "")
        for name in names:
            self.devices.addItem(name, name)
        if not names:
            self.devices.addItem("(no input devices found)", None)
            model = self.devices.model()
            item = model.item(1) if isinstance(model, QtGui.QStandardItemModel) else None
            if item is not None:
                item.setEnabled(False)
        i = self.devices.findData(current)
        self.devices.setCurrentIndex(max(0, i))
        self.devices.blockSignals(False)

    def selected_device(self) -> str:
        """The selected device name ("" for the default)."""
        data = self.devices.currentData()
        return data if isinstance(data, str) else ""

    def show_state(self, state: DisplayState, device_text: str) -> None:
        """Refresh the meter and the device line."""
        self.meter.set_levels(state.rms_dbfs, state.peak_dbfs, state.peak_hold_dbfs)
        self.level.set(
            f"RMS {state.rms_dbfs:6.1f} dBFS   peak {state.peak_dbfs:6.1f} dBFS"
            if state.rms_dbfs > -119
            else "silence"
        )
        self.device.set(device_text)


# ---------------------------------------------------------------------- tags
class TagsPanel(QtWidgets.QWidget):
    """Genre and mood bars, voice and energy, and the valence/arousal point with its trail."""

    GENRES = 6

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.canvas = pg.GraphicsLayoutWidget()
        layout.addWidget(self.canvas)
        self.waiting = QtWidgets.QLabel("waiting for tags (the genre/mood model is not running)")
        self.waiting.setObjectName("muted")
        self.waiting.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.waiting)

        self.genre_plot = self.canvas.addPlot(row=0, col=0, title="genre")
        self.mood_plot = self.canvas.addPlot(row=0, col=1, title="mood")
        self.va_plot = self.canvas.addPlot(row=0, col=2, title="valence / arousal")
        for p in (self.genre_plot, self.mood_plot):
            theme.style_plot(p)
            p.setXRange(0, 1, padding=0.02)
            p.showGrid(x=True, y=False, alpha=0.15)
            p.getAxis("bottom").setTicks([[(0.0, "0"), (0.5, ".5"), (1.0, "1")], []])
            p.invertY(True)
        theme.style_plot(self.va_plot)
        grid = self.canvas.ci.layout
        grid.setColumnStretchFactor(0, 3)
        grid.setColumnStretchFactor(1, 3)
        grid.setColumnStretchFactor(2, 2)
        self.genre_plot.setYRange(-0.5, self.GENRES - 0.5, padding=0.0)
        self.mood_plot.setYRange(-0.5, 5.5, padding=0.0)
        self.genre_bars = pg.BarGraphItem(
            x0=np.zeros(self.GENRES),
            y=np.arange(self.GENRES),
            height=0.7,
            width=np.zeros(self.GENRES),
            brush=theme.ACCENT,
            pen=None,
        )
        self.genre_plot.addItem(self.genre_bars)
        colors = ["#3ddc84", "#ff9f43", "#5d8bff", "#b388ff", "#f2f2f2", "#ffd166"]
        self.mood_bars = pg.BarGraphItem(
            x0=np.zeros(6),
            y=np.arange(6),
            height=0.7,
            width=np.zeros(6),
            brushes=[pg.mkBrush(c) for c in colors],
            pen=None,
        )
        self.mood_plot.addItem(self.mood_bars)
        self.va_plot.setRange(xRange=(-1, 1), yRange=(-1, 1), padding=0.05)
        self.va_plot.setLabel("bottom", "valence", color=theme.MUTED)
        self.va_plot.setLabel("left", "arousal", color=theme.MUTED)
        self.va_plot.setAspectLocked(True)
        for pos, angle in ((0.0, 0), (0.0, 90)):
            self.va_plot.addItem(
                pg.InfiniteLine(pos, angle=angle, pen=pg.mkPen(theme.MUTED, width=1))
            )
        self.trail = pg.PlotCurveItem(pen=pg.mkPen(theme.ACCENT, width=1.5))
        self.point = pg.ScatterPlotItem(size=22, brush=pg.mkBrush(theme.DOWNBEAT), pen="w")
        self.va_plot.addItem(self.trail)
        self.va_plot.addItem(self.point)
        for text, x, y in (
            ("happy", 0.6, 0.9),
            ("angry", -0.6, 0.9),
            ("sad", -0.6, -0.9),
            ("calm", 0.6, -0.9),
        ):
            label = pg.TextItem(text, color=theme.MUTED, anchor=(0.5, 0.5))
            label.setPos(x, y)
            self.va_plot.addItem(label)
        self._version = -1
        self._trail_x = np.zeros(64)
        self._trail_y = np.zeros(64)
        self.canvas.setVisible(False)

    def show_state(self, state: DisplayState) -> None:
        """Redraw when new tags arrived."""
        if state.tags_version == self._version:
            return
        self._version = state.tags_version
        has = state.tags_version > 0
        self.canvas.setVisible(has)
        self.waiting.setVisible(not has)
        if not has:
            return
        genre = list(state.genre[: self.GENRES])
        widths = np.zeros(self.GENRES)
        for i, (_, p) in enumerate(genre):
            widths[i] = p
        self.genre_bars.setOpts(width=widths)
        self.genre_plot.getAxis("left").setTicks([[(i, g) for i, (g, _) in enumerate(genre)], []])
        mood = list(state.mood[:4])
        values = [p for _, p in mood]
        names = [m for m, _ in mood]
        values += [state.voice if math.isfinite(state.voice) else 0.0]
        values += [state.energy if math.isfinite(state.energy) else 0.0]
        names += ["voice", "energy"]
        mw = np.zeros(6)
        mw[: len(values)] = values
        self.mood_bars.setOpts(width=mw)
        self.mood_plot.getAxis("left").setTicks([list(enumerate(names)), []])
        ring = state.va_trail
        n = min(ring.count, ring.capacity)
        idx = np.arange(ring.count - n, ring.count) % ring.capacity
        self._trail_x[:n] = ring.columns["valence"][idx]
        self._trail_y[:n] = ring.columns["arousal"][idx]
        self.trail.setData(self._trail_x[:n], self._trail_y[:n])
        if math.isfinite(state.valence) and math.isfinite(state.arousal):
            self.point.setData([state.valence], [state.arousal])


# ---------------------------------------------------------------------- sounds like
class MatchBar(QtWidgets.QWidget):
    """One reference track: its rank, its title (elided) and its distance, over a bar.

    The bar fills with closeness, ``1 - distance`` clipped to [0, 1] (cosine distance 0 is the
    same sound, 1 unrelated), so the nearest track has the longest bar.

    Parameters
    ----------
    rank : int
        1 for the nearest track.
    point_size : int
        Font size of the title.
    """

    def __init__(self, rank: int, point_size: int = 15) -> None:
        super().__init__()
        self.rank = rank
        self.title = ""
        self.distance = math.nan
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setMinimumHeight(point_size * 2 + 6)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred
        )
        self._title_font = _font(point_size, bold=True)
        self._small_font = _font(max(9, point_size - 3), bold=True)
        self._back = QtGui.QColor(theme.BACKGROUND)
        self._panel = QtGui.QColor(theme.PANEL)
        self._fill = _mix(self._panel, QtGui.QColor(theme.ACCENT), 0.75 if rank == 1 else 0.45)
        self._key: tuple[str, float] = ("", math.nan)

    @property
    def fill(self) -> float:
        """The bar's length as a fraction of the row: ``1 - distance`` in [0, 1] (0: no track)."""
        d = self.distance
        return max(0.0, min(1.0, 1.0 - d)) if math.isfinite(d) else 0.0

    def set_match(self, title: str, distance: float) -> None:
        """Show a track; repaints only when the title or the rounded distance changed."""
        key = (title, round(distance, 3))
        if key == self._key:
            return
        self._key = key
        self.title, self.distance = title, distance
        self.setToolTip(f"{title}\ncosine distance {distance:.4f}")
        self.update()

    def paintEvent(self, event: QtGui.QPaintEvent | None) -> None:
        p = QtGui.QPainter(self)
        p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        w, h = float(self.width()), float(self.height())
        p.fillRect(QtCore.QRectF(0, 0, w, h), self._back)
        p.setPen(QtCore.Qt.PenStyle.NoPen)
        box = QtCore.QRectF(0, 2, w, h - 4)
        p.setBrush(self._panel)
        p.drawRoundedRect(box, 6, 6)
        if self.fill > 0:
            p.setBrush(self._fill)
            p.drawRoundedRect(QtCore.QRectF(0, 2, max(12.0, self.fill * w), h - 4), 6, 6)
        p.setFont(self._small_font)
        p.setPen(QtGui.QColor(theme.MUTED if self.rank > 1 else theme.FOREGROUND))
        rank_box = QtCore.QRectF(8, 2, 24, h - 4)
        p.drawText(rank_box, QtCore.Qt.AlignmentFlag.AlignVCenter, str(self.rank))
        dist = f"{self.distance:.2f}" if math.isfinite(self.distance) else ""
        metrics = QtGui.QFontMetrics(self._small_font)
        dist_w = metrics.horizontalAdvance("0.00") + 12
        p.drawText(
            QtCore.QRectF(w - dist_w - 4, 2, dist_w, h - 4),
            QtCore.Qt.AlignmentFlag.AlignVCenter | QtCore.Qt.AlignmentFlag.AlignRight,
            dist,
        )
        p.setFont(self._title_font)
        p.setPen(QtGui.QColor(theme.FOREGROUND))
        room = max(0, round(w - 36 - dist_w - 8))
        title = QtGui.QFontMetrics(self._title_font).elidedText(
            self.title, QtCore.Qt.TextElideMode.ElideRight, room
        )
        p.drawText(QtCore.QRectF(36, 2, room, h - 4), QtCore.Qt.AlignmentFlag.AlignVCenter, title)
        p.end()


class SimilarPanel(QtWidgets.QWidget):
    """The "sounds like" panel: the nearest reference tracks with distance bars, and the scene.

    Shows a hint on how to build a reference library until the first ``similar`` event.
    """

    ROWS = 5
    HINT = "no reference library: onbeat library add DIR"
    SCENE_HIGHLIGHT_S = 4.0
    """Stream seconds for which a new scene is shown in the downbeat colour."""

    def __init__(self) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        self.body = QtWidgets.QWidget()
        body = QtWidgets.QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(3)
        row = QtWidgets.QHBoxLayout()
        caption = QtWidgets.QLabel("SCENE")
        caption.setObjectName("muted")
        caption.setFont(_font(12, bold=True))
        self.scene = _Label("—")
        self.scene.setFont(_font(26, bold=True))
        self.scene.setMinimumWidth(60)
        self.since = _Label("")
        self.since.setObjectName("muted")
        self.since.setAlignment(
            QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter
        )
        row.addWidget(caption)
        row.addWidget(self.scene, stretch=1)
        row.addWidget(self.since)
        body.addLayout(row)
        self.rows = [MatchBar(i + 1, 17 if i == 0 else 13) for i in range(self.ROWS)]
        for r in self.rows:
            body.addWidget(r, stretch=2 if r.rank == 1 else 1)
            r.setVisible(False)
        body.addStretch(0)
        layout.addWidget(self.body)
        self.hint = QtWidgets.QLabel(self.HINT.replace(": ", ":\n", 1))
        self.hint.setObjectName("muted")
        self.hint.setFont(_font(14))
        self.hint.setWordWrap(True)
        self.hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.hint.setToolTip(
            "index reference tracks with `onbeat library add DIR [--scene NAME]`, then restart "
            "the stream: the nearest ones and the scene appear here"
        )
        layout.addWidget(self.hint, stretch=1)
        self.body.setVisible(False)
        self._key: tuple[int, bool] = (-1, False)
        self._scene_style = ""
        self._shown = 0

    def shown(self) -> list[tuple[str, float]]:
        """The ``(title, distance)`` of the visible rows, nearest first."""
        return [(r.title, r.distance) for r in self.rows[: self._shown]]

    def show_state(self, state: DisplayState) -> None:
        """Redraw when a new ``similar`` event arrived or the scene highlight ended."""
        fresh = math.isfinite(state.scene_since_s) and (
            state.now_s - state.scene_since_s < self.SCENE_HIGHLIGHT_S
        )
        key = (state.similar_version, fresh)
        if key == self._key:
            return
        self._key = key
        has = state.similar_version > 0
        self.body.setVisible(has)
        self.hint.setVisible(not has)
        if not has:
            return
        nearest = state.nearest[: self.ROWS]
        for r, (title, distance) in zip(self.rows, nearest, strict=False):
            r.set_match(title, distance)
        n = len(nearest)
        if n != self._shown:
            for i, r in enumerate(self.rows):
                r.setVisible(i < n)
            self._shown = n
        if state.scene:
            self.scene.set(state.scene)
            t = state.scene_since_s
            self.since.set(f"since {int(t // 60)}:{int(t % 60):02d}" if math.isfinite(t) else "")
            color = theme.DOWNBEAT if fresh else theme.ACCENT
        else:
            self.scene.set("—")
            self.since.set("no scene yet")
            color = theme.MUTED
        style = f"color: {color};"
        if style != self._scene_style:
            self._scene_style = style
            self.scene.setStyleSheet(style)


# ---------------------------------------------------------------------- controls
class ControlsPanel(QtWidgets.QWidget):
    """Tracker controls; each button emits ``command(kind, args)``.

    Keyboard: Space tap, ←/→ nudge, R resync, D double, H halve, F freeze.
    """

    command = QtCore.pyqtSignal(str, tuple)

    def __init__(self, nudge_ms: float) -> None:
        super().__init__()
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(8, 8, 8, 8)
        grid.setSpacing(8)
        big = _font(15, bold=True)

        def button(text: str, tip: str, key: str | None = None) -> QtWidgets.QPushButton:
            b = QtWidgets.QPushButton(text)
            b.setFont(big)
            b.setMinimumHeight(44)
            b.setToolTip(tip + (f"  [{key}]" if key else ""))
            if key:
                b.setShortcut(QtGui.QKeySequence(key))
            return b

        self.tap = button("TAP", "tap tempo", "Space")
        self.nudge_back = button("◀ nudge", "shift the beat earlier", "Left")
        self.nudge_fwd = button("nudge ▶", "shift the beat later", "Right")
        self.resync = button("RESYNC", "the current moment is beat 1", "R")
        self.double = button("×2", "double the tempo", "D")
        self.halve = button("÷2", "halve the tempo", "H")
        self.freeze = button("FREEZE", "hold the current tempo", "F")
        self.freeze.setCheckable(True)
        self.nudge_ms = QtWidgets.QDoubleSpinBox()
        self.nudge_ms.setRange(0.1, 200.0)
        self.nudge_ms.setDecimals(1)
        self.nudge_ms.setSuffix(" ms")
        self.nudge_ms.setValue(nudge_ms)
        self.nudge_ms.setToolTip("beat phase shift of one nudge")
        grid.addWidget(self.tap, 0, 0, 1, 3)
        grid.addWidget(self.nudge_back, 1, 0)
        grid.addWidget(self.nudge_ms, 1, 1)
        grid.addWidget(self.nudge_fwd, 1, 2)
        grid.addWidget(self.resync, 2, 0)
        grid.addWidget(self.double, 2, 1)
        grid.addWidget(self.halve, 2, 2)
        grid.addWidget(self.freeze, 3, 0, 1, 3)
        self.feedback = _Label("")
        self.feedback.setObjectName("muted")
        self.feedback.setWordWrap(True)
        grid.addWidget(self.feedback, 4, 0, 1, 3)
        grid.setRowStretch(5, 1)

        self.tap.clicked.connect(lambda: self.command.emit("tap", ()))
        self.nudge_back.clicked.connect(
            lambda: self.command.emit("nudge", (-self.nudge_ms.value(),))
        )
        self.nudge_fwd.clicked.connect(lambda: self.command.emit("nudge", (self.nudge_ms.value(),)))
        self.resync.clicked.connect(lambda: self.command.emit("resync", ()))
        self.double.clicked.connect(lambda: self.command.emit("double", ()))
        self.halve.clicked.connect(lambda: self.command.emit("halve", ()))
        self.freeze.toggled.connect(lambda on: self.command.emit("freeze", (1.0 if on else 0.0,)))


# ---------------------------------------------------------------------- OSC targets
class OscPanel(QtWidgets.QWidget):
    """Editable OSC target list (host, port, output latency, on/off)."""

    changed = QtCore.pyqtSignal()

    HEADERS = ("host", "port", "latency ms", "on")

    def __init__(self, targets: Sequence[OscTarget]) -> None:
        super().__init__()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.table = QtWidgets.QTableWidget(0, len(self.HEADERS))
        self.table.setHorizontalHeaderLabels(list(self.HEADERS))
        header = self.table.horizontalHeader()
        if header is not None:
            header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
            for c in (1, 2, 3):
                header.setSectionResizeMode(c, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        vheader = self.table.verticalHeader()
        if vheader is not None:
            vheader.setVisible(False)
        layout.addWidget(self.table)
        row = QtWidgets.QHBoxLayout()
        add = QtWidgets.QPushButton("+ target")
        remove = QtWidgets.QPushButton("− remove")
        row.addWidget(add)
        row.addWidget(remove)
        row.addStretch(1)
        self.note = _Label("")
        self.note.setObjectName("muted")
        row.addWidget(self.note)
        layout.addLayout(row)
        add.clicked.connect(lambda: self._add(OscTarget()))
        remove.clicked.connect(self._remove)
        for t in targets:
            self._add(t, emit=False)
        self.table.itemChanged.connect(self._edited)

    def _add(self, t: OscTarget, *, emit: bool = True) -> None:
        self.table.blockSignals(True)
        r = self.table.rowCount()
        self.table.insertRow(r)
        self.table.setItem(r, 0, QtWidgets.QTableWidgetItem(t.host))
        self.table.setItem(r, 1, QtWidgets.QTableWidgetItem(str(t.port)))
        self.table.setItem(r, 2, QtWidgets.QTableWidgetItem(f"{t.latency_ms:g}"))
        on = QtWidgets.QTableWidgetItem()
        on.setFlags(
            QtCore.Qt.ItemFlag.ItemIsUserCheckable
            | QtCore.Qt.ItemFlag.ItemIsEnabled
            | QtCore.Qt.ItemFlag.ItemIsSelectable
        )
        on.setCheckState(
            QtCore.Qt.CheckState.Checked if t.enabled else QtCore.Qt.CheckState.Unchecked
        )
        self.table.setItem(r, 3, on)
        self.table.blockSignals(False)
        if emit:
            self.changed.emit()

    def _remove(self) -> None:
        rows = sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True)
        if not rows and self.table.rowCount():
            rows = [self.table.rowCount() - 1]
        for r in rows:
            self.table.removeRow(r)
        self.changed.emit()

    def _edited(self, item: Any) -> None:
        self.targets()  # validates and shows the first problem
        self.changed.emit()

    def targets(self) -> tuple[OscTarget, ...]:
        """The valid rows as targets (invalid rows are reported in the note and skipped)."""
        out = []
        problems = []
        for r in range(self.table.rowCount()):
            cells = [self.table.item(r, c) for c in range(4)]
            try:
                host = cells[0].text() if cells[0] else ""
                port = int(cells[1].text()) if cells[1] else 0
                latency = float(cells[2].text()) if cells[2] else 0.0
                on = cells[3] is not None and (
                    cells[3].checkState() == QtCore.Qt.CheckState.Checked
                )
                out.append(OscTarget(host=host, port=port, latency_ms=latency, enabled=on))
            except ValueError as exc:
                problems.append(f"row {r + 1}: {exc}")
        self.note.set(problems[0] if problems else f"{len(out)} target(s)")
        return tuple(out)
