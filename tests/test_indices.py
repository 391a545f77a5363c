"""Acoustic indices: own ACI/Hf/Ht against scikit-maad on real audio; maad-backed ones run."""

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape import dsp
from soundscape.audio import Audio
from soundscape.errors import ParameterError
from soundscape.indices import OWN_INDICES, acoustic_indices, aci, entropy, temporal_entropy


def _noise(seconds=3.0, rate=16000, seed=0):
    return Audio(np.random.default_rng(seed).standard_normal(int(seconds * rate)).astype(np.float32)
                 * 0.1, rate)


def test_own_indices_without_maad_and_table_shape(tmp_path):
    table = acoustic_indices(_noise(), clip_duration=1.0, indices=OWN_INDICES)
    assert list(table.index.names) == ["file", "start_time", "end_time"]
    assert table.shape == (3, 4)
    assert np.allclose(table["H"], table["Hf"] * table["Ht"])
    assert (table["Hf"] > 0.95).all()  # white noise: flat spectrum
    t = np.arange(16000) / 16000
    tone = Audio((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 16000)
    assert acoustic_indices(tone, 1.0, indices=["Hf"])["Hf"].iloc[0] < 0.3
    with pytest.raises(ParameterError, match="unknown indices"):
        acoustic_indices(tone, 1.0, indices=["XYZ"])


def test_files_are_read_window_by_window(tmp_path):
    import soundfile

    audio = _noise(4.0)
    path = tmp_path / "rec.wav"
    soundfile.write(path, audio.samples, audio.sample_rate, subtype="FLOAT")
    from_file = acoustic_indices(path, 2.0, indices=OWN_INDICES)
    in_memory = acoustic_indices(audio, 2.0, indices=OWN_INDICES)
    assert np.allclose(from_file.to_numpy(), in_memory.to_numpy())


def test_against_scikit_maad_on_real_audio(shared_data):
    pytest.importorskip("maad", reason="the indices extra (scikit-maad) is not installed")
    from maad import features

    labels = pd.read_csv(shared_data / "esc10" / "labels.csv")
    for filename in labels.groupby("label").head(1)["filename"].iloc[:4]:
        audio = Audio.from_file(shared_data / "esc10" / filename)
        s = audio.samples.astype(np.float64)
        power = dsp.stft_power(torch.from_numpy(audio.samples)[None], audio.sample_rate,
                               "hann", 512, 0)[0].numpy().astype(np.float64)
        amplitude = np.sqrt(power)
        table = acoustic_indices(audio, clip_duration=audio.duration)
        row = table.iloc[0]
        assert row["ACI"] == pytest.approx(features.acoustic_complexity_index(amplitude)[2], rel=1e-6)
        assert row["Hf"] == pytest.approx(features.frequency_entropy(power)[0], rel=1e-6)
        assert row["Ht"] == pytest.approx(features.temporal_entropy(s), rel=1e-6)
        fn = np.fft.rfftfreq(512, 1 / audio.sample_rate)
        assert row["NDSI"] == pytest.approx(features.soundscape_index(power, fn)[0], rel=1e-6)
        assert -1 <= row["NDSI"] <= 1 and 0 <= row["AEI"] <= 1 and row["ADI"] >= 0
    assert aci(amplitude) == pytest.approx(row["ACI"])
    assert entropy(np.ones(8)) == pytest.approx(1.0)
    assert temporal_entropy(np.ones(2048)) == pytest.approx(1.0)
