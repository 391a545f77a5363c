"""Tests for soundscape.torch.train: real (tiny) training runs on synthetic clips."""

import io
import json
import logging
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torchvision

from soundscape.datasets import MultiTargetAudioDataset, SingleTargetAudioDataset
from soundscape.errors import ModelFileError, ParameterError, TrainingError
from soundscape.model_file import load_model
from soundscape.torch.models import register, resnet18
from soundscape.torch.train import plot_history, read_history, train

RATE = 8000
SMALL = dict(height=48, width=48, audio_sample_rate=RATE, window_samples=256, overlap_samples=128)
LABELS = {0: "low", 1: "high"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@register("tiny_test_cnn")
def tiny_cnn(num_classes: int) -> torch.nn.Module:
    """A registered architecture small enough for quick checkpoint tests."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, num_classes),
    )


# the classic tutorial's log-parsing functions, as it gives them
def extract_all_lines_containing(source_text, str_to_extract):
    """Case-sensitive search for lines containing str_to_extract"""
    finished = False  # noqa: F841
    lines = source_text.split('\n')
    extract_lines = [line for line in lines if str_to_extract in line]
    return extract_lines


def strip_log(log, sep=':     '):
    return log.split(sep)[1]


def get_metric_from_log(source_text, metric):
    if 'precision' in metric or 'recall' in metric:
        return [float(strip_log(line, sep=': ').strip('[]').split()[1])
                for line in extract_all_lines_containing(source_text, metric)]
    return [float(strip_log(line, sep=': ')) for line in extract_all_lines_containing(source_text, metric)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """12 training and 4 validation clips: a low tone (class 0) or a high chirp (class 1)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    t = np.arange(RATE) / RATE
    rows = []
    for i in range(16):
        label = i % 2
        if label == 0:
            x = 0.5 * np.sin(2 * np.pi * rng.uniform(400, 700) * t)
        else:
            x = 0.5 * np.sin(2 * np.pi * (rng.uniform(2500, 3000) * t + 400 * t**2))
        x = x + 0.01 * rng.standard_normal(len(t))
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, x.astype(np.float32), RATE)
        rows.append({"file": str(path), "label": label, "low": 1 - label, "high": label})
    return pd.DataFrame(rows)


def _datasets(df, **kw):
    make = lambda d: SingleTargetAudioDataset(d, LABELS, filename_column="file", label_column="label",  # noqa
                                              **SMALL, **kw)
    return make(df.iloc[:12]), make(df.iloc[12:])


def _train(save_dir, model, train_ds, valid_ds, **kw):
    out = io.StringIO()
    kw.setdefault("epochs", 3)
    kw.setdefault("loss_fn", torch.nn.CrossEntropyLoss())
    optimizer = kw.pop("optimizer", None) or torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with redirect_stdout(out):
        history = train(save_dir, model, train_ds, valid_ds, optimizer=optimizer, batch_size=4,
                        seed=0, device="cpu", **kw)
    return history, out.getvalue()


