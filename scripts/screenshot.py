"""Render the README screenshot: replay the built-in demo in the GUI offscreen, save the window.

Usage::

    python scripts/screenshot.py [--out docs/screenshot.png] [--seconds 9.6] [--size 1600x960]

The demo is replayed at real-time pace (as a person would see it) with the default layout, not
the user's saved one, so the picture is the same on every machine. Nothing is written to the
user's GUI settings.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Replay the demo and save the screenshot; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    p.add_argument("--seconds", type=float, default=9.6, help="demo seconds replayed first")
    p.add_argument("--size", default="1600x960", help="window size WIDTHxHEIGHT")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from onbeat.gui.app import create_app
    from onbeat.gui.runner import SourceSpec
    from onbeat.gui.settings import GuiSettings
    from onbeat.gui.window import MainWindow
    from onbeat.realtime.config import OnbeatConfig
    from PyQt6 import QtCore

    app = create_app()
    window = MainWindow(OnbeatConfig(), GuiSettings(), save=False)
    window.resize(width, height)
    window.show()
    if not window.start_source(SourceSpec("demo", duration_s=args.seconds + 5.0)):
        print(f"screenshot: cannot start the demo: {window.last_error}", file=sys.stderr)
        return 1

    def grab() -> None:
        window.tick()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        ok = window.grab().save(str(args.out))
        print(f"screenshot: {'wrote' if ok else 'FAILED to write'} {args.out}", file=sys.stderr)
        app.exit(0 if ok else 1)

    QtCore.QTimer.singleShot(round(1000 * args.seconds), grab)
    code = int(app.exec())
    window.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
