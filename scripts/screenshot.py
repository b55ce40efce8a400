"""Render the README screenshot: replay the built-in demo in the GUI offscreen, save the window.

Usage::

    python scripts/screenshot.py [--out docs/screenshot.png] [--seconds 13] [--size 1600x960]
                                 [--library DB | --no-library]

The demo is replayed at real-time pace (as a person would see it) for ``--seconds`` of stream
time, with the default layout, not the user's saved one, so the picture is the same on every
machine. Nothing is written to the user's GUI settings or reference library.

So that the "Sounds like" panel has something to show, a throw-away reference library of a few
synthesized tracks (variants of the demo, labelled with scenes) is indexed first in a temporary
folder, with the shipped tagging model; ``--library DB`` uses an existing library instead, and
``--no-library`` shows the panel's hint. The default ``--seconds`` leaves time for the first
scene cue (``library.dwell_s`` after the first tags window).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_reference_library(folder: Path) -> Path:
    """Index a few synthesized reference tracks with scene labels; returns the database path.

    Parameters
    ----------
    folder : Path
        Where the audio files and the database are written.

    Returns
    -------
    Path
        The SQLite library.
    """
    import soundfile as sf
    from onbeat.realtime.demo import click_track, demo_song
    from onbeat.realtime.library import Embedder, Library

    refs = [
        ("Band loop 120 BPM", "groove", demo_song(duration_s=20.0)),
        ("Band loop 96 BPM", "groove", demo_song(duration_s=20.0, bpm=96.0, seed=3)),
        ("Band loop 140 BPM", "peak", demo_song(duration_s=20.0, bpm=140.0, seed=7)),
        (
            "Chords only (the break)",
            "breakdown",
            demo_song(duration_s=20.0, seed=5, break_span_s=(0.0, 20.0)),
        ),
        ("Click track 120 BPM", "warm-up", click_track(duration_s=20.0)),
    ]
    embedder = Embedder()
    db = folder / "library.sqlite"
    with Library(db) as lib:
        for title, scene, song in refs:
            path = folder / f"{title}.wav"
            sf.write(path, song.samples, song.sample_rate_hz)
            lib.add_file(path, embedder, scenes=[scene])
    return db


def main(argv: list[str] | None = None) -> int:
    """Replay the demo and save the screenshot; returns the exit code."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    p.add_argument(
        "--seconds", type=float, default=13.0, help="demo seconds (stream time) played first"
    )
    p.add_argument("--size", default="1600x960", help="window size WIDTHxHEIGHT")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--library", metavar="DB", help="reference library to match against")
    which.add_argument(
        "--no-library", action="store_true", help="no reference library (the panel's hint)"
    )
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from onbeat.gui.app import create_app
    from onbeat.gui.runner import SourceSpec
    from onbeat.gui.settings import GuiSettings
    from onbeat.gui.window import MainWindow
    from onbeat.realtime.config import OnbeatConfig, apply_overrides
    from PyQt6 import QtCore

    with tempfile.TemporaryDirectory(prefix="onbeat-screenshot-") as tmp:
        if args.no_library:
            library = {"library.enabled": "off"}
        elif args.library:
            library = {"library.enabled": "on", "library.db_path": args.library}
        else:
            db = build_reference_library(Path(tmp))
            library = {"library.enabled": "on", "library.db_path": str(db)}
        config = apply_overrides(OnbeatConfig(), library)

        app = create_app()
        window = MainWindow(config, GuiSettings(), save=False)
        window.resize(width, height)
        window.show()
        if not window.start_source(SourceSpec("demo", duration_s=args.seconds + 5.0)):
            print(f"screenshot: cannot start the demo: {window.last_error}", file=sys.stderr)
            window.shutdown()
            return 1

        wall_limit_s = time.monotonic() + args.seconds + 60.0

        def grab() -> None:
            window.tick()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            ok = window.grab().save(str(args.out))
            print(f"screenshot: {'wrote' if ok else 'FAILED to write'} {args.out}", file=sys.stderr)
            app.exit(0 if ok else 1)

        def poll() -> None:
            """Grab once the stream has played ``--seconds`` (stream time, not wall time)."""
            if window.state.now_s >= args.seconds or time.monotonic() > wall_limit_s:
                grab()
            else:
                QtCore.QTimer.singleShot(50, poll)

        QtCore.QTimer.singleShot(500, poll)
        code = int(app.exec())
        window.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
