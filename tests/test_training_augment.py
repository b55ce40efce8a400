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
