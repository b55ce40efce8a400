"""A subset of a render folder, by what its manifest records, without copying any audio.

``python -m onbeat.training.subset --src data/renders_heavy --out data/renders_heavy_noskank
--drop-section skank`` writes ``OUT/manifest.jsonl`` with the records of ``SRC`` that pass the
filters, and links each kept item's audio and label files into ``OUT`` (symbolic links to the
absolute paths in ``SRC``), so ``OUT`` is a render folder that ``onbeat train beats
--extra-renders OUT`` and the benchmarks read like any other. Splits stay those of ``SRC``.

Filters (each may be repeated; an item must pass all of them):

* ``--drop-section NAME``: drop items whose generated sections (``sections``, recorded as
  ``drums/riff`` by the heavy generator) use the drum pattern ``NAME`` anywhere in the song;
  with ``--below-bpm X``, only those whose rendered tempo (``60 / median_ibi_s``, after the
  time stretch) is below ``X``;
* ``--style NAME``: keep only items of this generated style (``style``, the EDM set);
* ``--drop-variants``: drop the tempo/pitch variants of another item (``stretch_of``, the
  tracker modules' ``--stretch``), leaving the songs as they were written.

Why: in session 21 the heavy set's ``skank`` sections (kick on the beat, snare on the "and")
turned out to teach the beat networks to fire on every other beat of a kick/snare backbeat at
150 BPM, the same sound at twice the rate (BENCHMARKS.md, issue 3 "Session 21"); the
renders on disk are kept and the training set leaves those songs out.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("onbeat.training.subset")

__all__ = ["keep_record", "main", "write_subset"]

FILE_KEYS = ("audio", "beats", "onsets")


def section_drums(rec: dict[str, Any]) -> set[str]:
    """The drum patterns of a record's generated sections (``sections``: ``drums/riff``)."""
    return {str(s).split("/")[0] for s in rec.get("sections", ())}


def keep_record(
    rec: dict[str, Any],
    drop_sections: Sequence[str] = (),
    styles: Sequence[str] = (),
    below_bpm: float | None = None,
    drop_variants: bool = False,
) -> bool:
    """Whether a manifest record passes the filters (see the module docstring)."""
    if drop_variants and "stretch_of" in rec:
        return False
    if section_drums(rec) & set(drop_sections):
        ibi = rec.get("median_ibi_s")
        if below_bpm is None or not ibi or 60.0 / ibi < below_bpm:
            return False
    return not styles or rec.get("style") in styles


def write_subset(
    src: Path,
    out: Path,
    drop_sections: Sequence[str] = (),
    styles: Sequence[str] = (),
    below_bpm: float | None = None,
    drop_variants: bool = False,
) -> tuple[int, int]:
    """Write the subset folder; returns ``(kept, dropped)``. Re-running replaces it."""
    from onbeat.training.datasets import manifest_records

    src = src.resolve()
    if not (src / "manifest.jsonl").is_file():
        raise FileNotFoundError(f"no manifest.jsonl in {src} (a render folder)")
    if out.resolve() == src:
        raise ValueError("--out must differ from --src")
    out.mkdir(parents=True, exist_ok=True)
    kept: list[dict[str, Any]] = []
    dropped = 0
    for rec in manifest_records(src):
        if not keep_record(rec, drop_sections, styles, below_bpm, drop_variants):
            dropped += 1
            continue
        kept.append(rec)
        for key in FILE_KEYS:
            if key in rec:
                link = out / rec[key]
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(src / rec[key])
    wanted = {r[k] for r in kept for k in FILE_KEYS if k in r}
    for p in out.iterdir():  # links of an earlier run that this one drops
        if p.is_symlink() and p.name not in wanted:
            p.unlink()
    tmp = out / ".manifest.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    tmp.replace(out / "manifest.jsonl")
    return len(kept), dropped


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--src", required=True, help="a render folder (with manifest.jsonl)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--drop-section", action="append", default=[], metavar="NAME")
    ap.add_argument("--style", action="append", default=[], metavar="NAME")
    ap.add_argument(
        "--below-bpm", type=float, default=None, help="--drop-section only below this tempo"
    )
    ap.add_argument("--drop-variants", action="store_true", help="drop tempo/pitch variants")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        kept, dropped = write_subset(
            Path(args.src),
            Path(args.out),
            args.drop_section,
            args.style,
            args.below_bpm,
            args.drop_variants,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}")
        return 2
    log.info("%s: kept %d items, dropped %d", args.out, kept, dropped)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
