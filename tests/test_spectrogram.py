"""Tests of soundscape.spectrogram: Spectrogram / MelSpectrogram and their helpers."""

import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import signal  # noqa: E402

from soundscape.audio import Audio  # noqa: E402
from soundscape.errors import ParameterError  # noqa: E402
from soundscape.spectrogram import (  # noqa: E402
    POWER_FLOOR,
    MelSpectrogram,
    Spectrogram,
    db_to_unit,
    mel_filterbank,
    power_to_db,
    stft_power,
)

WIDE = (-400, 100)  # decibel limits that clip nothing


def tone(freq, seconds, sr, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds, sr, amp=0.1, seed=0):
    return amp * np.random.default_rng(seed).standard_normal(int(seconds * sr), dtype=np.float32)


@pytest.fixture(scope="module")
def two_seconds():
    """2 s at 22050 Hz: a 1 kHz tone in quiet noise."""
    return Audio(tone(1000, 2.0, 22050, 0.3) + noise(2.0, 22050, 0.01), 22050)


# --------------------------------------------------------------------------- from_audio
def test_default_shape_and_axes_match_the_classic_behaviour(two_seconds):
    spec = Spectrogram.from_audio(two_seconds)
    assert spec.shape == (257, 171) == spec.spectrogram.shape
    assert spec.spectrogram.dtype == np.float32
    np.testing.assert_allclose(spec.frequencies, np.arange(257) * 22050 / 512)
    np.testing.assert_allclose(spec.times, (256 + 256 * np.arange(171)) / 22050)
    assert spec.decibel_limits == (-100, -20)
    assert spec.duration == pytest.approx((170 * 256 + 512) / 22050)
    assert "Spectrogram(shape=(257, 171)" in repr(spec)


@pytest.mark.parametrize(
    "window_type, window_samples, overlap_samples, scaling",
    [
        ("hann", 512, 256, "spectrum"),
        ("hann", 512, 256, "density"),
        ("hamming", 511, 100, "spectrum"),  # odd window: no Nyquist bin
        ("blackman", 256, 0, "density"),
    ],
)
def test_values_equal_10_log10_of_scipy_spectrogram(
    two_seconds, window_type, window_samples, overlap_samples, scaling
):
    spec = Spectrogram.from_audio(
        two_seconds,
        window_type,
        window_samples,
        overlap_samples,
        decibel_limits=WIDE,
        scaling=scaling,
    )
    f, t, power = signal.spectrogram(
        two_seconds.samples.astype(np.float64),
        two_seconds.sample_rate,
        window=window_type,
        nperseg=window_samples,
        noverlap=overlap_samples,
        scaling=scaling,
    )
    np.testing.assert_allclose(spec.frequencies, f)
    np.testing.assert_allclose(spec.times, t)
    np.testing.assert_allclose(spec.spectrogram, 10 * np.log10(power), atol=1e-4)


def test_values_are_clipped_to_the_decibel_limits(two_seconds):
    loud_and_silent = Audio(
        np.concatenate([tone(1000, 1, 22050, 0.9), np.zeros(22050, np.float32)]), 22050
    )
    for audio in (two_seconds, loud_and_silent):
        spec = Spectrogram.from_audio(audio, decibel_limits=(-90, -30))
        assert spec.spectrogram.min() >= -90 and spec.spectrogram.max() <= -30
    spec = Spectrogram.from_audio(loud_and_silent)
    assert spec.spectrogram.max() == -20  # the loud tone hits the ceiling
    assert spec.spectrogram[:, -1].max() == -100  # silence sits on the floor
    with pytest.raises(ParameterError, match="decibel_limits"):
        Spectrogram.from_audio(two_seconds, decibel_limits=(-20, -100))


