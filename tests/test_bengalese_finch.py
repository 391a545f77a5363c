"""Real recordings end to end: Raven tables -> clip labels -> training -> streamed detection.

Uses the Bengalese finch song recordings in ``shared/data/bengalese_finch`` (32 kHz,
4-13 s, every syllable annotated); skipped when the folder is absent. A small CNN learns
"song present" on 1-s clips of 14 recordings and is scored on the 7 others, which it
never saw: window scores must rank song windows above silent ones (ROC AUC) and the
detected events must find most song bouts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.annotations import clip_labels, read_raven
from soundscape.detections import EVENT_COLUMNS, detections, match_events
from soundscape.model_file import load_model
from soundscape.torch.models import build, register
from soundscape.torch.predict import predict_recordings

datasets = pytest.importorskip("soundscape.datasets")
train_module = pytest.importorskip("soundscape.torch.train")


@register("test_finch_cnn")
def _cnn(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, num_classes))


def _roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def _bouts(annotations: pd.DataFrame, gap: float = 0.5) -> pd.DataFrame:
    """Syllables closer than `gap` seconds merged into song bouts."""
    rows = []
    for file, group in annotations.sort_values("start_time").groupby("file"):
        start, end = None, None
        for s, e in zip(group.start_time, group.end_time):
            if start is not None and s - end <= gap:
                end = max(end, e)
                continue
            if start is not None:
                rows.append((file, "song", start, end))
            start, end = s, e
        rows.append((file, "song", start, end))
    return pd.DataFrame(rows, columns=["file", "annotation", "start_time", "end_time"])


def test_song_detection_on_held_out_recordings(shared_data, tmp_path):
    root = shared_data / "bengalese_finch"
    if not (root / "raven").is_dir():
        pytest.skip(f"{root / 'raven'} is absent")
    annotations = read_raven(root / "raven", audio_files=root / "audio")
    annotations["annotation"] = "song"  # every syllable type counts as song
    labels = clip_labels(annotations, clip_duration=1.0, clip_overlap=0.5, min_label_overlap=0.05)
    files = sorted(labels.index.get_level_values("file").unique())
    assert len(files) == 21 and set(labels["song"]) == {0, 1}
    held_out = files[::3]  # both birds are in both parts
    in_held = labels.index.get_level_values("file").isin(held_out)
    labels["label"] = labels["song"]

    settings = dict(label_dict={0: "absent", 1: "song"}, label_column="label", clip_duration=1.0,
                    audio_sample_rate=32000, height=48, width=48, channels=1, min_frequency=500.0)
    train_set = datasets.SingleTargetAudioDataset(labels[~in_held], **settings)
    valid_set = datasets.SingleTargetAudioDataset(labels[in_held], **settings)
    torch.manual_seed(0)
    net = build("test_finch_cnn", 2)
    train_module.train(tmp_path / "run", net, train_set, valid_set,
                       torch.optim.Adam(net.parameters(), lr=3e-3), torch.nn.CrossEntropyLoss(),
                       epochs=5, batch_size=16, log_every=5, seed=0, progress_bar=False,
                       print_logging=False)
    detector = load_model(tmp_path / "run" / "best.model")

    scores = predict_recordings(detector, held_out, clip_overlap=0.5, output_dir=tmp_path / "scores",
                                progress=False)
    assert scores.attrs["summary"]["n_failed"] == 0
    assert list(scores.columns) == ["absent", "song"]
    assert sorted(scores.index.get_level_values("file").unique()) == held_out
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)

    truth = labels.loc[in_held, "song"]
    joined = scores.join(truth.rename("truth"), how="inner")
    assert len(joined) == len(truth) == len(scores)  # the same 1-s / 0.5-s window grid
    auc = _roc_auc(joined["truth"].to_numpy(), joined["song"].to_numpy())
    assert auc > 0.8, f"held-out window ROC AUC {auc:.3f}"

    events = detections(scores, threshold=0.5, classes=["song"], merge_gap=0.5)
    assert list(events.columns) == EVENT_COLUMNS and len(events) > 0
    assert set(events["file"]) <= set(held_out)
    bouts = _bouts(annotations[annotations["file"].isin(held_out)])
    result = match_events(events, bouts)
    assert result["recall"] >= 0.7, result["per_class"]
    assert result["precision"] >= 0.5, result["per_class"]
