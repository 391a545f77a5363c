"""Tests for soundscape.torch.compact: the compact CNN, its preprocessing, and a short real run."""

import io
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import ParameterError
from soundscape.model_file import load_model
from soundscape.torch.compact import CompactCNN, compact_cnn, compact_preprocessing
from soundscape.torch.models import build, identify
from soundscape.torch.train import train


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_any_image_size_and_channel_count_gives_one_score_per_class():
    model = CompactCNN(5).eval()
    for shape in [(2, 1, 64, 108), (3, 1, 40, 61), (1, 1, 7, 9)]:
        assert model(torch.randn(shape)).shape == (shape[0], 5)
    assert model.embed(torch.randn(2, 1, 64, 100)).shape == (2, 256)
    rgb = CompactCNN(3, in_channels=3, widths=(8, 16), convs_per_block=2)
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    n_small = sum(p.numel() for p in CompactCNN(10).parameters())
    assert 300_000 < n_small < 500_000  # the README's "~0.4 M parameters"
    with pytest.raises(ParameterError, match="shape"):
        model(torch.randn(1, 64, 108))


def test_arguments_are_checked():
    for kwargs, match in ((dict(num_classes=0), "num_classes"), (dict(widths=()), "widths"),
                          (dict(convs_per_block=0), "convs_per_block"),
                          (dict(dropout=1.0), "dropout"), (dict(in_channels=0), "in_channels")):
        with pytest.raises(ParameterError, match=match):
            CompactCNN(**{"num_classes": 2, **kwargs})
    with pytest.raises(ParameterError, match="no pretrained weights"):
        compact_cnn(2, weights="imagenet")


def test_registered_and_rebuilt_with_its_settings():
    model = CompactCNN(4, widths=(8, 16, 32), dropout=0.1)
    name, kwargs = identify(model, 4)
    assert name == "compact_cnn" and kwargs["widths"] == [8, 16, 32]
    again = build(name, 4, **kwargs)
    again.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, 16, 20)
    torch.testing.assert_close(again.eval()(x), model.eval()(x))
    assert identify(model, 5)[0] == "torch_module"  # wrong number of outputs


def test_compact_preprocessing_sizes_the_image_to_the_spectrogram():
    p = compact_preprocessing(sample_rate=22050, clip_duration=5.0, n_mels=64)
    assert (p.channels, p.height, p.n_mels) == (1, 64, 64)
    assert p.width == p.n_frames == 214 and p.overlap_samples == 512
    assert p.decibel_limits == (-100.0, 0.0)
    q = compact_preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=40, frames=32,
                              window_samples=256, hop_samples=64, min_frequency=100)
    assert (q.width, q.overlap_samples, q.min_frequency) == (32, 192, 100.0)
    with pytest.raises(ParameterError, match="hop_samples"):
        compact_preprocessing(hop_samples=0)


def test_short_recipe_on_real_spoken_digits_learns(shared_data, tmp_path):
    """FSDD digits 0-3 of two speakers: far above chance (25 %) after a short CPU run."""
    root = shared_data / "fsdd"
    df = pd.read_csv(root / "labels.csv")
    df = df[df["label"].isin([0, 1, 2, 3]) & df["speaker"].isin(["george", "jackson"])].copy()
    df["path"] = [str(root / f) for f in df["filename"]]
    train_df = df[df["index"] >= 10].groupby(["label", "speaker"]).head(12)
    test_df = df[df["index"] < 5]
    prep = compact_preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=32,
                                 window_samples=256, frames=32)
    labels = {i: str(i) for i in range(4)}
    train_ds = SingleTargetAudioDataset(train_df, labels, "path", "label", preprocessing=prep)
    test_ds = SingleTargetAudioDataset(test_df, labels, "path", "label", preprocessing=prep)
    torch.manual_seed(0)
    model = CompactCNN(4, widths=(32, 64, 128), dropout=0.1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    with redirect_stdout(io.StringIO()):
        history = train(tmp_path, model, train_ds, test_ds, optimizer,
                        torch.nn.CrossEntropyLoss(), epochs=15, batch_size=8, num_workers=0,
                        log_every=100, seed=0, device="cpu", progress_bar=False,
                        lr_schedule="one_cycle", label_smoothing=0.05)
    assert len(train_ds) == 96 and len(test_ds) == 40
    assert history["valid_accuracy"].iloc[-1] >= 0.65
    detector = load_model(tmp_path / "best.model")
    assert detector.architecture == "compact_cnn" and detector.preprocessing == prep
    x = torch.stack([test_ds[i]["X"] for i in range(len(test_ds))])
    model.eval()
    accuracy = np.mean(model(x).argmax(1).numpy() == test_df["label"].to_numpy())
    assert accuracy == pytest.approx(history["valid_accuracy"].iloc[-1])
