"""Tests for soundscape.preprocessing: the batched engine equals the per-clip reference."""

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.audio import Audio
from soundscape.errors import ParameterError
from soundscape.preprocessing import Preprocessing, stack_waveforms

VARIANTS = {
    "linear": {},
    "mel": {"n_mels": 48},
    "band": {"min_frequency": 500.0, "max_frequency": 4000.0},
    "mel_band": {"n_mels": 32, "min_frequency": 300.0, "max_frequency": 5000.0},
    "density_hamming": {"scaling": "density", "window_type": "hamming", "decibel_limits": (-140.0, -40.0)},
    "odd_sizes": {"window_samples": 300, "overlap_samples": 77, "height": 97, "width": 131, "channels": 1},
}
TOL = 2e-5  # in image units ([-1, 1]); observed differences are ~1e-6


def _synthetic_clips(sample_rate=16000, seconds=1.5):
    """A chirp, a tone in noise, clicks, near-silence and a clip needing padding."""
    rng = np.random.default_rng(7)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    chirp = 0.5 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    tone = 0.2 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(len(t))
    clicks = np.zeros_like(t)
    clicks[:: sample_rate // 7] = 0.9
    quiet = 1e-6 * rng.standard_normal(len(t))
    short = 0.3 * np.sin(2 * np.pi * 3000 * t[: len(t) // 3])
    return [Audio(x.astype(np.float32), sample_rate) for x in (chirp, tone, clicks, quiet, short)]


def _check_equal(pre, clips):
    fitted = [pre.fit_audio(c) for c in clips]
    batch = pre.images(stack_waveforms(fitted))
    assert batch.shape == (len(clips), pre.channels, pre.height, pre.width)
    for i, clip in enumerate(clips):
        ref = pre.image_reference(clip)
        torch.testing.assert_close(batch[i], ref, atol=TOL, rtol=0)
        torch.testing.assert_close(pre.image(clip), ref, atol=TOL, rtol=0)
    # the dB spectrograms agree too
    db = pre.frames(stack_waveforms(fitted))
    for i, clip in enumerate(fitted):
        ref = pre.spectrogram(clip).spectrogram
        assert db.shape[1:] == ref.shape
        np.testing.assert_allclose(db[i].numpy(), ref, atol=2e-3, rtol=0)  # dB


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_batched_engine_equals_reference_on_synthetic_clips(variant):
    pre = Preprocessing(sample_rate=16000, clip_duration=1.5, **VARIANTS[variant])
    _check_equal(pre, _synthetic_clips())


def test_resampling_and_looping_short_clips_equal_reference():
    pre = Preprocessing(sample_rate=11025, clip_duration=1.0, short_clip="extend", n_mels=40)
    clips = [Audio(c.samples[: 16000 // 2], 16000) for c in _synthetic_clips()[:3]]  # 0.5 s at 16 kHz
    _check_equal(pre, clips)


@pytest.mark.parametrize("variant", ["linear", "mel", "band"])
def test_batched_engine_equals_reference_on_esc10(shared_data, variant):
    table = pd.read_csv(shared_data / "esc10" / "labels.csv")
    picks = table.groupby("label").head(1).head(6)  # one clip of each of six classes
    pre = Preprocessing(sample_rate=22050, clip_duration=5.0, **VARIANTS[variant])
    clips = [Audio.from_file(shared_data / "esc10" / f) for f in picks["filename"]]
    assert all(c.sample_rate == 44100 for c in clips)  # the engine is fed resampled audio
    _check_equal(pre, clips)


@pytest.mark.parametrize("variant", ["linear", "mel_band"])
def test_batched_engine_equals_reference_on_fsdd(shared_data, variant):
    table = pd.read_csv(shared_data / "fsdd" / "labels.csv")
    picks = table.groupby("speaker").head(1)
    kw = dict(VARIANTS[variant])
    if variant == "mel_band":
        kw["max_frequency"] = 3800.0
    pre = Preprocessing(sample_rate=8000, clip_duration=1.0, window_samples=256, overlap_samples=128, **kw)
    clips = [Audio.from_file(shared_data / "fsdd" / f) for f in picks["filename"]]
    _check_equal(pre, clips)  # spoken digits are 0.14-2.3 s: some are padded, some cut


def test_images_on_a_device_argument_and_batch_independence():
    pre = Preprocessing(sample_rate=16000, clip_duration=1.5, n_mels=32, height=64, width=64)
    waves = stack_waveforms([pre.fit_audio(c) for c in _synthetic_clips()])
    whole = pre.images(waves, device="cpu")
    parts = torch.cat([pre.images(waves[:2]), pre.images(waves[2:])])
    torch.testing.assert_close(whole, parts, atol=1e-6, rtol=0)


def test_cache_keys_follow_the_parameters_they_depend_on():
    base = Preprocessing(sample_rate=22050, clip_duration=2.0)
    assert base.cache_key() == Preprocessing(sample_rate=22050, clip_duration=2.0).cache_key()
    image_only = base.replace(height=128, channels=1)
    spec_change = base.replace(n_mels=64)
    audio_change = base.replace(sample_rate=16000)
    assert image_only.frames_cache_key() == base.frames_cache_key()
    assert image_only.cache_key() != base.cache_key()
    assert spec_change.audio_cache_key() == base.audio_cache_key()
    assert spec_change.frames_cache_key() != base.frames_cache_key()
    assert audio_change.audio_cache_key() != base.audio_cache_key()
    assert audio_change.frames_cache_key() != base.frames_cache_key()
    assert base.replace(short_clip="extend").audio_cache_key() != base.audio_cache_key()
    assert "extra" not in base.to_dict()  # no side channel outside equality and cache keys
    assert Preprocessing(sample_rate=22050.0, clip_duration=2).cache_key() == base.cache_key()


def test_round_trip_and_frames():
    pre = Preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=20, decibel_limits=(-90, -10))
    again = Preprocessing.from_dict(pre.to_dict())
    assert again == pre and again.cache_key() == pre.cache_key()
    clip = pre.fit_audio(_synthetic_clips(8000)[0])
    assert pre.frames(torch.from_numpy(clip.samples)[None]).shape[2] == pre.n_frames
    assert Preprocessing().n_frames is None
    with pytest.raises(ParameterError, match="unknown preprocessing parameters"):
        Preprocessing.from_dict({"sample_rat": 8000})


def test_stack_waveforms_needs_equal_lengths():
    with pytest.raises(ParameterError, match="equally long"):
        stack_waveforms([np.zeros(10), np.zeros(11)])
