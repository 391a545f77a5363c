"""Evaluation statistics and prediction tables for config-driven models.

``test_statistics.json`` (what :func:`evaluate` returns and writes) is keyed by the output
feature's name (plus ``combined``)::

    {"emotion": {"loss", "accuracy", "macro_precision", "macro_recall", "macro_f1",
                 "roc_auc", "average_precision", "num_examples", "labels",
                 "confusion_matrix" (rows true, columns predicted, in `labels` order),
                 "per_class_stats": {label: {precision, recall, f1, roc_auc, average_precision,
                                             support}},
                 "roc_curve": {label: {fpr, tpr}}, "precision_recall_curve": {label: {precision,
                                                                                     recall}}},
     "combined": {"loss"}}

Prediction tables have ``<output>_predictions``, ``<output>_probability`` (of the predicted
label; for a set output the largest class probability) and one ``<output>_probabilities_<label>``
column per label.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from ..metrics import multi_target_metrics, single_target_metrics

__all__ = ["compute_statistics", "epoch_metrics", "predictions_frame", "write_predictions"]

_CURVE_POINTS = 101


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    n = len(arrays[0])
    keep = np.unique(np.linspace(0, n - 1, min(n, _CURVE_POINTS)).round().astype(int))
    return [np.asarray(a, dtype=float)[keep].round(6).tolist() for a in arrays]


def _curves(truth: np.ndarray, scores: np.ndarray, labels: list[str]) -> tuple[dict, dict]:
    roc, pr = {}, {}
    for c, label in enumerate(labels):
        t = truth[:, c]
        if 0 < t.sum() < len(t):
            fpr, tpr, _ = roc_curve(t, scores[:, c])
            precision, recall, _ = precision_recall_curve(t, scores[:, c])
            roc[label] = dict(zip(("fpr", "tpr"), _thin(fpr, tpr)))
            pr[label] = dict(zip(("precision", "recall"), _thin(precision, recall)))
    return roc, pr


def compute_statistics(out_meta: dict, targets: np.ndarray, probs: np.ndarray, loss: float) -> dict:
    """Statistics of one output from its targets and predicted probabilities.

    Parameters
    ----------
    out_meta : dict
        The output's training-set metadata (``type``, ``idx2str``, ``threshold``).
    targets : array
        Class indices (category), 0/1 (binary, shape (n,)) or an (n, classes) 0/1 matrix (set).
    probs : array
        Softmax (n, classes), sigmoid (n,) or sigmoids (n, classes).
    loss : float
    """
    kind, labels = out_meta["type"], list(out_meta["idx2str"])
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=float)
    n = len(targets)
    if kind == "binary":
        truth2 = np.stack([1 - targets, targets], axis=1).astype(float)
        scores = np.stack([1 - probs, probs], axis=1)
        pred = (probs >= out_meta.get("threshold", 0.5)).astype(int)
        single = single_target_metrics(targets.astype(int), pred, 2)
        multi = multi_target_metrics(truth2, scores)
        truth = truth2
    elif kind == "category":
        truth = np.eye(len(labels))[targets.astype(int)] if n else np.zeros((0, len(labels)))
        scores = probs if n else np.zeros((0, len(labels)))
        pred = scores.argmax(axis=1) if n else np.zeros(0, dtype=int)
        single = single_target_metrics(targets.astype(int), pred, len(labels))
        multi = multi_target_metrics(truth, scores)
    else:
        truth, scores = targets.astype(float), probs
        multi = multi_target_metrics(truth, scores, threshold=out_meta.get("threshold", 0.5))
        single = None
    source = single or multi
    stats = {
        "loss": float(loss),
        "accuracy": source["accuracy"],
        "macro_precision": float(np.mean(source["precision"])) if n else float("nan"),
        "macro_recall": float(np.mean(source["recall"])) if n else float("nan"),
        "macro_f1": float(np.mean(source["f1"])) if n else float("nan"),
        "roc_auc": multi["macro_roc_auc"],
        "average_precision": multi["macro_average_precision"],
        "num_examples": int(n),
        "labels": labels,
    }
    if kind == "binary":  # the positive class's ROC-AUC and AP are the meaningful ones
        stats["roc_auc"] = float(multi["roc_auc"][1])
        stats["average_precision"] = float(multi["average_precision"][1])
    support = truth.sum(axis=0) if n else np.zeros(len(labels))
    stats["per_class_stats"] = {
        label: {
            "precision": float(source["precision"][c]),
            "recall": float(source["recall"][c]),
            "f1": float(source["f1"][c]),
            "roc_auc": float(multi["roc_auc"][c]),
            "average_precision": float(multi["average_precision"][c]),
            "support": int(support[c]),
        }
        for c, label in enumerate(labels)
    }
    if single is not None:
        stats["confusion_matrix"] = np.asarray(single["confusion_matrix"]).astype(int).tolist()
    else:
        pred = scores >= out_meta.get("threshold", 0.5)
        stats["per_class_confusion"] = {
            label: [[int(((truth[:, c] == 0) & ~pred[:, c]).sum()), int(((truth[:, c] == 0) & pred[:, c]).sum())],
                    [int(((truth[:, c] == 1) & ~pred[:, c]).sum()), int(((truth[:, c] == 1) & pred[:, c]).sum())]]
            for c, label in enumerate(labels)
        }
    stats["roc_curve"], stats["precision_recall_curve"] = _curves(truth, scores, labels)
    return stats


def epoch_metrics(out_meta: dict, targets: np.ndarray, probs: np.ndarray, loss: float) -> dict:
    """Cheap per-epoch metrics (numpy only): loss, accuracy, macro precision / recall / F1."""
    kind, k = out_meta["type"], len(out_meta["idx2str"])
    targets, probs = np.asarray(targets), np.asarray(probs, dtype=float)
    threshold = out_meta.get("threshold", 0.5)
    if kind == "set":
        truth, pred = targets >= 0.5, probs >= threshold
        tp, fp, fn = (truth & pred).sum(0), (~truth & pred).sum(0), (truth & ~pred).sum(0)
        accuracy = float((truth == pred).mean()) if len(truth) else float("nan")
    else:
        if kind == "binary":
            y, pred, k = targets.astype(int), (probs >= threshold).astype(int), 2
        else:
            y, pred = targets.astype(int), probs.argmax(axis=1) if len(probs) else np.zeros(0, int)
        cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        tp, fp, fn = np.diag(cm), cm.sum(0) - np.diag(cm), cm.sum(1) - np.diag(cm)
        accuracy = float(np.trace(cm) / cm.sum()) if cm.sum() else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    empty = len(targets) == 0
    return {"loss": float(loss), "accuracy": accuracy,
            "macro_precision": float("nan") if empty else float(precision.mean()),
            "macro_recall": float("nan") if empty else float(recall.mean()),
            "macro_f1": float("nan") if empty else float(f1.mean())}


def predictions_frame(out_meta: dict, name: str, probs: np.ndarray) -> pd.DataFrame:
    """The prediction columns of one output for its probabilities."""
    kind, labels = out_meta["type"], list(out_meta["idx2str"])
    probs = np.asarray(probs, dtype=float)
    threshold = out_meta.get("threshold", 0.5)
    if kind == "binary":
        table = np.stack([1 - probs, probs], axis=1) if len(probs) else np.zeros((0, 2))
        chosen = (probs >= threshold).astype(int)
        predicted = [labels[i] for i in chosen]
        probability = table[np.arange(len(chosen)), chosen] if len(chosen) else np.zeros(0)
    elif kind == "category":
        table = probs.reshape(len(probs), len(labels))
        chosen = table.argmax(axis=1) if len(table) else np.zeros(0, dtype=int)
        predicted = [labels[i] for i in chosen]
        probability = table.max(axis=1) if len(table) else np.zeros(0)
    else:
        table = probs.reshape(len(probs), len(labels))
        delim = out_meta.get("delimiter") or "|"
        predicted = [delim.join(lab for lab, p in zip(labels, row) if p >= threshold) for row in table]
        probability = table.max(axis=1) if len(table) else np.zeros(0)
    out = pd.DataFrame({f"{name}_predictions": predicted, f"{name}_probability": probability})
    for c, label in enumerate(labels):
        out[f"{name}_probabilities_{label}"] = table[:, c] if len(table) else []
    return out


def write_predictions(frame: pd.DataFrame, output_directory: str | os.PathLike) -> list[Path]:
    """Write ``predictions.csv`` and (with pyarrow installed) ``predictions.parquet``."""
    from ..helpers import atomic_path

    out = Path(output_directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with atomic_path(out / "predictions.csv") as tmp:
        frame.to_csv(tmp, index=False)
    written.append(out / "predictions.csv")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        import logging

        logging.getLogger("soundscape.workflow").warning(
            "pyarrow is not installed: wrote predictions.csv only (pip install pyarrow for parquet)"
        )
        return written
    with atomic_path(out / "predictions.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    written.append(out / "predictions.parquet")
    return written
