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


# ------------------------------------------------------------------ detections and thresholds
def _recording_scores():
    """Scores of 2-s windows every 0.5 s over the first 40 s of the sample recording: high
    around each annotated peent (a stand-in for a model's output), with the truth table."""
    import pandas as pd

    from soundscape.annotations import read_raven

    folder = SAMPLE_DATA / "field_recording"
    truth = read_raven(folder, audio_files=folder)
    file = truth["file"].iloc[0]
    starts = np.arange(0.0, 38.5, 0.5)
    peents = truth[truth["end_time"] < 40]
    heard = [((peents["start_time"] < s + 2) & (peents["end_time"] > s)).any() for s in starts]
    index = pd.MultiIndex.from_arrays([[file] * len(starts), starts, starts + 2.0],
                                      names=["file", "start_time", "end_time"])
    scores = pd.DataFrame({"woodcock": np.where(heard, 0.9, 0.05)}, index=index)
    scores.attrs["frequency_band"] = (1500.0, 8000.0)
    return scores, truth, file


SAMPLE_DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_data"


def test_plot_detections_scores_over_the_spectrogram(tmp_path):
    from matplotlib.patches import Rectangle

    from soundscape.detections import detections
    from soundscape.visualize import plot_detections

    scores, truth, file = _recording_scores()
    events = detections(scores, threshold=0.5, span="shared")
    png = tmp_path / "figs" / "detections.png"
    fig = plot_detections(scores, start_time=0, end_time=30, threshold={"woodcock": 0.5},
                          events=events, truth=truth, fname=png)
    assert isinstance(fig, Figure) and png.read_bytes()[:4] == b"\x89PNG"
    ax_scores, ax_spec = fig.axes[:2]
    assert ax_spec.get_xlabel() == "time in the recording (s)"
    assert ax_spec.get_ylabel() == "frequency (Hz)" and ax_scores.get_ylabel() == "score"
    assert ax_spec.get_xlim() == (0.0, 30.0) and len(ax_spec.images) == 1
    boxes = [p for p in ax_spec.patches if isinstance(p, Rectangle)]
    shown_events = events[events["start_time"] <= 30]
    shown_truth = truth[truth["start_time"] <= 30]
    assert len(boxes) == len(shown_events) + len(shown_truth)
    assert not any(b.get_fill() for b in boxes)  # outlined, not filled
    red = [b for b in boxes if b.get_edgecolor()[:3] == pytest.approx((0.839, 0.153, 0.157), abs=0.01)]
    assert len(red) == len(shown_events)
    assert {b.get_y() for b in red} == {1500.0} and {b.get_height() for b in red} == {6500.0}
    legend = [t.get_text() for t in ax_scores.get_legend().get_texts()]
    assert legend[:3] == ["score: woodcock", "threshold 0.50", "detection"]
    assert legend[3] == f"annotated call ({len(shown_truth)} shown)"
    thresholds = [line for line in ax_scores.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_ydata()[0] for line in thresholds] == [0.5]
    pdf = plot_detections(scores, file=file, fname=tmp_path / "d.pdf")  # default: first 60 s
    assert pdf.axes[1].get_xlim() == (0.0, 40.0)
    assert (tmp_path / "d.pdf").read_bytes()[:4] == b"%PDF"


def test_plot_detections_mistakes(tmp_path):
    import pandas as pd

    from soundscape.visualize import plot_detections

    scores, _, file = _recording_scores()
    with pytest.raises(ParameterError, match="unknown class"):
        plot_detections(scores, classes=["robin"])
    with pytest.raises(ParameterError, match="no scores for file"):
        plot_detections(scores, file="other.wav")
    two = pd.concat([scores, scores.rename(index={file: "b.wav"}, level="file")])
    with pytest.raises(ParameterError, match="2 recordings; say which with file="):
        plot_detections(two)
    with pytest.raises(ParameterError, match="start_time < end_time"):
        plot_detections(scores, start_time=10, end_time=5)


def test_plot_precision_recall_marks_the_threshold(tmp_path):
    import pandas as pd

    from soundscape.thresholds import choose_threshold
    from soundscape.visualize import plot_precision_recall

    rng = np.random.default_rng(1)
    truth = np.r_[np.ones(15), np.zeros(15)].astype(int)
    scores = pd.DataFrame({"woodcock": np.clip(0.6 * truth + rng.normal(0.2, 0.2, 30), 0, 1)})
    choice = choose_threshold(scores, truth)
    png = tmp_path / "pr.png"
    fig = plot_precision_recall(scores, truth, threshold=choice, fname=png)
    assert isinstance(fig, Figure) and png.read_bytes()[:4] == b"\x89PNG"
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("recall") and ax.get_ylabel().startswith("precision")
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    row = choice.loc["woodcock"]
    assert legend == ["woodcock (15 of 30 clips)",
                      f"threshold {row['threshold']:.2f}: precision {row['precision']:.2f}, "
                      f"recall {row['recall']:.2f}"]
    marker = ax.get_lines()[-1]
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == pytest.approx((row["recall"], row["precision"]))
    without = plot_precision_recall(scores["woodcock"], truth)
    assert len(without.axes[0].get_lines()) == 1
