"""Dark theme: one palette, one style sheet and the plot colours, readable from across a room."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACCENT",
    "BACKGROUND",
    "BEAT",
    "BEAT_ACTIVATION",
    "DOWNBEAT",
    "FOREGROUND",
    "MUTED",
    "ONSET",
    "PANEL",
    "PREDICTED",
    "WAVEFORM",
    "apply_theme",
    "make_opaque",
    "style_plot",
]

BACKGROUND = "#101318"
PANEL = "#171b22"
BORDER = "#2a313c"
GRID = "#1f252e"
FOREGROUND = "#e6e9ef"
MUTED = "#8a93a3"
ACCENT = "#3fb6ff"
WAVEFORM = "#5fd3c6"
ONSET = "#ff9f43"
BEAT = "#3fb6ff"
BEAT_ACTIVATION = "#7fd0ff"
DOWNBEAT = "#ff4f7b"
PREDICTED = "#9aa7ff"
LOCKED = "#3ddc84"
UNLOCKED = "#ffb347"
BASE_POINT_SIZE = 12

_STYLE = f"""
QMainWindow, QWidget {{ background: {BACKGROUND}; color: {FOREGROUND}; }}
QDockWidget {{ color: {MUTED}; font-weight: bold; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; border-bottom: 1px solid {BORDER}; }}
QGroupBox {{ border: 1px solid {BORDER}; border-radius: 6px; margin-top: 14px; padding: 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; color: {MUTED}; }}
QPushButton, QToolButton {{
    background: {PANEL}; border: 1px solid {BORDER}; border-radius: 6px; padding: 6px 12px;
}}
QPushButton:hover, QToolButton:hover {{ border-color: {ACCENT}; }}
QPushButton:pressed, QToolButton:pressed {{ background: #0d2a3d; }}
QPushButton:checked, QToolButton:checked {{ background: #0d2a3d; border-color: {ACCENT}; }}
QPushButton:disabled, QToolButton:disabled {{ color: #4b5361; }}
QComboBox, QSpinBox, QDoubleSpinBox, QLineEdit, QTableWidget {{
    background: {PANEL}; border: 1px solid {BORDER}; border-radius: 4px; padding: 3px 6px;
}}
QHeaderView::section {{ background: {PANEL}; color: {MUTED}; border: none; padding: 4px; }}
QToolBar {{ background: {PANEL}; border-bottom: 1px solid {BORDER}; spacing: 6px; padding: 4px; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; }}
QLabel#muted {{ color: {MUTED}; }}
QSplitter::handle {{ background: {BORDER}; }}
"""


def apply_theme(app: Any) -> None:
    """Set the dark style sheet, a large base font and pyqtgraph's colours."""
    import pyqtgraph as pg
    from PyQt6 import QtGui

    pg.setConfigOptions(background=BACKGROUND, foreground=MUTED, antialias=False)
    font = QtGui.QFont(app.font())
    font.setPointSize(BASE_POINT_SIZE)
    app.setFont(font)
    app.setStyleSheet(_STYLE)


def style_plot(plot: Any, *, left: str = "", bottom: str = "", grid: bool = True) -> None:
    """Common look of a :class:`pyqtgraph.PlotItem`: grid, readable axes, no mouse zoom.

    The scrolling plots pass ``grid=False`` and draw a static grid of their own: an axis grid
    is a plot-sized translucent pixmap, blended over the whole plot on every frame.
    """
    from PyQt6 import QtGui, QtWidgets

    font = QtGui.QFont()
    font.setPointSize(BASE_POINT_SIZE - 2)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setTickFont(font)
        axis.setTextPen(MUTED)
        axis.setPen(BORDER)
        # Axes (and the grid they draw) only change with the view range: let Qt keep them as a
        # pixmap instead of replaying their text on every frame.
        axis.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)
    if left:
        plot.setLabel("left", left, color=MUTED)
    if bottom:
        plot.setLabel("bottom", bottom, color=MUTED)
    if grid:
        plot.showGrid(x=True, y=True, alpha=0.15)
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    plot.setMenuEnabled(False)


def make_opaque(view: Any) -> None:
    """Tell Qt that a pyqtgraph view paints every pixel of itself.

    Without this, every repaint of the view first repaints the window behind it (the style
    sheet's background), which costs more than the plot itself at 60 frames per second.
    """
    from PyQt6 import QtCore

    for w in (view, view.viewport()):
        w.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        w.setAttribute(QtCore.Qt.WidgetAttribute.WA_NoSystemBackground, True)
