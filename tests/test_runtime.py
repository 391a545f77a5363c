"""Tests of soundscape.runtime: devices, the precision policy, and bf16 against fp32."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import soundscape
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.detections import detections
from soundscape.errors import ParameterError
from soundscape.models.compact import compact_cnn
from soundscape.runtime import native_bf16_cpu, resolve_device, resolve_precision
from soundscape.torch.train import train

CLIPS = Path(__file__).resolve().parents[1] / "sample_data" / "woodcock_labeled_data"
FIELD = Path(__file__).resolve().parents[1] / "sample_data" / "field_recording" / "field_recording.flac"


def test_devices_and_precision_names_are_checked():
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ParameterError, match="not a torch device name"):
        resolve_device("gpu")
    with pytest.raises(ParameterError, match="precision must be one of"):
        resolve_precision("int4")
    with pytest.raises(ParameterError, match="needs a GPU"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("fp32").name == "fp32"


def test_auto_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv("SOUNDSCAPE_PRECISION", raising=False)
    expected = "bf16" if native_bf16_cpu() else "fp32"
    assert resolve_precision("auto", "cpu").name == expected
    monkeypatch.setenv("SOUNDSCAPE_PRECISION", "fp32")
    assert resolve_precision("auto", "cpu").name == "fp32"  # forced for the whole process
    assert resolve_precision("bf16", "cpu").name == "bf16"  # an explicit choice wins


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    labels = pd.read_csv(CLIPS / "woodcock_labels.csv")
    labels["file"] = [str(CLIPS / f) for f in labels["filename"]]
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  clip_duration=2.0)
    torch.manual_seed(0)
    model = compact_cnn(2)
    out = tmp_path_factory.mktemp("bf16")
    train(out, model, ds, ds, torch.optim.Adam(model.parameters(), 3e-3), torch.nn.CrossEntropyLoss(),
          epochs=4, batch_size=8, num_workers=0, print_logging=False, precision="fp32")
    return soundscape.load_model(out / "best.model"), labels


def test_bf16_scores_stay_within_0_02_of_fp32_on_a_trained_model(trained_model, tmp_path):
    detector, labels = trained_model
    audio, rate = sf.read(FIELD, frames=60 * 22050, dtype="float32")
    sf.write(tmp_path / "minute.wav", audio, rate)
    runs = {p: soundscape.predict_recordings(detector, tmp_path / "minute.wav", clip_overlap=1.0,
                                             precision=p, progress=False) for p in ("fp32", "bf16")}
    assert runs["bf16"].attrs["summary"]["precision"] == "bf16"
    diff = np.abs(runs["bf16"].to_numpy() - runs["fp32"].to_numpy())
    assert diff.max() <= 0.02, diff.max()
    events = {p: detections(s, threshold=0.5, classes=["present"]) for p, s in runs.items()}
    assert len(events["bf16"]) == len(events["fp32"])
    clips = {p: soundscape.predict(detector, labels["file"].tolist(), precision=p) for p in ("fp32", "bf16")}
    assert np.abs(clips["bf16"].to_numpy() - clips["fp32"].to_numpy()).max() <= 0.02


def test_bf16_training_learns_like_fp32(trained_model, tmp_path):
    _, labels = trained_model
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  clip_duration=2.0)
    torch.manual_seed(0)
    model = compact_cnn(2)
    history = train(tmp_path, model, ds, ds, torch.optim.Adam(model.parameters(), 3e-3),
                    torch.nn.CrossEntropyLoss(), epochs=4, batch_size=8, num_workers=0,
                    print_logging=False, precision="bf16")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert soundscape.load_model(tmp_path / "best.model").metadata["precision"] == "bf16"
