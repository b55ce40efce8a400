"""A private PipeWire session with a virtual microphone, for device tests and CI.

``virtual_microphone()`` starts a throw-away audio stack (session D-Bus, ``pipewire``,
``wireplumber``, ``pipewire-pulse``) in a private ``XDG_RUNTIME_DIR``, creates

    vsink  a mono null sink (anything played into it ...)
    vmic   a mono source remapped from ``vsink.monitor`` (... comes out of this "microphone")

makes them the defaults, and points this process (and its children) at that session. Nothing
of the host's audio setup is used or touched; no sound card is needed. Typical use::

    import sounddevice as sd

    with virtual_microphone() as mic:     # re-initializes sounddevice: "pipewire" now listed
        with sd.InputStream(device=mic.input_device, samplerate=mic.rate_hz, channels=1,
                            latency=0.2, callback=...):
            mic.play("clicks.wav").wait() # paplay --device=vsink clicks.wav

How the device is reached: PortAudio's ALSA host API lists the ``pipewire`` (and ``default``)
PCM from the pipewire-alsa plugin, which speaks the native PipeWire protocol to the socket
``$XDG_RUNTIME_DIR/pipewire-0``; its capture stream is linked by wireplumber to the default
source, which is ``vmic``. So ``XDG_RUNTIME_DIR`` is the one variable PortAudio needs; the
others are set so that pulse clients (pactl, paplay) and anything else in child processes
reach this session and not some other one.

Record with a generous buffer (``latency=0.2``, say, rather than sounddevice's 35 ms "high"
default): when PortAudio's thread is late the pipewire ALSA plugin drops input *silently*
(no ``input_overflow`` status), which on a loaded CI machine shows as a chunk of one graph
quantum (e.g. 256 samples) missing from the recording.

PortAudio enumerates devices once, in ``Pa_Initialize`` (run when ``sounddevice`` is
imported). The context manager therefore re-initializes sounddevice itself, on entry and on
exit, when it is already imported; ``reinit_sounddevice()`` does the same on demand. Streams
opened through sounddevice must be closed before the ``with`` block ends.

Every failure to start raises ``PipeWireUnavailable`` with the reason (and the tail of the
failing program's log), so tests can ``pytest.skip(str(exc))``. Needs (Debian):
``.ci/install_system.sh``. Works as root and without a tty; realtime-priority warnings from
pipewire are expected in containers and harmless.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "INPUT_DEVICE",
    "REQUIRED_BINARIES",
    "PipeWireUnavailable",
    "VirtualMicrophone",
    "reinit_sounddevice",
    "virtual_microphone",
]

REQUIRED_BINARIES = ("dbus-daemon", "pipewire", "wireplumber", "pipewire-pulse", "pactl", "paplay")

#: Name fragment selecting the virtual microphone in sounddevice (the pipewire-alsa PCM, seen
#: through PortAudio's ALSA host API). It records the default source, i.e. ``vmic``.
INPUT_DEVICE = "pipewire"

SINK = "vsink"
SOURCE = "vmic"

START_TIMEOUT_S = 10.0

# Client-side variables this module owns while the session runs (saved and restored).
_CLIENT_VARS = (
    "XDG_RUNTIME_DIR",
    "PIPEWIRE_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "PULSE_SERVER",
)
# Variables that would redirect clients elsewhere; removed while the session runs.
_UNSET_VARS = (
    "PIPEWIRE_REMOTE",
    "PIPEWIRE_NODE",
    "PULSE_SINK",
    "PULSE_SOURCE",
    "PULSE_RUNTIME_PATH",
)

# ALSA configuration installed by pipewire-alsa, which defines the "pipewire" PCM.
_ALSA_PIPEWIRE_CONF = (
    "/usr/share/alsa/alsa.conf.d/50-pipewire.conf",
    "/etc/alsa/conf.d/50-pipewire.conf",
)


class PipeWireUnavailable(Exception):
    """The private PipeWire session could not be set up; the message says why."""


@dataclass(frozen=True)
class VirtualMicrophone:
    """A running private PipeWire session with ``vsink`` -> ``vmic``."""

    env: Mapping[str, str]
    """Environment of the session: the client variables exported to ``os.environ`` plus the
    servers' private ``XDG_CONFIG_HOME``/``XDG_STATE_HOME`` (use it for subprocesses)."""
    input_device: str
    """Pass as ``device=`` to sounddevice to record ``vmic``."""
    runtime_dir: Path
    rate_hz: int
    sink: str = SINK
    source: str = SOURCE
    startup_s: float = field(default=0.0, compare=False)
    """Seconds it took to bring the session up."""

    def play(self, path: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Start ``paplay --device=vsink path``; returns at once (``.wait()`` on the result)."""
        return subprocess.Popen(
            ["paplay", f"--device={self.sink}", os.fspath(path)],
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def pactl(self, *args: str, timeout: float = 5.0) -> str:
        """Run ``pactl args...`` against this session and return its stdout."""
        return _pactl(dict(self.env), *args, timeout=timeout)


def reinit_sounddevice() -> None:
    """Make an imported sounddevice re-enumerate devices (PortAudio lists them only at init)."""
    sd = sys.modules.get("sounddevice")
    if sd is None:
        return
    sd._terminate()
    sd._initialize()


# --------------------------------------------------------------------------------------------
# implementation


class _Session:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: dict[str, Path] = {}

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        logdir: Path,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        log = logdir / f"{name}.log"
        self.logs[name] = log
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killed as a whole on exit
                close_fds=True,
                pass_fds=pass_fds,
            )
        self.procs.append((name, proc))

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise PipeWireUnavailable(
                    f"{name} exited with status {proc.returncode} during start-up"
                    + self.log_tail(name)
                )

    def log_tail(self, name: str, n: int = 15) -> str:
        try:
            lines = self.logs[name].read_text(errors="replace").splitlines()[-n:]
        except (KeyError, OSError):
            return ""
        return ("\n--- " + name + " log (tail) ---\n" + "\n".join(lines)) if lines else ""

    def stop(self) -> None:
        # reverse start order: clients of pipewire first, the bus last
        for _, proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2.0)
            # also reap anything left in the group (e.g. helpers the daemon spawned)
            _signal_group(proc, signal.SIGKILL)
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session


def _pactl(env: dict[str, str], *args: str, timeout: float = 5.0) -> str:
    try:
        res = subprocess.run(
            ["pactl", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PipeWireUnavailable(f"pactl {' '.join(args)}: no answer in {timeout:.0f} s") from exc
    if res.returncode != 0:
        err = (res.stderr or res.stdout).decode(errors="replace").strip()
        raise PipeWireUnavailable(f"pactl {' '.join(args)} failed ({res.returncode}): {err}")
    return res.stdout.decode(errors="replace")


def _wait_for(what: str, ok: Callable[[], bool], session: _Session, deadline: float) -> None:
    last: Exception | None = None
    while True:
        session.check_alive()
        try:
            if ok():
                return
        except PipeWireUnavailable as exc:
            last = exc
        if time.monotonic() > deadline:
            detail = f": {last}" if last else ""
            tails = "".join(session.log_tail(n) for n, _ in session.procs if n != "dbus")
            raise PipeWireUnavailable(
                f"timed out after {START_TIMEOUT_S:.0f} s waiting for {what}{detail}{tails}"
            )
        time.sleep(0.05)


def _make_tempdir() -> Path:
    # unix socket paths are limited to 107 bytes; keep the runtime dir short
    base = None
    if len(tempfile.gettempdir()) > 40 and os.path.isdir("/tmp"):
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="onbeat-pw-", dir=base))


def _write_configs(config_home: Path, rate_hz: int, quantum: int | None) -> None:
    # PipeWire: run the graph at the requested rate (no resampling between vsink and vmic) and,
    # if asked, never below `quantum` frames per cycle (see virtual_microphone).
    clock = [f"default.clock.rate = {rate_hz}", f"default.clock.allowed-rates = [ {rate_hz} ]"]
    if quantum is not None:
        clock += [
            f"default.clock.quantum = {quantum}",
            f"default.clock.min-quantum = {quantum}",
            f"default.clock.max-quantum = {max(quantum, 2048)}",
        ]
    pw_d = config_home / "pipewire" / "pipewire.conf.d"
    pw_d.mkdir(parents=True)
    body = "".join(f"    {line}\n" for line in clock)
    (pw_d / "50-onbeat-clock.conf").write_text(f"context.properties = {{\n{body}}}\n")
    # WirePlumber 0.4 (Lua config): don't probe real hardware; only virtual nodes matter.
    wp_main = config_home / "wireplumber" / "main.lua.d"
    wp_main.mkdir(parents=True)
    (wp_main / "51-onbeat-no-hardware.lua").write_text(
        "alsa_monitor.enabled = false\nv4l2_monitor.enabled = false\n"
        "libcamera_monitor.enabled = false\n"
    )
    wp_bt = config_home / "wireplumber" / "bluetooth.lua.d"
    wp_bt.mkdir(parents=True)
    (wp_bt / "51-onbeat-no-bluetooth.lua").write_text("bluez_monitor.enabled = false\n")


def _start_dbus(
    session: _Session, env: dict[str, str], runtime: Path, logdir: Path, deadline: float
) -> str:
    """Start a session bus at ``$runtime/bus``; returns its address once it accepts clients."""
    address = f"unix:path={runtime / 'bus'}"
    # the address comes back on a pipe of its own; stdout/stderr go to the log (dbus warns
    # there after start-up, e.g. that as root it can't raise the fd limit)
    rfd, wfd = os.pipe()
    try:
        session.start(
            "dbus",
            [
                "dbus-daemon",
                "--session",
                "--nofork",
                "--nopidfile",
                "--nosyslog",
                f"--address={address}",
                f"--print-address={wfd}",
            ],
            env,
            logdir,
            pass_fds=(wfd,),
        )
        os.close(wfd)
        wfd = -1
        ready, _, _ = select.select([rfd], [], [], max(0.1, deadline - time.monotonic()))
        line = os.read(rfd, 4096).decode(errors="replace").strip() if ready else ""
    finally:
        os.close(rfd)
        if wfd >= 0:
            os.close(wfd)
    if not line:
        time.sleep(0.1)  # let a failing daemon finish writing its complaint
        raise PipeWireUnavailable("dbus-daemon --session did not start" + session.log_tail("dbus"))
    return line.split(",guid=")[0]


@contextlib.contextmanager
def virtual_microphone(
    rate_hz: int = 48000, *, quantum: int | None = None
) -> Iterator[VirtualMicrophone]:
    """Run a private PipeWire session with a virtual microphone; see the module docstring.

    ``rate_hz`` is the graph's only clock rate and the rate of vsink/vmic (record at it:
    nothing is resampled). ``quantum`` (frames per graph cycle) is left to PipeWire by default,
    which follows the smallest period its clients ask for; a fixed one makes cycles longer
    (fewer missed deadlines on a loaded machine) but must not exceed the ALSA buffer of the
    recording stream (PortAudio ``latency``), or input is lost.

    Raises ``PipeWireUnavailable`` when something is missing or does not start (within
    ``START_TIMEOUT_S``). While the block runs, ``os.environ`` points at the session; on exit
    everything started is killed, the temporary directory removed and ``os.environ`` restored.
    """
    if sys.platform != "linux":
        raise PipeWireUnavailable(f"PipeWire virtual microphone needs Linux, not {sys.platform}")
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        raise PipeWireUnavailable(
            f"missing programs: {', '.join(missing)} (run .ci/install_system.sh)"
        )
    if not any(os.path.exists(p) for p in _ALSA_PIPEWIRE_CONF):
        raise PipeWireUnavailable(
            "pipewire-alsa is not installed: PortAudio would see no PipeWire device "
            "(run .ci/install_system.sh)"
        )

    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT_S
    tmp = _make_tempdir()
    session = _Session()
    saved_env = {k: os.environ.get(k) for k in (*_CLIENT_VARS, *_UNSET_VARS)}
    env_applied = False
    try:
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        os.chmod(runtime, 0o700)  # mkdir's mode is filtered by the umask
        config_home = tmp / "config"
        state_home = tmp / "state"
        state_home.mkdir()
        _write_configs(config_home, rate_hz, quantum)
        logdir = tmp / "log"
        logdir.mkdir()

        base_env = {k: v for k, v in os.environ.items() if k not in _UNSET_VARS}
        base_env.update(
            XDG_RUNTIME_DIR=str(runtime),
            PIPEWIRE_RUNTIME_DIR=str(runtime),
            PULSE_SERVER=f"unix:{runtime / 'pulse' / 'native'}",
        )
        # the servers (and pactl/paplay) get private config/state dirs: no host config is read,
        # no state (e.g. wireplumber's remembered defaults) is written outside tmp
        server_env = dict(
            base_env,
            XDG_CONFIG_HOME=str(config_home),
            XDG_STATE_HOME=str(state_home),
            PULSE_COOKIE=str(tmp / "pulse-cookie"),
        )
        server_env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        bus = _start_dbus(session, server_env, runtime, logdir, deadline)
        base_env["DBUS_SESSION_BUS_ADDRESS"] = bus
        server_env["DBUS_SESSION_BUS_ADDRESS"] = bus

        session.start("pipewire", ["pipewire"], server_env, logdir)
        _wait_for(
            "the pipewire socket",
            lambda: (runtime / "pipewire-0").exists(),
            session,
            deadline,
        )
        session.start("wireplumber", ["wireplumber"], server_env, logdir)
        session.start("pipewire-pulse", ["pipewire-pulse"], server_env, logdir)
        _wait_for(
            "pipewire-pulse to answer `pactl info`",
            lambda: bool(_pactl(server_env, "info", timeout=2.0)),
            session,
            deadline,
        )

        _pactl(
            server_env,
            "load-module",
            "module-null-sink",
            f"sink_name={SINK}",
            f"rate={rate_hz}",
            "channels=1",
            "channel_map=mono",
            "sink_properties=device.description=onbeat-virtual-sink",
        )
        _pactl(
            server_env,
            "load-module",
            "module-remap-source",
            f"source_name={SOURCE}",
            f"master={SINK}.monitor",
            "channels=1",
            "channel_map=mono",
            "source_properties=device.description=onbeat-virtual-microphone",
        )

        # defaults are applied by wireplumber: seeing them take effect also proves it runs
        def defaults_set() -> bool:
            _pactl(server_env, "set-default-sink", SINK, timeout=2.0)
            _pactl(server_env, "set-default-source", SOURCE, timeout=2.0)
            info = _pactl(server_env, "info", timeout=2.0).splitlines()  # portable to pactl<15
            return f"Default Sink: {SINK}" in info and f"Default Source: {SOURCE}" in info

        _wait_for(
            f"wireplumber to make {SINK}/{SOURCE} the defaults", defaults_set, session, deadline
        )

        client_env = {k: base_env[k] for k in _CLIENT_VARS}
        for k in _UNSET_VARS:
            os.environ.pop(k, None)
        os.environ.update(client_env)
        env_applied = True
        reinit_sounddevice()

        yield VirtualMicrophone(
            env=server_env,
            input_device=INPUT_DEVICE,
            runtime_dir=runtime,
            rate_hz=rate_hz,
            startup_s=time.monotonic() - t0,
        )
    finally:
        session.stop()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if env_applied:
            with contextlib.suppress(Exception):
                reinit_sounddevice()  # drop the now-dead PipeWire devices
        shutil.rmtree(tmp, ignore_errors=True)
