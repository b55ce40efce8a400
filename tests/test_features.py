"""Features: agreement with a NumPy reference, block-split invariance, causality, offline parity."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from onbeat.realtime.analysis import Analyzer
from onbeat.realtime.bus import EventBus
from onbeat.realtime.config import OnbeatConfig
from onbeat.realtime.features import log_mel
from onbeat.realtime.filterbanks import log_filterbank, mel_filterbank
from onbeat.realtime.ringbuffer import RingBuffer
from onbeat.realtime.sources import InputCallback
from reference import reference_features, reference_log_mel


def stream_features(x, sizes, config=None, channels=1):
    """Run x through callback -> ring -> analyzer with the given block sizes; return all frames."""
    config = config or OnbeatConfig()
    an = Analyzer(config, EventBus(), device_rate_hz=44100, channels_in=channels)
    an.prepare()
    frames = []
    an.frame_hook = lambda k, s: frames.append(an.features.output.copy())
    ring = RingBuffer(44100, channels)
    cb = InputCallback(ring)
    x2 = x.reshape(len(x), -1) if x.ndim == 1 else x
    i = 0
    k = 0
    while i < len(x2):
        n = sizes[k % len(sizes)]
        k += 1
        cb(x2[i : i + n], n, None, None)
        i += n
        an.consume(ring)
    return np.array(frames), an


def test_matches_numpy_reference(prepared_features, noise_music, config):
    f = prepared_features
    ours = f.batch(noise_music)
    ref = reference_features(
        noise_music,
        sample_rate_hz=44100,
        config=config.features,
        filterbanks=f.filterbanks,
        diff_frames=list(f._diff_frames),
    )
    assert ours.shape == ref.shape == (len(noise_music) // 441, f.layout.dims)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)
    assert ours[:, f.layout.pdiff_mask()].min() >= 0


def test_streaming_equals_offline(prepared_features, noise_music):
    frames, _ = stream_features(noise_music, [441])
    np.testing.assert_array_equal(frames, prepared_features.batch(noise_music))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=12).filter(lambda s: sum(s) > 0))
def test_block_split_invariance(sizes, noise_music, prepared_features):
    x = noise_music[:30000]
    frames, _ = stream_features(x, sizes)
    np.testing.assert_array_equal(frames, prepared_features.batch(x))


@settings(max_examples=20, deadline=None)
@given(cut_frame=st.integers(1, 100), seed=st.integers(0, 2**31 - 1))
def test_future_samples_never_change_past_frames(cut_frame, seed, noise_music, prepared_features):
    x = noise_music[:60000].copy()
    end = cut_frame * 441
    y = x.copy()
    y[end:] = np.random.default_rng(seed).standard_normal(len(x) - end).astype(np.float32)
    fx = prepared_features.batch(x)[:cut_frame]
    fy = prepared_features.batch(y)[:cut_frame]
    np.testing.assert_array_equal(fx, fy)


def test_multichannel_mixdown_equals_mono(noise_music, prepared_features):
    x = noise_music[:20000]
    stereo = np.stack([x, x], axis=1)
    frames, _ = stream_features(stereo, [512], channels=2)
    np.testing.assert_allclose(frames, prepared_features.batch(x), atol=1e-6)


def test_nonfinite_and_clipped_samples_are_sanitized_and_counted():
    x = np.zeros(8820, np.float32)
    x[100] = np.nan
    x[200] = np.inf
    x[300] = 3.0
    x[400] = -1.5
    frames, an = stream_features(x, [256])
    assert np.isfinite(frames).all()
    assert an.nonfinite == 2 and an.clipped == 2


def test_log_filterbank_properties():
    fb = log_filterbank(
        n_fft=2048, sample_rate_hz=44100, bands_per_octave=12, fmin_hz=30, fmax_hz=17000
    )
    dense = fb.dense()
    np.testing.assert_allclose(dense.sum(axis=0), 1.0, rtol=1e-5)
    assert np.all(np.diff(fb.center_hz) > 0)
    assert 30 <= fb.center_hz[0] and fb.center_hz[-1] <= 17000


def test_mel_matches_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(44100).astype(np.float32) * 0.1
    fb = mel_filterbank(n_fft=2048, sample_rate_hz=44100, n_mels=96, fmax_hz=11025)
    ours = log_mel(x, sample_rate_hz=44100, n_fft=2048, hop_size=441, filterbank=fb)
    ref = reference_log_mel(x, n_fft=2048, hop=441, filterbank=fb)
    assert ours.shape == ref.shape == (1 + (44100 - 2048) // 441, 96)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_mel_filterbank_matches_slaney_formula():
    """Compare with librosa's Slaney mel filterbank when librosa is installed."""
    import pytest

    librosa = pytest.importorskip("librosa")
    ours = mel_filterbank(n_fft=2048, sample_rate_hz=44100, n_mels=64, fmax_hz=8000).dense()
    ref = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=64, fmax=8000).T
    np.testing.assert_allclose(ours, ref, atol=1e-6)
