"""The audio callback allocates nothing, takes no lock, logs nothing, calls no torch/numba."""

import sys
import threading
import tracemalloc

import numpy as np
from onbeat.realtime.ringbuffer import RingBuffer
from onbeat.realtime.sources import InputCallback


class _Flags:
    """Stands in for sounddevice.CallbackFlags: falsy unless an xrun happened."""

    def __init__(self, xrun: bool) -> None:
        self.xrun = xrun

    def __bool__(self) -> bool:
        return self.xrun


def test_callback_allocates_nothing_over_thousands_of_calls():
    ring = RingBuffer(48000, 2)
    cb = InputCallback(ring)
    rng = np.random.default_rng(0)
    sizes = rng.integers(0, 1024, 5000)
    blocks = [np.ascontiguousarray(rng.standard_normal((n, 2)), dtype=np.float32) for n in sizes]
    ok, bad = _Flags(False), _Flags(True)
    for b in blocks[:50]:  # settle caches (first slices, counter objects)
        cb(b, b.shape[0], None, ok)
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    for i, b in enumerate(blocks):
        cb(b, b.shape[0], None, bad if i % 1000 == 0 else ok)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # A copy of even the smallest nonzero block (8 bytes/frame) or any buffer growth would show.
    # (the loop's own counter `i` is one int object, 28 bytes: a leak per call would be ~100 kB)
    assert after - before <= 64, f"callback leaked {after - before} bytes"
    assert peak - before < 1024, f"callback allocated up to {peak - before} bytes transiently"
    assert ring.xruns == 5
    assert ring.callbacks == 5050


def test_callback_takes_no_lock_logs_nothing_calls_no_torch_or_numba():
    ring = RingBuffer(4096, 1)
    cb = InputCallback(ring)
    block = np.zeros((256, 1), np.float32)
    calls: list[str] = []

    def tracer(frame, event, arg):
        if event in ("call", "c_call"):
            mod = frame.f_globals.get("__name__", "")
            name = getattr(arg, "__qualname__", "") if event == "c_call" else frame.f_code.co_name
            calls.append(f"{mod}:{name}")
        return tracer

    sys.setprofile(tracer)
    try:
        for _ in range(100):
            cb(block, 256, None, None)
    finally:
        sys.setprofile(None)
    joined = " ".join(calls)
    for forbidden in ("logging", "torch", "numba", "acquire", "Lock", "put", "print", "append"):
        assert forbidden not in joined, f"callback reached {forbidden}: {sorted(set(calls))}"
    assert threading.current_thread() is threading.main_thread()
