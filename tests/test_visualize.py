import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from soundscape.errors import ParameterError
from soundscape.visualize import confusion_matrix, learning_curves, precision_recall, roc_curves
from soundscape.workflow.evaluation import compute_statistics

LABELS = ["anger", "fear", "joy"]


@pytest.fixture
def test_stats():
    rng = np.random.default_rng(0)
    y = np.array([0] * 12 + [1] * 6 + [2] * 3)
    probs = rng.dirichlet(np.ones(3), size=len(y))
    probs[np.arange(len(y)), y] += 0.5  # mostly right
    probs /= probs.sum(axis=1, keepdims=True)
    meta = {"type": "category", "idx2str": LABELS}
    return {"emotion": compute_statistics(meta, y, probs, 0.7), "combined": {"loss": 0.7}}


@pytest.fixture
def train_stats():
    def split(offset):
        return {"emotion": {"loss": [1.0 + offset, 0.8 + offset, 0.6 + offset],
                            "accuracy": [0.3, 0.5, 0.7 - offset]}, "combined": {"loss": [1, 0.8, 0.6]}}

    return {"training": split(0.0), "validation": split(0.1), "test": split(0.2)}


def test_confusion_matrix_files_and_normalisation(test_stats, tmp_path):
    path = tmp_path / "test_statistics.json"
    path.write_text(json.dumps(test_stats))
    [png] = confusion_matrix(path, output_directory=tmp_path / "out", file_format="png")
    assert png.name == "confusion_matrix_emotion.png" and png.read_bytes()[:4] == b"\x89PNG"
    [pdf] = confusion_matrix(test_stats, normalize=True, output_directory=tmp_path, file_format="pdf")
    assert pdf.read_bytes()[:4] == b"%PDF"
    [fig] = confusion_matrix(test_stats, normalize=True)
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(shown).sum(axis=1), 1.0)
    [fig] = confusion_matrix(test_stats, top_n_classes=2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["anger", "fear"]
    full = np.array(test_stats["emotion"]["confusion_matrix"])
    np.testing.assert_array_equal(np.asarray(fig.axes[0].images[0].get_array()), full[:2, :2])


def test_class_names_come_from_metadata_when_missing(test_stats, tmp_path):
    del test_stats["emotion"]["labels"]
    meta = tmp_path / "training_set_metadata.json"
    meta.write_text(json.dumps({"emotion": {"idx2str": ["a", "b", "c"]}}))
    [fig] = confusion_matrix(test_stats, ground_truth_metadata=meta)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]


def test_learning_curves_one_figure_per_metric(train_stats, tmp_path):
    paths = learning_curves(train_stats, output_directory=tmp_path)
    assert sorted(p.name for p in paths) == ["learning_curves_emotion_accuracy.png", "learning_curves_emotion_loss.png"]
    [loss_fig, acc_fig] = learning_curves([train_stats, train_stats], model_names=["a", "b"])
    lines = loss_fig.axes[0].get_lines()
    assert len(lines) == 6  # 3 splits x 2 models
    np.testing.assert_allclose(lines[1].get_ydata(), [1.1, 0.9, 0.7])
    assert isinstance(acc_fig, Figure)


def test_roc_and_precision_recall_curves(test_stats, tmp_path):
    [roc] = roc_curves(test_stats, output_directory=tmp_path, file_format="svg")
    assert roc.name == "roc_curves_emotion.svg" and b"<svg" in roc.read_bytes()[:400]
    [fig] = roc_curves(test_stats)
    curves = fig.axes[0].get_lines()
    assert len(curves) == 4  # 3 classes + diagonal
    assert curves[0].get_xdata()[0] == 0 and curves[0].get_ydata()[-1] == 1
    assert "anger (" in curves[0].get_label()
    [fig] = precision_recall(test_stats)
    assert len(fig.axes[0].get_lines()) == 3


def test_mistakes_are_reported(test_stats, tmp_path):
    with pytest.raises(ParameterError, match="output feature 'mood' not in"):
        confusion_matrix(test_stats, output_feature_name="mood")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        confusion_matrix(tmp_path / "nope.json")
    with pytest.raises(ParameterError, match="file_format"):
        roc_curves(test_stats, output_directory=tmp_path, file_format="bmp")
    set_stats = {"tags": compute_statistics({"type": "set", "idx2str": ["a", "b"]},
                                            np.array([[1, 0], [0, 1], [1, 1]]), np.full((3, 2), 0.6), 0.5)}
    with pytest.raises(ParameterError, match="no confusion matrix"):
        confusion_matrix(set_stats)
    assert len(roc_curves(set_stats)[0].axes[0].get_lines()) == 3
    with pytest.raises(ParameterError, match="model_names has 1 names for 2"):
        roc_curves([test_stats, test_stats], model_names=["x"])
