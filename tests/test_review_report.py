"""The review report: precision by score bin, the logistic fit, thresholds, JSON and PNG."""

import json

import numpy as np
import pandas as pd
import pytest

from soundscape.errors import ParameterError
from soundscape.review import fit_logistic, precision_by_bin, review_report, write_report
from soundscape.review.report import logistic


def _review(scores, verdicts, annotation="a"):
    n = len(scores)
    return pd.DataFrame({
        "item_id": [f"r.wav|{i}|{annotation}" for i in range(n)], "file": "r.wav",
        "start_time": np.arange(n, dtype=float), "end_time": np.arange(n) + 1.0,
        "annotation": annotation, "score": scores, "low_f": np.nan, "high_f": np.nan,
        "order": np.arange(n), "verdict": verdicts, "other_class": "", "note": "",
        "reviewed_at": ""})


def test_logistic_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 4000)
    y = rng.uniform(size=x.size) < logistic(x, -4.0, 8.0)
    a, b = fit_logistic(x, y)
    assert a == pytest.approx(-4.0, abs=0.4) and b == pytest.approx(8.0, abs=0.8)


def test_logistic_fit_agrees_with_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 300)
    y = rng.uniform(size=x.size) < logistic(x, -2.0, 5.0)
    a, b = fit_logistic(x, y, ridge=0.0)
    ref = LogisticRegression(C=1e10, max_iter=1000).fit(x[:, None], y)
    assert a == pytest.approx(ref.intercept_[0], rel=1e-3)
    assert b == pytest.approx(ref.coef_[0, 0], rel=1e-3)


def test_logistic_fit_of_separated_verdicts_stays_finite():
    a, b = fit_logistic([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert np.isfinite([a, b]).all() and b > 0
    with pytest.raises(ParameterError, match="at least 2"):
        fit_logistic([0.5], [1])


def test_precision_by_bin_hand_example():
    bins = precision_by_bin([0.05, 0.15, 0.55, 0.6, 0.95, 1.0], [0, 1, 1, 0, 1, 1], bins=2)
    assert bins["n"].tolist() == [2, 4] and bins["n_correct"].tolist() == [1, 3]
    assert bins["precision"].tolist() == [0.5, 0.75]
    assert bins["low"].tolist() == [0.0, 0.5] and bins["high"].tolist() == [0.5, 1.0]
    edges = precision_by_bin([1.0, 2.0, 3.0], [0, 1, 1], bins=[0, 1.5, 2.5, 10])
    assert edges["n"].tolist() == [1, 1, 1] and edges["precision"].tolist() == [0.0, 1.0, 1.0]
    assert np.isnan(precision_by_bin([0.9], [1], bins=2)["precision"][0])


def test_report_thresholds_for_a_target_precision():
    scores = np.linspace(0, 1, 11)
    verdicts = ["no"] * 5 + ["yes", "no", "yes", "yes", "yes", "yes"]
    review = _review(scores, verdicts)
    review.loc[0, "verdict"] = "unsure"  # left out
    review.loc[1, "verdict"] = "other"   # counts as wrong
    review.loc[1, "other_class"] = "b"
    report = review_report(review, target_precision=0.8, bins=5)
    a = report["classes"]["a"]
    assert (a["n_reviewed"], a["n_correct"], a["n_unsure"]) == (10, 5, 1)
    assert a["precision"] == pytest.approx(0.5)
    # clips scoring >= 0.5: 5 of 6 correct (0.83); >= 0.4: 5 of 7 (0.71)
    assert a["threshold_empirical"] == pytest.approx(0.5)
    fit = a["logistic"]
    assert fit["slope"] > 0
    t = a["threshold_logistic"]
    assert logistic(t, fit["intercept"], fit["slope"]) == pytest.approx(0.8)
    assert [b["n"] for b in a["bins"]] == [1, 2, 2, 2, 3]
    json.dumps(report, allow_nan=False)  # JSON-ready


def test_report_without_a_fit():
    report = review_report(_review([0.2, 0.9], ["yes", "yes"]))
    a = report["classes"]["a"]
    assert a["logistic"] is None and a["threshold_logistic"] is None
    assert a["threshold_empirical"] == pytest.approx(0.2)
    assert review_report(_review([0.5], [""]))["classes"]["a"]["n_reviewed"] == 0
    with pytest.raises(ParameterError, match="target_precision"):
        review_report(_review([0.5], ["yes"]), target_precision=1.5)


def test_write_report_png_and_json(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, 60)
    verdicts = np.where(rng.uniform(size=60) < x, "yes", "no")
    review = pd.concat([_review(x, verdicts, "a"), _review(1 - x, verdicts, "b")],
                       ignore_index=True)
    review.to_csv(tmp_path / "review.csv", index=False)
    json_path, png_path = write_report(tmp_path / "review.csv", tmp_path / "out" / "report",
                                       target_precision=0.7)
    report = json.loads(json_path.read_text())
    assert set(report["classes"]) == {"a", "b"} and report["target_precision"] == 0.7
    assert report["classes"]["a"]["logistic"]["slope"] > 0
    assert report["classes"]["b"]["logistic"]["slope"] < 0
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png_path).size[0] > Image.open(png_path).size[1]  # two panels side by side