def test_bad_input_to_from_audio(two_seconds):
    with pytest.raises(TypeError, match="expects an Audio object, got ndarray"):
        Spectrogram.from_audio(two_seconds.samples)
    with pytest.raises(TypeError, match="Audio"):
        MelSpectrogram.from_audio([0.0] * 1000)
    short = Audio(np.zeros(300, np.float32), 22050)
    with pytest.raises(
        ValueError, match=r"window \(512 samples\) is longer than the audio \(300 samples\)"
    ):
        Spectrogram.from_audio(short)
    with pytest.raises(
        ValueError, match=r"overlap_samples \(512\) must be smaller than window_samples \(512\)"
    ):
        Spectrogram.from_audio(two_seconds, overlap_samples=512)
    with pytest.raises(ValueError, match="overlap_samples"):
        Spectrogram.from_audio(two_seconds, window_samples=256, overlap_samples=300)
    with pytest.raises(ValueError, match="scaling"):
        Spectrogram.from_audio(two_seconds, scaling="magnitude")
    with pytest.raises(ValueError, match="window_type"):
        Spectrogram.from_audio(two_seconds, window_type="no-such-window")
    with pytest.raises(ValueError, match="window_samples"):
        Spectrogram.from_audio(two_seconds, window_samples=300.5)