def test_training_loss_falls_and_log_parses_with_the_classic_functions(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)
    model = torchvision.models.resnet18(weights=None)  # the classic recipe: torchvision + new fc
    model.fc = torch.nn.Linear(in_features=model.fc.in_features, out_features=2)
    save_dir = tmp_path / "results" / "nested"  # created if missing
    history, log = _train(save_dir, model, train_ds, valid_ds, epochs=4, log_every=2)
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert history["train_loss"].iloc[-1] < 0.5 * history["train_loss"].iloc[0]
    assert history["train_accuracy"].iloc[-1] >= 0.9
    assert log.startswith("Epoch 0\n  Validation results:\n    train_loss: ")
    assert get_metric_from_log(log, "train_loss") == pytest.approx(list(history["train_loss"]))
    assert get_metric_from_log(log, "valid_accuracy") == pytest.approx(list(history["valid_accuracy"]))
    for name in ("train_precision", "valid_recall"):
        parsed = get_metric_from_log(log, name)
        assert parsed == pytest.approx([v[1] for v in history[name]])
    for name in ("train_f1", "valid_precision", "train_recall", "valid_loss", "valid_f1", "train_accuracy"):
        assert len(extract_all_lines_containing(log, name)) == 4
    assert "valid_precision: [" in log and "]" in log.split("valid_precision: ")[1].split("\n")[0]
    files = sorted(p.name for p in save_dir.iterdir())
    assert files == ["best.model", "epoch-1.tar", "epoch-3.tar", "metrics.csv", "metrics.json",
                     "training_run.json"]
    csv = pd.read_csv(save_dir / "metrics.csv")
    assert len(csv) == 4 and "valid_f1[high]" in csv.columns
    np.testing.assert_allclose(csv["train_loss"], history["train_loss"])
    assert json.loads((save_dir / "metrics.json").read_text())["classes"] == ["low", "high"]
    again = read_history(save_dir)
    np.testing.assert_allclose(np.vstack(again["valid_f1"]), np.vstack(history["valid_f1"]))
    fig, ax = plot_history(history, metrics=["train_loss", "valid_f1"], mark_best=False)
    assert len(ax.get_lines()) == 3  # one loss line, one F1 line per class
    fig, ax = plot_history(save_dir, metrics=["valid_accuracy"], mark_best=False)
    assert len(ax.get_lines()) == 1
    with pytest.raises(KeyError, match="valid_auc"):
        plot_history(history, metrics=["valid_auc"])


def test_checkpoints_and_best_model_reproduce_the_network(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)
    model = resnet18(2)
    history, _ = _train(tmp_path, model, train_ds, valid_ds, epochs=3, log_every=1)
    x = torch.stack([valid_ds[i]["X"] for i in range(len(valid_ds))])
    model.eval()
    with torch.no_grad():
        final = model(x)
    last = load_model(tmp_path / "epoch-2.tar")
    assert last.classes == ["low", "high"] and not last.multi_target
    assert last.preprocessing == train_ds.preprocessing
    assert last.architecture == "resnet18" and "weights" not in last.architecture_kwargs
    with torch.no_grad():
        torch.testing.assert_close(last(x), final)
    best_epoch = history.attrs["best_epoch"]
    best = load_model(tmp_path / "best.model")
    assert best.metadata["epoch"] == best_epoch and best.metadata["label_dict"] == LABELS
    same_epoch = load_model(tmp_path / f"epoch-{best_epoch}.tar")
    with torch.no_grad():
        torch.testing.assert_close(best(x), same_epoch(x))
    f1s = [np.mean(v) for v in history["valid_f1"]]
    assert f1s[best_epoch] == max(f1s)
    checkpoint = torch.load(tmp_path / "epoch-1.tar", weights_only=False)
    assert checkpoint["epoch"] == 1 and checkpoint["label_dict"] == LABELS
    assert {"model_state_dict", "optimizer_state_dict", "metrics", "preprocessing", "model"} <= set(checkpoint)


