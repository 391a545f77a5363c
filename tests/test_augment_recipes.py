"""Tests for the added augmentations in soundscape.augment and the datasets' augmentations hook."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape import augment
from soundscape.augment import QUIET
from soundscape.datasets import MultiTargetAudioDataset, SingleTargetAudioDataset
from soundscape.errors import ParameterError

RATE = 8000


def _tone(freq=440.0, seconds=1.0, amp=0.5):
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * RATE / len(x)


def _image(seed=0, h=16, w=40):
    rng = np.random.default_rng(seed)
    one = torch.from_numpy(rng.uniform(-1, 1, size=(1, h, w)).astype(np.float32))
    return one.expand(3, h, w).contiguous()


def _snr_db(clean, noisy):
    added = noisy.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(added ** 2))


# --------------------------------------------------------------------------- waveform steps
def test_random_gain_scales_by_at_most_max_db():
    x = _tone()
    ratios = []
    for seed in range(30):
        out = augment.random_gain(x, np.random.default_rng(seed), max_db=6)
        assert out.shape == x.shape and out.dtype == np.float32
        ratio = out[100] / x[100]
        np.testing.assert_allclose(out, x * ratio, rtol=1e-5, atol=1e-7)  # one gain for all
        ratios.append(20 * np.log10(ratio))
    assert -6 <= min(ratios) < -2 and 2 < max(ratios) <= 6
    with pytest.raises(ParameterError, match="max_db"):
        augment.random_gain(x, np.random.default_rng(0), max_db=-1)


@pytest.mark.parametrize("color", ["white", "pink"])
def test_noise_is_added_at_the_requested_snr(color):
    x = _tone()
    out = augment.noise_at_snr(x, np.random.default_rng(0), snr_db=12.0, color=color)
    assert out.shape == x.shape and out.dtype == np.float32
    assert _snr_db(x, out) == pytest.approx(12.0, abs=0.01)
    ranged = [_snr_db(x, augment.noise_at_snr(x, np.random.default_rng(s), (5, 25)))
              for s in range(20)]
    assert 5 - 0.01 <= min(ranged) and max(ranged) <= 25 + 0.01 and np.ptp(ranged) > 5
    with pytest.raises(ParameterError, match="color"):
        augment.noise_at_snr(x, np.random.default_rng(0), 10, color="blue")


def test_pink_noise_has_more_low_than_high_frequency_power():
    silent_base = np.full(RATE * 2, 1e-3, dtype=np.float32)
    noise = augment.noise_at_snr(silent_base, np.random.default_rng(1), -40, "pink") - silent_base
    power = np.abs(np.fft.rfft(noise)) ** 2
    low, high = power[20:400].mean(), power[4000:7000].mean()
    assert low > 5 * high


def test_mix_at_snr_loops_background_and_keeps_silence():
    x = _tone(seconds=0.5)
    bg = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    out = augment.mix_at_snr(x, bg, 6.0)
    assert _snr_db(x, out) == pytest.approx(6.0, abs=0.01)
    added = out - x
    np.testing.assert_allclose(added[:1000] / bg, added[1000:2000] / bg, rtol=1e-4)  # looped
    silent = np.zeros(100, np.float32)
    assert augment.mix_at_snr(silent, bg, 6.0) is silent


def test_time_shift_rolls_or_pads_with_silence():
    x = np.arange(1, 101, dtype=np.float32)
    for seed in range(10):
        out = augment.time_shift(x, np.random.default_rng(seed), 0.3)
        shift = int(np.flatnonzero(out == 1)[0])
        np.testing.assert_array_equal(out, np.roll(x, shift))
        assert min(shift, 100 - shift) <= 30
    out = augment.time_shift(x, np.random.default_rng(4), 0.5, wrap=False)
    kept = out[out != 0]
    assert len(kept) < 100 and np.all(np.diff(kept) == 1)  # a contiguous, unchanged stretch
    assert out.shape == x.shape


def test_speed_change_moves_pitch_within_bounds_and_keeps_length():
    x = _tone(1000.0)
    freqs = []
    for seed in range(10):
        out = augment.speed_change(x, np.random.default_rng(seed), 0.05)
        assert out.shape == x.shape and out.dtype == np.float32
        freqs.append(_peak_hz(out[: int(RATE * 0.9)]))
    assert 950 - 2 <= min(freqs) and max(freqs) <= 1050 + 2
    assert np.ptp(freqs) > 20
    with pytest.raises(ParameterError, match="max_change"):
        augment.speed_change(x, np.random.default_rng(0), 0.6)


# --------------------------------------------------------------------------- image steps
def test_image_time_shift_rolls_or_fills_quiet():
    img = _image()
    out = augment.image_time_shift(img, np.random.default_rng(2), 0.5)
    shifts = [k for k in range(40) if torch.equal(out, torch.roll(img, k, dims=2))]
    assert len(shifts) == 1
    out = augment.image_time_shift(img, np.random.default_rng(5), 0.5, wrap=False)
    assert out.shape == img.shape
    quiet_cols = (out == QUIET).all(dim=(0, 1))
    assert 0 < int(quiet_cols.sum()) <= 20
    assert torch.equal(out[0], out[2])


def test_time_stretch_moves_events_in_time_only():
    img = torch.full((3, 16, 40), QUIET)
    img[:, 5, 20] = -1.0  # one loud pixel at frame 20, row 5
    for seed in range(8):
        out = augment.time_stretch(img, np.random.default_rng(seed), 0.2)
        assert out.shape == img.shape and torch.equal(out[0], out[1])
        row, col = np.unravel_index(int(out[0].argmin()), (16, 40))
        assert row == 5  # pitch unchanged
        assert 20 * 0.8 - 1 <= col <= 20 * 1.2 + 1


def test_frequency_shift_moves_rows_and_fills_quiet():
    img = torch.full((1, 20, 10), QUIET)
    img[:, 10, :] = -1.0
    rows = set()
    for seed in range(20):
        out = augment.frequency_shift(img, np.random.default_rng(seed), 0.1)
        assert out.shape == img.shape
        loud = torch.nonzero(out[0, :, 0] < 0).ravel().tolist()
        assert len(loud) == 1 and abs(loud[0] - 10) <= 2
        rows.add(loud[0])
    assert len(rows) > 1


def test_spec_augment_masks_bands_with_the_mean():
    img = _image(h=32, w=64)
    for kw, dim, limit in ((dict(time_masks=2, frequency_masks=0), 0, 2 * 12),
                           (dict(time_masks=0, frequency_masks=2), 1, 2 * 6)):
        out = augment.SpecAugment(max_fraction=0.2, **kw)(img, np.random.default_rng(0))
        masked = (out == img.mean())[0]
        bands = masked.all(dim=dim)  # whole columns (time) or whole rows (frequency)
        assert 0 < int(bands.sum()) <= limit
        expected = bands[None, :] if dim == 0 else bands[:, None]
        assert torch.equal(masked, expected.expand_as(masked))
        assert torch.equal(out[:, ~expected.expand_as(masked)], img[:, ~expected.expand_as(masked)])
    both = augment.SpecAugment(2, 2, 0.2)(img, np.random.default_rng(0))
    assert both.shape == img.shape and torch.equal(both[0], both[2])


# --------------------------------------------------------------------------- configured steps
def test_configured_steps_have_kinds_and_check_arguments():
    kinds = {augment.RandomGain(): "waveform", augment.AddNoise(): "waveform",
             augment.SpeedChange(): "waveform",
             augment.BackgroundNoise([np.ones(10, np.float32)]): "waveform",
             augment.TimeShift(): "image", augment.SpecAugment(): "image",
             augment.TimeStretch(): "image", augment.FrequencyShift(): "image"}
    for step, kind in kinds.items():
        assert step.kind == kind and type(step).__name__ in repr(step)
    for make, match in ((lambda: augment.AddNoise(snr_db=(20, 10)), "snr_db"),
                        (lambda: augment.AddNoise(p=2), "probability"),
                        (lambda: augment.BackgroundNoise([]), "at least one"),
                        (lambda: augment.BackgroundNoise(["rain.wav"]), "sample_rate"),
                        (lambda: augment.TimeShift(1.5), "max_fraction"),
                        (lambda: augment.SpecAugment(max_fraction=0), "SpecAugment")):
        with pytest.raises(ParameterError, match=match):
            make()
    with pytest.raises(ParameterError, match=r"augmentations\[1\]"):
        augment.check_augmentations([augment.RandomGain(), lambda x, rng: x])


def test_background_noise_reads_files_at_the_dataset_rate(tmp_path):
    path = tmp_path / "rain.wav"
    sf.write(path, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    step = augment.BackgroundNoise([path], snr_db=10.0, p=1.0, sample_rate=RATE)
    x = _tone(seconds=0.5)
    out = step(x, np.random.default_rng(0))
    assert out.shape == x.shape and _snr_db(x, out) == pytest.approx(10.0, abs=0.01)
    assert len(step._background(0)) == RATE  # 1 s read at 8 kHz
    never = augment.BackgroundNoise([path], p=0.0, sample_rate=RATE)
    assert never(x, np.random.default_rng(0)) is x


# --------------------------------------------------------------------------- dataset hook
@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("aug")
    rows = []
    for i, f in enumerate([300.0, 2000.0, 350.0, 2200.0]):
        sf.write(folder / f"c{i}.wav", _tone(f, 0.5), RATE)
        rows.append({"file": str(folder / f"c{i}.wav"), "label": i % 2, "low": 1 - i % 2,
                     "high": i % 2})
    return pd.DataFrame(rows)


SPEC = dict(audio_sample_rate=RATE, height=32, width=32, window_samples=256, overlap_samples=128,
            clip_duration=0.5)


@pytest.mark.parametrize("step", [augment.RandomGain(12), augment.AddNoise(5.0),
                                  augment.SpeedChange(0.1), augment.TimeShift(0.5),
                                  augment.TimeStretch(0.3), augment.FrequencyShift(0.2),
                                  augment.SpecAugment(2, 2, 0.2)])
def test_dataset_applies_augmentations_and_keeps_shapes_and_labels(table, step):
    plain = SingleTargetAudioDataset(table, {0: "low", 1: "high"}, "file", "label", **SPEC)
    torch.manual_seed(0)
    aug = SingleTargetAudioDataset(table, {0: "low", 1: "high"}, "file", "label",
                                   augmentations=[step], **SPEC)
    assert aug.augmenting and not plain.augmenting
    changed = 0
    for i in range(len(table)):
        a, b = plain[i], aug[i]
        assert b["X"].shape == a["X"].shape and b["X"].dtype == a["X"].dtype
        assert torch.equal(a["y"], b["y"])
        assert -1 <= float(b["X"].min()) and float(b["X"].max()) <= 1
        changed += not torch.allclose(a["X"], b["X"], atol=1e-4)
    assert changed >= 3


def test_multi_target_labels_survive_augmentation(table):
    ds = MultiTargetAudioDataset(table[["file", "low", "high"]], filename_column="file",
                                 augmentations=[augment.RandomGain(), augment.SpecAugment()],
                                 **SPEC)
    for i in range(len(table)):
        np.testing.assert_array_equal(ds[i]["y"].numpy(), table[["low", "high"]].to_numpy()[i])
    with pytest.raises(ParameterError, match="augmentations"):
        SingleTargetAudioDataset(table, {0: "low", 1: "high"}, "file", "label",
                                 augmentations=["gain"], **SPEC)
