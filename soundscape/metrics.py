"""Classification metrics for training and evaluation.

Single-target (one-of-n): accuracy, per-class precision/recall/F1 and the confusion
matrix. Multi-target (independent present/absent per class): per-class precision,
recall and F1 at a threshold, ROC-AUC and average precision, plus macro means.

Also: per-epoch training histories (`read_history`, `plot_history`) and their
conversions to plain values for checkpoints, JSON and CSV.

Small validation sets often lack a class: precision/recall/F1 are then 0 (sklearn's
``zero_division=0``) and ROC-AUC / average precision are NaN; macro means skip NaNs.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)

from .errors import ParameterError


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def single_target_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Metrics of one-of-n predictions.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
        True and predicted class indices.
    num_classes : int

    Returns
    -------
    dict
        ``accuracy`` (float), ``precision``, ``recall``, ``f1`` (arrays, one value per
        class), ``macro_f1`` (float) and ``confusion_matrix`` (num_classes x num_classes,
        rows true, columns predicted).
    """
    y_true = np.asarray(y_true, dtype=int).ravel()
    y_pred = np.asarray(y_pred, dtype=int).ravel()
    if y_true.shape != y_pred.shape:
        raise ParameterError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    labels = np.arange(int(num_classes))
    if len(y_true) == 0:
        nan = np.full(len(labels), np.nan)
        return {"accuracy": float("nan"), "precision": nan, "recall": nan.copy(), "f1": nan.copy(),
                "macro_f1": float("nan"),
                "confusion_matrix": np.zeros((len(labels), len(labels)), dtype=int)}
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "precision": precision.astype(float),
        "recall": recall.astype(float),
        "f1": f1.astype(float),
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels),
    }


