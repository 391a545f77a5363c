"""Which clips a person reviews: candidates from score or detection tables, and the sampling.

A *candidate* is one clip and one class with its score: columns ``item_id, file,
start_time, end_time, annotation, score, low_f, high_f``. Candidates come from

- a score table (`soundscape.predict_recordings`, `read_scores`, `read_table`): index or
  columns ``file, start_time, end_time`` and one numeric column per class; every window
  and class is a candidate (`min_score` keeps the higher ones);
- a detection table (`soundscape.detections.detections`): columns ``file, annotation,
  start_time, end_time`` and ``max_score`` (or ``score``); one candidate per event;
- a Raven selection table (``.txt``, e.g. from `write_raven`), read with `read_raven`.

`select_clips` then picks the clips to show: all, a fixed number per class spread over
score bins (so that precision can be estimated at every score), the most uncertain, or
the top k.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from soundscape.errors import AnnotationError, ParameterError

__all__ = ["read_candidates", "candidates", "select_clips", "item_ids", "MODES",
           "CANDIDATE_COLUMNS"]

#: the ways `select_clips` chooses clips
MODES = ("all", "stratified", "uncertain", "top")
CANDIDATE_COLUMNS = ["item_id", "file", "start_time", "end_time", "annotation", "score",
                     "low_f", "high_f"]
_INDEX = ["file", "start_time", "end_time"]
#: detection-table columns that are no class (left out when reading a score table)
_NOT_CLASSES = {"low_f", "high_f", "max_score", "mean_score", "n_windows", "score", "annotation",
                "selection", "channel", "view", "source_table", "item_id", "verdict", "note"}


def item_ids(frame: pd.DataFrame) -> pd.Series:
    """Stable identifiers ``file|start|end|class`` (times to the millisecond) of clips."""
    return (frame["file"].astype(str) + "|" + frame["start_time"].map("{:.3f}".format) + "|"
            + frame["end_time"].map("{:.3f}".format) + "|" + frame["annotation"].astype(str))


def read_candidates(path: str | os.PathLike, audio_root: str | os.PathLike | None = None,
                    min_score: float | None = None, classes: list[str] | None = None
                    ) -> pd.DataFrame:
    """Candidates of a score table, detection table or Raven table on disk.

    Parameters
    ----------
    path : path
        A CSV, TSV or Parquet table, a Raven ``.txt`` selection table, or a
        `predict_recordings` output folder (with ``manifest.jsonl``).
    audio_root : path, optional
        For Raven tables: the folder their recordings are in (`read_raven`'s `audio_files`).
    min_score, classes
        See `candidates`.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "manifest.jsonl").exists():
            raise ParameterError(f"{path} is a folder without manifest.jsonl; give a score or "
                                 "detection table (CSV/Parquet) or a predict_recordings "
                                 "output folder")
        from soundscape.torch.outputs import read_scores

        table = read_scores(path)
    elif not path.is_file():
        from soundscape.io import missing_file

        raise missing_file(path, "score or detection table")
    else:
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        elif suffix == ".txt":
            from soundscape.annotations import read_raven

            table = read_raven(path, audio_files=audio_root)
        else:
            table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    try:
        return candidates(table, min_score=min_score, classes=classes)
    except ParameterError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def candidates(table: pd.DataFrame, min_score: float | None = None,
               classes: list[str] | None = None) -> pd.DataFrame:
    """The clips of a score or detection table as candidates (one row per clip and class).

    Parameters
    ----------
    table : DataFrame
        A score table (index or columns ``file, start_time, end_time``, one numeric
        column per class) or a detection / annotation table (with an ``annotation``
        column; its score is ``max_score``, else ``score``, else NaN).
    min_score : float, optional
        Keep only candidates scoring at least this (for score tables: windows worth a look).
    classes : list of str, optional
        Keep only these classes.

    Returns
    -------
    DataFrame
        Columns `CANDIDATE_COLUMNS`, sorted by class, file and start time.
    """
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    flat = table.reset_index() if any(n in _INDEX for n in table.index.names) else table.copy()
    missing = [c for c in _INDEX if c not in flat.columns]
    if missing:
        raise ParameterError(f"table lacks column(s) {missing}; columns are {list(flat.columns)}")
    if "annotation" in flat.columns:
        score_col = next((c for c in ("max_score", "score") if c in flat.columns), None)
        out = pd.DataFrame({
            "file": flat["file"].astype(str), "start_time": flat["start_time"],
            "end_time": flat["end_time"], "annotation": flat["annotation"].astype(str),
            "score": flat[score_col] if score_col else np.nan,
            "low_f": flat["low_f"] if "low_f" in flat else np.nan,
            "high_f": flat["high_f"] if "high_f" in flat else np.nan})
    else:
        names = [c for c in flat.columns if c not in _INDEX and c not in _NOT_CLASSES
                 and pd.api.types.is_numeric_dtype(flat[c])]
        if not names:
            raise ParameterError("table has neither an 'annotation' column (a detection table) "
                                 "nor numeric class columns (a score table); columns are "
                                 f"{list(flat.columns)}")
        band = table.attrs.get("frequency_band") or (np.nan, np.nan)
        long = flat.melt(id_vars=_INDEX, value_vars=names, var_name="annotation",
                         value_name="score")
        out = long.assign(file=long["file"].astype(str), annotation=long["annotation"].astype(str),
                          low_f=float(band[0]), high_f=float(band[1]))
    for c in ("start_time", "end_time", "score", "low_f", "high_f"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    bad = out["start_time"].isna() | out["end_time"].isna() | (out["end_time"] < out["start_time"])
    if bad.any():
        i = out.index[bad][0]
        raise AnnotationError(f"row {i} ({out.loc[i, 'file']}): start_time/end_time must be "
                              "numbers with end_time >= start_time")
    if classes is not None:
        classes = [classes] if isinstance(classes, str) else [str(c) for c in classes]
        unknown = sorted(set(classes) - set(out["annotation"]))
        if unknown:
            raise ParameterError(f"unknown class(es) {unknown}; the table has "
                                 f"{sorted(set(out['annotation']))}")
        out = out[out["annotation"].isin(classes)]
    if min_score is not None:
        out = out[out["score"] >= float(min_score)]
    out = out.sort_values(["annotation", "file", "start_time", "end_time"], kind="stable")
    out = out.reset_index(drop=True)
    out.insert(0, "item_id", item_ids(out))
    out = out.drop_duplicates("item_id").reset_index(drop=True)
    return out[CANDIDATE_COLUMNS]


def _spread(counts: np.ndarray, n: int) -> np.ndarray:
    """How many to take from each bin: `n` shared as evenly as the bins' sizes allow."""
    take = np.zeros_like(counts)
    left = int(n)
    while left > 0:
        open_bins = np.flatnonzero(take < counts)
        if not len(open_bins):
            break
        share = max(left // len(open_bins), 1)
        for b in open_bins:
            add = min(share, counts[b] - take[b], left)
            take[b] += add
            left -= add
            if left == 0:
                break
    return take


def select_clips(cands: pd.DataFrame, mode: str = "all", n: int | None = None,
                 bins: int = 10, center: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """Choose the clips to review from `candidates`.

    Parameters
    ----------
    cands : DataFrame
        From `candidates` / `read_candidates`.
    mode : {"all", "stratified", "uncertain", "top"}
        ``"all"``: every candidate. ``"stratified"``: `n` per class, spread evenly over
        `bins` equal-width score bins between the class's lowest and highest score
        (random within a bin; bins with too few clips give their share to the others),
        so that `review_report` can estimate precision at every score. ``"uncertain"``:
        the `n` per class scoring closest to `center`. ``"top"``: the `n` highest
        scoring per class.
    n : int
        Clips per class (not for "all"; default 20).
    bins : int
        Score bins of "stratified".
    center : float
        The most uncertain score ("uncertain"): 0.5 for probabilities.
    seed : int
        Random seed of "stratified" (the same seed gives the same clips).

    Returns
    -------
    DataFrame
        The chosen candidates in review order (class, then score bin / score) with a
        ``score_bin`` column for "stratified".
    """
    if mode not in MODES:
        raise ParameterError(f"mode must be one of {MODES}, got {mode!r}")
    missing = [c for c in CANDIDATE_COLUMNS if c not in cands.columns]
    if missing:
        raise ParameterError(f"candidates lack column(s) {missing}; make them with "
                             "soundscape.review.candidates")
    if mode == "all":
        return cands.reset_index(drop=True)
    n = 20 if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"n (clips per class) must be a whole number >= 1, got {n!r}")
    if mode != "all" and cands["score"].isna().any():
        raise ParameterError(f"mode={mode!r} needs scores, but "
                             f"{int(cands['score'].isna().sum())} candidate(s) have none")
    parts = []
    rng = np.random.default_rng(seed)
    for _, group in cands.groupby("annotation", sort=True):
        if mode == "top":
            parts.append(group.sort_values("score", ascending=False, kind="stable").head(n))
        elif mode == "uncertain":
            distance = (group["score"] - center).abs()
            parts.append(group.loc[distance.sort_values(kind="stable").index[:n]])
        else:
            parts.append(_stratified(group, n, bins, rng))
    if not parts:
        return cands.iloc[:0].reset_index(drop=True)
    return pd.concat(parts).reset_index(drop=True)


def _stratified(group: pd.DataFrame, n: int, bins: int, rng: np.random.Generator) -> pd.DataFrame:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ParameterError(f"bins must be a whole number >= 1, got {bins!r}")
    scores = group["score"].to_numpy(float)
    low, high = scores.min(), scores.max()
    edges = np.linspace(low, high, bins + 1) if high > low else np.array([low, low + 1.0])
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(which, minlength=len(edges) - 1)
    take = _spread(counts, n)
    chosen = []
    for b in np.flatnonzero(take):
        members = np.flatnonzero(which == b)
        pick = rng.choice(members, size=int(take[b]), replace=False)
        chosen.append(np.sort(pick))
    rows = np.concatenate(chosen)
    out = group.iloc[rows].assign(score_bin=which[rows])
    return out.sort_values(["score_bin", "score"], kind="stable")
