"""Tests for soundscape.thresholds: thresholds from held-out scores, and what they promise."""

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.errors import ParameterError
from soundscape.thresholds import SmallDataWarning, choose_threshold, precision_recall_table

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "woodcock_labeled_data"


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)
        return choose_threshold(*args, **kwargs)


def test_precision_recall_table_by_hand():
    curve = precision_recall_table([0.9, 0.8, 0.8, 0.3, 0.1], [1, 0, 1, 1, 0])
    assert curve["threshold"].tolist() == [0.9, 0.8, 0.3, 0.1]
    assert curve[["tp", "fp"]].to_numpy().tolist() == [[1, 0], [2, 1], [3, 1], [3, 2]]
    assert curve["precision"].tolist() == pytest.approx([1.0, 2 / 3, 0.75, 0.6])
    assert curve["recall"].tolist() == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert curve["next_lower"].iloc[:3].tolist() == [0.8, 0.3, 0.1]


def test_max_f1_threshold_lies_between_the_classes():
    scores = np.r_[np.linspace(0.6, 0.99, 12), np.linspace(0.01, 0.4, 12)]
    truth = np.r_[np.ones(12), np.zeros(12)]
    choice = choose_threshold(scores, truth)
    row = choice.iloc[0]
    assert row["threshold"] == pytest.approx(0.5)  # halfway between 0.4 and 0.6
    assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
    assert (row["tp"], row["fp"], row["fn"], row["n_clips"], row["n_positive"]) == (12, 0, 0, 24, 12)
    assert row["criterion"] == "max F1" and row["target_met"]
    assert list(choice.attrs["curves"]) == ["score"]


def test_target_precision_keeps_the_most_recall():
    # positives 0.9, 0.8, 0.6, 0.3; negatives 0.7, 0.2
    scores = pd.DataFrame({"absent": [0.1, 0.2, 0.4, 0.7, 0.3, 0.8],
                           "wren": [0.9, 0.8, 0.6, 0.3, 0.7, 0.2]})
    labels = pd.Series(["wren", "wren", "wren", "wren", "absent", "absent"])
    best = quiet(scores, labels, classes=["wren"]).loc["wren"]  # 4 of 5 kept clips are wrens
    assert best["threshold"] == pytest.approx(0.25) and best["f1"] == pytest.approx(8 / 9)
    strict = quiet(scores, labels, target_precision=1.0, classes="wren").loc["wren"]
    assert strict["threshold"] == pytest.approx(0.75)  # between 0.8 (kept) and 0.7 (negative)
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5)
    assert strict["criterion"] == "precision >= 1"
    # precision is not monotonic: 0.85 is only reached above 0.7, 0.8 again at 0.3
    assert quiet(scores, labels, target_precision=0.85, classes="wren").loc["wren", "recall"] == 0.5
    loose = quiet(scores, labels, target_precision=0.8, classes="wren").loc["wren"]
    assert loose["threshold"] == pytest.approx(0.25) and loose["recall"] == 1.0


def test_target_out_of_reach_warns_and_gives_the_most_precise():
    scores, truth = [0.9, 0.8, 0.7], [0, 1, 1]
    with pytest.warns(UserWarning, match="no threshold reaches precision 1"):
        row = choose_threshold(scores, truth, target_precision=1.0).iloc[0]
    assert not row["target_met"] and row["precision"] == pytest.approx(2 / 3)


def test_truth_forms_agree():
    scores = pd.DataFrame({"absent": [0.2, 0.9, 0.3, 0.6], "present": [0.8, 0.1, 0.7, 0.4]},
                          index=["a.wav", "b.wav", "c.wav", "d.wav"])
    numbers = [1, 0, 1, 1]
    a = quiet(scores, numbers, classes=["present"])
    b = quiet(scores, ["present", "absent", "present", "present"], classes=["present"])
    c = quiet(scores, pd.DataFrame({"present": numbers, "absent": [0, 1, 0, 0]},
                                   index=scores.index), classes=["present"])
    d = quiet(scores, pd.Series(numbers, index=scores.index)[::-1], classes=["present"])
    for other in (b, c, d):
        pd.testing.assert_frame_equal(a, other)
    both = quiet(scores, numbers)  # class numbers: 0 is "absent", 1 is "present"
    assert both.loc["absent", "n_positive"] == 1 and both.loc["present", "n_positive"] == 3


def test_bad_inputs_are_parameter_errors():
    with pytest.raises(ParameterError, match="has no positive clip"):
        quiet([0.1, 0.2], [0, 0])
    with pytest.raises(ParameterError, match="truth has 3 rows but scores have 2"):
        quiet([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ParameterError, match="target_precision"):
        quiet([0.1, 0.2], [0, 1], target_precision=1.5)
    with pytest.raises(ParameterError, match="unknown class"):
        quiet(pd.DataFrame({"x": [0.1, 0.2]}), [0, 1], classes=["y"])
    with pytest.raises(ParameterError, match="class number"):
        quiet(pd.DataFrame({"x": [0.1, 0.2], "y": [0.9, 0.8]}), [0, 5])


def test_small_held_out_sets_warn_with_the_counts():
    with pytest.warns(SmallDataWarning, match=r"only 6 clips \(3 'positive', 3 'negative'\)"):
        choose_threshold([0.9, 0.8, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallDataWarning)
        choose_threshold(np.linspace(0, 1, 30), np.r_[np.zeros(15), np.ones(15)])


def test_threshold_from_a_model_trained_on_the_sample_clips(tmp_path, one_torch_thread):
    """Real clips, a real (short) training, scores of the held-out clips, a threshold."""
    import soundscape
    from soundscape.datasets import SingleTargetAudioDataset
    from soundscape.detections import detections
    from soundscape.models.compact import compact_cnn
    from soundscape.torch.train import train

    labels = pd.read_csv(SAMPLE / "woodcock_labels.csv")
    labels["filename"] = [str(SAMPLE / f) for f in labels["filename"]]
    labels["song"] = (labels["sound_type"] == "song").astype(int)
    label_dict = {0: "absent", 1: "woodcock"}
    kw = dict(filename_column="filename", label_column="song", clip_duration=2.0)
    train_df, valid_df = labels.iloc[:20], labels.iloc[20:]
    torch.manual_seed(0)
    model = compact_cnn(2, widths=(8, 16))
    train(tmp_path, model, SingleTargetAudioDataset(train_df, label_dict, **kw),
          SingleTargetAudioDataset(valid_df, label_dict, **kw),
          torch.optim.Adam(model.parameters(), lr=3e-3), torch.nn.CrossEntropyLoss(), epochs=2,
          batch_size=10, num_workers=0, print_logging=False, progress_bar=False,
          small_data_warning=False)
    scores = soundscape.predict(model, SingleTargetAudioDataset(valid_df, label_dict, **kw))
    choice = quiet(scores, valid_df.set_index("filename")["song"], classes=["woodcock"])
    assert choice.index.tolist() == ["woodcock"]
    row = choice.loc["woodcock"]
    assert 0 <= row["threshold"] <= 1 and row["n_clips"] == 9
    assert row["n_positive"] == int(valid_df["song"].sum())
    # the threshold table goes straight into detections
    windows = scores.reset_index().rename(columns={"index": "file"})
    windows["start_time"], windows["end_time"] = 0.0, 2.0
    events = detections(windows, threshold=choice)
    assert set(events["annotation"]) <= {"woodcock"}
    hits = scores["woodcock"] >= row["threshold"]
    assert len(events) == int(hits.sum())
