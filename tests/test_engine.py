"""One engine, two doors: every kind of model works through every command.

For each model kind (classic ResNet18 on images, compact CNN on mel images, config
stacked_cnn on fbank, config rnn on stft) this trains on `sample_data/`, saves, loads, and
runs `predict` on clips, `predict_recordings` on a field recording (with resume), the
`soundscape predict` and `soundscape evaluate` commands, detections and Raven tables. The
Python and command-line doors must give the same scores.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

import soundscape
from soundscape.annotations import write_raven
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.detections import detections
from soundscape.preprocessing import Preprocessing
from soundscape.torch.compact import compact_cnn
from soundscape.torch.models import resnet18
from soundscape.torch.train import train

ROOT = Path(__file__).resolve().parents[1] / "sample_data"
CLIPS = ROOT / "woodcock_labeled_data"
KINDS = ("resnet18_image", "compact_mel", "config_fbank", "config_rnn_stft")


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    table = pd.read_csv(CLIPS / "woodcock_labels.csv")
    table["file"] = [str(CLIPS / f) for f in table["filename"]]
    table["label"] = table["woodcock"]
    return table


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """The first 30 s of the sample field recording, in a folder of its own."""
    folder = tmp_path_factory.mktemp("recordings")
    audio, rate = sf.read(ROOT / "field_recording" / "field_recording.flac", frames=30 * 22050,
                          dtype="float32")
    sf.write(folder / "field_30s.wav", audio, rate)
    return folder


def _train_classic(kind: str, labels: pd.DataFrame, out: Path) -> Path:
    torch.manual_seed(0)
    label_dict = {0: "absent", 1: "present"}
    if kind == "resnet18_image":
        prep = Preprocessing(sample_rate=22050, clip_duration=2.0, height=64, width=64)
        model = resnet18(2)
        kw = {"preprocessing": prep}
    else:
        model = compact_cnn(2)
        kw = {"clip_duration": 2.0}  # no preprocessing given: the compact model's own is used
    train_ds = SingleTargetAudioDataset(labels.iloc[::2], label_dict, filename_column="file",
                                        label_column="label", **kw)  # label names, not numbers
    valid_ds = SingleTargetAudioDataset(labels.iloc[1::2], label_dict, filename_column="file",
                                        label_column="label", **kw)
    train(out, model, train_ds, valid_ds, torch.optim.Adam(model.parameters(), 1e-3),
          torch.nn.CrossEntropyLoss(), epochs=1, batch_size=8, num_workers=0, print_logging=False)
    if kind == "compact_mel":
        assert train_ds.preprocessing.channels == 1 and train_ds.preprocessing.n_mels == 64
        # the trained network itself is accepted by predict
        direct = soundscape.predict(model, labels["file"].tolist()[:3])
        assert direct.shape == (3, 2)
    return out / "best.model"


def _train_config(kind: str, labels: pd.DataFrame, out: Path) -> Path:
    csv = out / "labels.csv"
    out.mkdir(parents=True, exist_ok=True)
    labels[["file", "label"]].to_csv(csv, index=False)
    if kind == "config_fbank":
        feature = {"name": "file", "type": "audio",
                   "encoder": {"type": "stacked_cnn", "num_filters": 8, "num_layers": 2, "output_size": 16},
                   "preprocessing": {"type": "fbank", "sample_rate": 16000, "num_filter_bands": 32,
                                     "audio_file_length_limit_in_s": 2.0}}
    else:
        feature = {"name": "file", "type": "audio", "encoder": {"type": "rnn", "hidden_size": 16},
                   "preprocessing": {"type": "stft", "sample_rate": 8000,
                                     "window_length_in_s": 0.032, "window_shift_in_s": 0.016,
                                     "audio_file_length_limit_in_s": 2.0}}
    config = {"input_features": [feature], "output_features": [{"name": "label", "type": "category"}],
              "trainer": {"epochs": 2, "batch_size": 8}}
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    proc = _cli("train", "--config", out / "config.yaml", "--dataset", csv, "--output_directory",
                out / "results", "-q")
    assert proc.returncode == 0, proc.stderr
    return out / "results" / "experiment_run" / "model"


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soundscape", *map(str, args)], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_works_through_every_command(kind, labels, recording, tmp_path):
    trained = (_train_classic if kind in ("resnet18_image", "compact_mel") else _train_config)(
        kind, labels, tmp_path / "train")
    detector = soundscape.load_model(trained if trained.is_file() else trained / "model.pt")
    assert detector.classes == ["absent", "present"] and not detector.multi_target

    clips = soundscape.predict(detector, labels["file"].tolist()[:4])
    assert clips.shape == (4, 2) and np.allclose(clips.sum(axis=1), 1.0, atol=1e-5)

    out = tmp_path / "scores"
    scores = soundscape.predict_recordings(detector, recording, clip_overlap=1.0, final_clip="extend",
                                           output_dir=out, progress=False)
    assert len(scores) == 29 and list(scores.columns) == ["absent", "present"]
    again = soundscape.predict_recordings(detector, recording, clip_overlap=1.0, final_clip="extend",
                                          output_dir=out, progress=False)
    assert again.attrs["summary"]["n_skipped"] == 1  # resumed from the output folder
    np.testing.assert_allclose(again.to_numpy(), scores.to_numpy(), atol=1e-6)

    events = detections(scores, threshold=0.5, classes=["present"])
    tables = write_raven(events, tmp_path / "raven")
    assert all(Path(t).is_file() for t in tables)

    proc = _cli("predict", "--model_path", trained, "--dataset", recording, "--output_directory",
                tmp_path / "cli_pred", "--clip_overlap", "1.0", "-q")
    assert proc.returncode == 0, proc.stderr
    cli = pd.read_csv(tmp_path / "cli_pred" / "predictions.csv")
    np.testing.assert_allclose(cli["label_probabilities_present"].to_numpy(),
                               scores["present"].to_numpy(), atol=1e-5)

    csv = tmp_path / "eval.csv"
    labels[["file", "label"]].to_csv(csv, index=False)
    proc = _cli("evaluate", "--model_path", trained, "--dataset", csv, "--output_directory",
                tmp_path / "cli_eval", "-q")
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_csv(tmp_path / "cli_eval" / "predictions.csv")
    assert len(preds) == len(labels)
    np.testing.assert_allclose(preds["label_probabilities_present"].to_numpy()[:4],
                               clips["present"].to_numpy(), atol=1e-5)


def test_config_run_resumes_from_its_last_checkpoint(labels, tmp_path):
    from soundscape.workflow import train as train_config

    csv = tmp_path / "labels.csv"
    labels[["file", "label"]].to_csv(csv, index=False)
    config = {"input_features": [{"name": "file", "type": "audio",
                                  "encoder": {"type": "stacked_cnn", "num_filters": 4, "num_layers": 1,
                                              "output_size": 8},
                                  "preprocessing": {"type": "fbank", "sample_rate": 8000,
                                                    "num_filter_bands": 16,
                                                    "audio_file_length_limit_in_s": 2.0}}],
              "output_features": [{"name": "label", "type": "category"}],
              "trainer": {"epochs": 2, "batch_size": 8}}
    first = train_config(config, csv, output_directory=tmp_path / "runs", progress=False)
    assert first.train_stats["summary"]["epochs_run"] == 2
    run = first.run_directory
    (run / "checkpoints" / "epoch-1.tar").unlink()  # as if killed after epoch 0
    config["trainer"]["epochs"] = 3
    resumed = train_config(config, csv, resume_from=run, progress=False)
    assert resumed.run_directory == run
    assert resumed.train_stats["summary"]["epochs_run"] == 3
    assert (run / "checkpoints" / "epoch-2.tar").is_file()
