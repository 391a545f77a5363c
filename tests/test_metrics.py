"""Tests for soundscape.metrics."""

import numpy as np
import pytest

from soundscape.errors import ParameterError
from soundscape.metrics import multi_target_metrics, single_target_metrics


def test_single_target_metrics_by_hand():
    y_true = [0, 0, 1, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    m = single_target_metrics(y_true, y_pred, 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_allclose(m["precision"], [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(m["recall"], [1 / 2, 2 / 3, 1.0])
    np.testing.assert_allclose(m["f1"], [1 / 2, 2 / 3, 1.0])
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    np.testing.assert_array_equal(m["confusion_matrix"], [[1, 1, 0], [1, 2, 0], [0, 0, 1]])


def test_single_target_class_missing_from_small_set():
    m = single_target_metrics([1, 1], [1, 0], 2)  # class 0 never true
    np.testing.assert_allclose(m["precision"], [0.0, 1.0])
    np.testing.assert_allclose(m["recall"], [0.0, 0.5])
    assert m["confusion_matrix"].shape == (2, 2)
    with pytest.raises(ParameterError, match="differ"):
        single_target_metrics([0, 1], [0], 2)


def test_multi_target_metrics_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    s = np.array([[0.9, 0.2], [0.4, 0.6], [0.6, 0.3], [0.2, 0.7]])
    m = multi_target_metrics(y, s)
    np.testing.assert_allclose(m["precision"], [1.0, 0.5])
    np.testing.assert_allclose(m["recall"], [1.0, 0.5])
    np.testing.assert_allclose(m["roc_auc"], [1.0, 0.5])
    assert m["macro_roc_auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert 0 < m["average_precision"][1] < 1


def test_multi_target_absent_class_gives_nan_auc_not_crash():
    y = np.array([[1, 0], [0, 0], [1, 0]])
    s = np.array([[0.8, 0.1], [0.3, 0.2], [0.7, 0.9]])
    m = multi_target_metrics(y, s)
    assert m["roc_auc"][0] == 1.0 and np.isnan(m["roc_auc"][1])
    assert np.isnan(m["average_precision"][1])
    assert m["macro_roc_auc"] == 1.0  # NaN classes are left out of the mean
    assert m["f1"][1] == 0.0
    allnan = multi_target_metrics(np.zeros((2, 1)), np.array([[0.1], [0.9]]))
    assert np.isnan(allnan["macro_roc_auc"])
    with pytest.raises(ParameterError, match="n_classes"):
        multi_target_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def test_multi_target_metrics_score_the_present_class_of_a_single_species():
    from soundscape.metrics import multi_target_metrics

    y = np.array([[1], [1], [1], [0]])
    scores = np.array([[0.9], [0.8], [0.2], [0.1]])
    m = multi_target_metrics(y, scores)
    # 2 true positives, 0 false positives, 1 missed call
    assert m["precision"][0] == pytest.approx(1.0)
    assert m["recall"][0] == pytest.approx(2 / 3)
    assert m["f1"][0] == pytest.approx(0.8)


def test_to_json_gives_strict_json_values(tmp_path):
    import json
    from pathlib import Path

    import torch

    from soundscape.io import write_json
    from soundscape.metrics import to_json

    value = {"flag": np.bool_(True), "n": np.int64(3), "x": np.float32(0.5), "bad": float("nan"),
             "t": torch.tensor([1.0, float("inf")]), "a": np.array([[1, 2]]), 4: Path("run/x.wav"),
             "list": (np.float64(2.0), None)}
    plain = to_json(value)
    assert plain == {"flag": True, "n": 3, "x": 0.5, "bad": None, "t": [1.0, None], "a": [[1, 2]],
                     "4": "run/x.wav", "list": [2.0, None]}
    assert json.loads(write_json(plain, tmp_path / "v.json").read_text()) == plain
