"""Plots of training and test statistics (Ludwig-style ``visualize``), for notebooks and the CLI.

Every function takes statistics as dicts or paths to the JSON files that ``soundscape train`` /
``soundscape evaluate`` write (one, or a list to compare several models), and returns the
matplotlib ``Figure`` objects; with ``output_directory`` it also saves each figure there as
``<name>.<file_format>`` and returns the paths instead. Figures are made without pyplot, so
nothing needs a display (the Agg canvas draws them) and notebooks show the returned figures.

>>> from soundscape.visualize import learning_curves, confusion_matrix     # doctest: +SKIP
>>> learning_curves("results/experiment_run/training_statistics.json")    # doctest: +SKIP
>>> confusion_matrix("test_results/test_statistics.json", normalize=True)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from .errors import ParameterError
from .workflow.runs import read_json

__all__ = ["VISUALIZATIONS", "confusion_matrix", "learning_curves", "roc_curves", "precision_recall"]

_SPLIT_STYLE = {"training": "-", "validation": "--", "test": ":"}


def _load(stats: Any, what: str) -> dict:
    if isinstance(stats, (str, os.PathLike)):
        return read_json(stats, f"{what} file")
    if not isinstance(stats, dict):
        raise ParameterError(f"{what} must be a dict or a path to a JSON file, got {type(stats).__name__}")
    return stats


def _many(stats: Any, what: str) -> list[dict]:
    items = stats if isinstance(stats, (list, tuple)) else [stats]
    if not items:
        raise ParameterError(f"no {what} given")
    return [_load(s, what) for s in items]


def _names(model_names: Sequence[str] | str | None, n: int) -> list[str]:
    if model_names is None:
        return [""] * n if n == 1 else [f"model {i + 1}" for i in range(n)]
    names = [model_names] if isinstance(model_names, str) else list(model_names)
    if len(names) != n:
        raise ParameterError(f"model_names has {len(names)} names for {n} statistics")
    return names


def _output(stats: dict, name: str | None, what: str) -> str:
    outputs = [k for k, v in stats.items() if k not in ("combined", "summary") and isinstance(v, dict)]
    if name is None:
        if not outputs:
            raise ParameterError(f"the {what} hold no output feature")
        return outputs[0]
    if name not in outputs:
        raise ParameterError(f"output feature {name!r} not in the {what}; found: {outputs}")
    return name


def _finish(figures: dict[str, Figure], output_directory, file_format: str) -> list:
    if output_directory is None:
        return list(figures.values())
    if file_format not in ("png", "pdf", "svg"):
        raise ParameterError(f"file_format must be png, pdf or svg, got {file_format!r}")
    out = Path(output_directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures.items():
        path = out / f"{name}.{file_format}"
        fig.savefig(path, format=file_format, dpi=120, bbox_inches="tight")
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "model"


def learning_curves(
    training_statistics,
    output_feature_name: str | None = None,
    model_names=None,
    metrics: Sequence[str] = ("loss", "accuracy"),
    output_directory=None,
    file_format: str = "png",
) -> list:
    """One figure per metric: its value per epoch for every split (and model)."""
    all_stats = _many(training_statistics, "training statistics")
    names = _names(model_names, len(all_stats))
    figures = {}
    for metric in metrics:
        fig = Figure(figsize=(7, 4))
        ax = fig.add_subplot()
        out = None
        for stats, model in zip(all_stats, names):
            splits = [s for s in _SPLIT_STYLE if s in stats]
            if not splits:
                raise ParameterError("the training statistics hold no training/validation/test splits")
            out = _output(stats[splits[0]], output_feature_name, "training statistics")
            for split in splits:
                values = stats[split].get(out, {}).get(metric)
                if not values:
                    continue
                y = np.array([np.nan if v is None else v for v in values], dtype=float)
                label = f"{model} {split}".strip()
                ax.plot(np.arange(1, len(y) + 1), y, _SPLIT_STYLE[split], marker="o", ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{out}: {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
        figures[f"learning_curves_{out}_{metric}"] = fig
    return _finish(figures, output_directory, file_format)


def confusion_matrix(
    test_statistics,
    ground_truth_metadata=None,
    output_feature_name: str | None = None,
    top_n_classes: int | Sequence[int] | None = None,
    normalize: bool = False,
    model_names=None,
    output_directory=None,
    file_format: str = "png",
) -> list:
    """The confusion matrix (rows: true, columns: predicted) of each model's test statistics.

    ``ground_truth_metadata`` (``training_set_metadata.json``) supplies the class names when the
    statistics lack them; ``top_n_classes`` keeps the most frequent classes; ``normalize``
    divides each row by its total.
    """
    all_stats = _many(test_statistics, "test statistics")
    names = _names(model_names, len(all_stats))
    meta = _load(ground_truth_metadata, "ground truth metadata") if ground_truth_metadata else None
    figures = {}
    for i, (stats, model) in enumerate(zip(all_stats, names)):
        out = _output(stats, output_feature_name, "test statistics")
        s = stats[out]
        if "confusion_matrix" not in s:
            raise ParameterError(f"the test statistics of {out!r} have no confusion matrix (a set output?)")
        cm = np.asarray(s["confusion_matrix"], dtype=float)
        labels = s.get("labels") or (meta or {}).get(out, {}).get("idx2str") or [str(k) for k in range(len(cm))]
        n = top_n_classes[i] if isinstance(top_n_classes, (list, tuple)) else top_n_classes
        if n and n < len(labels):
            keep = np.argsort(-cm.sum(axis=1), kind="stable")[:n]
            cm, labels = cm[np.ix_(keep, keep)], [labels[k] for k in keep]
        if normalize:
            rows = cm.sum(axis=1, keepdims=True)
            cm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        size = max(4.0, 0.5 * len(labels) + 2)
        fig = Figure(figsize=(size + 1, size))
        ax = fig.add_subplot()
        im = ax.imshow(cm, cmap="viridis", vmin=0, vmax=1 if normalize else None)
        fig.colorbar(im, ax=ax, fraction=0.046)
        ticks = np.arange(len(labels))
        ax.set_xticks(ticks, labels, rotation=45, ha="right")
        ax.set_yticks(ticks, labels)
        if len(labels) <= 20:
            for (r, c), v in np.ndenumerate(cm):
                ax.text(c, r, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                        color="white" if v < (cm.max() or 1) / 2 else "black", fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{model} {out} confusion matrix".strip())
        suffix = f"_{_slug(model)}" if model else ""
        figures[f"confusion_matrix_{out}{suffix}{'_normalized' if normalize else ''}"] = fig
    return _finish(figures, output_directory, file_format)


def _curve_plot(test_statistics, key, xk, yk, xlabel, ylabel, title, output_feature_name, model_names,
                output_directory, file_format, diagonal) -> list:
    all_stats = _many(test_statistics, "test statistics")
    names = _names(model_names, len(all_stats))
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    out = None
    for stats, model in zip(all_stats, names):
        out = _output(stats, output_feature_name, "test statistics")
        curves = stats[out].get(key) or {}
        if not curves:
            raise ParameterError(f"the test statistics of {out!r} have no {key} (no class had both "
                                 "positive and negative examples)")
        per_class = stats[out].get("per_class_stats", {})
        for label, curve in curves.items():
            score = per_class.get(label, {}).get("roc_auc" if key == "roc_curve" else "average_precision")
            tag = f" ({score:.2f})" if isinstance(score, (int, float)) else ""
            ax.plot(curve[xk], curve[yk], label=f"{model} {label}{tag}".strip())
    if diagonal:
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{out}: {title}")
    ax.legend(fontsize=7)
    return _finish({f"{key}s_{out}" if key == "roc_curve" else f"precision_recall_{out}": fig},
                   output_directory, file_format)


def roc_curves(test_statistics, output_feature_name=None, model_names=None, output_directory=None,
               file_format: str = "png") -> list:
    """One-vs-rest ROC curve of every class (AUC in the legend)."""
    return _curve_plot(test_statistics, "roc_curve", "fpr", "tpr", "false positive rate",
                       "true positive rate", "ROC curves", output_feature_name, model_names,
                       output_directory, file_format, diagonal=True)


def precision_recall(test_statistics, output_feature_name=None, model_names=None, output_directory=None,
                     file_format: str = "png") -> list:
    """Precision-recall curve of every class (average precision in the legend)."""
    return _curve_plot(test_statistics, "precision_recall_curve", "recall", "precision", "recall",
                       "precision", "precision-recall", output_feature_name, model_names,
                       output_directory, file_format, diagonal=False)


#: name -> (function, which statistics it needs: "training" or "test")
VISUALIZATIONS = {
    "learning_curves": (learning_curves, "training"),
    "confusion_matrix": (confusion_matrix, "test"),
    "roc_curves": (roc_curves, "test"),
    "precision_recall": (precision_recall, "test"),
}
