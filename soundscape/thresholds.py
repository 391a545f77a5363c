"""Choose decision thresholds from held-out scores, and say what they are expected to give.

A score table from `soundscape.predict` (one row per clip, one column per class) and the
clips' true labels go in; one threshold per class comes out, chosen either for the best F1
or for the highest recall that still reaches a target precision, together with the
precision and recall it gave on those clips::

    from soundscape.thresholds import choose_threshold

    valid_scores = soundscape.predict(model, valid_dataset)
    choice = choose_threshold(valid_scores, valid_df["label"], classes=["woodcock"])
    events = detections(recording_scores, threshold=choice)   # or choice["threshold"]

Choose the threshold on clips the model did not train on, and not on the recordings that
will then be scored with it: a threshold tuned on the test data makes the test result
look better than it will be on new recordings.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import ParameterError

__all__ = ["choose_threshold", "precision_recall_table", "SmallDataWarning", "small_data_message",
           "MIN_CLIPS", "MIN_PER_CLASS"]

logger = logging.getLogger("soundscape.thresholds")

#: fewer held-out clips than this (or fewer of one class than `MIN_PER_CLASS`) is called small
MIN_CLIPS = 20
MIN_PER_CLASS = 5


class SmallDataWarning(UserWarning):
    """Metrics or thresholds come from so few clips that they are mostly chance."""


def small_data_message(what: str, n_clips: int, per_class: dict[str, int],
                       suggestion: str = "use cross-validation") -> str | None:
    """The warning for a held-out set of `n_clips` with `per_class` counts, or None if it is
    big enough (at least `MIN_CLIPS` clips and `MIN_PER_CLASS` of every class)."""
    few = {c: int(n) for c, n in per_class.items() if n < MIN_PER_CLASS}
    if n_clips >= MIN_CLIPS and not few:
        return None
    counts = ", ".join(f"{n} {c!r}" for c, n in per_class.items())
    clips = "clip" if n_clips == 1 else "clips"
    return (f"{what} has only {n_clips} {clips} ({counts}); with fewer than {MIN_CLIPS} clips or "
            f"{MIN_PER_CLASS} of a class, one clip more or less changes the metrics a lot, so "
            f"they say little about new data: {suggestion}")


# --------------------------------------------------------------------------- inputs
def _score_columns(scores, classes) -> pd.DataFrame:
    if isinstance(scores, pd.Series):
        scores = scores.to_frame(scores.name if scores.name is not None else "score")
    elif not isinstance(scores, pd.DataFrame):
        arr = np.asarray(scores, dtype=float)
        if arr.ndim != 1:
            raise ParameterError("scores must be a DataFrame (one column per class), a Series or "
                                 f"a 1-D array; got an array of shape {arr.shape}")
        name = classes[0] if classes is not None and len(classes) == 1 else "score"
        scores = pd.DataFrame({name: arr})
    if classes is None:
        classes = list(scores.columns)
    elif isinstance(classes, str):
        classes = [classes]
    unknown = [c for c in classes if c not in scores.columns]
    if unknown:
        raise ParameterError(f"unknown class(es) {unknown}; score columns are {list(scores.columns)}")
    out = scores[list(classes)]
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]) or out[c].isna().any():
            raise ParameterError(f"score column {c!r} must be numbers without NaN")
    return out


def _truth_matrix(truth, scores: pd.DataFrame, all_classes: Sequence) -> np.ndarray:
    """0/1 array (clips, classes of `scores`) of which clips hold each class."""
    n = len(scores)
    classes = list(scores.columns)
    name = truth.name if isinstance(truth, pd.Series) else None
    if isinstance(truth, (pd.Series, pd.DataFrame)):
        if isinstance(truth, pd.DataFrame) and set(classes) <= set(truth.columns):
            truth = truth[classes]
        if len(truth) == n and truth.index.is_unique and not truth.index.equals(scores.index) \
                and set(scores.index) == set(truth.index):
            truth = truth.loc[scores.index]  # the same clips in another order
        truth = truth.to_numpy()
    truth = np.asarray(truth)
    if len(truth) != n:
        raise ParameterError(f"truth has {len(truth)} rows but scores have {n}")
    if truth.ndim == 2:
        if truth.shape[1] != len(classes):
            raise ParameterError(f"truth has {truth.shape[1]} columns for {len(classes)} classes "
                                 f"{classes}; give one 0/1 column per class")
        return _zero_one(truth, "truth")
    if truth.ndim != 1:
        raise ParameterError(f"truth must be 1-D labels or a 0/1 table, got shape {truth.shape}")
    if truth.dtype.kind in "OUS":  # class names
        names = truth.astype(str)
        return np.stack([names == str(c) for c in classes], axis=1).astype(int)
    one_class = len(classes) == 1 and (len(all_classes) == 1 or name == classes[0]
                                       or truth.dtype.kind == "b")
    if one_class:  # 0/1 (or True/False) for the one class
        return _zero_one(truth[:, None], "truth")
    if truth.dtype.kind == "b":
        raise ParameterError("True/False truth needs exactly one class (classes=[name])")
    values = truth.astype(float)
    if np.isnan(values).any():
        raise ParameterError("truth has missing values")
    # class numbers of a single-target model: number k is score column k
    positions = [list(all_classes).index(c) for c in classes]
    unknown = sorted(set(np.unique(values)) - set(range(len(all_classes))))
    if unknown:
        raise ParameterError(f"truth holds class number(s) {unknown[:5]}, but the scores have "
                             f"{len(all_classes)} columns {list(all_classes)}")
    return np.stack([values == p for p in positions], axis=1).astype(int)


def _zero_one(arr: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(arr, dtype=float)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ParameterError(f"{what} columns must hold 0/1 values")
    return values.astype(int)


# --------------------------------------------------------------------------- curves
def precision_recall_table(scores, truth) -> pd.DataFrame:
    """Precision and recall of every distinct threshold on one class's scores.

    Parameters
    ----------
    scores : 1-D array of floats
    truth : 1-D array of 0/1

    Returns
    -------
    DataFrame
        One row per distinct score, highest first: ``threshold`` (that score; a clip is
        positive when its score is >= it), ``tp``, ``fp``, ``precision``, ``recall``, ``f1``,
        and ``next_lower`` (the next lower score, NaN for the last row).
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(truth).astype(int)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1] if len(s) else np.array([], int)
    tp = np.cumsum(y)[last].astype(float)
    fp = (last + 1 - tp).astype(float)
    n_pos = float(y.sum())
    precision = tp / (tp + fp)
    recall = tp / n_pos if n_pos else np.full(len(tp), np.nan)
    f1 = np.divide(2 * tp, tp + fp + n_pos, out=np.zeros(len(tp)), where=(tp + fp + n_pos) > 0)
    thresholds = s[last]
    return pd.DataFrame({"threshold": thresholds, "tp": tp.astype(int), "fp": fp.astype(int),
                         "precision": precision, "recall": recall, "f1": f1,
                         "next_lower": np.r_[thresholds[1:], np.nan]})