def test_resume_continues_from_the_last_checkpoint(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)
    model = tiny_cnn(2)
    first, _ = _train(tmp_path, model, train_ds, valid_ds, epochs=2, log_every=1)
    assert load_model(tmp_path / "epoch-1.tar").architecture == "tiny_test_cnn"
    fresh = tiny_cnn(2)
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.01, momentum=0.9)
    done, log = _train(tmp_path, fresh, train_ds, valid_ds, epochs=2, optimizer=optimizer,
                       resume_from=tmp_path)
    assert "Epoch" not in log and list(done["epoch"]) == [0, 1]  # nothing left to do
    for a, b in zip(fresh.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)  # the model was restored from epoch-1.tar
    assert optimizer.state_dict()["state"]  # momentum buffers restored
    more, log = _train(tmp_path, fresh, train_ds, valid_ds, epochs=3, optimizer=optimizer,
                       resume_from=tmp_path / "epoch-1.tar")
    assert log.startswith("Epoch 2\n") and list(more["epoch"]) == [0, 1, 2]
    np.testing.assert_allclose(more["train_loss"][:2], first["train_loss"])
    assert (tmp_path / "epoch-2.tar").exists() and len(pd.read_csv(tmp_path / "metrics.csv")) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no epoch-N.tar checkpoint in .*empty"):
        _train(tmp_path / "new", tiny_cnn(2), train_ds, valid_ds, resume_from=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no checkpoint file or folder at .*missing"):
        _train(tmp_path / "new", tiny_cnn(2), train_ds, valid_ds, resume_from=tmp_path / "missing")


def test_corrupt_clip_is_logged_once_and_skipped(clips, tmp_path, caplog):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00garbage" * 20)
    df = pd.concat([clips.iloc[:12], pd.DataFrame([{"file": str(broken), "label": 1}])], ignore_index=True)
    train_ds = SingleTargetAudioDataset(df, LABELS, filename_column="file", label_column="label", **SMALL)
    _, valid_ds = _datasets(clips)
    with caplog.at_level(logging.WARNING, logger="soundscape.train"):
        history, log = _train(tmp_path, tiny_cnn(2), train_ds, valid_ds, epochs=2, num_workers=1)
    warnings = [r.getMessage() for r in caplog.records if "broken.wav" in r.getMessage()]
    assert len(warnings) == 1 and "skipping" in warnings[0]
    assert history.attrs["skipped_files"] == [str(broken)]
    assert len(history) == 2 and "broken" not in log
    assert json.loads((tmp_path / "metrics.json").read_text())["skipped_files"] == [str(broken)]


def test_nan_loss_stops_training_naming_epoch_and_batch(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)

    def nan_loss(logits, y):
        return torch.nn.functional.cross_entropy(logits, y) * float("nan")

    with pytest.raises(TrainingError, match="epoch 0, batch 0"):
        _train(tmp_path, tiny_cnn(2), train_ds, valid_ds, loss_fn=nan_loss)


def test_model_output_size_must_match_classes(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)
    with pytest.raises(ParameterError, match="2 classes"):
        _train(tmp_path, tiny_cnn(3), train_ds, valid_ds, epochs=1)


class TinyNet(torch.nn.Module):
    """Not a registered architecture: saved by pickling the module."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def test_multi_target_training_reports_auc_and_saves_other_modules(clips, tmp_path):
    make = lambda d: MultiTargetAudioDataset(d[["file", "low", "high"]], filename_column="file", **SMALL)  # noqa
    train_ds, valid_ds = make(clips.iloc[:12]), make(clips.iloc[12:])
    model = TinyNet()
    history, log = _train(tmp_path, model, train_ds, valid_ds, epochs=2,
                          loss_fn=torch.nn.BCEWithLogitsLoss(),
                          optimizer=torch.optim.Adam(model.parameters(), lr=0.01))
    for name in ("valid_roc_auc", "valid_macro_roc_auc", "valid_average_precision", "valid_f1"):
        assert f"    {name}: " in log
    auc = np.vstack(history["valid_roc_auc"])
    assert auc.shape == (2, 2) and np.all((auc >= 0) & (auc <= 1))
    assert np.all(np.isfinite(history["valid_macro_average_precision"]))
    assert get_metric_from_log(log, "valid_precision") == pytest.approx([v[1] for v in history["valid_precision"]])
    with pytest.raises(ModelFileError, match="trusted=True"):
        load_model(tmp_path / "best.model")  # a pickled module is code: only loaded when trusted
    detector = load_model(tmp_path / "best.model", trusted=True)
    assert detector.multi_target and detector.classes == ["low", "high"]
    assert detector.architecture == "torch_module"
    x = valid_ds[0]["X"][None]
    model.eval()
    with torch.no_grad():
        assert detector(x).shape == (1, 2)
        torch.testing.assert_close(load_model(tmp_path / "epoch-1.tar", trusted=True)(x), model(x))


def test_plot_history_saves_labelled_learning_curves(clips, tmp_path):
    from matplotlib.figure import Figure

    train_ds, valid_ds = _datasets(clips)
    history, _ = _train(tmp_path / "run", tiny_cnn(2), train_ds, valid_ds, epochs=3,
                        small_data_warning=False)
    png = tmp_path / "plots" / "curves.png"
    fig, ax = plot_history(history, metrics=["train_loss", "valid_loss"], fname=png, title="loss")
    assert isinstance(fig, Figure) and png.read_bytes()[:4] == b"\x89PNG"
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss" and ax.get_title() == "loss"
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)  # whole epochs only
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["train_loss", "valid_loss"]
    assert labels[2] == f"best model (epoch {history.attrs['best_epoch']})"
    _, ax = plot_history(history, metrics=["train_accuracy", "valid_loss"])
    assert ax.get_ylabel() == "value"
    pdf = tmp_path / "curves.pdf"
    plot_history(tmp_path / "run", metrics=["valid_accuracy"], fname=pdf)
    assert pdf.read_bytes()[:4] == b"%PDF"


def test_small_validation_set_is_said_once_with_counts(clips, tmp_path, caplog):
    train_ds, valid_ds = _datasets(clips)  # 4 validation clips, 2 of each class
    with caplog.at_level(logging.WARNING, logger="soundscape.train"):
        _, log = _train(tmp_path / "a", tiny_cnn(2), train_ds, valid_ds, epochs=2)
    warned = [r.getMessage() for r in caplog.records if "validation set has only" in r.getMessage()]
    assert len(warned) == 1
    assert "only 4 clips (2 'low', 2 'high')" in warned[0] and "cross-validate" in warned[0]
    assert log.startswith("Epoch 0\n")  # the classic log is unchanged at the top
    assert log.count("Note: the validation set has only 4 clips") == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundscape.train"):
        _, log = _train(tmp_path / "b", tiny_cnn(2), train_ds, valid_ds, epochs=1,
                        small_data_warning=False)
    assert "validation set has only" not in caplog.text and "Note:" not in log


def test_large_enough_validation_set_is_not_warned_about(tmp_path, caplog):
    from soundscape.torch.train import validation_counts
    from soundscape.thresholds import small_data_message

    assert validation_counts(["a", "b"], train_like(20, 10), False) == {"a": 10, "b": 10}
    assert small_data_message("x", 20, {"a": 10, "b": 10}) is None
    assert "4 'b'" in small_data_message("x", 24, {"a": 20, "b": 4})
    multi = validation_counts(["bird"], train_like_multi([1, 0, 1]), True)
    assert multi == {"bird": 2, "not bird": 1}


class train_like:  # noqa: N801 - a stand-in dataset holding labels only
    def __init__(self, n, positives):
        self.labels = np.r_[np.ones(positives), np.zeros(n - positives)].astype(int)


class train_like_multi:  # noqa: N801
    def __init__(self, column):
        self.labels = np.asarray(column, dtype=float)[:, None]


def test_unseeded_runs_shuffle_differently_and_seeded_runs_repeat(clips, tmp_path):
    train_ds, valid_ds = _datasets(clips)

    def final_weights(name, seed):
        torch.manual_seed(0)  # the same initial weights every time: only the order differs
        model = tiny_cnn(2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        with redirect_stdout(io.StringIO()):
            train(tmp_path / name, model, train_ds, valid_ds, optimizer, torch.nn.CrossEntropyLoss(),
                  epochs=1, batch_size=4, seed=seed, device="cpu", num_workers=0)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(final_weights("s1", 3), final_weights("s2", 3))
    unseeded = [final_weights(f"u{k}", None) for k in range(3)]
    # 12 clips in batches of 4: three runs in one order have 1 chance in 12!^2 or so
    assert not (torch.equal(unseeded[0], unseeded[1]) and torch.equal(unseeded[1], unseeded[2]))
