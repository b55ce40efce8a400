"""Write a ``song,quadrant,genres`` labels CSV for the 4Q mood set (for ``onbeat eval tags``).

The quadrant is 4Q's ``Quadrant``; the genres are its AllMusic ``GenresStr`` mapped onto the
coarse genre set (``onbeat.training.tags.ALLMUSIC``; AllMusic genres with no coarse equivalent
are dropped, so a song may have no genre label). Write the CSV outside the repository::

    python scripts/mer4q_labels.py /tmp/mer4q/labels.csv
    onbeat eval tags ../shared/data/mood/mer4q/audio --labels /tmp/mer4q/labels.csv

The shipped tagger was trained on all of 4Q: these are training-set numbers.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from onbeat.training.datasets import default_data_root
from onbeat.training.tags import ALLMUSIC


def main(argv: list[str] | None = None) -> int:
    """Write the CSV; returns the exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="labels CSV to write (outside the repository)")
    p.add_argument("--root", type=Path, default=default_data_root() / "mood" / "mer4q")
    args = p.parse_args(argv)
    meta = args.root / "metadata.csv"
    if not meta.exists():
        print(f"mer4q_labels: {meta} does not exist", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with open(meta, newline="") as fh, open(args.out, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["song", "quadrant", "genres"])
        for row in csv.DictReader(fh):
            coarse: dict[str, None] = {}
            for g in row["GenresStr"].split(";"):
                coarse.update(dict.fromkeys(ALLMUSIC.get(g.strip(), ())))
            w.writerow([row["Song"], row["Quadrant"].strip(), ";".join(coarse)])
            rows += 1
    print(f"mer4q_labels: {rows} songs written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
