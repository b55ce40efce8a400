"""Beat labels for the LMMS demo songs (Debian ``lmms-common``): real electronic productions,
rendered by LMMS itself, with an exact beat grid.

The demo and "shorties" projects that Debian installs under ``/usr/share/lmms/projects`` are
finished songs by LMMS users (house, trance, reggae, reggaeton, chiptune, rock, hip hop...). A
project holds its tempo and time signature, none of them automates the tempo, and a song starts
on its first bar at 0 s, so the sequencer's grid is the beat truth, with no calibration:

1. each project is rendered headless (``lmms render PROJECT -f wav``) and written as 44.1 kHz
   FLAC;
2. its grid (``k * 60 / bpm``, ``beat_in_bar = k % numerator + 1``) is kept where the audio is
   active (within 40 dB of the loudest 50 ms), as ``OUT/NAME.beats``;
3. as a check of the grid and the render, the lag that maximises the onset strength at the beats
   is measured as for the Frets-on-Fire songs (:func:`onbeat.training.fof.calibrate_offset`, less
   the drum-envelope latency) and recorded, not applied;
4. ``OUT/manifest.json`` lists the songs, in the Frets-on-Fire manifest format
   (:func:`onbeat.training.datasets.lmms_items` reads it), with a fixed split per song
   (``sha1`` of the name: half ``train``, half ``test``).

The tempo is the one the author typed in. Some producers program a half-time groove at double
speed (a reggaeton at 180 BPM); report CMLt/AMLt beside F on this set.

Usage::

    apt-get install lmms tap-plugins caps   # caps and tap-plugins: the songs' LADSPA effects
    python -m onbeat.training.lmms --out data/lmms
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from onbeat.training.datasets import SAMPLE_RATE, load_audio
from onbeat.training.fof import (
    DRUM_ENVELOPE_LATENCY_S,
    active_range,
    calibrate_offset,
    onset_envelope,
)

__all__ = ["Project", "beat_labels", "find_projects", "lmms_split", "main", "read_project"]

log = logging.getLogger("onbeat.training.lmms")

PROJECTS_DIR = Path("/usr/share/lmms/projects")
FOLDERS = ("demos", "shorties")
RENDER_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Project:
    """One LMMS project file and what its header says.

    Attributes
    ----------
    name : str
        Unique, file-system safe name (``lmms_`` + the file stem).
    path : Path
        The ``.mmp`` or ``.mmpz`` file.
    bpm : float
        Song tempo in quarter notes per minute.
    numerator, denominator : int
        Time signature.
    """

    name: str
    path: Path
    bpm: float
    numerator: int
    denominator: int


def project_xml(path: Path) -> str:
    """The XML text of a project (``.mmpz`` is Qt's ``qCompress``: a 4-byte length, then zlib)."""
    raw = path.read_bytes()
    if path.suffix == ".mmpz":
        raw = zlib.decompress(raw[4:])
    return raw.decode("utf-8", errors="replace")


def read_project(path: Path) -> Project:
    """Tempo and time signature from a project's ``<head>``.

    Raises
    ------
    ValueError
        When the head has no tempo, or the tempo is automated (a ``<bpm>`` child with an id).
    """
    xml = project_xml(path)
    head = re.search(r"<head\b[^>]*>", xml)
    if head is None:
        raise ValueError(f"{path}: no <head>")
    attrs = dict(re.findall(r'(\w+)="([^"]*)"', head.group(0)))
    if "bpm" not in attrs:
        raise ValueError(f"{path}: the tempo is automated or missing")
    stem = re.sub(r"[^A-Za-z0-9]+", "_", path.stem).strip("_")
    return Project(
        name=f"lmms_{stem}",
        path=path,
        bpm=float(attrs["bpm"]),
        numerator=int(attrs.get("timesig_numerator", 4)),
        denominator=int(attrs.get("timesig_denominator", 4)),
    )


def find_projects(root: Path = PROJECTS_DIR, folders: Sequence[str] = FOLDERS) -> list[Project]:
    """Projects under ``root/folder`` with a fixed tempo in quarter-note beats (x/4), sorted."""
    out = []
    for folder in folders:
        for p in sorted((root / folder).rglob("*.mmp*")):
            try:
                proj = read_project(p)
            except (OSError, ValueError, zlib.error) as e:
                log.warning("skipped %s: %s", p, e)
                continue
            if proj.denominator != 4 or not 2 <= proj.numerator <= 8:
                log.info(
                    "skipped %s: time signature %d/%d", p.name, proj.numerator, proj.denominator
                )
                continue
            out.append(proj)
    return out


def lmms_split(name: str) -> str:
    """Fixed split of a song: ``sha1(lmms:name) % 2`` gives ``train`` (0) or ``test`` (1)."""
    h = int(hashlib.sha1(f"lmms:{name}".encode()).hexdigest()[:8], 16)
    return "train" if h % 2 == 0 else "test"


def beat_labels(
    bpm: float, numerator: int, start_s: float, end_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Grid beats ``k * 60 / bpm`` in ``[start_s, end_s]`` and their beat in bar (1 = bar start,
    bars from 0 s)."""
    k = np.arange(int(np.floor(end_s * bpm / 60.0)) + 1)
    t = k * 60.0 / bpm
    keep = (t >= start_s) & (t <= end_s)
    return t[keep], (k[keep] % numerator + 1).astype(np.int64)


def render(project: Path, out_wav: Path, lmms: str = "lmms") -> None:
    """Render a project with LMMS, headless (Qt offscreen; ``--allowroot`` when run as root)."""
    cmd = [lmms]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allowroot")
    cmd += ["render", str(project), "-f", "wav", "-o", str(out_wav)]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    r = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S, check=False
    )
    if r.returncode != 0 or not out_wav.exists():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"lmms failed on {project.name} (exit {r.returncode}): {tail[0]}")


def process(proj: Project, out: Path, lmms: str = "lmms") -> dict[str, Any]:
    """Render one project, write its FLAC and ``.beats``; returns its manifest record."""
    out.mkdir(parents=True, exist_ok=True)
    flac = out / f"{proj.name}.flac"
    if not flac.exists():
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "out.wav"
            render(proj.path, wav, lmms)
            x2, sr = sf.read(wav, dtype="float32", always_2d=True)
            if sr != SAMPLE_RATE:
                raise RuntimeError(f"{proj.name}: LMMS rendered at {sr} Hz, not {SAMPLE_RATE}")
            peak = float(np.abs(x2).max())
            if peak > 1.0:  # LMMS writes float WAV: keep clipping-free 16-bit FLAC
                x2 /= peak
            sf.write(flac, x2, sr, subtype="PCM_16")
    x = load_audio(flac)
    duration = x.shape[0] / SAMPLE_RATE
    a0, a1 = active_range(x)
    beats, bib = beat_labels(proj.bpm, proj.numerator, a0 - 0.05, a1 - 0.05)
    env = onset_envelope(x)
    lag, sc = calibrate_offset(env, beats, DRUM_ENVELOPE_LATENCY_S)
    beats_file = out / f"{proj.name}.beats"
    beats_file.write_text("".join(f"{t:.6f} {int(b)}\n" for t, b in zip(beats, bib, strict=True)))
    return {
        "name": proj.name,
        "project": str(proj.path),
        "audio": flac.name,
        "beats": beats_file.name,
        "split": lmms_split(proj.name),
        "bpm": proj.bpm,
        "time_signatures": [[0, proj.numerator, proj.denominator]],
        "time_signature_in_chart": True,
        "duration_s": round(duration, 3),
        "active_s": [round(a0, 3), round(a1, 3)],
        "n_beats": int(beats.shape[0]),
        "offset_s": 0.0,
        "measured_lag_s": round(lag, 4),
        "peak_score": round(float(sc.max()), 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m onbeat.training.lmms",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--out", type=Path, default=Path("data/lmms"))
    ap.add_argument("--projects-dir", type=Path, default=PROJECTS_DIR)
    ap.add_argument("--lmms", default="lmms", help="the LMMS executable")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if shutil.which(args.lmms) is None:
        print(f"error: {args.lmms} not found: apt-get install lmms", file=sys.stderr)
        return 2
    projects = find_projects(args.projects_dir)
    if not projects:
        print(f"error: no LMMS projects under {args.projects_dir}", file=sys.stderr)
        return 2
    records = []
    for p in projects:
        try:
            rec = process(p, args.out, args.lmms)
        except (RuntimeError, subprocess.TimeoutExpired, sf.LibsndfileError) as e:
            log.warning("skipped %s: %s", p.name, e)
            continue
        records.append(rec)
        log.info(
            "%-44s %5.1f bpm %d/4  %6.1f s  lag %+6.1f ms  score %.2f  %s",
            p.name,
            p.bpm,
            p.numerator,
            rec["duration_s"],
            1000 * rec["measured_lag_s"],
            rec["peak_score"],
            rec["split"],
        )
    manifest = {
        "method": "LMMS demo projects rendered headless; beats = the project's tempo grid from "
        "0 s where the audio is active; measured_lag_s = the onset-strength lag (less the drum "
        "envelope latency) at the grid, a check only (not applied)",
        "songs": records,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("%d songs in %s", len(records), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
