"""Plots: detections over a recording, precision-recall with the chosen threshold, and the
training and test statistics of the config workflow (Ludwig-style ``visualize``).

For field work:

- `plot_detections`: the scores of a stretch of recording above its spectrogram, with the
  threshold, the detections and the annotated calls marked (outlined boxes) and a legend;
- `plot_precision_recall`: precision against recall of held-out clips as the threshold
  moves, with the chosen threshold marked.

Both return the matplotlib ``Figure`` and, with ``fname=``, also save it there (format from
the extension). Learning curves of the classic `train` are `soundscape.metrics.plot_history`.

The Ludwig-style functions take statistics as dicts or paths to the JSON files that
``soundscape train`` / ``soundscape evaluate`` write (one, or a list to compare several
models), and return the matplotlib ``Figure`` objects; with ``output_directory`` they also save
each figure there as ``<name>.<file_format>`` and return the paths instead. Figures are made
without pyplot, so nothing needs a display (the Agg canvas draws them) and notebooks show the
returned figures.

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

__all__ = ["VISUALIZATIONS", "confusion_matrix", "learning_curves", "roc_curves", "precision_recall",
           "plot_detections", "plot_precision_recall"]

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


# ------------------------------------------------------------------ detections and thresholds
_COLOURS = ["tab:blue", "tab:purple", "tab:green", "tab:brown", "tab:pink", "tab:olive"]
_DETECTION_COLOUR = "tab:red"
_TRUTH_COLOUR = "tab:orange"


def _save(fig: Figure, fname) -> Figure:
    if fname is not None:
        path = Path(fname)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def _thresholds_of(threshold, classes) -> dict:
    if threshold is None:
        return {}
    from .detections import _threshold_values

    values = _threshold_values(threshold)
    if isinstance(values, dict):
        return {c: float(values[c]) for c in classes if c in values}
    return {c: float(values) for c in classes}


def _rows_of_file(table, file: str):
    """Rows of an event table for `file` (exact path, else the same file name)."""
    import pandas as pd

    if table is None or len(table) == 0:
        return None
    t = table.reset_index() if "file" not in table.columns and "file" in table.index.names else table
    if "file" not in t.columns:
        raise ParameterError(f"event tables need a 'file' column; columns are {list(t.columns)}")
    files = t["file"].astype(str)
    rows = t[files == str(file)]
    if rows.empty:
        rows = t[files.map(lambda f: Path(f).name) == Path(str(file)).name]
    return pd.DataFrame(rows)


def plot_detections(scores, file=None, start_time: float = 0.0, end_time: float | None = None,
                    classes=None, threshold=None, events=None, truth=None,
                    max_frequency: float | None = None, title: str | None = None,
                    fname=None, figsize=(12, 6)) -> Figure:
    """Scores over time above the spectrogram of a stretch of recording, detections and truth marked.

    Parameters
    ----------
    scores : DataFrame
        A score table of `soundscape.predict_recordings` (index ``file, start_time,
        end_time``); each window's score is drawn at the window's centre.
    file : str, optional
        The recording to show; default the only file in `scores`. Its audio is read (only
        the stretch shown) for the spectrogram.
    start_time, end_time : float
        Seconds of the recording to show; default from 0 to 60 s (or the end).
    classes : list of str, optional
        Score columns to draw; default those `threshold` names, else all.
    threshold : float, dict, Series or `choose_threshold` table, optional
        Drawn as a dashed line per class.
    events : DataFrame, optional
        Detections (`soundscape.detections.detections`): red outlined boxes on the
        spectrogram (their ``low_f``-``high_f`` band, or its full height) and red bars on
        the score panel.
    truth : DataFrame, optional
        Annotated calls (e.g. `read_raven`): orange outlined boxes (their own band) and
        orange ticks on the score panel. Rows of other files are left out (matched by
        path, or by file name).
    max_frequency : float, optional
        Top of the spectrogram (Hz); default the Nyquist frequency.
    title : str, optional
    fname : path, optional
        Also save the figure there (png, pdf, svg ... from the extension).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    from .audio import Audio
    from .detections import _score_frame
    from .spectrogram import Spectrogram

    table = _score_frame(scores)
    files = table.index.get_level_values("file").astype(str)
    if file is None:
        unique = files.unique()
        if len(unique) != 1:
            raise ParameterError(f"scores hold {len(unique)} recordings; say which with file=")
        file = unique[0]
    file = str(file)
    part = table[files == file]
    if part.empty:
        raise ParameterError(f"no scores for file {file!r}; files are {list(files.unique()[:5])}")
    thresholds_given = threshold is not None
    if classes is None:
        named = list(_thresholds_of(threshold, list(part.columns))) if thresholds_given else []
        classes = named or list(part.columns)
    classes = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in classes if c not in part.columns]
    if unknown:
        raise ParameterError(f"unknown class(es) {unknown}; score columns are {list(part.columns)}")
    thresholds = _thresholds_of(threshold, classes)
    t0 = float(start_time)
    last = float(part.index.get_level_values("end_time").max())
    t1 = min(t0 + 60.0, last) if end_time is None else float(end_time)
    if not t1 > t0 >= 0:
        raise ParameterError(f"need 0 <= start_time < end_time, got {start_time!r}, {end_time!r}")

    audio = Audio.from_file(file, offset=t0, duration=t1 - t0)
    window = 1024 if audio.sample_rate > 30000 else 512
    spec = Spectrogram.from_audio(audio, window_samples=window, overlap_samples=window // 2,
                                  decibel_limits=(-110, -20))
    top = audio.sample_rate / 2 if max_frequency is None else float(max_frequency)

    fig = Figure(figsize=figsize)
    grid = fig.add_gridspec(2, 1, height_ratios=[1, 2], hspace=0.08)
    ax_s = fig.add_subplot(grid[0])
    ax_f = fig.add_subplot(grid[1], sharex=ax_s)
    ax_f.imshow(spec.spectrogram, origin="lower", aspect="auto", cmap="Greys",
                extent=(t0 + spec.times[0], t0 + spec.times[-1], spec.frequencies[0],
                        spec.frequencies[-1]), vmin=-110, vmax=-20, interpolation="nearest")
    ax_f.set_ylim(0, top)
    ax_f.set_xlim(t0, t1)
    ax_f.set_xlabel("time in the recording (s)")
    ax_f.set_ylabel("frequency (Hz)")

    starts = part.index.get_level_values("start_time").to_numpy(float)
    ends = part.index.get_level_values("end_time").to_numpy(float)
    centres = (starts + ends) / 2
    shown = (ends >= t0) & (starts <= t1)
    order = np.argsort(centres[shown], kind="stable")
    handles = []
    for k, c in enumerate(classes):
        colour = _COLOURS[k % len(_COLOURS)]
        (line,) = ax_s.plot(centres[shown][order], part[c].to_numpy(float)[shown][order], color=colour,
                            lw=1.2, label=f"score: {c}")
        handles.append(line)
        if c in thresholds:
            ax_s.axhline(thresholds[c], color=colour, ls="--", lw=1)
            handles.append(Line2D([], [], color=colour, ls="--", lw=1,
                                  label=f"threshold {thresholds[c]:.2f}"))
    values = part[classes].to_numpy(float)
    low, high = min(0.0, float(np.nanmin(values))), max(1.0, float(np.nanmax(values)))
    pad = 0.08 * (high - low)
    ax_s.set_ylim(low - pad, high + 2 * pad)
    ax_s.set_ylabel("score")
    ax_s.grid(alpha=0.3)
    ax_s.tick_params(labelbottom=False)

    ev = _rows_of_file(events, file)
    if ev is not None and len(ev):
        ev = ev[(ev["end_time"] >= t0) & (ev["start_time"] <= t1)]
        if classes and "annotation" in ev.columns:
            keep = ev["annotation"].isin(classes)
            ev = ev[keep] if keep.any() else ev
        for r in ev.itertuples(index=False):
            lo = getattr(r, "low_f", np.nan)
            hi = getattr(r, "high_f", np.nan)
            lo = 0.0 if lo is None or not np.isfinite(lo) else float(lo)
            hi = top if hi is None or not np.isfinite(hi) else float(hi)
            ax_f.add_patch(Rectangle((r.start_time, lo), r.end_time - r.start_time, hi - lo,
                                     fill=False, edgecolor=_DETECTION_COLOUR, lw=1.6))
            ax_s.plot([r.start_time, r.end_time], [high + pad] * 2, color=_DETECTION_COLOUR, lw=4,
                      solid_capstyle="butt")
    handles.append(Patch(fill=False, edgecolor=_DETECTION_COLOUR, lw=1.6, label="detection"))
    tr = _rows_of_file(truth, file)
    n_truth = 0
    if tr is not None and len(tr):
        tr = tr[(tr["end_time"] >= t0) & (tr["start_time"] <= t1)]
        n_truth = len(tr)
        for r in tr.itertuples(index=False):
            lo = getattr(r, "low_f", np.nan)
            hi = getattr(r, "high_f", np.nan)
            lo = 0.0 if lo is None or not np.isfinite(lo) else float(lo)
            hi = top if hi is None or not np.isfinite(hi) else float(hi)
            pad_t = 0.05
            ax_f.add_patch(Rectangle((r.start_time - pad_t, lo), r.end_time - r.start_time + 2 * pad_t,
                                     hi - lo, fill=False, edgecolor=_TRUTH_COLOUR, lw=1.6, ls="-"))
            ax_s.plot([(r.start_time + r.end_time) / 2], [low - pad / 2], marker="^", ms=7,
                      color=_TRUTH_COLOUR, ls="none")
    if truth is not None:
        handles.append(Patch(fill=False, edgecolor=_TRUTH_COLOUR, lw=1.6,
                             label=f"annotated call ({n_truth} shown)"))
    ax_s.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                frameon=False)
    name = Path(file).name
    ax_s.set_title(title if title is not None else f"{name}, {t0:g}-{t1:g} s")
    return _save(fig, fname)


