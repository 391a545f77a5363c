"""Agile modeling: search embeddings, review clips, refit a head, measure each round.

The loop (Dumoulin et al. 2023 call it "agile modeling"): embed a folder of unlabelled
recordings once (`soundscape.embed`); rank all windows by cosine similarity to a few
example clips (`similarity_search`); pick clips to review (`select_for_review`: top
scores, uncertain ones, or samples from every score range); write them as short audio
files and a CSV to fill in (`write_review`); read the filled-in table back as labels
(`read_review`); fit a head (`soundscape.fit_head`); score every window from the stored
embeddings (`soundscape.pretrained.head_scores`), pick the next clips, and repeat.
`round_metrics` gives precision and recall of a round against known labels.

Similarity search runs over the Parquet store in numpy blocks (one block of
`block_rows` windows in memory at a time), keeping a running top-k.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import AnnotationError, ParameterError
from ..io import atomic_write
from ..torch.outputs import INDEX
from .embeddings import EmbeddingStore, _key_frame, vector_columns

__all__ = ["similarity_search", "select_for_review", "write_review", "read_review",
           "round_metrics", "STRATEGIES", "REVIEW_FILE"]

logger = logging.getLogger("soundscape.pretrained")

STRATEGIES = ("top", "uncertain", "stratified", "random")
REVIEW_FILE = "review.csv"
REVIEW_COLUMNS = ["clip", "file", "start_time", "end_time", "score", "strategy", "label"]


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _blocks(embeddings, block_rows: int):
    """(keys DataFrame, float32 vectors) blocks of a store, DataFrame or array."""
    if isinstance(embeddings, EmbeddingStore):
        yield from embeddings.blocks(block_rows)
        return
    if isinstance(embeddings, pd.DataFrame):
        columns = vector_columns(embeddings)
        keys = _key_frame(embeddings) if any(n in INDEX for n in embeddings.index.names) else None
        values = embeddings[columns].to_numpy(np.float32)
    else:
        values, keys = np.asarray(embeddings, dtype=np.float32), None
    if keys is None:
        keys = pd.DataFrame({"row": np.arange(len(values))})
    for start in range(0, len(values), block_rows):
        stop = start + block_rows
        yield keys.iloc[start:stop].reset_index(drop=True), values[start:stop]


def similarity_search(
    embeddings,
    queries,
    k: int = 100,
    combine: str = "max",
    block_rows: int = 65536,
    exclude=None,
) -> pd.DataFrame:
    """The `k` windows most similar (cosine) to the example embeddings.

    Parameters
    ----------
    embeddings : EmbeddingStore, DataFrame or array
        What to search: a store (read block by block), or embeddings in memory.
    queries : DataFrame or array
        Embeddings of the example clips, ``(n_examples, size)`` (e.g. ``store.lookup(...)``
        or `soundscape.embed` of the example files).
    k : int
        Windows to return.
    combine : {"max", "mean"}
        A window's score: its highest similarity to any example, or the similarity to
        the examples' mean direction.
    block_rows : int
        Windows per block (memory: ``block_rows * size * 4`` bytes, plus the scores).
    exclude : DataFrame or MultiIndex, optional
        Windows to leave out (e.g. the examples themselves, or clips already reviewed).

    Returns
    -------
    DataFrame
        Columns ``file, start_time, end_time`` (or ``row`` for an array), ``similarity``
        and ``example`` (position of the most similar example), best first.
    """
    if combine not in ("max", "mean"):
        raise ParameterError(f"combine must be 'max' or 'mean', got {combine!r}")
    if int(k) < 1:
        raise ParameterError(f"k must be >= 1, got {k!r}")
    q = queries
    if isinstance(q, pd.DataFrame):
        q = q[vector_columns(q)].to_numpy(np.float32)
    q = _unit(np.atleast_2d(np.asarray(q, dtype=np.float32)))
    if combine == "mean":
        q = _unit(q.mean(0, keepdims=True))
    skip = None
    if exclude is not None:
        ex = _key_frame(exclude)
        skip = set(zip(ex["file"], ex["start_time"].round(6), ex["end_time"].round(6)))
    best_keys: list[pd.DataFrame] = []
    best_sim = np.zeros(0, np.float32)
    best_ex = np.zeros(0, np.int64)
    for keys, vectors in _blocks(embeddings, int(block_rows)):
        if vectors.shape[1] != q.shape[1]:
            raise ParameterError(f"queries have {q.shape[1]} values, embeddings {vectors.shape[1]}")
        sims = _unit(vectors) @ q.T
        sim, ex = sims.max(1), sims.argmax(1)
        if skip is not None and "file" in keys:
            rows = zip(keys["file"], keys["start_time"], keys["end_time"])
            drop = np.fromiter(((f, round(s, 6), round(e, 6)) in skip for f, s, e in rows),
                               bool, len(keys))
            sim = np.where(drop, -np.inf, sim)
        take = np.argpartition(-sim, k - 1)[:k] if len(sim) > k else np.arange(len(sim))
        take = take[np.isfinite(sim[take])]
        best_keys.append(keys.iloc[take].reset_index(drop=True))
        best_sim, best_ex = np.r_[best_sim, sim[take]], np.r_[best_ex, ex[take]]
        if len(best_sim) > 4 * k:  # keep the running top-k small
            keep = np.argpartition(-best_sim, k - 1)[:k]
            merged = pd.concat(best_keys, ignore_index=True).iloc[keep].reset_index(drop=True)
            best_keys, best_sim, best_ex = [merged], best_sim[keep], best_ex[keep]
    if not best_keys:
        return pd.DataFrame(columns=INDEX + ["similarity", "example"])
    table = pd.concat(best_keys, ignore_index=True)
    table["similarity"], table["example"] = best_sim, best_ex
    table = table.sort_values("similarity", ascending=False, kind="stable")
    return table.head(k).reset_index(drop=True)


def _score_series(scores, column: str | None) -> pd.Series:
    if isinstance(scores, pd.Series):
        return scores.astype(float)
    if not isinstance(scores, pd.DataFrame):
        raise ParameterError(f"scores must be a DataFrame or Series, got {type(scores).__name__}")
    if column is None:
        numeric = [c for c in scores.columns if c not in INDEX and c != "example"]
        if "similarity" in scores.columns:
            column = "similarity"
        elif len(numeric) == 1:
            column = numeric[0]
        else:
            raise ParameterError(f"scores has several columns {numeric[:5]}; name one with column=")
    if column not in scores.columns:
        raise ParameterError(f"column {column!r} not in scores "
                             f"(columns {list(scores.columns)[:8]})")
    frame = scores
    if not any(n in INDEX for n in scores.index.names) and "file" in scores.columns:
        frame = scores.set_index([c for c in INDEX if c in scores.columns])
    return frame[column].astype(float)


def select_for_review(
    scores,
    n: int = 20,
    strategy: str = "top",
    column: str | None = None,
    threshold: float = 0.5,
    bins: int = 5,
    exclude=None,
    seed: int = 0,
) -> pd.DataFrame:
    """Pick `n` windows to listen to.

    Parameters
    ----------
    scores : DataFrame or Series
        Scores per window: a score table (index or columns ``file, start_time,
        end_time``), the output of `similarity_search` or of `head_scores`.
    n : int
        Windows to pick.
    strategy : {"top", "uncertain", "stratified", "random"}
        Highest scores; scores closest to `threshold` (where the head is least sure);
        `n` spread evenly over `bins` equal-width score ranges (an unbiased view of
        every range, for estimating precision at any threshold); or at random.
    column : str, optional
        The score column (needed when there are several, e.g. one per class).
    threshold : float
        The decision threshold of "uncertain".
    bins : int
        Score ranges of "stratified".
    exclude : DataFrame or MultiIndex, optional
        Windows already reviewed (left out).
    seed : int
        Random seed of "stratified" and "random".

    Returns
    -------
    DataFrame
        Columns ``file, start_time, end_time, score, strategy``.
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if int(n) < 1:
        raise ParameterError(f"n must be >= 1, got {n!r}")
    series = _score_series(scores, column)
    if exclude is not None:
        ex = _key_frame(exclude)
        own = _key_frame(series.index.to_frame(index=False))
        done, mine = (pd.MultiIndex.from_arrays([t["file"], t["start_time"].round(6),
                                                 t["end_time"].round(6)]) for t in (ex, own))
        series = series[~mine.isin(done)]
    rng = np.random.default_rng(seed)
    values = series.to_numpy(float)
    n = min(int(n), len(series))
    if strategy == "top":
        pick = np.argsort(-values, kind="stable")[:n]
    elif strategy == "uncertain":
        pick = np.argsort(np.abs(values - threshold), kind="stable")[:n]
    elif strategy == "random":
        pick = rng.choice(len(values), size=n, replace=False)
    else:
        edges = np.linspace(values.min(), values.max(), int(bins) + 1) if len(values) else [0, 1]
        which = np.clip(np.digitize(values, edges[1:-1]), 0, int(bins) - 1)
        groups = [rng.permutation(np.flatnonzero(which == b)) for b in range(int(bins))]
        pick, depth = [], 0
        while len(pick) < n:  # round robin over the ranges, so sparse ranges are not skipped
            for g in groups:
                if depth < len(g) and len(pick) < n:
                    pick.append(g[depth])
            depth += 1
        pick = np.asarray(pick, dtype=np.int64)
    chosen = series.iloc[pick]
    out = chosen.index.to_frame(index=False)
    out["score"] = chosen.to_numpy(float)
    out["strategy"] = strategy
    return out.reset_index(drop=True)


