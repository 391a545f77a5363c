import numpy as np
import pytest
import soundfile as sf
import torch

from soundscape import dsp
from soundscape.dsp import per_file_norm
from soundscape.errors import ParameterError
from soundscape.preprocessing import FrontEnd, Preprocessing
from soundscape.workflow.features import preprocessing_from_config

SR = 8000


def tone(freq: float, seconds: float = 0.5, sr: int = SR) -> torch.Tensor:
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return torch.sin(2 * np.pi * freq * t).float()[None]


def fe(**kw) -> FrontEnd:
    base = {"sample_rate": SR, "audio_file_length_limit_in_s": 0.5, "norm": None}
    return preprocessing_from_config({**base, **kw}).frontend()


def test_shapes_of_every_feature_type():
    x = torch.randn(3, 4000)
    for kind, width in [("fbank", 40), ("stft", 129), ("stft_phase", 258), ("group_delay", 129)]:
        f = fe(type=kind, num_filter_bands=40, window_length_in_s=0.025, window_shift_in_s=0.01)
        out = f(x)
        # 200-sample windows (n_fft 256), 80-sample hop over 4000 samples -> 48 frames
        assert out.shape == (3, 48, width) == (3, *f.output_shape), kind
        assert torch.isfinite(out).all()
    img = fe(type="spectrogram_image", height=32, width=40, channels=3)
    assert img(x).shape == (3, 3, 32, 40) == (3, *img.output_shape)


def test_fbank_of_a_tone_peaks_in_the_band_of_its_frequency():
    f = fe(type="fbank", num_filter_bands=30)
    for freq in (400.0, 1500.0, 3000.0):
        energies = f(tone(freq))[0].mean(dim=0)  # (bands,)
        p = f.preprocessing
        mel = dsp.mel_matrix(p.n_mels, p.fft_size, SR)
        centres = mel.argmax(dim=1).float() * SR / p.fft_size  # peak frequency of each filter
        assert abs(float(centres[energies.argmax()]) - freq) < 150, freq


def test_stft_matches_numpy_reference():
    f = fe(type="stft", window_length_in_s=0.032, window_shift_in_s=0.016, window_type="hann")
    x = torch.randn(1, 4000)
    out = f(x)[0].numpy()
    win = np.hanning(f.preprocessing.window_samples + 1)[:-1]  # periodic Hann
    frame = x[0, 128 * 5 : 128 * 5 + 256].numpy() * win
    expected = np.log(np.abs(np.fft.rfft(frame, n=f.preprocessing.fft_size)) + 1e-10)
    np.testing.assert_allclose(out[5], expected, atol=1e-3)


def test_stft_phase_is_magnitude_then_phase():
    f = fe(type="stft_phase", window_length_in_s=0.032, window_shift_in_s=0.016)
    x = torch.randn(1, 4000)
    out = f(x)[0]
    mag = fe(type="stft", window_length_in_s=0.032, window_shift_in_s=0.016)(x)[0]
    bins = f.preprocessing.fft_size // 2 + 1
    torch.testing.assert_close(out[:, :bins], mag)
    assert out[:, bins:].abs().max() <= np.pi + 1e-5
    assert out[:, bins:].std() > 0.5  # a real phase, not zeros


def test_group_delay_of_a_delayed_impulse_is_the_delay():
    f = fe(type="group_delay", window_length_in_s=0.032, window_shift_in_s=0.032,
           window_type="rectangular")
    x = torch.zeros(1, 4000)
    delay = 37
    for start in range(0, 4000 - 256, 256):
        x[0, start + delay] = 1.0  # one impulse 37 samples into every frame
    gd = f(x)[0, :-1]
    torch.testing.assert_close(gd, torch.full_like(gd, float(delay)), atol=1e-3, rtol=0)


def test_per_file_norm_gives_zero_mean_unit_variance_per_bin():
    x = torch.randn(2, 50, 6) * torch.tensor([1.0, 5, 0.1, 3, 2, 7]) + 4
    out = per_file_norm(x)
    torch.testing.assert_close(out.mean(dim=1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=1, unbiased=False), torch.ones(2, 6), atol=1e-3, rtol=0)
    normed = fe(type="fbank", norm="per_file", num_filter_bands=20)(torch.randn(2, 4000))
    assert normed.mean(dim=1).abs().max() < 1e-4


def test_spectrogram_image_is_the_preprocessing_image():
    f = fe(type="spectrogram_image", height=48, width=48, channels=1, decibel_limits=[-90, -10])
    x = torch.randn(2, 4000) * 0.1
    expected = f.preprocessing.images(x)
    torch.testing.assert_close(f(x), expected)
    assert isinstance(f.preprocessing, Preprocessing) and f.preprocessing.height == 48


def test_preprocessing_resamples_and_fits_mixed_rate_files(tmp_path):
    f = fe(type="fbank", num_filter_bands=20)
    paths = []
    for rate, seconds in ((8000, 0.3), (16000, 1.2), (22050, 0.5)):
        path = tmp_path / f"a{rate}.wav"
        sf.write(path, np.sin(np.arange(int(rate * seconds)) * 0.3).astype(np.float32), rate)
        paths.append(path)
    waves = [f.preprocessing.load_audio(p).samples for p in paths]
    assert [len(w) for w in waves] == [4000] * 3  # padded, clipped, resampled to 0.5 s at 8 kHz
    assert np.all(waves[0][2400:] == 0)  # the 0.3-s file was zero-padded
    assert f(torch.from_numpy(np.stack(waves))).shape[0] == 3


def test_bad_settings_are_reported():
    with pytest.raises(ParameterError, match="4000 samples"):
        fe(type="fbank")(torch.randn(1, 3000))
    with pytest.raises(ParameterError, match="shorter than one window"):
        fe(type="stft", audio_file_length_limit_in_s=0.01, window_length_in_s=0.025)
    with pytest.raises(ParameterError, match="num_fft_points"):
        fe(type="stft", num_fft_points=64, window_length_in_s=0.025)
    with pytest.raises(ParameterError, match="feature type"):
        preprocessing_from_config({"type": "mfcc"})
    with pytest.raises(ParameterError, match="feature must be one of"):
        Preprocessing(feature="mfcc")


def test_frontend_moves_with_to_and_stores_no_state():
    f = fe(type="fbank", num_filter_bands=20)
    assert f.state_dict() == {}
    assert f.to(torch.float64)(torch.randn(1, 4000)).dtype == torch.float32


def test_config_names_translate_to_one_preprocessing():
    p = preprocessing_from_config({"type": "fbank", "sample_rate": 16000, "num_filter_bands": 40,
                                   "window_length_in_s": 0.025, "window_shift_in_s": 0.01,
                                   "audio_file_length_limit_in_s": 1.0})
    assert (p.feature, p.window_samples, p.overlap_samples, p.n_fft, p.n_mels, p.norm) == \
        ("fbank", 400, 240, 512, 40, "per_file")
    assert p.input_shape == (98, 40) and p == Preprocessing.from_dict(p.to_dict())
    img = preprocessing_from_config({"type": "spectrogram_image", "sample_rate": 8000, "height": 32})
    assert img.feature == "image" and img.window_type == "hann" and img.norm is None

