"""RIBBIT on synthetic pulsed calls at known rates in noise."""

import numpy as np
import pandas as pd
import pytest
import soundfile

from soundscape.audio import Audio
from soundscape.detections import detections
from soundscape.errors import ParameterError
from soundscape.ribbit import pulse_scores, ribbit
from soundscape.spectrogram import Spectrogram

RATE = 16000


def _call(seconds, pulse_rate, freq=1500.0, level=0.3, seed=0, noise=0.05):
    """White noise plus a tone at `freq` pulsed `pulse_rate` times a second (0: steady)."""
    gen = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    gate = 1.0 if pulse_rate == 0 else (0.5 + 0.5 * np.sin(2 * np.pi * pulse_rate * t)) ** 3
    return (noise * gen.standard_normal(len(t)) + level * gate * np.sin(2 * np.pi * freq * t)
            ).astype(np.float32)


@pytest.mark.parametrize("pulse_rate", [8.0, 14.0, 22.0])
def test_the_right_rate_wins(pulse_rate):
    audio = Audio(_call(4.0, pulse_rate), RATE)
    out = ribbit(audio, signal_band=(1200, 1800), pulse_rate_range=(5, 30), clip_duration=2.0,
                 return_rate=True)
    assert list(out.index.names) == ["file", "start_time", "end_time"] and len(out) == 2
    assert np.allclose(out["pulse_rate"], pulse_rate, atol=0.6)


def test_pulsed_scores_above_unpulsed_and_noise():
    pieces = [_call(2.0, 0, seed=1), _call(2.0, 12.0, seed=2), _call(2.0, 0, level=0.0, seed=3),
              _call(2.0, 12.0, level=0.1, seed=4), _call(2.0, 40.0, seed=5)]  # 40/s: out of range
    audio = Audio(np.concatenate(pieces), RATE)
    out = ribbit(audio, (1200, 1800), (8, 16), clip_duration=2.0,
                 noise_bands=[(4000, 6000)])["score"].to_numpy()
    assert out[1] > 10 * max(out[0], out[2], out[4])
    assert out[3] > 3 * max(out[0], out[2], out[4])
    table = detections(ribbit(audio, (1200, 1800), (8, 16), 2.0), threshold=out[1] / 10)
    assert table[["start_time", "end_time"]].values.tolist() == [[2.0, 4.0], [6.0, 8.0]]


def test_files_in_chunks_equal_whole_audio_and_spectrogram_input(tmp_path):
    samples = _call(21.0, 10.0, seed=6)
    path = tmp_path / "pond.wav"
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    whole = ribbit(Audio(samples, RATE), (1200, 1800), (5, 20), 3.0, clip_overlap=1.0)
    chunked = ribbit(path, (1200, 1800), (5, 20), 3.0, clip_overlap=1.0, chunk_duration=2.7)
    assert len(whole) == len(chunked) == 10
    assert np.allclose(whole["score"], chunked["score"], rtol=1e-5)
    assert chunked.index.get_level_values("file")[0] == str(path)
    spec = Spectrogram.from_audio(Audio(samples, RATE), decibel_limits=(-200, 0))
    from_spec = ribbit(spec, (1200, 1800), (5, 20), 3.0, clip_overlap=1.0, return_rate=True)
    assert np.allclose(from_spec["pulse_rate"], 10.0, atol=0.6)


def test_errors():
    audio = Audio(_call(2.0, 10.0), RATE)
    with pytest.raises(ParameterError, match="half the frame rate"):
        ribbit(audio, (1200, 1800), (5, 40), 1.0, window_samples=2048, overlap_samples=0)
    with pytest.raises(ParameterError, match="signal_band"):
        ribbit(audio, (1800, 1200), (5, 20), 1.0)
    with pytest.raises(ParameterError, match="at least 4"):
        pulse_scores(np.zeros((1, 3)), 50.0, (1, 10))


def test_real_recordings_skip_without_frogs(shared_data):
    """No frog or toad recordings ship in shared/data (ESC-10 has no frog class): skip."""
    classes = set(pd.read_csv(shared_data / "esc10" / "labels.csv")["label"])
    if not {"frog", "toad"} & classes:
        pytest.skip(f"no frog/toad class in ESC-10 ({sorted(classes)})")
