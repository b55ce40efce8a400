"""Frozen, validated configuration, loaded from TOML with explicit command-line overrides.

Every section is a frozen dataclass validated in ``__post_init__``. An impossible value raises
:class:`~onbeat.realtime.errors.ConfigError` naming the key (``section.field``) and the allowed
range. The TOML file has one table per section::

    [audio]
    block_size = 128

    [onset]
    threshold = 0.6

Command-line overrides use the same dotted keys (``--set onset.threshold=0.6``) and go through
:func:`apply_overrides`, which maps each key explicitly onto its section; nothing is passed down as
``**vars(args)``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from onbeat.realtime.errors import ConfigError
from onbeat.realtime.tracker import TrackerConfig
from onbeat.realtime.validation import check_range as _check_range

__all__ = [
    "AudioConfig",
    "BeatConfig",
    "FeatureConfig",
    "LibraryConfig",
    "OnbeatConfig",
    "OnsetConfig",
    "OutputConfig",
    "TagsConfig",
    "apply_overrides",
    "load_config",
]


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """Audio input.

    Parameters
    ----------
    device : str or None
        Input device: an index (``"3"``) or a case-insensitive name fragment. ``None`` takes the
        system default input.
    channels : tuple of int
        Zero-based input channels to analyse, mixed down by averaging. Empty mixes every
        channel that is opened.
    block_size : int
        Samples per driver callback (at the device rate). Smaller is lower latency.
    sample_rate_hz : int
        Analysis sample rate. Input at any other rate is resampled to it.
    device_rate_hz : int
        Rate to open the device at; ``0`` tries ``sample_rate_hz`` and falls back to the
        device's default rate.
    latency_s : float
        Input latency asked of PortAudio; ``0`` takes the device's low-latency default. Raise it
        (0.05-0.2) on loaded machines: some ALSA plugins drop input silently when late.
    ring_s : float
        Ring-buffer capacity in seconds of device audio.
    reconnect_max_s : float
        Longest back-off between attempts to reopen a vanished device.
    """

    section: ClassVar[str] = "audio"
    device: str | None = None
    channels: tuple[int, ...] = ()
    block_size: int = 128
    sample_rate_hz: int = 44100
    device_rate_hz: int = 0
    latency_s: float = 0.0
    ring_s: float = 10.0
    reconnect_max_s: float = 5.0

    def __post_init__(self) -> None:
        s = self.section
        _check_range(s, "block_size", self.block_size, 16, 16384, integer=True)
        _check_range(s, "sample_rate_hz", self.sample_rate_hz, 8000, 192000, integer=True)
        if self.device_rate_hz != 0:
            _check_range(s, "device_rate_hz", self.device_rate_hz, 8000, 384000, integer=True)
        _check_range(s, "latency_s", self.latency_s, 0.0, 2.0)
        _check_range(s, "ring_s", self.ring_s, 1.0, 600.0)
        _check_range(s, "reconnect_max_s", self.reconnect_max_s, 0.1, 600.0)
        if len(set(self.channels)) != len(self.channels):
            raise ConfigError(f"{s}.channels = {list(self.channels)} lists a channel twice")
        for ch in self.channels:
            _check_range(s, "channels", ch, 0, 255, integer=True)


@dataclass(frozen=True, slots=True)
class FeatureConfig:
    """Framewise spectral features.

    Parameters
    ----------
    hop_size : int
        Samples between frames at the analysis rate (441 at 44.1 kHz is 100 frames/s).
    frame_sizes : tuple of int
        FFT frame sizes of the multi-resolution spectrum; powers of two.
    bands_per_octave : int
        Bands per octave of the logarithmic filterbank.
    fmin_hz, fmax_hz : float
        Frequency range of the logarithmic filterbank.
    log_mul : float
        Log compression ``log10(1 + log_mul * x)``.
    diff_ratio : float
        SuperFlux: the difference is taken against the frame whose window overlap falls
        below this ratio.
    diff_max_bins : int
        Width of the frequency maximum filter applied to the reference frame (SuperFlux).
    n_mels : int
        Mel bands of the CNN input.
    mel_fmax_hz : float
        Upper edge of the mel filterbank.
    """

    section: ClassVar[str] = "features"
    hop_size: int = 441
    frame_sizes: tuple[int, ...] = (1024, 2048, 4096)
    bands_per_octave: int = 12
    fmin_hz: float = 30.0
    fmax_hz: float = 17000.0
    log_mul: float = 1.0
    diff_ratio: float = 0.5
    diff_max_bins: int = 3
    n_mels: int = 96
    mel_fmax_hz: float = 11025.0

    def __post_init__(self) -> None:
        s = self.section
        _check_range(s, "hop_size", self.hop_size, 32, 8192, integer=True)
        if not self.frame_sizes:
            raise ConfigError(f"{s}.frame_sizes is empty: give at least one power of two")
        for n in self.frame_sizes:
            _check_range(s, "frame_sizes", n, 256, 16384, integer=True)
            if n & (n - 1):
                raise ConfigError(
                    f"{s}.frame_sizes = {list(self.frame_sizes)}: {n} is no power of 2"
                )
        if tuple(sorted(set(self.frame_sizes))) != self.frame_sizes:
            raise ConfigError(f"{s}.frame_sizes = {list(self.frame_sizes)} must rise strictly")
        _check_range(s, "bands_per_octave", self.bands_per_octave, 1, 48, integer=True)
        _check_range(s, "fmin_hz", self.fmin_hz, 10.0, 1000.0)
        _check_range(s, "fmax_hz", self.fmax_hz, 1000.0, 96000.0)
        _check_range(s, "log_mul", self.log_mul, 1e-3, 1e6)
        _check_range(s, "diff_ratio", self.diff_ratio, 0.0, 1.0)
        _check_range(s, "diff_max_bins", self.diff_max_bins, 1, 15, integer=True)
        _check_range(s, "n_mels", self.n_mels, 8, 256, integer=True)
        _check_range(s, "mel_fmax_hz", self.mel_fmax_hz, 1000.0, 96000.0)


@dataclass(frozen=True, slots=True)
class OnsetConfig:
    """Onset detection (LSTM or SuperFlux activation plus online peak picking).

    Parameters
    ----------
    detector : {"auto", "lstm", "superflux"}
        Onset detector: the causal LSTM, the DSP SuperFlux detector, or the LSTM when its
        weights ship with this installation (auto).
    threshold : float
        SuperFlux: minimum activation above the recent moving average for an onset.
    lstm_threshold : float or None
        LSTM: minimum activation (probability) above the recent moving average. None: the
        model's own, chosen with its epoch on the validation fold (its card says which).
    min_interval_s : float
        Minimum time between two onsets.
    pre_avg_s : float
        SuperFlux: length of the causal moving average subtracted before thresholding.
    pre_max_s : float
        SuperFlux: the activation must be the maximum over this causal window.
    lstm_pre_avg_s, lstm_pre_max_s : float or None
        The same two windows for the LSTM. None: the model's own.
    """

    section: ClassVar[str] = "onset"
    detector: str = "auto"
    threshold: float = 0.006
    lstm_threshold: float | None = None
    min_interval_s: float = 0.03
    pre_avg_s: float = 0.05
    pre_max_s: float = 0.03
    lstm_pre_avg_s: float | None = None
    lstm_pre_max_s: float | None = None

    def __post_init__(self) -> None:
        s = self.section
        if self.detector not in ("auto", "lstm", "superflux"):
            raise ConfigError(
                f"{s}.detector = {self.detector!r} is invalid: must be auto, lstm or superflux"
            )
        if self.lstm_threshold is not None:
            _check_range(s, "lstm_threshold", self.lstm_threshold, 0.0, 1.0)
        if self.lstm_pre_avg_s is not None:
            _check_range(s, "lstm_pre_avg_s", self.lstm_pre_avg_s, 0.0, 2.0)
        if self.lstm_pre_max_s is not None:
            _check_range(s, "lstm_pre_max_s", self.lstm_pre_max_s, 0.0, 1.0)
        _check_range(s, "threshold", self.threshold, 0.0, 1e3)
        _check_range(s, "min_interval_s", self.min_interval_s, 0.0, 2.0)
        _check_range(s, "pre_avg_s", self.pre_avg_s, 0.0, 2.0)
        _check_range(s, "pre_max_s", self.pre_max_s, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class BeatConfig:
    """Beat activation source and silence gate.

    Parameters
    ----------
    source : {"auto", "lstm", "dsp", "off"}
        Activation: the beat LSTM, the DSP fallback, the LSTM when it ships (auto), or no
        beat tracking at all.
    gate_dbfs : float
        Input whose RMS level stays below this for ``gate_hold_s`` is silence: no evidence, and
        no beats once the tracker's flywheel runs out.
    gate_hold_s : float
        How long the level must stay below the gate (gaps between clicks or notes are not
        silence).
    dsp_half_life_s : float
        Decay of the DSP fallback's normalising maximum.
    bar_model : bool
        Number the bars with the beat-synchronous bar model (``models/weights/bars``,
        :mod:`onbeat.realtime.bars`) when it ships; off: with the beat LSTM's downbeat output.
    """

    section: ClassVar[str] = "beats"
    source: str = "auto"
    gate_dbfs: float = -60.0
    gate_hold_s: float = 1.0
    dsp_half_life_s: float = 4.0
    bar_model: bool = True

    def __post_init__(self) -> None:
        s = self.section
        if self.source not in ("auto", "lstm", "dsp", "off"):
            raise ConfigError(
                f"{s}.source = {self.source!r} is invalid: must be auto, lstm, dsp or off"
            )
        _check_range(s, "gate_dbfs", self.gate_dbfs, -140.0, 0.0)
        _check_range(s, "gate_hold_s", self.gate_hold_s, 0.0, 60.0)
        _check_range(s, "dsp_half_life_s", self.dsp_half_life_s, 0.1, 60.0)


@dataclass(frozen=True, slots=True)
class TagsConfig:
    """The windowed CNN (genre, mood, voice) in its background thread.

    Parameters
    ----------
    enabled : {"auto", "on", "off"}
        ``auto`` runs the tagger when its weights ship (``models/weights/tags.*``); ``on``
        requires them.
    hop_s : float
        Stream time between windows.
    window_s : float
        Audio per window.
    ema_s : float
        Time constant of the exponential smoothing of the published probabilities.
    hysteresis : float
        The displayed top genre / quadrant changes only when another leads it by this much.
    gate_dbfs : float
        Windows whose RMS level is below this are room noise: no tags (the last state holds).
    novelty : float
        A window whose embedding lies further than this cosine distance from the running mean
        starts a new running mean (a song change without a gap); 0 turns it off.
    dwell_s : float
        A label that leads the smoothed probabilities for this long replaces the displayed one
        even without the hysteresis lead; 0 turns it off.
    restart_on_silence : bool
        After a gated window, the next window starts a new running mean (a new song): its
        labels settle as fast as at the start of the stream.
    """

    section: ClassVar[str] = "tags"
    enabled: str = "auto"
    hop_s: float = 1.5
    window_s: float = 3.0
    ema_s: float = 12.0
    hysteresis: float = 0.15
    gate_dbfs: float = -50.0
    novelty: float = 0.7
    dwell_s: float = 30.0
    restart_on_silence: bool = True

    def __post_init__(self) -> None:
        s = self.section
        if self.enabled not in ("auto", "on", "off"):
            raise ConfigError(f"{s}.enabled = {self.enabled!r} is invalid: must be auto, on or off")
        _check_range(s, "hop_s", self.hop_s, 0.1, 60.0)
        _check_range(s, "window_s", self.window_s, 1.0, 30.0)
        _check_range(s, "ema_s", self.ema_s, 0.0, 600.0)
        _check_range(s, "hysteresis", self.hysteresis, 0.0, 1.0)
        _check_range(s, "gate_dbfs", self.gate_dbfs, -140.0, 0.0)
        _check_range(s, "novelty", self.novelty, 0.0, 2.0)
        _check_range(s, "dwell_s", self.dwell_s, 0.0, 600.0)


@dataclass(frozen=True, slots=True)
class LibraryConfig:
    """The reference library: live "sounds like" and scene cues (``onbeat.realtime.library``).

    Parameters
    ----------
    enabled : {"auto", "on", "off"}
        ``auto`` compares each tags window with the library when the database exists and
        holds tracks; ``on`` requires the tagger and the database.
    db_path : str or None
        The SQLite database; None: ``$XDG_DATA_HOME/onbeat/library.sqlite`` (else
        ``~/.local/share/onbeat/library.sqlite``).
    k : int
        Nearest tracks published per window.
    dwell_s : float
        The scene switches once the references of another scene have stayed the closest for
        this long.
    hysteresis : float
        Cosine-distance margin by which another scene's references must beat the current
        scene's to count as closer.
    scoring : {"window", "mean"}
        ``window``: a track's distance is ``1 -`` the best cosine over its stored windows;
        ``mean``: ``1 -`` the cosine to the track's mean embedding (less memory, less exact).
    """

    section: ClassVar[str] = "library"
    enabled: str = "auto"
    db_path: str | None = None
    k: int = 3
    dwell_s: float = 8.0
    hysteresis: float = 0.05
    scoring: str = "window"

    def __post_init__(self) -> None:
        s = self.section
        if self.enabled not in ("auto", "on", "off"):
            raise ConfigError(f"{s}.enabled = {self.enabled!r} is invalid: must be auto, on or off")
        if self.scoring not in ("window", "mean"):
            raise ConfigError(f"{s}.scoring = {self.scoring!r} is invalid: must be window or mean")
        if self.db_path is not None and (not isinstance(self.db_path, str) or not self.db_path):
            raise ConfigError(f"{s}.db_path = {self.db_path!r} is invalid: must be a file path")
        _check_range(s, "k", self.k, 1, 100, integer=True)
        _check_range(s, "dwell_s", self.dwell_s, 0.0, 3600.0)
        _check_range(s, "hysteresis", self.hysteresis, 0.0, 2.0)


@dataclass(frozen=True, slots=True)
class OutputConfig:
    """Where events go.

    Parameters
    ----------
    events_path : str or None
        JSON Lines file that receives every event, one per line.
    console : bool
        Show the compact live status line on stderr.
    level_rate_hz : float
        Rate of level events.
    queue_size : int
        Per-sink queue length; the oldest events are dropped (and counted) beyond it.
    osc : tuple of str
        OSC targets, ``[PRESET@]HOST[:PORT][:PROFILE][,KEY=VALUE...]`` (``onbeat.realtime.osc``).
    osc_control : str or None
        ``[HOST:]PORT`` of the OSC control server (tap, nudge, resync, ...); off when None.
    osc_allow : tuple of str
        Sender addresses or CIDR ranges allowed to control (empty: any on the bound interface).
    ws : str or None
        ``[HOST:]PORT`` of the WebSocket event broadcast; off when None.
    link : str or None
        Ableton Link peer options, ``KEY=VALUE,...`` (``onbeat.realtime.link_sink``); empty for
        the defaults, off when None.
    midi_clock : str or None
        MIDI clock output ``[PORT][,KEY=VALUE...]`` (``onbeat.realtime.midi_clock``); empty for a
        virtual port ``onbeat:clock``, off when None.
    """

    section: ClassVar[str] = "output"
    events_path: str | None = None
    console: bool = True
    level_rate_hz: float = 10.0
    queue_size: int = 8192
    osc: tuple[str, ...] = ()
    osc_control: str | None = None
    osc_allow: tuple[str, ...] = ()
    ws: str | None = None
    link: str | None = None
    midi_clock: str | None = None

    def __post_init__(self) -> None:
        s = self.section
        _check_range(s, "level_rate_hz", self.level_rate_hz, 0.1, 100.0)
        _check_range(s, "queue_size", self.queue_size, 16, 10_000_000, integer=True)
        from onbeat.realtime.link_sink import parse_link_options
        from onbeat.realtime.midi_clock import parse_midi_clock
        from onbeat.realtime.osc import parse_osc_control, parse_osc_target
        from onbeat.realtime.websocket_sink import parse_ws_address

        for t in self.osc:
            parse_osc_target(t)
        if self.osc_control is not None:
            parse_osc_control(self.osc_control, allow=self.osc_allow)
        if self.ws is not None:
            parse_ws_address(self.ws)
        if self.link is not None:
            parse_link_options(self.link)
        if self.midi_clock is not None:
            parse_midi_clock(self.midi_clock)


@dataclass(frozen=True, slots=True)
class OnbeatConfig:
    """The whole configuration: one frozen section per concern."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    onset: OnsetConfig = field(default_factory=OnsetConfig)
    beats: BeatConfig = field(default_factory=BeatConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    tags: TagsConfig = field(default_factory=TagsConfig)
    library: LibraryConfig = field(default_factory=LibraryConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        f = self.features
        if f.fmax_hz > self.audio.sample_rate_hz / 2:
            raise ConfigError(
                f"features.fmax_hz = {f.fmax_hz} is above the Nyquist frequency "
                f"{self.audio.sample_rate_hz / 2} of audio.sample_rate_hz"
            )
        if f.mel_fmax_hz > self.audio.sample_rate_hz / 2:
            raise ConfigError(
                f"features.mel_fmax_hz = {f.mel_fmax_hz} is above the Nyquist frequency "
                f"{self.audio.sample_rate_hz / 2} of audio.sample_rate_hz"
            )
        if f.hop_size > f.frame_sizes[0]:
            raise ConfigError(
                f"features.hop_size = {f.hop_size} is larger than the smallest frame size "
                f"{f.frame_sizes[0]}"
            )

    @property
    def frame_rate_hz(self) -> float:
        """Frames per second of the framewise analysis."""
        return self.audio.sample_rate_hz / self.features.hop_size


_SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "features": FeatureConfig,
    "onset": OnsetConfig,
    "beats": BeatConfig,
    "tracker": TrackerConfig,
    "tags": TagsConfig,
    "library": LibraryConfig,
    "output": OutputConfig,
}


def _coerce(section: str, key: str, value: Any, current: Any) -> Any:
    """Convert a TOML or command-line value to the type of the field it replaces."""
    if isinstance(current, tuple) or (
        key in ("channels", "frame_sizes", "beats_per_bar", "osc", "osc_allow")
    ):
        if isinstance(value, int | str) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{section}.{key} = {value!r} is invalid: must be a list")
        return tuple(value)
    if key in ("link", "midi_clock") and isinstance(value, bool):
        return "" if value else None  # TOML: link = true (defaults) / false (off)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{key} = {value!r} is invalid: must be true or false")
        return value
    optional_float = key in ("lstm_threshold", "lstm_pre_avg_s", "lstm_pre_max_s")
    if (
        (isinstance(current, float) or optional_float)
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        return float(value)
    if (
        key in ("device", "events_path", "osc_control", "ws", "link", "midi_clock", "db_path")
        and value is not None
        and not isinstance(value, str)
    ):
        return str(value)
    return value


def apply_overrides(config: OnbeatConfig, overrides: Mapping[str, Any]) -> OnbeatConfig:
    """Return a copy of ``config`` with dotted-key overrides applied and validated.

    Parameters
    ----------
    config : OnbeatConfig
        The base configuration.
    overrides : mapping of str to value
        Keys are ``section.field``; a value of ``None`` leaves the field unchanged.

    Raises
    ------
    ConfigError
        For an unknown key or an impossible value.
    """
    per_section: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        cls = _SECTIONS.get(section)
        if cls is None:
            raise ConfigError(
                f"unknown config section {section!r} in {dotted!r}: known are {sorted(_SECTIONS)}"
            )
        names = [f.name for f in fields(cls)]
        if key not in names:
            raise ConfigError(f"unknown config key {dotted!r}: {section} has {names}")
        current = getattr(getattr(config, section), key)
        per_section.setdefault(section, {})[key] = _coerce(section, key, value, current)
    if not per_section:
        return config
    try:
        sections = {
            name: dataclasses.replace(getattr(config, name), **changes)
            for name, changes in per_section.items()
        }
        return dataclasses.replace(config, **sections)
    except TypeError as exc:  # a value of a type the field cannot take
        raise ConfigError(f"invalid config value: {exc}") from None


def load_config(path: str | Path | None = None) -> OnbeatConfig:
    """Load a TOML configuration file (or the defaults when ``path`` is None).

    Raises
    ------
    ConfigError
        When the file is missing, is not valid TOML, or holds an unknown key or bad value.
    """
    config = OnbeatConfig()
    if path is None:
        return config
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
    flat: dict[str, Any] = {}
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config file {str(p)!r}: {section!r} must be a [table]")
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return apply_overrides(config, flat)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``section.key=value`` command-line override; the value is read as TOML.

    A value that is not valid TOML is taken as a plain string.
    """
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