def _clip_name(i: int, file: str, start: float) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(file).stem)[:60]
    return f"{i:04d}_{stem}_{start:09.3f}s.wav"


def write_review(
    selection: pd.DataFrame,
    output_dir: str | os.PathLike,
    padding: float = 0.0,
    sample_rate: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write each picked window as a short WAV file and a review table to fill in.

    Parameters
    ----------
    selection : DataFrame
        Columns ``file, start_time, end_time`` (e.g. `select_for_review`); ``score`` and
        ``strategy`` are copied when present.
    output_dir : path
        Gets ``clips/NNNN_<recording>_<start>s.wav`` and ``review.csv`` with columns
        ``clip, file, start_time, end_time, score, strategy, label`` (``label`` empty:
        write a class name per row, e.g. in a spreadsheet).
    padding : float
        Seconds of context added before and after each window in the audio file (the
        table keeps the window's own times).
    sample_rate : int, optional
        Resample the clips; default the recording's rate.
    overwrite : bool
        Replace an existing ``review.csv`` (which may hold labels already).

    Returns
    -------
    Path
        The review table.
    """
    from ..audio import Audio

    folder = Path(output_dir)
    table_path = folder / REVIEW_FILE
    if table_path.exists() and not overwrite:
        raise FileExistsError(f"{table_path} exists (it may hold labels); use another output_dir "
                              "or overwrite=True")
    keys = _key_frame(selection)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (file, start, end) in enumerate(zip(keys["file"], keys["start_time"], keys["end_time"])):
        name = f"clips/{_clip_name(i, file, start)}"
        offset = max(0.0, start - padding)
        audio = Audio.from_file(file, sample_rate=sample_rate, offset=offset,
                                duration=end + padding - offset)
        atomic_write(folder / name, audio.save)
        rows.append({"clip": name, "file": file, "start_time": start, "end_time": end})
    table = pd.DataFrame(rows, columns=REVIEW_COLUMNS[:4])
    for column in ("score", "strategy"):
        table[column] = selection[column].to_numpy() if column in selection.columns else ""
    table["label"] = ""
    atomic_write(table_path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n"))
    return table_path


def read_review(
    path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    skip_blank: bool = True,
) -> pd.DataFrame:
    """The labels of a filled-in review table.

    Parameters
    ----------
    path : path
        A ``review.csv`` of `write_review` (or its folder), labels filled in.
    classes : sequence of str, optional
        Allowed labels; another label raises `AnnotationError` naming the row.
    skip_blank : bool
        Leave out rows without a label (with a warning); False raises for them.

    Returns
    -------
    DataFrame
        Index ``(file, start_time, end_time)``, columns ``label`` (str) and the others of
        the table.
    """
    path = Path(path)
    if path.is_dir():
        path = path / REVIEW_FILE
    if not path.is_file():
        raise FileNotFoundError(f"review table not found: {path}")
    table = pd.read_csv(path, dtype={"file": str, "label": str}, keep_default_na=False)
    missing = [c for c in ("file", "start_time", "end_time", "label") if c not in table.columns]
    if missing:
        raise AnnotationError(f"{path}: missing column(s) {missing}; "
                              f"columns are {list(table.columns)}")
    table["label"] = table["label"].astype(str).str.strip()
    blank = table["label"] == ""
    if blank.any():
        lines = (np.flatnonzero(blank) + 2).tolist()  # +1 header, +1 one-based
        if not skip_blank:
            raise AnnotationError(f"{path}: {int(blank.sum())} row(s) have no label "
                                  f"(lines {lines[:10]})")
        logger.warning("%s: %d unlabelled row(s) left out (lines %s)", path, int(blank.sum()),
                       lines[:10])
        table = table[~blank]
    if classes is not None:
        bad = ~table["label"].isin([str(c) for c in classes])
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            raise AnnotationError(f"{path}, line {int(table.index[first]) + 2}: label "
                                  f"{table['label'].iloc[first]!r} is not one of {list(classes)}")
    for column in ("start_time", "end_time"):
        table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
    return table.set_index(INDEX)


def round_metrics(scores: pd.Series, truth: pd.Series, threshold: float = 0.5) -> dict:
    """Precision, recall, F1 and average precision of one class's scores against truth.

    Parameters
    ----------
    scores : Series
        Score of the target class per window.
    truth : Series
        True/False (or 1/0) per window, aligned with `scores` (same index).
    threshold : float
        A window is detected when its score >= threshold.
    """
    from sklearn.metrics import average_precision_score

    y = truth.reindex(scores.index).astype(bool).to_numpy() if isinstance(truth, pd.Series) \
        else np.asarray(truth, bool)
    s = np.asarray(scores, dtype=float)
    hit = s >= threshold
    tp, fp, fn = int((hit & y).sum()), int((hit & ~y).sum()), int((~hit & y).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    ap = float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "average_precision": ap,
            "tp": tp, "fp": fp, "fn": fn, "threshold": float(threshold), "n": int(len(s))}