def plot_precision_recall(scores, truth, threshold=None, classes=None, title: str | None = None,
                          fname=None, figsize=(6, 5)) -> Figure:
    """Precision against recall of held-out clips as the threshold moves, thresholds marked.

    Parameters
    ----------
    scores, truth, classes
        As for `soundscape.thresholds.choose_threshold` (held-out clip scores and labels).
    threshold : float, dict, Series or `choose_threshold` table, optional
        Marked on each class's curve with the precision and recall it gives on these clips.
    title : str, optional
    fname : path, optional
        Also save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .thresholds import _score_columns, _truth_matrix, precision_recall_table

    all_classes = list(scores.columns) if hasattr(scores, "columns") else None
    if classes is None and threshold is not None and not np.isscalar(threshold):
        classes = list(_thresholds_of(threshold, all_classes or ["score"]))
    frame = _score_columns(scores, classes)
    y = _truth_matrix(truth, frame, all_classes or list(frame.columns))
    thresholds = _thresholds_of(threshold, list(frame.columns))
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    for k, c in enumerate(frame.columns):
        colour = _COLOURS[k % len(_COLOURS)]
        s, t = frame[c].to_numpy(float), y[:, k]
        if t.sum() == 0:
            raise ParameterError(f"class {c!r} has no positive clip: no precision-recall curve")
        curve = precision_recall_table(s, t)
        recall = np.r_[0.0, curve["recall"].to_numpy()]
        precision = np.r_[curve["precision"].iloc[0], curve["precision"].to_numpy()]
        ax.plot(recall, precision, color=colour, drawstyle="steps-pre", lw=1.5,
                label=f"{c} ({int(t.sum())} of {len(t)} clips)")
        if c in thresholds:
            hit = s >= thresholds[c]
            tp = int((hit & (t == 1)).sum())
            p = tp / hit.sum() if hit.sum() else np.nan
            r = tp / t.sum()
            ax.plot([r], [p if np.isfinite(p) else 1.0], marker="o", ms=9, mfc="none", mew=2,
                    color="black", ls="none",
                    label=f"threshold {thresholds[c]:.2f}: precision {p:.2f}, recall {r:.2f}")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("recall (share of clips with the call that are found)")
    ax.set_ylabel("precision (share of found clips that hold it)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title if title is not None else "precision-recall on held-out clips")
    return _save(fig, fname)


#: name -> (function, which statistics it needs: "training" or "test")
VISUALIZATIONS = {
    "learning_curves": (learning_curves, "training"),
    "confusion_matrix": (confusion_matrix, "test"),
    "roc_curves": (roc_curves, "test"),
    "precision_recall": (precision_recall, "test"),
}
