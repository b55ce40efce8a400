import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.realtime.ringbuffer import RingBuffer


def test_window_is_contiguous_view_across_wrap():
    ring = RingBuffer(8, 1)
    data = np.arange(20, dtype=np.float32)[:, None]
    ring.write(data[:6])
    ring.read(6)
    ring.write(data[6:13])  # wraps
    w = ring.window(13, 8)
    assert w.flags.c_contiguous and not w.flags.writeable
    np.testing.assert_array_equal(w[:, 0], np.arange(5, 13))
    assert np.shares_memory(w, ring._buf)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=60), st.integers(1, 40))
def test_reading_reconstructs_stream(sizes, read_chunk):
    ring = RingBuffer(64, 2)
    src = np.random.default_rng(0).standard_normal((sum(sizes), 2)).astype(np.float32)
    got = []
    i = 0
    for n in sizes:
        ring.write(src[i : i + n])
        i += n
        while True:
            _, b = ring.read(read_chunk)
            if b.shape[0] == 0:
                break
            got.append(b.copy())
    out = np.concatenate(got) if got else np.zeros((0, 2), np.float32)
    np.testing.assert_array_equal(out, src)
    assert ring.overflows == 0


def test_overflow_is_counted_and_reader_skips_ahead():
    ring = RingBuffer(16, 1)
    ring.write(np.ones((10, 1), np.float32))
    ring.write(2 * np.ones((10, 1), np.float32))  # 4 unread samples overwritten
    assert ring.overflows == 1 and ring.overflow_samples == 4
    start, block = ring.read(100)
    assert start == 4 and block.shape[0] == 16
    ring.write(np.zeros((40, 1), np.float32))  # bigger than the ring
    assert ring.overflows == 2
    start, block = ring.read(100)
    assert start == 60 - 16 and block.shape[0] == 16


def test_window_rejects_overwritten_range():
    ring = RingBuffer(8, 1)
    ring.write(np.zeros((20, 1), np.float32))
    with pytest.raises(ValueError):
        ring.window(10, 4)
    assert ring.latest(8).shape == (8, 1)


def test_reset_keeps_memory():
    ring = RingBuffer(8, 1)
    buf = ring._buf
    ring.write(np.ones((5, 1), np.float32))
    ring.reset()
    assert ring._buf is buf and ring.written == 0 and not buf.any()