def _pick(curve: pd.DataFrame, target_precision: float | None) -> tuple[int, bool]:
    """Row of `curve` to use and whether the target was reached."""
    if target_precision is None:
        best = curve["f1"].max()
        rows = np.flatnonzero(np.isclose(curve["f1"], best, rtol=0, atol=1e-12))
        return int(rows[-1]), True  # equal F1: the one with more recall
    ok = np.flatnonzero(curve["precision"].to_numpy() >= target_precision - 1e-12)
    if len(ok):
        return int(ok[-1]), True  # the most recall that keeps the precision
    best = curve["precision"].max()
    rows = np.flatnonzero(np.isclose(curve["precision"], best, rtol=0, atol=1e-12))
    return int(rows[-1]), False


def choose_threshold(scores, truth, target_precision: float | None = None,
                     classes: Sequence[str] | str | None = None) -> pd.DataFrame:
    """Pick one threshold per class from held-out clip scores.

    Parameters
    ----------
    scores : DataFrame, Series or 1-D array
        Scores of held-out clips, one column per class (e.g. ``soundscape.predict(model,
        valid_dataset)``).
    truth : Series, array or DataFrame
        The clips' labels, in the order of `scores` (or indexed like it): class names or
        class numbers (a single-target model: number k is column k of `scores`), 0/1 for a
        single class, or a 0/1 table with one column per class.
    target_precision : float, optional
        Choose the lowest threshold (most recall) whose precision on these clips is at
        least this; if none reaches it, the one with the highest precision (and a
        warning). Default: the threshold with the best F1.
    classes : list of str, optional
        Score columns to choose thresholds for; default all.

    Returns
    -------
    DataFrame
        Indexed by class: ``threshold``, and what it gave on these clips: ``precision``,
        ``recall``, ``f1``, ``tp``, ``fp``, ``fn``, ``n_clips``, ``n_positive``,
        ``target_met`` and ``criterion``. The threshold lies halfway between the lowest
        score kept and the next lower one, so clips scoring like these fall on the same
        side. ``attrs["curves"]`` holds each class's `precision_recall_table`. Pass the
        result (or its ``threshold`` column) to `soundscape.detections.detections`.

    Warns
    -----
    SmallDataWarning
        Fewer than 20 clips or fewer than 5 positive or negative ones for a class: the
        expected precision and recall are rough.
    """
    if target_precision is not None and not 0 < float(target_precision) <= 1:
        raise ParameterError(f"target_precision must be in (0, 1], got {target_precision!r}")
    all_classes = list(scores.columns) if isinstance(scores, pd.DataFrame) else None
    frame = _score_columns(scores, classes)
    y = _truth_matrix(truth, frame, all_classes or list(frame.columns))
    if len(frame) == 0:
        raise ParameterError("no scores: choose_threshold needs held-out clips")
    rows, curves = {}, {}
    for j, c in enumerate(frame.columns):
        s, t = frame[c].to_numpy(float), y[:, j]
        n_pos = int(t.sum())
        if n_pos == 0:
            raise ParameterError(f"class {c!r} has no positive clip among the {len(t)} held-out "
                                 "clips; a threshold cannot be chosen for it")
        curve = precision_recall_table(s, t)
        k, met = _pick(curve, None if target_precision is None else float(target_precision))
        row = curve.iloc[k]
        lower = row["next_lower"]
        threshold = float(row["threshold"] if np.isnan(lower) else (row["threshold"] + lower) / 2)
        tp, fp = int(row["tp"]), int(row["fp"])
        rows[c] = {"threshold": threshold, "precision": float(row["precision"]),
                   "recall": float(row["recall"]), "f1": float(row["f1"]), "tp": tp, "fp": fp,
                   "fn": n_pos - tp, "n_clips": int(len(t)), "n_positive": n_pos,
                   "target_met": bool(met),
                   "criterion": ("max F1" if target_precision is None
                                 else f"precision >= {float(target_precision):g}")}
        curves[c] = curve
        if not met:
            warnings.warn(f"class {c!r}: no threshold reaches precision {target_precision:g} on "
                          f"these {len(t)} clips; using the most precise one ({threshold:.3g}: "
                          f"precision {row['precision']:.2f}, recall {row['recall']:.2f})",
                          UserWarning, stacklevel=2)
        message = small_data_message(f"the held-out set for class {c!r}", len(t),
                                     {"positive": n_pos, "negative": int(len(t) - n_pos)},
                                     "treat the expected precision and recall as rough and "
                                     "choose on more clips, e.g. out-of-fold scores of a "
                                     "cross-validation")
        if message:
            logger.info(message)
            warnings.warn(message, SmallDataWarning, stacklevel=2)
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "class"
    out.attrs["curves"] = curves
    return out
