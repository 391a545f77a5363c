"""What a review says about the detector: precision by score, a calibration curve, thresholds.

Per class, over the clips with a ``yes``, ``no`` or ``other`` verdict (``other``: the
clip is not that class, so it counts as wrong; ``unsure`` is left out):

- precision in equal-width score bins;
- a logistic fit of P(correct) against the score, ``1 / (1 + exp(-(a + b * score)))``, as
  BirdNET-Analyzer's review tab fits it;
- the threshold for a target precision: the score at which the fitted P(correct) reaches
  the target (``threshold_logistic``), and the lowest reviewed score at which the share
  of correct clips among those scoring at least as high reaches it
  (``threshold_empirical``; the precision of the reviewed sample above it).

`write_report` saves it as JSON and as a PNG with one panel per class.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from soundscape.errors import ParameterError

__all__ = ["fit_logistic", "logistic", "precision_by_bin", "review_report", "plot_report",
           "write_report"]


def logistic(score, intercept: float, slope: float) -> np.ndarray:
    """The fitted curve: P(correct) at `score`."""
    z = intercept + slope * np.asarray(score, dtype=float)
    return 1.0 / (1.0 + np.exp(-z))


def fit_logistic(score, correct, ridge: float = 1e-3, max_iter: int = 100) -> tuple[float, float]:
    """Fit P(correct) = logistic(a + b * score) by maximum likelihood; return ``(a, b)``.

    Newton iterations with a small ridge penalty (`ridge`, on both coefficients) so
    that perfectly separated verdicts still give finite coefficients.

    Raises
    ------
    ParameterError
        Fewer than two verdicts, or scores and verdicts of different lengths.
    """
    x = np.asarray(score, dtype=float)
    y = np.asarray(correct, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ParameterError(f"score and correct must be 1-D of equal length, got {x.shape} "
                             f"and {y.shape}")
    if len(x) < 2:
        raise ParameterError(f"a logistic fit needs at least 2 verdicts, got {len(x)}")
    if not np.isfinite(x).all():
        raise ParameterError("scores must be finite numbers for the logistic fit")
    design = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    penalty = ridge * np.eye(2)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        grad = design.T @ (y - p) - penalty @ beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + penalty
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def precision_by_bin(score, correct, bins: int | list[float] = 10,
                     score_range: tuple[float, float] | None = None) -> pd.DataFrame:
    """Precision (share correct) of the verdicts in each score bin.

    Parameters
    ----------
    bins : int or list of float
        Number of equal-width bins over `score_range` (default: from the lowest to the
        highest score, or 0-1 when all scores lie there), or the bin edges.

    Returns
    -------
    DataFrame
        Columns ``low, high, n, n_correct, precision`` (NaN for an empty bin).
    """
    x = np.asarray(score, dtype=float)
    y = np.asarray(correct, dtype=bool)
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
        if bins < 1:
            raise ParameterError(f"bins must be >= 1, got {bins}")
        if score_range is None:
            score_range = (0.0, 1.0) if len(x) and x.min() >= 0 and x.max() <= 1 else (
                (float(x.min()), float(x.max())) if len(x) else (0.0, 1.0))
        low, high = score_range
        edges = np.round(np.linspace(low, high if high > low else low + 1.0, int(bins) + 1), 12)
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
            raise ParameterError(f"bin edges must be increasing, got {bins!r}")
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    n = np.bincount(which, minlength=len(edges) - 1)
    k = np.bincount(which, weights=y.astype(float), minlength=len(edges) - 1).astype(int)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return pd.DataFrame({"low": edges[:-1], "high": edges[1:], "n": n, "n_correct": k,
                         "precision": precision})


def _threshold_empirical(x: np.ndarray, y: np.ndarray, target: float) -> float | None:
    """The lowest distinct score whose clips scoring at least it reach `target` precision."""
    from soundscape.thresholds import precision_recall_table

    curve = precision_recall_table(x, y)  # one row per distinct score, highest first
    ok = np.flatnonzero(curve["precision"].to_numpy() >= target)
    return float(curve["threshold"].iloc[ok[-1]]) if len(ok) else None


def _threshold_logistic(a: float, b: float, target: float) -> float | None:
    if b <= 0 or not 0 < target < 1:
        return None
    return float((math.log(target / (1 - target)) - a) / b)


def review_report(review, target_precision: float = 0.9, bins: int | list[float] = 10) -> dict:
    """Per class: precision by score bin, the logistic fit and thresholds for `target_precision`.

    Parameters
    ----------
    review : path, ReviewTable or DataFrame
        A review table.
    target_precision : float
        The precision (0-1) the thresholds aim at.
    bins : int or list of float
        Score bins (see `precision_by_bin`).

    Returns
    -------
    dict
        ``{"target_precision": ..., "classes": {class: {"n_reviewed", "n_correct",
        "n_unsure", "precision", "bins": [...], "logistic": {"intercept", "slope"} or None,
        "threshold_logistic", "threshold_empirical"}}}``; JSON-ready (None for undefined).
    """
    from .table import _as_review

    if not 0 < target_precision < 1:
        raise ParameterError(f"target_precision must be between 0 and 1, got {target_precision!r}")
    table = _as_review(review)
    out = {"target_precision": float(target_precision), "classes": {}}
    for name, group in table.groupby("annotation", sort=True):
        judged = group[group["verdict"].isin(("yes", "no", "other"))]
        x = judged["score"].to_numpy(float)
        y = (judged["verdict"] == "yes").to_numpy()
        keep = np.isfinite(x)
        x, y = x[keep], y[keep]
        entry = {"n_reviewed": int(len(x)), "n_correct": int(y.sum()),
                 "n_unsure": int((group["verdict"] == "unsure").sum()),
                 "precision": float(y.mean()) if len(x) else None}
        table_bins = precision_by_bin(x, y, bins)
        entry["bins"] = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                          for k, v in row.items()} for row in
                         table_bins.astype(object).to_dict("records")]
        for row in entry["bins"]:
            row["n"], row["n_correct"] = int(row["n"]), int(row["n_correct"])
            row["low"], row["high"] = float(row["low"]), float(row["high"])
        fit = None
        if len(x) >= 2 and 0 < y.sum() < len(y):
            a, b = fit_logistic(x, y)
            fit = {"intercept": a, "slope": b}
        entry["logistic"] = fit
        entry["threshold_logistic"] = (_threshold_logistic(fit["intercept"], fit["slope"],
                                                           target_precision) if fit else None)
        entry["threshold_empirical"] = (_threshold_empirical(x, y, target_precision)
                                        if len(x) else None)
        out["classes"][str(name)] = entry
    return out


def plot_report(report: dict, review=None, fname: str | os.PathLike | None = None):
    """One panel per class: bin precision (bars), the logistic curve, verdicts and thresholds.

    `review` (the table) adds each verdict as a dot at 1 (correct) or 0 (wrong). Returns
    the matplotlib Figure (saved to `fname` when given).
    """
    from matplotlib.figure import Figure

    from .table import _as_review

    classes = list(report["classes"])
    fig = Figure(figsize=(5.0 * max(len(classes), 1), 3.6))
    table = _as_review(review) if review is not None else None
    target = report["target_precision"]
    for k, name in enumerate(classes or ["(no verdicts)"]):
        ax = fig.add_subplot(1, max(len(classes), 1), k + 1)
        if not classes:
            ax.text(0.5, 0.5, "no verdicts yet", ha="center", va="center")
            continue
        entry = report["classes"][name]
        for b in entry["bins"]:
            if b["precision"] is not None:
                ax.bar(b["low"], b["precision"], width=b["high"] - b["low"], align="edge",
                       color="#9ecae1", edgecolor="white")
                ax.text((b["low"] + b["high"]) / 2, b["precision"] + 0.02, str(b["n"]),
                        ha="center", fontsize=7)
        lo = entry["bins"][0]["low"]
        hi = entry["bins"][-1]["high"]
        if table is not None:
            judged = table[(table["annotation"] == name)
                           & table["verdict"].isin(("yes", "no", "other"))]
            y = (judged["verdict"] == "yes").to_numpy(float)
            jitter = np.random.default_rng(0).uniform(-0.03, 0.03, len(y))
            ax.scatter(judged["score"], y + jitter, s=10, color="#333333", alpha=0.6,
                       label="verdicts")
        if entry["logistic"]:
            grid = np.linspace(lo, hi, 200)
            ax.plot(grid, logistic(grid, **entry["logistic"]), color="#d62728",
                    label="logistic fit")
        ax.axhline(target, color="grey", linestyle=":", linewidth=1)
        for key, style in (("threshold_logistic", "--"), ("threshold_empirical", "-.")):
            t = entry[key]
            if t is not None and lo <= t <= hi:
                ax.axvline(t, color="#2ca02c", linestyle=style, linewidth=1,
                           label=f"{key.split('_')[1]} threshold {t:.2f}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.08, 1.12)
        ax.set_xlabel("score")
        ax.set_ylabel("precision / P(correct)")
        ax.set_title(f"{name} ({entry['n_reviewed']} reviewed)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname)
    return fig


def write_report(review, out: str | os.PathLike, target_precision: float = 0.9,
                 bins: int | list[float] = 10) -> tuple[Path, Path]:
    """Write `review_report` as ``<out>.json`` and `plot_report` as ``<out>.png``.

    `out` is a path without suffix (e.g. ``"review_report"``); returns both paths.
    """
    from soundscape.io import atomic_write, write_json

    from .table import _as_review

    table = _as_review(review)
    report = review_report(table, target_precision=target_precision, bins=bins)
    out = Path(out)
    json_path = write_json(report, out.with_name(out.name + ".json"), what="review report")
    png_path = out.with_name(out.name + ".png")
    fig = plot_report(report, table)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"), make_parents=True,
                 what="review report plot")
    return json_path, png_path
