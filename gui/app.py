"""``onbeat gui``: the desktop visualizer's entry point.

``python -m onbeat.gui.app [FILE] [--demo] [--device X]`` (and ``onbeat gui`` once the CLI
forwards to :func:`main`):

* no argument: the selected live input (the built-in demo when there is no input device);
* ``FILE``: replay the file at real-time pace (``--audible`` also plays it);
* ``--demo``: the synthesized demo song.

``--quit-after S`` closes the window after S seconds (smoke tests, screenshots) and
``--screenshot PNG`` saves the window just before.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onbeat.realtime.cli import add_config_arguments
from onbeat.realtime.config import apply_overrides, load_config, parse_override
from onbeat.realtime.errors import OnbeatError

__all__ = ["add_arguments", "build_parser", "create_app", "main", "run"]

log = logging.getLogger("onbeat.gui")


def build_parser(prog: str = "onbeat gui") -> argparse.ArgumentParser:
    """Arguments of ``onbeat gui`` (the CLI may reuse :func:`add_arguments`)."""
    p = argparse.ArgumentParser(prog=prog, description="The onbeat desktop visualizer.")
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``gui`` arguments to a (sub)parser."""
    p.add_argument("file", nargs="?", help="audio file to replay at real-time pace")
    p.add_argument("--demo", action="store_true", help="play the built-in synthesized demo")
    p.add_argument("--device", help="live input device: index or name fragment")
    p.add_argument("--audible", action="store_true", help="also play a replayed file")
    p.add_argument("--fps", type=int, help="display refresh rate, 30 to 60")
    add_config_arguments(p)
    p.add_argument("--quit-after", type=float, metavar="S", help="close after S seconds")
    p.add_argument("--screenshot", metavar="PNG", help="save the window before quitting")
    p.add_argument("--no-save", action="store_true", help="do not write the GUI settings on exit")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")


def _check_binding() -> None:
    """Refuse Qt bindings other than PyQt6 (PySide6 6.12.0 leaks on every signal emit)."""
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt6")
    if os.environ["PYQTGRAPH_QT_LIB"] != "PyQt6":
        raise OnbeatError("onbeat gui runs on PyQt6 only; unset PYQTGRAPH_QT_LIB")


def create_app(argv: Sequence[str] = ()) -> Any:
    """The QApplication (the existing one when there is one), with the dark theme applied."""
    _check_binding()
    from onbeat.gui.theme import apply_theme
    from PyQt6 import QtWidgets

    # The analysis runs in its own process (onbeat.gui.engine_process): nothing here can hold
    # its GIL, so the interpreter's defaults stay.
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication(["onbeat", *argv])
        app.setApplicationName("onbeat")
        app.setOrganizationName("onbeat")
    apply_theme(app)
    return app


def run(args: argparse.Namespace) -> int:
    """Open the window for parsed arguments and run the event loop; returns the exit code."""
    config = load_config(args.config)
    config = apply_overrides(config, dict(parse_override(o) for o in args.overrides))
    if args.device is not None and (args.file or args.demo):
        raise OnbeatError("give either FILE, --demo or --device, not several")
    if args.file and args.demo:
        raise OnbeatError("give either FILE or --demo, not both")
    if args.file and not Path(args.file).exists():
        raise OnbeatError(f"audio file {args.file!r} does not exist")
    try:
        import pyqtgraph  # noqa: F401
        from PyQt6 import QtCore
    except ImportError as exc:
        raise OnbeatError(
            f"the GUI needs PyQt6 and pyqtgraph ({exc}); install them with: "
            "pip install 'onbeat[gui]'"
        ) from None
    app = create_app()

    import dataclasses

    from onbeat.gui.runner import SourceSpec
    from onbeat.gui.settings import load_settings
    from onbeat.gui.window import MainWindow

    settings = load_settings()
    if args.fps is not None:
        settings = dataclasses.replace(settings, fps=max(30, min(60, args.fps)))
    if args.audible:
        settings = dataclasses.replace(settings, audible=True)
    window = MainWindow(config, settings, save=not args.no_save)
    window.show()
    if args.file:
        spec = SourceSpec("file", path=args.file)
        started = window.start_source(spec)
    elif args.demo:
        started = window.start_source(SourceSpec("demo"))
    else:
        started = window.start_source(SourceSpec("live", device=args.device or ""))
        if not started and args.device is None:
            reason = window.last_error
            started = window.start_source(SourceSpec("demo"))
            window.show_message(f"no usable input device ({reason}): playing the built-in demo")
    if not started and (args.file or args.device):
        window.shutdown()
        raise OnbeatError(f"cannot start: {window.last_error or 'see the log'}")
    if args.quit_after is not None:

        def finish() -> None:
            if args.screenshot:
                window.grab().save(args.screenshot)
            window.close()

        QtCore.QTimer.singleShot(round(1000 * args.quit_after), finish)
    code = int(app.exec())
    window.shutdown()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``onbeat gui``; returns the exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO
    if args.verbose > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format="onbeat: %(levelname)s: %(message)s")
    try:
        return run(args)
    except OnbeatError as exc:
        print(f"onbeat: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
