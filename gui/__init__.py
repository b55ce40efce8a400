"""The desktop visualizer (pyqtgraph on PyQt6). It only reads events and read-only views.

* :mod:`onbeat.gui.app`: ``onbeat gui`` (``main(argv)``, or ``add_arguments`` + ``run`` for the
  CLI); imports Qt only when it runs.
* :mod:`onbeat.gui.window`: the main window and its update timer.
* :mod:`onbeat.gui.plots`, :mod:`onbeat.gui.panels`: plots and panels (Qt).
* :mod:`onbeat.gui.state`: the display state folded from events (no Qt).
* :mod:`onbeat.gui.engine_process`: the analysis in its own process; events over a pipe, frame
  views and audio in shared memory, commands back (no Qt).
* :mod:`onbeat.gui.runner`: the engine on a thread, inside the engine process (no Qt).
* :mod:`onbeat.gui.settings`: settings and layout in ``gui.json`` (no Qt).
"""