def _per_class(fn, y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    out = np.full(y_true.shape[1], np.nan)
    for c in range(y_true.shape[1]):
        t = y_true[:, c]
        if 0 < t.sum() < len(t):  # undefined unless both presences and absences occur
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[c] = fn(t, scores[:, c])
    return out


def multi_target_metrics(y_true, scores, threshold: float = 0.5) -> dict:
    """Metrics of independent per-class scores.

    Parameters
    ----------
    y_true : array-like, shape (n, n_classes)
        0/1 labels (values >= 0.5 count as present).
    scores : array-like, shape (n, n_classes)
        Probabilities (e.g. sigmoid of the logits).
    threshold : float
        Scores >= threshold count as detections for precision/recall/F1.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1``, ``roc_auc``, ``average_precision`` (arrays,
        one value per class; AUC/AP NaN where a class is all present or all absent),
        ``accuracy`` (mean per-label agreement), and ``macro_precision``,
        ``macro_recall``, ``macro_f1``, ``macro_roc_auc``, ``macro_average_precision``.
    """
    y_true = np.asarray(y_true, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if y_true.ndim != 2 or y_true.shape != scores.shape:
        raise ParameterError(
            f"y_true and scores must both be (n, n_classes); got {y_true.shape} and {scores.shape}"
        )
    truth = (y_true >= 0.5).astype(int)
    pred = (scores >= threshold).astype(int)
    n_classes = truth.shape[1]
    if len(truth):
        # per-column counts: sklearn treats a single (n, 1) column as binary labels and
        # would score its "absent" value, so the multi-label counts are taken here directly
        precision, recall, f1 = _present_scores(truth, pred)
        accuracy = float(np.mean(truth == pred))
    else:
        precision = recall = f1 = np.full(n_classes, np.nan)
        accuracy = float("nan")
    out = {
        "accuracy": accuracy,
        "precision": np.asarray(precision, dtype=float),
        "recall": np.asarray(recall, dtype=float),
        "f1": np.asarray(f1, dtype=float),
        "roc_auc": _per_class(roc_auc_score, truth, scores),
        "average_precision": _per_class(average_precision_score, truth, scores),
    }
    for name in ("precision", "recall", "f1", "roc_auc", "average_precision"):
        out[f"macro_{name}"] = _nanmean(out[name])
    return out


# --------------------------------------------------------------------------- training histories
def plain_record(record: dict) -> dict:
    """A per-epoch record with numpy values as Python numbers and lists (NaN kept)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


def array_record(record: dict) -> dict:
    """Inverse of `plain_record`: lists become float arrays, JSON nulls NaN."""
    out = {}
    for key, value in record.items():
        if isinstance(value, list):
            value = np.array(value, dtype=float)
        elif value is None:
            value = np.nan
        out[key] = value
    return out


def to_json(value):
    """`value` with numpy / torch types as Python ones, paths as strings and NaN/inf as
    None (strict JSON, for `soundscape.io.write_json`)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def flat_record(record: dict, classes: list[str]) -> dict:
    """One CSV row: per-class arrays become ``name[class]`` columns; matrices are left out."""
    out = {}
    for key, value in record.items():
        if isinstance(value, np.ndarray):
            if value.ndim == 1 and len(value) == len(classes):
                out.update({f"{key}[{c}]": float(v) for c, v in zip(classes, value)})
        else:
            out[key] = value
    return out


def read_history(path) -> "pd.DataFrame":
    """The per-epoch history `train` returned, read back from a save_dir or its ``metrics.json``."""
    import json
    from pathlib import Path

    import pandas as pd

    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"no training history at {path} (train() writes metrics.json)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    frame = pd.DataFrame([array_record(r) for r in doc["epochs"]])
    frame.attrs.update(classes=doc["classes"], skipped_files=doc.get("skipped_files", []),
                       best_epoch=doc.get("best_epoch"))
    return frame


def _axis_label(metrics: list[str]) -> str:
    """``loss`` / ``accuracy`` ... when every metric is one quantity of several splits."""
    kinds = {m.split("_", 1)[1] if m.split("_", 1)[0] in ("train", "valid", "test") and "_" in m
             else m for m in metrics}
    return kinds.pop() if len(kinds) == 1 else "value"


def plot_history(history, metrics=("train_loss", "valid_loss"), ax=None, fname=None,
                 title: str | None = None, mark_best: bool = True):
    """Learning curves: metrics per epoch; per-class metrics draw one line per class.

    Parameters
    ----------
    history : DataFrame, list of dicts, or path
        What `soundscape.torch.train.train` returned, or its save_dir / ``metrics.json``.
    metrics : list of str
        Column names, e.g. ``["train_accuracy", "valid_accuracy", "valid_f1"]``.
    ax : matplotlib Axes, optional
    fname : path, optional
        Also save the figure there (png, pdf, svg ... from the extension).
    title : str, optional
    mark_best : bool
        Draw a dotted line at the epoch `train` kept as ``best.model`` (when known).

    Returns
    -------
    (fig, ax)
        The matplotlib Figure and Axes: epochs (whole numbers, as in the training log) on
        x, the metric on y.
    """
    import os

    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    if isinstance(history, (str, os.PathLike)):
        history = read_history(history)
    elif not isinstance(history, pd.DataFrame):
        history = pd.DataFrame(list(history))
    classes = history.attrs.get("classes")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    missing = [m for m in metrics if m not in history.columns]
    if missing:
        raise KeyError(
            f"metric(s) {missing} not in the history; available: {list(history.columns)}"
        )
    fig, ax = plt.subplots(figsize=(7, 4)) if ax is None else (ax.figure, ax)
    epochs = history["epoch"].to_numpy() if "epoch" in history else np.arange(len(history))
    for name in metrics:
        values = history[name].to_list()
        if values and isinstance(values[0], (np.ndarray, list)):
            arr = np.vstack([np.asarray(v, dtype=float) for v in values])
            for c in range(arr.shape[1]):
                label = classes[c] if classes and c < len(classes) else str(c)
                ax.plot(epochs, arr[:, c], marker="o", label=f"{name} ({label})")
        else:
            ax.plot(epochs, np.asarray(values, dtype=float), marker="o", label=name)
    best = history.attrs.get("best_epoch")
    if mark_best and best is not None:
        ax.axvline(best, color="grey", ls=":", lw=1.2, label=f"best model (epoch {best})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_axis_label(metrics))
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if fname is not None:
        from pathlib import Path

        Path(fname).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(fname, dpi=120, bbox_inches="tight")
    return fig, ax


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (sklearn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den > 0)


def _present_scores(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 of "present" for 0/1 arrays (samples, classes)."""
    tp = np.sum((truth == 1) & (pred == 1), axis=0).astype(float)
    fp = np.sum((truth == 0) & (pred == 1), axis=0).astype(float)
    fn = np.sum((truth == 1) & (pred == 0), axis=0).astype(float)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return precision, recall, _ratio(2 * precision * recall, precision + recall)
