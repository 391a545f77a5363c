"""Tests for soundscape.augment: waveform and image augmentations."""

import numpy as np
import pytest
import torch

from soundscape import augment
from soundscape.errors import ParameterError


def _image(seed=0, h=32, w=48):
    rng = np.random.default_rng(seed)
    one = torch.from_numpy(rng.uniform(-1, 1, size=(1, h, w)).astype(np.float32))
    return one.expand(3, h, w).contiguous()


def test_random_trim_long_clip_is_a_window_of_it():
    samples = np.arange(100, dtype=np.float32)
    out = augment.random_trim(samples, 30, np.random.default_rng(1))
    assert len(out) == 30
    start = int(out[0])
    np.testing.assert_array_equal(out, samples[start:start + 30])
    starts = {int(augment.random_trim(samples, 30, np.random.default_rng(s))[0]) for s in range(20)}
    assert len(starts) > 1  # the window moves


def test_random_trim_short_clip_extend_or_pad():
    samples = np.array([1, 2, 3], dtype=np.float32)
    np.testing.assert_array_equal(
        augment.random_trim(samples, 7, np.random.default_rng(0), extend_short=True), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(
        augment.random_trim(samples, 5, np.random.default_rng(0)), [1, 2, 3, 0, 0])
    with pytest.raises(ParameterError, match="clip.wav"):
        augment.random_trim(np.zeros(0, np.float32), 5, np.random.default_rng(0), source="clip.wav")


def test_overlay_mixes_with_weight_and_fits_length():
    a = np.ones(6, dtype=np.float32)
    b = np.array([0, 2], dtype=np.float32)
    out = augment.overlay(a, b, 0.25)
    np.testing.assert_allclose(out, 0.75 * a + 0.25 * np.array([0, 2, 0, 2, 0, 2]))
    rng = np.random.default_rng(0)
    weights = [augment.overlay_weight("random", rng) for _ in range(50)]
    assert 0.3 <= min(weights) and max(weights) <= 0.7
    assert augment.overlay_weight(0.4, rng) == 0.4
    for bad in (0.0, 1.5, "loud"):
        with pytest.raises(ParameterError, match="overlay_weight"):
            augment.overlay_weight(bad, rng)


def test_affine_jitter_keeps_range_shape_and_channels():
    img = _image()
    out = augment.affine_jitter(img, np.random.default_rng(3), max_shift=(0.3, 0.1))
    assert out.shape == img.shape
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    assert not torch.allclose(out, img)
    # no shift and no zoom leaves the image as it was
    same = augment.affine_jitter(img, np.random.default_rng(3), max_shift=(0.0, 0.0), max_zoom=0.0)
    torch.testing.assert_close(same, img, atol=1e-5, rtol=0)


def test_affine_jitter_fills_with_silence():
    img = -torch.ones(3, 16, 16)  # loud everywhere
    theta_rng = np.random.default_rng(0)
    out = augment.affine_jitter(img, theta_rng, max_shift=(0.5, 0.0), max_zoom=0.0)
    # whatever was shifted in from outside is quiet (+1), the rest stays loud (-1)
    assert out.max() > 0.9 and out.min() == -1


def test_colour_noise_keeps_channels_identical_and_range():
    img = _image(1)
    out = augment.colour_noise(img, np.random.default_rng(0))
    assert out.min() >= -1 and out.max() <= 1
    assert torch.equal(out[0], out[2])
    assert not torch.allclose(out, img)


def test_time_and_frequency_masks():
    img = _image(2, h=20, w=40)
    out = augment.time_mask(img, np.random.default_rng(5), n_masks=2, max_fraction=0.2)
    changed = ~(out == img).all(dim=0).all(dim=0)  # per time column
    assert 0 < changed.sum() <= 2 * 8
    assert torch.allclose(out[:, :, changed], img.mean())
    out = augment.frequency_mask(img, np.random.default_rng(5), n_masks=1, max_fraction=0.25)
    changed = ~(out == img).all(dim=0).all(dim=1)  # per frequency row
    assert 0 < changed.sum() <= 5
    assert torch.equal(out[0], out[1])
    with pytest.raises(ParameterError):
        augment.time_mask(img, np.random.default_rng(0), n_masks=1, max_fraction=0)


def test_generator_follows_torch_seed():
    torch.manual_seed(7)
    a = augment.generator().random()
    torch.manual_seed(7)
    assert augment.generator().random() == a
    assert augment.generator(3).random() == np.random.default_rng(3).random()
