"""GUI settings and window layout, persisted as JSON in the user's config directory.

The file is ``gui.json`` in :func:`config_dir`: ``$ONBEAT_CONFIG_DIR`` when set (tests use it),
else ``%APPDATA%\\onbeat`` on Windows, ``~/Library/Application Support/onbeat`` on macOS, and
``$XDG_CONFIG_HOME/onbeat`` (default ``~/.config/onbeat``) elsewhere. A missing, unreadable or
partly invalid file falls back to the defaults field by field, with a warning; it never stops the
GUI from starting.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["GuiSettings", "OscTarget", "config_dir", "load_settings", "save_settings"]

log = logging.getLogger(__name__)

FILE_NAME = "gui.json"


def config_dir() -> Path:
    """The directory that holds the GUI's settings file."""
    env = os.environ.get("ONBEAT_CONFIG_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = os.environ.get("APPDATA")
        return Path(base) / "onbeat" if base else Path.home() / "AppData" / "Roaming" / "onbeat"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "onbeat"
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "onbeat"


@dataclass(frozen=True, slots=True)
class OscTarget:
    """One OSC destination as the GUI edits it.

    Attributes
    ----------
    host : str
        Host name or address.
    port : int
        UDP port.
    latency_ms : float
        Output latency to compensate for this target (beats are sent this much earlier).
    enabled : bool
        Whether the target receives events.
    """

    host: str = "127.0.0.1"
    port: int = 9000
    latency_ms: float = 0.0
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("OSC host must not be empty")
        if not 1 <= int(self.port) <= 65535:
            raise ValueError(f"OSC port {self.port} must be in [1, 65535]")
        if not math.isfinite(self.latency_ms) or not -1000.0 <= self.latency_ms <= 1000.0:
            raise ValueError(f"OSC latency {self.latency_ms} ms must be in [-1000, 1000]")


@dataclass(frozen=True, slots=True)
class GuiSettings:
    """Everything the GUI remembers between runs.

    Attributes
    ----------
    fps : int
        Display refresh rate, 30 to 60.
    window_s : float
        Seconds of history in the scrolling plots, 2 to 10.
    lookahead_s : float
        Seconds shown ahead of the playhead (predicted beats), 0 to 2.
    tempo_history_s : float
        Seconds of tempo history, 10 to 600.
    nudge_ms : float
        Beat phase shift of one nudge.
    source : str
        Last source: ``"live"``, ``"file"`` or ``"demo"``.
    last_file : str
        Last replayed file.
    device : str
        Last input device name ("" for the default).
    audible : bool
        Play replayed files through the default output.
    osc_targets : tuple of OscTarget
        OSC destinations (edited here; sent by the OSC sink).
    geometry, window_state : str
        Qt window geometry and dock layout, base64.
    """

    fps: int = 60
    window_s: float = 8.0
    lookahead_s: float = 1.0
    tempo_history_s: float = 120.0
    nudge_ms: float = 10.0
    source: str = "demo"
    last_file: str = ""
    device: str = ""
    audible: bool = False
    osc_targets: tuple[OscTarget, ...] = field(default_factory=lambda: (OscTarget(),))
    geometry: str = ""
    window_state: str = ""

    def __post_init__(self) -> None:
        if not 30 <= self.fps <= 60:
            raise ValueError(f"fps {self.fps} must be in [30, 60]")
        if not 2.0 <= self.window_s <= 10.0:
            raise ValueError(f"window_s {self.window_s} must be in [2, 10]")
        if not 0.0 <= self.lookahead_s <= 2.0:
            raise ValueError(f"lookahead_s {self.lookahead_s} must be in [0, 2]")
        if not 10.0 <= self.tempo_history_s <= 600.0:
            raise ValueError(f"tempo_history_s {self.tempo_history_s} must be in [10, 600]")
        if not 0.1 <= self.nudge_ms <= 200.0:
            raise ValueError(f"nudge_ms {self.nudge_ms} must be in [0.1, 200]")
        if self.source not in ("live", "file", "demo"):
            raise ValueError(f"source {self.source!r} must be live, file or demo")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["osc_targets"] = [dataclasses.asdict(t) for t in self.osc_targets]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuiSettings:
        """Build from a dict, keeping the default of every missing or invalid field."""
        settings = cls()
        names = {f.name for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key not in names:
                log.warning("gui settings: ignoring unknown key %r", key)
                continue
            try:
                if key == "osc_targets":
                    value = tuple(OscTarget(**t) for t in value)
                else:
                    default = getattr(settings, key)
                    if isinstance(default, bool) and not isinstance(value, bool):
                        raise TypeError("expected true or false")
                    if isinstance(default, int | float) and not isinstance(default, bool):
                        if isinstance(value, bool) or not isinstance(value, int | float):
                            raise TypeError("expected a number")
                        value = type(default)(value)
                    if isinstance(default, str) and not isinstance(value, str):
                        raise TypeError("expected a string")
                settings = dataclasses.replace(settings, **{key: value})
            except (TypeError, ValueError) as exc:
                log.warning("gui settings: keeping the default of %r (%s)", key, exc)
        return settings


def settings_path() -> Path:
    """Path of the settings file."""
    return config_dir() / FILE_NAME


def load_settings(path: Path | None = None) -> GuiSettings:
    """Read the settings file; defaults when it is missing or unreadable."""
    p = path or settings_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return GuiSettings()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("gui settings %s unreadable (%s); using defaults", p, exc)
        return GuiSettings()
    if not isinstance(data, dict):
        log.warning("gui settings %s is not a JSON object; using defaults", p)
        return GuiSettings()
    return GuiSettings.from_dict(data)


def save_settings(settings: GuiSettings, path: Path | None = None) -> Path | None:
    """Write the settings file atomically; returns its path, or None if it could not be written."""
    p = path or settings_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(settings.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(p)
    except OSError as exc:
        log.warning("gui settings could not be saved to %s: %s", p, exc)
        return None
    return p
