"""Gain augmentation of cached features equals features of the gained audio."""

import numpy as np
from onbeat.training.augment import GainAugment


def test_gain_augment_is_exact(prepared_features, noise_music):
    f = prepared_features
    aug = GainAugment(f.layout, [int(d) for d in f._diff_frames], f.config.diff_max_bins)
    x = f.batch(noise_music)
    for gain_db in (-18.0, 0.0, 6.0):
        y = f.batch(noise_music * np.float32(10 ** (gain_db / 20)))
        np.testing.assert_allclose(aug.apply(x, gain_db), y, atol=2e-4, rtol=1e-4)
    # a crop with left context is exact after dropping the context rows
    s, ctx = 50, aug.context
    crop = aug.apply(x[s - ctx : s + 40], -10.0)[ctx:]
    full = f.batch(noise_music * np.float32(10 ** (-10 / 20)))[s : s + 40]
    np.testing.assert_allclose(crop, full, atol=2e-4, rtol=1e-4)


def test_eq_augment_matches_filtered_audio(prepared_features, noise_music):
    """A per-band gain stands for an equaliser on the audio: the features of noise music through
    a real second-order high-pass (or low-pass) are what ``apply_bands`` makes of the plain
    features, up to the filter's slope inside one band."""
    from onbeat.training.augment import EqAugment
    from scipy.signal import butter, sosfilt

    f = prepared_features
    centres = [fb.center_hz for fb in f.filterbanks]
    aug = EqAugment(
        f.layout, [int(d) for d in f._diff_frames], f.config.diff_max_bins, centres, p_cut=1.0
    )
    x = f.batch(noise_music)
    lf = np.concatenate(
        [np.arange(x.shape[1])[f.layout.block("logfilt", n)] for n in f.layout.frame_sizes]
    )
    for kind, fc in (("highpass", 300.0), ("lowpass", 3000.0)):
        sos = butter(2, fc, btype=kind, fs=44100, output="sos")
        y = f.batch(sosfilt(sos, noise_music).astype(np.float32))
        rel = [(np.log2(fc / c) if kind == "highpass" else np.log2(c / fc)) for c in centres]
        db = [-10.0 * np.log10(1.0 + 2.0 ** (4.0 * r)) for r in rel]
        z = aug.apply_bands(x, db)
        err_aug = np.abs(z[:, lf] - y[:, lf]).mean()
        err_plain = np.abs(x[:, lf] - y[:, lf]).mean()
        assert err_aug < 0.1 * err_plain, (kind, err_aug, err_plain)
    # a flat 0 dB equaliser is the identity; a scalar per frame size is the plain gain
    np.testing.assert_allclose(aug.apply_bands(x, [0.0] * len(centres)), x, atol=1e-5)
    np.testing.assert_allclose(aug.apply_bands(x, [-6.0] * len(centres)), aug.apply(x, -6.0))
    # random draws: one gain per band, finite, cuts reach deep below the corner
    rng = np.random.default_rng(0)
    draws = [aug.draw_db(rng) for _ in range(50)]
    assert all(d[i].shape == centres[i].shape for d in draws for i in range(len(centres)))
    assert min(float(d[0].min()) for d in draws) < -40.0
    out = aug(x, rng)
    assert out.shape == x.shape and np.isfinite(out).all()