def test_an_hour_of_audio_takes_seconds_and_blocks_join_seamlessly():
    sr = 8000
    x = noise(3600, sr, seed=1)
    audio = Audio(x, sr)
    t0 = time.perf_counter()
    spec = Spectrogram.from_audio(audio, decibel_limits=WIDE)
    elapsed = time.perf_counter() - t0
    assert spec.shape == (257, 1 + (len(x) - 512) // 256)
    assert elapsed < 20, f"an hour at 8 kHz took {elapsed:.1f} s"
    # frames around an internal block boundary (frame 1024) equal a short clip's spectrogram
    piece = Spectrogram.from_audio(
        Audio(x[1000 * 256 : 1000 * 256 + 60 * 256], sr), decibel_limits=WIDE
    )
    np.testing.assert_allclose(
        piece.spectrogram, spec.spectrogram[:, 1000 : 1000 + piece.shape[1]], atol=1e-4
    )


# --------------------------------------------------------------------------- helpers
def test_stft_power_power_to_db_and_db_to_unit(two_seconds):
    power, freqs, times = stft_power(two_seconds.samples, 22050)
    assert power.shape == (257, 171) and power.dtype == np.float32
    spec = Spectrogram.from_audio(two_seconds)
    np.testing.assert_allclose(power_to_db(power, (-100, -20)), spec.spectrogram, atol=1e-4)
    assert power_to_db(np.zeros(3), None).tolist() == [10 * np.log10(POWER_FLOOR)] * 3
    assert db_to_unit(np.array([-120.0, -100, -60, -20, 0]), (-100, -20)).tolist() == [
        0,
        0,
        0.5,
        1,
        1,
    ]


def test_parseval_total_power_of_a_tone():
    """With 'spectrum' scaling, a sine of amplitude A shows a peak near A**2 / 2 (Hann)."""
    sr = 16000
    power, freqs, _ = stft_power(
        tone(1000, 1.0, sr, amp=0.5), sr, window_samples=512, overlap_samples=256
    )
    # 1000 Hz is exactly bin 32 at 16 kHz / 512: spectrum scaling gives A**2/2 there
    assert freqs[32] == 1000
    np.testing.assert_allclose(power[32], 0.125, rtol=1e-3)


# --------------------------------------------------------------------------- transforms
def test_bandpass_and_trim(two_seconds):
    spec = Spectrogram.from_audio(two_seconds)
    band = spec.bandpass(500, 2000)
    assert band.frequencies.min() >= 500 and band.frequencies.max() <= 2000
    np.testing.assert_array_equal(
        band.spectrogram, spec.spectrogram[(spec.frequencies >= 500) & (spec.frequencies <= 2000)]
    )
    assert band.times is spec.times or np.array_equal(band.times, spec.times)
    cut = spec.trim(0.5, 1.0)
    assert cut.times.min() >= 0.5 and cut.times.max() <= 1.0
    assert cut.shape == (257, int(((spec.times >= 0.5) & (spec.times <= 1.0)).sum()))
    assert spec.shape == (257, 171)  # unchanged
    with pytest.raises(ParameterError, match="0 <= min_f < max_f"):
        spec.bandpass(2000, 500)
    with pytest.raises(ParameterError, match="no frequency bin"):
        spec.bandpass(20000, 30000)
    with pytest.raises(ParameterError, match=r"frames span 0.012-1.985 s"):
        spec.trim(5, 6)
    with pytest.raises(ParameterError, match="start_time < end_time"):
        spec.trim(-1, 1)


def test_limit_db_range_and_scaling(two_seconds):
    spec = Spectrogram.from_audio(two_seconds)
    limited = spec.limit_db_range(-80, -40)
    assert limited.spectrogram.min() >= -80 and limited.spectrogram.max() <= -40
    assert limited.decibel_limits == (-80, -40)
    lin = spec.linear_scale()
    np.testing.assert_allclose(lin.spectrogram, (spec.spectrogram + 100) / 80, atol=1e-6)
    assert lin.decibel_limits == (0, 1) and lin.scaled
    lin2 = spec.linear_scale((-1, 1))
    assert lin2.spectrogram.min() >= -1 and lin2.spectrogram.max() <= 1
    mm = spec.min_max_scale((0, 255))
    assert mm.spectrogram.min() == 0 and mm.spectrogram.max() == pytest.approx(255)
    with pytest.raises(ParameterError, match="min_db"):
        spec.limit_db_range(-20, -80)
    with pytest.raises(ParameterError, match="feature_range"):
        spec.linear_scale((1, 0))


def test_amplitude_and_net_amplitude():
    sr = 22050
    burst = np.concatenate([np.zeros(sr, np.float32), tone(3000, 1.0, sr, 0.5)])
    spec = Spectrogram.from_audio(Audio(burst, sr))
    amp = spec.amplitude()
    assert amp.shape == (spec.shape[1],)
    np.testing.assert_allclose(amp, spec.spectrogram.sum(axis=0))
    band = spec.amplitude((2500, 3500))
    quiet, loud = band[spec.times < 0.9], band[spec.times > 1.1]
    assert loud.min() > quiet.max()
    net = spec.net_amplitude((2500, 3500), reject_bands=[(500, 1500)])
    np.testing.assert_allclose(net, band - spec.amplitude((500, 1500)), rtol=1e-6)
    assert net[spec.times > 1.1].min() > net[spec.times < 0.9].max()


# --------------------------------------------------------------------------- output
def test_to_image_low_frequencies_at_the_bottom_loud_is_dark():
    sr = 22050
    spec = Spectrogram.from_audio(Audio(tone(500, 2.0, sr, 0.5), sr))
    img = spec.to_image(mode="L")
    assert isinstance(img, Image.Image) and img.mode == "L"
    assert img.size == (spec.shape[1], spec.shape[0])  # (width = frames, height = bins)
    pixels = np.asarray(img)
    darkest_row = int(np.argmin(pixels.mean(axis=1)))
    assert darkest_row == spec.shape[0] - 1 - int(np.argmin(np.abs(spec.frequencies - 500)))
    assert darkest_row > 0.9 * spec.shape[0]  # near the bottom
    assert pixels[darkest_row].max() < 20 and pixels[:10].min() > 240  # tone black, top white
    rgb = spec.to_image(shape=(224, 100))
    assert rgb.mode == "RGB" and rgb.size == (224, 100)
    dark = np.asarray(rgb)[..., 0].mean(axis=1)
    assert np.argmin(dark) > 90  # still at the bottom after resizing
    with pytest.raises(ParameterError, match="mode"):
        spec.to_image(mode="CMYK")
    with pytest.raises(ParameterError, match="width, height"):
        spec.to_image(shape=(10,))


def test_plot_returns_figure_and_saves(tmp_path, two_seconds):
    spec = Spectrogram.from_audio(two_seconds)
    fig, ax = spec.plot(fname=tmp_path / "spec.png", title="tone")
    try:
        assert ax.get_xlabel() == "time (s)" and ax.get_ylabel() == "frequency (Hz)"
        assert ax.get_title() == "tone" and len(fig.axes) == 2  # plot and colour bar
        assert ax.get_xlim()[1] == pytest.approx(spec.times[-1] + 128 / 22050)  # half a hop
        assert ax.get_ylim()[1] == pytest.approx(11025 + 22050 / 1024)
    finally:
        plt.close(fig)
    with Image.open(tmp_path / "spec.png") as png:
        assert png.size[0] > 100
    fig2, axes = plt.subplots(1, 2)
    try:
        _, ax2 = MelSpectrogram.from_audio(two_seconds).plot(ax=axes[1], colorbar=False)
        assert ax2 is axes[1] and len(fig2.axes) == 2
    finally:
        plt.close(fig2)


# --------------------------------------------------------------------------- mel
def test_mel_spectrogram(two_seconds):
    mel = MelSpectrogram.from_audio(two_seconds, n_mels=40, decibel_limits=WIDE)
    assert isinstance(mel, MelSpectrogram) and mel.shape == (40, 171)
    assert np.all(np.diff(mel.frequencies) > 0) and mel.frequencies[-1] < 11025
    power, _, times = stft_power(two_seconds.samples, 22050)
    fb = mel_filterbank(40, 512, 22050)
    np.testing.assert_allclose(mel.spectrogram, power_to_db(fb @ power, None), atol=1e-3)
    np.testing.assert_allclose(mel.times, times)
    loudest = mel.frequencies[np.argmax(mel.spectrogram.mean(axis=1))]
    assert loudest == pytest.approx(1000, rel=0.1)
    band = MelSpectrogram.from_audio(two_seconds, n_mels=16, min_f=500, max_f=4000)
    assert band.shape == (16, 171) and 500 < band.frequencies[0] < band.frequencies[-1] < 4000
    assert isinstance(band.bandpass(600, 3000), MelSpectrogram)
    assert band.to_image(shape=(64, 16)).size == (64, 16)


def test_mel_filterbank_shape_and_errors():
    fb = mel_filterbank(20, 512, 16000)
    assert fb.shape == (20, 257) and fb.max() <= 1 and np.all(fb.sum(axis=1) > 0)
    with pytest.raises(ParameterError, match="Nyquist"):
        mel_filterbank(20, 512, 16000, max_f=9000)
    with pytest.raises(ParameterError, match="n_mels"):
        mel_filterbank(0, 512, 16000)


# --------------------------------------------------------------------------- real recordings
def test_real_recordings_spectrograms(shared_data):
    cases = [("esc10", 44100), ("fsdd", 8000), ("bengalese_finch", 32000)]
    for folder, rate in cases:
        name = pd.read_csv(shared_data / folder / "labels.csv").filename[0]
        audio = Audio.from_file(shared_data / folder / name)
        assert audio.sample_rate == rate
        spec = Spectrogram.from_audio(audio)
        n_frames = 1 + (len(audio) - 512) // 256
        assert spec.shape == (257, n_frames)
        assert spec.frequencies[-1] == rate / 2
        assert -100 <= spec.spectrogram.min() and spec.spectrogram.max() <= -20
        assert spec.spectrogram.std() > 1  # real sound, not a flat image
        assert spec.to_image(shape=(224, 224)).size == (224, 224)
    # a 2-s ESC-10 clip at 22050 Hz gives the classic 257 x 171 spectrogram
    esc = pd.read_csv(shared_data / "esc10" / "labels.csv").filename[0]
    clip = Audio.from_file(shared_data / "esc10" / esc, sample_rate=22050, offset=1.0, duration=2.0)
    assert Spectrogram.from_audio(clip).shape == (257, 171)
    assert MelSpectrogram.from_audio(clip, n_mels=64).shape == (64, 171)
