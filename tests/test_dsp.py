"""Tests for soundscape.features: the batched torch front end against the numpy reference."""

import numpy as np
import pytest
import torch

from soundscape import dsp as features
from soundscape import spectrogram as reference
from soundscape.errors import ParameterError


def _waves(batch=3, n=6000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    tones = np.stack([np.sin(2 * np.pi * (300 + 500 * b) * t) * 10 ** (-b) for b in range(batch)])
    return (tones + 0.01 * rng.standard_normal((batch, n)) + 0.3).astype(np.float32)  # DC offset too


@pytest.mark.parametrize("window_type", ["hann", "hamming", "blackman", "boxcar"])
@pytest.mark.parametrize("scaling", ["spectrum", "density"])
@pytest.mark.parametrize("window_samples,overlap_samples", [(256, 128), (255, 100), (64, 0)])
def test_stft_power_equals_reference_for_each_clip(window_type, scaling, window_samples, overlap_samples):
    waves = _waves()
    batch = features.stft_power(torch.from_numpy(waves), 8000, window_type, window_samples,
                                overlap_samples, scaling)
    assert batch.dtype == torch.float32 and batch.is_contiguous()
    for b, wave in enumerate(waves):
        ref, freqs, times = reference.stft_power(wave, 8000, window_type, window_samples, overlap_samples, scaling)
        assert batch.shape[1:] == ref.shape == (len(freqs), len(times))
        assert batch.shape[2] == features.n_frames(len(wave), window_samples, overlap_samples)
        np.testing.assert_allclose(batch[b].numpy(), ref, rtol=2e-5, atol=1e-30)


def test_power_to_db_floor_clip_and_inplace():
    power = torch.tensor([[0.0, 1e-12, 1e-5, 1.0, 10.0]])
    expected = reference.power_to_db(power.numpy(), (-100, -20))
    out = features.power_to_db(power, (-100.0, -20.0))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    assert power[0, 0] == 0.0  # the input is left alone by default
    same = features.power_to_db(power, (-100.0, -20.0), inplace=True)
    assert same.data_ptr() == power.data_ptr()
    torch.testing.assert_close(same, out)
    unclipped = features.power_to_db(torch.tensor([1e-30, 1.0]), None)
    np.testing.assert_allclose(unclipped.numpy(), [-200.0, 0.0], atol=1e-4)


def test_db_to_image_orientation_range_and_channels():
    db = torch.full((2, 20, 30), -100.0)
    db[:, 0, :] = -20.0  # loud lowest-frequency row
    before = db.clone()
    img = features.db_to_image(db, (-100, -20), 20, 30, channels=3)
    assert torch.equal(db, before)  # input not modified
    assert img.shape == (2, 3, 20, 30) and img.is_contiguous()
    assert torch.equal(img[:, 0], img[:, 1]) and torch.equal(img[:, 0], img[:, 2])
    assert torch.all(img[:, :, -1, :] == -1.0)  # loud = dark, low frequencies at the bottom
    assert torch.all(img[:, :, :-1, :] == 1.0)  # quiet = white
    resized = features.db_to_image(db, (-100, -20), 10, 12, channels=1)
    assert resized.shape == (2, 1, 10, 12)
    assert resized.min() >= -1 and resized.max() <= 1


def test_db_to_image_matches_reference_to_image():
    rng = np.random.default_rng(3)
    db = rng.uniform(-110, -10, size=(40, 50)).astype(np.float32)
    spec = reference.Spectrogram(np.clip(db, -100, -20), np.arange(40.0), np.arange(50.0), (-100, -20))
    pil = np.asarray(spec.to_image(shape=(32, 24), mode="L"), dtype=np.float32) / 255
    ours = features.db_to_image(torch.from_numpy(db)[None], (-100, -20), 24, 32, 1)[0, 0].numpy()
    np.testing.assert_allclose((ours + 1) / 2, pil, atol=1 / 255 + 1e-6)  # PIL rounds to 8 bits


def test_band_rows_and_mel_matrix_are_the_reference_ones():
    mask = features.frequency_mask(512, 22050, 1000.0, 5000.0)
    rows = features.band_rows(512, 22050, 1000.0, 5000.0)
    assert np.array_equal(np.flatnonzero(mask), np.arange(rows.start, rows.stop))
    np.testing.assert_array_equal(features.mel_matrix(32, 512, 22050, 100.0, 8000.0).numpy(),
                                  reference.mel_filterbank(32, 512, 22050, 100.0, 8000.0))
    with pytest.raises(ParameterError, match="no frequency bin"):
        features.frequency_mask(16, 1000, 10.0, 20.0)


def test_window_tensor_is_scipy_window_and_a_private_copy():
    from scipy.signal import get_window

    for name in ("hann", "hamming", "blackman", "boxcar"):
        np.testing.assert_allclose(features.window_tensor(name, 100).numpy(), get_window(name, 100), atol=1e-12)
    w = features.window_tensor("hann", 64)
    w.zero_()  # changing the returned tensor must not change the engine's window
    assert features.window_tensor("hann", 64).sum() > 0
    with pytest.raises(ParameterError, match="window_type"):
        features.window_tensor("triangle-ish", 64)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ParameterError, match=r"\(batch, samples\)"):
        features.stft_power(torch.zeros(100), 8000)
    with pytest.raises(ParameterError, match="longer than the audio"):
        features.stft_power(torch.zeros(1, 100), 8000, window_samples=256, overlap_samples=0)
    with pytest.raises(ParameterError, match="overlap_samples"):
        features.stft_power(torch.zeros(1, 1000), 8000, window_samples=256, overlap_samples=256)
    with pytest.raises(ParameterError, match="scaling"):
        features.stft_power(torch.zeros(1, 1000), 8000, window_samples=256, overlap_samples=0, scaling="power")
    with pytest.raises(ParameterError, match="window_type"):
        features.stft_power(torch.zeros(1, 1000), 8000, window_type="kaiser")
    assert features.n_frames(100, 256, 128) == 0
    assert features.compute_dtype("cpu") == torch.float64


def test_long_audio_goes_in_blocks_that_join_seamlessly():
    rng = np.random.default_rng(1)
    waves = (0.1 * rng.standard_normal((2, 16000 * 20)) + 0.05).astype(np.float32)  # 2 x 20 s
    batch = features.stft_power(torch.from_numpy(waves), 16000, "hann", 512, 256)
    assert batch.shape[2] > 2 * 512  # several blocks of frames per clip
    for b in range(2):
        ref, _, _ = reference.stft_power(waves[b], 16000, "hann", 512, 256)
        np.testing.assert_allclose(batch[b].numpy(), ref, rtol=2e-5, atol=1e-30)
