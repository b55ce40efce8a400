"""How many MIDI clocks a JACK dummy server loses under CPU load, realtime or not.

One rtmidi client sends a MIDI clock every 2 ms to a second one for ``--seconds`` while
``--hogs`` busy processes load the machine; the private server's late cycles are counted from
its log (``onbeat.realtime.jack_server``). Run:
``python scripts/jack_midi_loss.py [--hogs 6] [--seconds 20] [--realtime auto|on|off]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from onbeat.realtime.jack_server import DummyJackServer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hogs", type=int, default=6, help="busy processes beside the clients")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--realtime", choices=("auto", "on", "off"), default="auto")
    args = ap.parse_args()
    import rtmidi

    with DummyJackServer(f"onbeat-loss-{os.getpid()}", realtime=args.realtime) as server:
        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "tx")
        out.open_virtual_port("clk")
        inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, "rx", queue_size_limit=1 << 16)
        inp.ignore_types(timing=False)
        inp.open_port([p.endswith("clk") for p in inp.get_ports()].index(True))
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hogs)
        ]
        sent = got = 0
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < args.seconds:
                out.send_message([0xF8])
                sent += 1
                time.sleep(0.002)
                while inp.get_message() is not None:
                    got += 1
        finally:
            for h in hogs:
                h.kill()
        time.sleep(0.5)
        while inp.get_message() is not None:
            got += 1
        inp.close_port()
        out.close_port()
        late = server.xruns()
    mode = "realtime" if server.realtime else "non-realtime"
    print(f"{mode} jackd, {args.hogs} busy processes, {args.seconds:g} s: clocks sent {sent}, "
          f"received {got} ({sent - got} lost); late cycles {dict(late)}")  # fmt: skip


if __name__ == "__main__":
    main()
