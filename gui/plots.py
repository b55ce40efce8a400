"""The scrolling plots: waveform, spectrogram, activations with onsets and beats, tempo history.

Every plot item is created once in ``__init__``; the timer only calls ``setData``/``setImage``
with preallocated arrays. The x axis is time relative to the playhead (0 = the newest analysed
frame): the past scrolls left, predicted beats sit on the right.

The waveform is peak-decimated here, into a fixed number of min/max bins computed straight from
the ring buffer's read-only view (pyqtgraph's own peak downsampling would first need the whole
window as a new array every frame). The activation curves are short (one point per frame) and
use pyqtgraph's peak downsampling and clip-to-view.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from onbeat.gui import theme
from onbeat.gui.state import DisplayState
from onbeat.realtime.views import FrameViews, SharedViewsReader, ViewLayout
from PyQt6 import QtCore, QtGui, QtWidgets

__all__ = ["ScrollingPlots", "TempoPlot"]

_WAVE_BINS = 1500
_MAX_MARKS = 128
_MAX_ONSETS = 512


class BeatLines(pg.GraphicsObject):
    """Vertical beat lines on one plot: past beats, past downbeats and predicted beats.

    One item paints every line with three ``drawLines`` calls. (A ``PlotCurveItem`` per kind of
    line cost four times the CPU: each ``setData`` recomputes bounds and rebuilds paths.) The
    item spans the plot's whole x range, so its bounding rectangle never changes.

    Parameters
    ----------
    y0, y1 : float
        Vertical extent of the lines, in data coordinates.
    x0, x1 : float
        Horizontal extent of the plot, in data coordinates.
    """

    def __init__(self, y0: float, y1: float, x0: float, x1: float) -> None:
        super().__init__()
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.pens = (
            pg.mkPen(theme.BEAT, width=2),
            pg.mkPen(theme.DOWNBEAT, width=3),
            pg.mkPen(theme.PREDICTED, width=1),
            pg.mkPen(theme.DOWNBEAT, width=1),
        )
        self._times = [np.zeros(_MAX_MARKS) for _ in self.pens]
        self._counts = [0, 0, 0, 0]
        self.setZValue(5)

    def set_extent(self, y0: float, y1: float, x0: float, x1: float) -> None:
        """Change the extent (the plot's range changed)."""
        self.prepareGeometryChange()
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1
        self.update()

    def set_times(self, *times: npt.NDArray[np.float64]) -> None:
        """Beats, downbeats, predicted beats and predicted downbeats (x in data coordinates)."""
        changed = False
        for k, t in enumerate(times):
            n = min(t.shape[0], _MAX_MARKS)
            buf = self._times[k]
            if n != self._counts[k] or not np.array_equal(buf[:n], t[:n]):
                buf[:n] = t[:n]
                self._counts[k] = n
                changed = True
        if changed:
            self.update()

    def times(self, kind: int) -> npt.NDArray[np.float64]:
        """The x positions of one kind of line (0 beats, 1 downbeats, 2 and 3 predicted)."""
        return self._times[kind][: self._counts[kind]]

    def boundingRect(self) -> QtCore.QRectF:
        return QtCore.QRectF(self.x0, self.y0, self.x1 - self.x0, self.y1 - self.y0)

    def paint(self, painter: Any, *args: Any) -> None:
        y0, y1 = self.y0, self.y1
        for pen, buf, n in zip(self.pens, self._times, self._counts, strict=True):
            if n:
                painter.setPen(pen)
                painter.drawLines([QtCore.QLineF(float(x), y0, float(x), y1) for x in buf[:n]])


class SpectrogramItem(pg.GraphicsObject):
    """A scrolling spectrogram drawn from one preallocated 32-bit image.

    Each update maps the new frames through a 256-entry colour table straight into the pixels of
    a ``QImage`` that shares the array's memory (``Format_RGB32``, the raster engine's native
    format). Nothing is allocated per frame, and drawing is one scaled ``drawImage``. (pyqtgraph's
    ``ImageItem`` builds a new RGB image and converts it on every frame.)

    Parameters
    ----------
    colormap : pyqtgraph.ColorMap
        Colours from silence to the loudest level.
    """

    def __init__(self, colormap: Any) -> None:
        super().__init__()
        lut = colormap.getLookupTable(nPts=256, alpha=False).astype(np.uint32)
        self._lut = (0xFF000000 | (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]).astype(
            np.uint32
        )
        self._rect = QtCore.QRectF()
        self.configure(1, 1)

    def configure(self, bands: int, frames: int) -> None:
        """Allocate the image for ``bands`` x ``frames`` (a new stream or window length)."""
        self.pixels = np.zeros((bands, frames), dtype=np.uint32)
        self.pixels.fill(self._lut[0])
        self._scaled = np.zeros((frames, bands), dtype=np.float32)
        self._index = np.zeros((frames, bands), dtype=np.uint8)
        self._image = pg.functions.ndarray_to_qimage(self.pixels, QtGui.QImage.Format.Format_RGB32)
        self.update()

    def set_frames(
        self, spectrum: npt.NDArray[np.float32], level: float, rect: QtCore.QRectF
    ) -> None:
        """Show ``spectrum`` (frames x bands, oldest first) scaled to ``[0, level]`` in ``rect``."""
        np.multiply(spectrum, 255.0 / level, out=self._scaled)
        np.clip(self._scaled, 0.0, 255.0, out=self._scaled)
        np.copyto(self._index, self._scaled, casting="unsafe")
        np.take(self._lut, self._index.T, out=self.pixels)  # row r of the image = band r
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = QtCore.QRectF(rect)
        self.update()

    def clear(self) -> None:
        """Show silence."""
        self.pixels.fill(self._lut[0])
        self.update()

    def boundingRect(self) -> QtCore.QRectF:
        return self._rect

    def paint(self, painter: Any, *args: Any) -> None:
        if not self._rect.isEmpty():
            painter.drawImage(self._rect, self._image)


class TimeGrid(pg.GraphicsObject):
    """Static vertical lines every second (and a zero line): a grid that costs a few ``drawLine``s.

    Parameters
    ----------
    y0, y1 : float
        Vertical extent in data coordinates.
    x0, x1 : float
        Horizontal extent: lines are drawn at the whole seconds in between.
    """

    def __init__(self, y0: float, y1: float, x0: float, x1: float, *, zero: bool = False) -> None:
        super().__init__()
        self._pen = pg.mkPen(theme.GRID, width=1)
        self._zero = zero
        self.setZValue(-10)
        self.set_extent(y0, y1, x0, x1)

    def set_extent(self, y0: float, y1: float, x0: float, x1: float) -> None:
        """Change the extent."""
        self.prepareGeometryChange()
        self._rect = QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)
        lines = [
            QtCore.QLineF(float(x), y0, float(x), y1)
            for x in range(math.ceil(x0), math.floor(x1) + 1)
            if x != 0
        ]
        if self._zero:
            lines.append(QtCore.QLineF(x0, 0.0, x1, 0.0))
        self._lines = lines
        self.update()

    def boundingRect(self) -> QtCore.QRectF:
        return self._rect

    def paint(self, painter: Any, *args: Any) -> None:
        painter.setPen(self._pen)
        painter.drawLines(self._lines)


