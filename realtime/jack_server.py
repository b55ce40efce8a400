"""A private JACK server on the dummy driver, for MIDI clock tests and the soak benchmark.

Machines without a sound card (CI containers, this build machine) have no ALSA sequencer, but
JACK's dummy driver gives them a real MIDI graph: rtmidi's JACK backend opens virtual ports on it
and a second client receives them. This module starts such a server, tells whether it may run
with realtime scheduling, and counts the cycles it reported as late (xruns) from its log.

Why the xrun count matters: in every JACK cycle rtmidi's output client moves the queued MIDI
messages into that cycle's port buffer. When a client of the graph is late (not finished at the
cycle deadline), JACK reports an xrun and the cycle's buffers are not delivered, so the messages
moved into them are gone. A server started with ``--no-realtime`` runs its clients' process
threads at normal priority, and any CPU load then makes such cycles common (measured: 385 late
client cycles and 5 of 9,338 clocks lost in 20 s with six busy processes on two cores; with
realtime scheduling 3 late cycles, all at start and stop, and none lost). On a user's machine
JACK runs with realtime scheduling; :func:`realtime_allowed` decides it here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import TracebackType

from onbeat.realtime.midi_clock import jack_running

__all__ = ["DummyJackServer", "JackUnavailable", "count_xruns", "realtime_allowed"]

_CLIENT_XRUN = re.compile(r"JackEngine::XRun: client = (.+?) was not finished")
_DRIVER_XRUN = re.compile(r"Driver::Process XRun")


def count_xruns(log: str) -> Counter[str]:
    """Late cycles in a jackd log: per client name, and ``"(driver)"`` for the driver's own.

    jackd 1.9 prints ``JackEngine::XRun: client = NAME was not finished, state = Triggered``
    for each client that missed a cycle, and ``JackTimedDriver::Process XRun = N usec`` when the
    driver itself was late.
    """
    counts: Counter[str] = Counter()
    for line in log.splitlines():
        m = _CLIENT_XRUN.search(line)
        if m:
            counts[m.group(1)] += 1
        elif _DRIVER_XRUN.search(line):
            counts["(driver)"] += 1
    return counts


class JackUnavailable(RuntimeError):
    """jackd is not installed, or the dummy server did not start."""


def realtime_allowed() -> bool:
    """Whether this process may use ``SCHED_FIFO`` (root, or an rtprio limit above 0).

    Tried in a throw-away interpreter, so this process's own scheduling is never touched.
    """
    if not hasattr(os, "sched_setscheduler"):
        return False
    probe = "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


class DummyJackServer:
    """``jackd -d dummy`` under a private server name, with its log kept for xrun counting.

    Parameters
    ----------
    name : str or None
        The server name. None uses the default server (``JACK_DEFAULT_SERVER`` is left alone);
        otherwise ``JACK_DEFAULT_SERVER`` is set in this process's environment while the server
        runs, so this process's JACK clients and the children it starts use it.
        ``JACK_NO_START_SERVER=1`` is set for good: libjack must never spawn servers itself.
    realtime : {"auto", "on", "off"}
        ``auto`` runs the server (and so its clients' process threads) with realtime scheduling
        when :func:`realtime_allowed`.
    sample_rate_hz, period_frames : int
        The dummy driver's rate and period (``-r``, ``-p``).
    start_timeout_s : float
        How long to wait for the server to answer.

    Raises
    ------
    JackUnavailable
        From :meth:`start` when jackd is missing or does not answer in time.
    """

    def __init__(
        self,
        name: str | None = None,
        realtime: str = "auto",
        sample_rate_hz: int = 48000,
        period_frames: int = 256,
        start_timeout_s: float = 10.0,
    ) -> None:
        if realtime not in ("auto", "on", "off"):
            raise ValueError(f"realtime must be auto, on or off, not {realtime!r}")
        if sample_rate_hz <= 0 or period_frames <= 0:
            raise ValueError("sample_rate_hz and period_frames must be positive")
        self.name = name
        self.realtime = realtime_allowed() if realtime == "auto" else realtime == "on"
        self.sample_rate_hz = sample_rate_hz
        self.period_frames = period_frames
        self.start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._old_server: str | None = None

    def start(self) -> DummyJackServer:
        """Start jackd and wait until a client can open a port on it."""
        jackd = shutil.which("jackd")
        if jackd is None:
            raise JackUnavailable("jackd is not installed (Debian package jackd2)")
        os.environ["JACK_NO_START_SERVER"] = "1"  # the probes must not spawn servers of their own
        fd, log_name = tempfile.mkstemp(prefix="onbeat-jackd-", suffix=".log")
        self._log_path = Path(log_name)
        cmd = [jackd]
        if self.name is not None:
            cmd += ["-n", self.name]
            self._old_server = os.environ.get("JACK_DEFAULT_SERVER")
            os.environ["JACK_DEFAULT_SERVER"] = self.name
        cmd += ["--realtime" if self.realtime else "--no-realtime"]
        cmd += ["-d", "dummy", "-r", str(self.sample_rate_hz), "-p", str(self.period_frames)]
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not jack_running():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log()[-500:].strip()
                self.stop()
                raise JackUnavailable(f"jackd (dummy driver) did not start: {tail}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        """Everything jackd printed so far."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")

    def xruns(self) -> Counter[str]:
        """Late cycles reported so far (see :func:`count_xruns`)."""
        return count_xruns(self.log())

    def stop(self) -> None:
        """Terminate jackd (then kill it), restore ``JACK_DEFAULT_SERVER``; the log is kept."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.name is not None and os.environ.get("JACK_DEFAULT_SERVER") == self.name:
            if self._old_server is None:
                del os.environ["JACK_DEFAULT_SERVER"]
            else:
                os.environ["JACK_DEFAULT_SERVER"] = self._old_server

    def close(self) -> None:
        """Stop the server and delete its log."""
        self.stop()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> DummyJackServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
