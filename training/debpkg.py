"""Files of Debian packages, fetched without root: ``apt-get download`` and ``dpkg-deb -x`` into
a work folder, keeping only the files a data set needs (and the package's copyright file).

Used by :mod:`onbeat.training.modules` (tracker modules) and the ``gamemidi`` set of
:mod:`onbeat.training.render` (MIDI game music). A package is fetched once: its folder gets a
``.done`` marker, and later calls only list the kept files.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["fetch_package", "files_under", "repeat_suffix"]

log = logging.getLogger("onbeat.training.debpkg")


def repeat_suffix(name: str, seen: dict[str, int]) -> str:
    """``""`` the first time ``name`` is seen, then ``"_2"``, ``"_3"`` ...: two files of a package
    may share a file name in different folders, and each needs outputs of its own."""
    seen[name] = seen.get(name, 0) + 1
    return "" if seen[name] == 1 else f"_{seen[name]}"


def files_under(root: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """The files under ``root`` that ``keep`` accepts, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and keep(p))


def fetch_package(pkg: str, work: Path, keep: Callable[[Path], bool]) -> list[Path] | None:
    """The files of Debian package ``pkg`` that ``keep`` accepts, unpacked under ``work/pkg``.

    Downloads and unpacks the package on the first call (the other files are not kept; the
    package's ``copyright`` is copied to ``work/pkg/copyright``). Returns None when
    ``apt-get download`` fails (unknown package, no network).
    """
    dest = work / pkg
    if not (dest / ".done").exists():
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run(
                ["apt-get", "download", pkg], cwd=tmp, capture_output=True, text=True, check=False
            )
            debs = list(Path(tmp).glob("*.deb"))
            if r.returncode != 0 or not debs:
                log.warning("%s: apt-get download failed: %s", pkg, r.stderr.strip()[-200:])
                return None
            full = Path(tmp) / "x"
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(full)], check=True)
            dest.mkdir(parents=True, exist_ok=True)
            for p in files_under(full, keep):
                q = dest / p.relative_to(full)
                q.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(p), q)
            cr = next(full.glob(f"usr/share/doc/{pkg}/copyright"), None)
            if cr is not None:
                shutil.copy(cr, dest / "copyright")
        (dest / ".done").write_text("")
    return files_under(dest, keep)