class ScrollingPlots(QtWidgets.QWidget):
    """Waveform, spectrogram and activation plots sharing one time axis.

    Parameters
    ----------
    window_s : float
        Seconds of history.
    lookahead_s : float
        Seconds shown ahead of the playhead.
    """

    def __init__(self, window_s: float, lookahead_s: float) -> None:
        super().__init__()
        self.window_s = float(window_s)
        self.lookahead_s = float(lookahead_s)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.canvas = pg.GraphicsLayoutWidget()
        theme.make_opaque(self.canvas)
        self.canvas.ci.setSpacing(4)
        layout.addWidget(self.canvas)

        # -- waveform
        self.wave_plot = self.canvas.addPlot(row=0, col=0)
        theme.style_plot(self.wave_plot, left="wave", grid=False)
        self.wave_plot.setYRange(-1.0, 1.0, padding=0.02)
        self.wave_plot.hideAxis("bottom")
        self.wave = pg.PlotCurveItem(pen=pg.mkPen(theme.WAVEFORM, width=1), skipFiniteCheck=True)
        self.wave_plot.addItem(self.wave)
        self._wave_y = np.zeros(4 * _WAVE_BINS, dtype=np.float32)  # mirrored (min, max) pairs
        self._wave_done = 0  # bins decimated so far (absolute)
        self._wave_x = np.zeros(2 * _WAVE_BINS)
        self._wave_base = np.zeros(2 * _WAVE_BINS)
        self._wave_lo = np.zeros(_WAVE_BINS, dtype=np.float32)
        self._wave_hi = np.zeros(_WAVE_BINS, dtype=np.float32)
        self._wave_key: tuple[int, int, int, int] = (0, 0, 0, 0)

        # -- spectrogram
        self.spec_plot = self.canvas.addPlot(row=1, col=0)
        theme.style_plot(self.spec_plot, left="Hz", grid=False)
        self.spec_plot.hideAxis("bottom")
        self.spectrogram = SpectrogramItem(pg.colormap.get("inferno"))
        self.spec_plot.addItem(self.spectrogram)
        self._spec: npt.NDArray[np.float32] = np.zeros((1, 1), dtype=np.float32)
        self._spec_level = 1.0
        self._layout: ViewLayout | None = None
        self._generation = -1

        # -- activations
        self.act_plot = self.canvas.addPlot(row=2, col=0)
        theme.style_plot(self.act_plot, left="activation", bottom="seconds (0 = now)", grid=False)
        self.act_plot.setYRange(0.0, 1.15, padding=0.0)
        self.onset_curve = pg.PlotDataItem(
            pen=pg.mkPen(theme.ONSET, width=2), name="onset", skipFiniteCheck=True
        )
        self.beat_curve = pg.PlotDataItem(
            pen=pg.mkPen(theme.BEAT_ACTIVATION, width=1), name="beat", skipFiniteCheck=True
        )
        legend = self.act_plot.addLegend(offset=(-10, 4), labelTextColor=theme.MUTED)
        for c in (self.beat_curve, self.onset_curve):  # the onset curve on top
            c.setDownsampling(auto=True, method="peak")
            c.setClipToView(True)
            self.act_plot.addItem(c)
        legend.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
        # Onsets: short thick ticks along the top (segments, far cheaper than scatter symbols).
        self.onset_marks = pg.PlotCurveItem(
            pen=pg.mkPen(theme.ONSET, width=4), connect="pairs", skipFiniteCheck=True
        )
        self.onset_marks.setZValue(6)
        self.act_plot.addItem(self.onset_marks)
        self._onset_x = np.zeros(2 * _MAX_ONSETS)
        self._onset_y = np.zeros(2 * _MAX_ONSETS)
        self._onset_y[0::2] = 1.03
        self._onset_y[1::2] = 1.15
        self._onset_t = np.zeros(_MAX_ONSETS)
        self._frames_x = np.zeros(1)
        self._onset = np.zeros(1, dtype=np.float32)
        self._beat = np.zeros(1, dtype=np.float32)
        self._onset_norm = np.zeros(1, dtype=np.float32)
        self._onset_peak = 1e-6
        self.onset_count = 0  # onset markers shown (for tests)

        self.marks = [
            BeatLines(-1.0, 1.0, -self.window_s, self.lookahead_s),
            BeatLines(0.0, 1.0, -self.window_s, self.lookahead_s),
            BeatLines(0.0, 1.15, -self.window_s, self.lookahead_s),
        ]
        self.grids = [
            TimeGrid(-1.0, 1.0, -self.window_s, self.lookahead_s, zero=True),
            TimeGrid(0.0, 1.0, -self.window_s, self.lookahead_s),
            TimeGrid(0.0, 1.15, -self.window_s, self.lookahead_s),
        ]
        plots = (self.wave_plot, self.spec_plot, self.act_plot)
        for plot, m, g in zip(plots, self.marks, self.grids, strict=True):
            plot.addItem(m)
            plot.addItem(g)
        self._pred = np.zeros(64)
        for p in (self.wave_plot, self.spec_plot, self.act_plot):
            line = pg.InfiniteLine(0.0, angle=90, pen=pg.mkPen(theme.FOREGROUND, width=1.5))
            line.setZValue(10)
            p.addItem(line)
            if p is not self.wave_plot:
                p.setXLink(self.wave_plot)
        self.set_window(self.window_s, self.lookahead_s)
        self.canvas.ci.layout.setRowStretchFactor(0, 2)
        self.canvas.ci.layout.setRowStretchFactor(1, 3)
        self.canvas.ci.layout.setRowStretchFactor(2, 2)

    # ------------------------------------------------------------------ configuration
    def set_window(self, window_s: float, lookahead_s: float) -> None:
        """Change the time span shown."""
        self.window_s, self.lookahead_s = float(window_s), float(lookahead_s)
        self.wave_plot.setXRange(-self.window_s, self.lookahead_s, padding=0.0)
        for m in getattr(self, "marks", ()):
            m.set_extent(m.y0, m.y1, -self.window_s, self.lookahead_s)
        for g in getattr(self, "grids", ()):
            r = g.boundingRect()
            g.set_extent(r.top(), r.bottom(), -self.window_s, self.lookahead_s)
        self._generation = -1  # re-size the frame buffers on the next update
        self._wave_key = (0, 0, 0, 0)

    def _configure(self, views: FrameViews | SharedViewsReader, lay: ViewLayout) -> None:
        """Allocate the per-stream buffers (a new stream, or a new window length)."""
        n = min(views.max_frames, max(2, math.ceil(self.window_s * lay.frame_rate_hz)))
        self._spec = np.zeros((n, lay.bands), dtype=np.float32)
        self.spectrogram.configure(lay.bands, n)
        self._onset = np.zeros(n, dtype=np.float32)
        self._beat = np.zeros(n, dtype=np.float32)
        self._onset_norm = np.zeros(n, dtype=np.float32)
        hop_s = 1.0 / lay.frame_rate_hz
        self._frames_x = (np.arange(n) - (n - 1)) * hop_s
        self._frames_xs = np.zeros(n)
        self._spec_level = 1.0
        self._onset_peak = 1e-6
        self._layout = lay
        self.beat_curve.setVisible(lay.has_beats)
        self.marks[1].set_extent(0.0, float(lay.bands), -self.window_s, self.lookahead_s)
        self.grids[1].set_extent(0.0, float(lay.bands), -self.window_s, self.lookahead_s)
        self.spec_plot.setYRange(0, lay.bands, padding=0.0)
        ticks = []
        for f in (100, 200, 500, 1000, 2000, 5000, 10000):
            if lay.center_hz[0] <= f <= lay.center_hz[-1]:
                pos = float(np.interp(np.log(f), np.log(lay.center_hz), np.arange(lay.bands)))
                ticks.append((pos + 0.5, f"{f // 1000}k" if f >= 1000 else str(f)))
        self.spec_plot.getAxis("left").setTicks([ticks, []])

    # ------------------------------------------------------------------ per tick
    def update_frames(self, views: FrameViews | SharedViewsReader, now_s: float) -> None:
        """Spectrogram and activation curves from the frame views."""
        lay = views.layout
        if lay is None:
            return
        if views.generation != self._generation or lay is not self._layout:
            self._configure(views, lay)
            self._generation = views.generation
        have, newest_s = views.copy_latest(
            self._spec, self._onset, self._beat if lay.has_beats else None
        )
        if have == 0:
            return
        n = self._spec.shape[0]
        hop_s = 1.0 / lay.frame_rate_hz
        offset = newest_s - now_s
        # spectrogram: frame k covers [t_k - hop, t_k]
        x0 = offset - n * hop_s
        self._spec_level = max(0.97 * self._spec_level, float(self._spec.max()), 0.05)
        self.spectrogram.set_frames(
            self._spec, self._spec_level, QtCore.QRectF(x0, 0.0, n * hop_s, float(lay.bands))
        )
        # activations: onset normalised by a decaying running peak, beat as is (a probability)
        np.add(self._frames_x, offset, out=self._frames_xs)
        peak = float(self._onset.max())
        self._onset_peak = max(0.995 * self._onset_peak, peak, 1e-6)
        np.multiply(self._onset, 1.0 / self._onset_peak, out=self._onset_norm)
        self.onset_curve.setData(self._frames_xs[n - have :], self._onset_norm[n - have :])
        if lay.has_beats:
            self.beat_curve.setData(self._frames_xs[n - have :], self._beat[n - have :])

    def update_wave(self, ring: Any, rate_hz: int, now_s: float, lag_s: float) -> None:
        """Peak-decimated waveform of the newest ``window_s`` seconds of the audio ring.

        The min/max of each bin of ``spb`` samples is computed once, when the bin is complete,
        into a mirrored ring of (min, max) pairs; each update only decimates the bins completed
        since the last one and hands pyqtgraph a contiguous view of the newest pairs.

        Parameters
        ----------
        ring : RingBuffer or SharedAudio or None
            An audio ring (``written``, ``capacity``, ``window``): the analysed mono audio from
            the shared views, or any :class:`~onbeat.realtime.ringbuffer.RingBuffer`.
        rate_hz : int
            Its sample rate.
        now_s : float
            The playhead's stream time.
        lag_s : float
            How far the analysis lags behind the ring's newest sample.
        """
        if ring is None or rate_hz <= 0:
            return
        nb = _WAVE_BINS
        spb = max(1, math.ceil(self.window_s * rate_hz / nb))
        written = ring.written
        key = (spb, rate_hz, id(ring), getattr(ring, "generation", 0))
        if key != self._wave_key or written < self._wave_done * spb:
            j = np.arange(nb) - nb + 0.5
            self._wave_base[0::2] = j * spb / rate_hz
            self._wave_base[1::2] = j * spb / rate_hz
            self._wave_key = key
            self._wave_done = 0
        complete = written // spb
        oldest = -(-(written - ring.capacity) // spb) if written > ring.capacity else 0
        first = max(self._wave_done, complete - nb, oldest)
        n_new = complete - first
        if n_new > 0:
            block = ring.window(complete * spb, n_new * spb)  # read-only, contiguous rows
            b = block.reshape(n_new, spb * block.shape[1])
            lo, hi = self._wave_lo[:n_new], self._wave_hi[:n_new]
            np.min(b, axis=1, out=lo)
            np.max(b, axis=1, out=hi)
            pairs = self._wave_y
            slot = first % nb
            done = 0
            while done < n_new:  # at most two runs: up to the ring's end, then from its start
                m = min(n_new - done, nb - slot)
                for base in (2 * slot, 2 * (slot + nb)):  # both mirrored copies
                    pairs[base : base + 2 * m : 2] = lo[done : done + m]
                    pairs[base + 1 : base + 2 * m : 2] = hi[done : done + m]
                done += m
                slot = 0
        self._wave_done = complete
        k = min(complete - oldest, nb)
        if k <= 0:
            self.wave.setData(self._wave_x[:0], self._wave_y[:0])
            return
        s0 = (complete - k) % nb
        y = self._wave_y[2 * s0 : 2 * (s0 + k)]
        x = self._wave_x[: 2 * k]
        partial_s = (written - complete * spb) / rate_hz  # samples not yet in a complete bin
        np.add(self._wave_base[2 * (nb - k) :], lag_s - partial_s, out=x)
        self.wave.setData(x, y)

    def update_marks(self, state: DisplayState) -> None:
        """Onset markers, beat lines and predicted beats from the event state."""
        now = state.now_s
        t0 = now - self.window_s
        ons = state.onsets
        slots = ons.between(t0, now)
        n = min(slots.shape[0], _MAX_ONSETS)
        t = self._onset_t[:n]
        np.subtract(ons.time_s[slots[:n]], now, out=t)
        self._onset_x[0 : 2 * n : 2] = t
        self._onset_x[1 : 2 * n : 2] = t
        self.onset_marks.setData(self._onset_x[: 2 * n], self._onset_y[: 2 * n])
        self.onset_count = n
        beats = state.beats
        slots = beats.between(t0, now)
        rel = beats.time_s[slots] - now
        down = beats.columns["downbeat"][slots] > 0.5
        n_pred, pred_down = state.predicted_beats(self.lookahead_s, self._pred)
        pred = self._pred[:n_pred] - now
        for m in self.marks:
            m.set_times(rel[~down], rel[down], pred[~pred_down], pred[pred_down])

    def clear(self) -> None:
        """Empty every curve (a new stream starts)."""
        self.wave.setData(self._wave_x[:0], self._wave_y[:0])
        self.onset_curve.setData(self._frames_x[:0], self._onset_norm[:0])
        self.beat_curve.setData(self._frames_x[:0], self._beat[:0])
        self.onset_marks.setData(self._onset_x[:0], self._onset_y[:0])
        empty = np.zeros(0)
        for m in self.marks:
            m.set_times(empty, empty, empty, empty)
        self.spectrogram.clear()
        self._generation = -1


class TempoPlot(QtWidgets.QWidget):
    """Tempo history: BPM over the last ``history_s`` seconds, confidence as the line's glow."""

    def __init__(self, history_s: float) -> None:
        super().__init__()
        self.history_s = float(history_s)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.canvas = pg.GraphicsLayoutWidget()
        theme.make_opaque(self.canvas)
        layout.addWidget(self.canvas)
        self.plot = self.canvas.addPlot()
        theme.style_plot(self.plot, left="BPM", bottom="seconds")
        self.plot.setXRange(-self.history_s, 0.0, padding=0.0)
        self.plot.setYRange(60, 180, padding=0.0)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen(theme.ACCENT, width=2.5))
        self.plot.addItem(self.curve)
        self.empty = pg.TextItem("no tempo yet", color=theme.MUTED, anchor=(0.5, 0.5))
        self.plot.addItem(self.empty)
        self.empty.setPos(-self.history_s / 2, 120)
        self._x = np.zeros(1)
        self._y = np.zeros(1)
        self._range = (60.0, 180.0)
        self._seen = -1

    def update_tempo(self, state: DisplayState) -> None:
        """Redraw when a tempo arrived, or scroll with the playhead."""
        ring = state.tempo
        if self._x.shape[0] != ring.capacity:
            self._x = np.zeros(ring.capacity)
            self._y = np.zeros(ring.capacity)
        n = min(ring.count, ring.capacity)
        self.empty.setVisible(n == 0)
        if n == 0:
            if self._seen != 0:
                self.curve.setData(self._x[:0], self._y[:0])
                self._seen = 0
            return
        start = ring.count - n
        idx = (np.arange(start, ring.count)) % ring.capacity
        now = state.now_s
        np.subtract(ring.time_s[idx], now, out=self._x[:n])
        self._y[:n] = ring.columns["bpm"][idx]
        self.curve.setData(self._x[:n], self._y[:n])
        if ring.count != self._seen:
            self._seen = ring.count
            visible = self._y[:n][self._x[:n] >= -self.history_s]
            if visible.size:
                lo = 10.0 * math.floor((float(visible.min()) - 5.0) / 10.0)
                hi = 10.0 * math.ceil((float(visible.max()) + 5.0) / 10.0)
                if (lo, hi) != self._range:
                    self._range = (lo, hi)
                    self.plot.setYRange(lo, hi, padding=0.0)
