"""Turn per-window scores into detection events, and compare events with a truth table.

A *score table* has a MultiIndex ``(file, start_time, end_time)`` and one float column
per class. An *event table* has columns ``file``, ``annotation``, ``start_time``,
``end_time`` (plus, from :func:`detections`, ``low_f``, ``high_f``, ``max_score``,
``mean_score``, ``n_windows``); it can be written with
:func:`soundscape.annotations.write_raven`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from soundscape.errors import ParameterError

__all__ = ["detections", "match_events", "EVENT_COLUMNS", "SPANS", "LongEventWarning"]

EVENT_COLUMNS = ["file", "annotation", "start_time", "end_time", "low_f", "high_f", "max_score",
                 "mean_score", "n_windows"]
#: what a window above the threshold stands for in an event (see `detections`)
SPANS = ("window", "center", "shared")
#: an event longer than this share of its recording triggers `LongEventWarning`
MOST_OF_RECORDING = 0.5
_INDEX = ["file", "start_time", "end_time"]
_TOL = 1e-9


class LongEventWarning(UserWarning):
    """One detection event covers most of a recording: the threshold separates nothing."""


def _score_frame(scores) -> pd.DataFrame:
    """The score table with a (file, start_time, end_time) index, checked."""
    if not isinstance(scores, pd.DataFrame):
        raise ParameterError(f"scores must be a pandas DataFrame, got {type(scores).__name__}")
    if list(scores.index.names) != _INDEX:
        if all(c in scores.columns for c in _INDEX):
            scores = scores.set_index(_INDEX)
        else:
            raise ParameterError("scores must be indexed by (file, start_time, end_time) "
                                 f"(or have those columns); index levels are "
                                 f"{list(scores.index.names)}, columns {list(scores.columns)}")
    times = [pd.to_numeric(pd.Series(scores.index.get_level_values(n)), errors="coerce")
             for n in ("start_time", "end_time")]
    bad = times[0].isna() | times[1].isna() | (times[1] < times[0])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(f"scores row {i} ({scores.index[i]}): start_time/end_time must "
                             "be numbers with end_time >= start_time")
    return scores


def _threshold_values(threshold):
    """A float, or a dict class -> value from a dict, Series or `choose_threshold` table."""
    if isinstance(threshold, pd.DataFrame):
        if "threshold" not in threshold.columns:
            raise ParameterError("a threshold table needs a 'threshold' column (as made by "
                                 "soundscape.thresholds.choose_threshold); columns are "
                                 f"{list(threshold.columns)}")
        threshold = threshold["threshold"]
    if isinstance(threshold, pd.Series):
        threshold = threshold.to_dict()
    return dict(threshold) if isinstance(threshold, Mapping) else threshold


def _check_classes(scores: pd.DataFrame, classes, threshold) -> tuple[list, dict]:
    available = list(scores.columns)
    threshold = _threshold_values(threshold)
    if isinstance(threshold, dict):
        extra = [c for c in threshold if c not in available]
        if extra:
            raise ParameterError(f"threshold has unknown class(es) {extra}; score columns are "
                                 f"{available}")
    if classes is None:  # a dict names the classes to use; a number applies to all
        classes = [c for c in threshold] if isinstance(threshold, dict) else available
    else:
        classes = [classes] if isinstance(classes, str) else list(classes)
    unknown = [c for c in classes if c not in available]
    if unknown:
        raise ParameterError(f"unknown class(es) {unknown}; score columns are {available}")
    if isinstance(threshold, dict):
        lacking = [c for c in classes if c not in threshold]
        if lacking:
            raise ParameterError(f"threshold dict has no value for class(es) {lacking}; give "
                                 "one per class in classes= (or leave classes= out to use the "
                                 "classes the dict names)")
        thresholds = {c: threshold[c] for c in classes}
    else:
        thresholds = {c: threshold for c in classes}
    for c, t in thresholds.items():
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not np.isfinite(t):
            raise ParameterError(f"threshold for class {c!r} must be a finite number, got {t!r}")
    for c in classes:
        if not pd.api.types.is_numeric_dtype(scores[c]):
            raise ParameterError(f"score column {c!r} is not numeric (dtype {scores[c].dtype})")
        nan = scores[c].isna().to_numpy()
        if nan.any():
            raise ParameterError(f"score column {c!r} has {int(nan.sum())} NaN value(s), first "
                                 f"at {scores.index[int(np.flatnonzero(nan)[0])]}")
    return classes, thresholds


def _band(scores: pd.DataFrame, band) -> tuple[float, float]:
    """(low_f, high_f) of the events: `band`, else the model's band the scores carry."""
    if band is None:
        band = scores.attrs.get("frequency_band")
        if band is None:
            return float("nan"), float("nan")
    try:
        low, high = (float(b) for b in band)
    except (TypeError, ValueError):
        raise ParameterError(f"band must be (low_hz, high_hz), got {band!r}") from None
    if not (0 <= low < high and np.isfinite(high)):
        raise ParameterError(f"band must be (low_hz, high_hz) with 0 <= low < high, got {band!r}")
    return low, high


def _center_spans(file_code: np.ndarray, starts: np.ndarray, ends: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The middle of each window, one hop long (the step between window starts in its file),
    or the whole window where windows do not overlap."""
    frame = pd.DataFrame({"f": file_code, "s": starts})
    hop = frame.groupby("f")["s"].transform(
        lambda x: np.median(np.diff(np.unique(x.to_numpy()))) if x.nunique() > 1 else np.inf
    ).to_numpy(float)
    half = np.minimum(hop, ends - starts) / 2
    centre = (starts + ends) / 2
    return centre - half, centre + half


def _warn_long_events(events: pd.DataFrame, file_span: dict, n_windows: dict,
                      thresholds: dict) -> None:
    if events.empty:
        return
    span = events["file"].map(file_span).to_numpy(float)
    counts = events["file"].map(n_windows).to_numpy(float)
    share = (events["end_time"] - events["start_time"]).to_numpy(float) / np.where(span > 0, span, np.inf)
    long = (share > MOST_OF_RECORDING) & (counts >= 10)
    if not long.any():
        return
    i = int(np.argmax(np.where(long, share, -1)))
    e = events.iloc[i]
    warnings.warn(
        f"threshold {thresholds[e['annotation']]:g} for {e['annotation']!r} makes one event cover "
        f"{e['end_time'] - e['start_time']:.0f} of {span[i]:.0f} s of {e['file']} "
        f"({int(long.sum())} such event(s)): the scores are at or above it almost everywhere. "
        "Unless the species really calls through most of the recording, the events do not say "
        "when it calls: the threshold is too low for these scores, or the model does not "
        "transfer to this recording. Choose the threshold on held-out clips "
        "(soundscape.thresholds.choose_threshold), check that the model was trained on "
        "recordings like this one, and look at the scores (soundscape.visualize.plot_detections).",
        LongEventWarning, stacklevel=3)


def detections(scores: pd.DataFrame, threshold=0.5, min_duration: float = 0.0,
               merge_gap: float = 0.0, classes: list[str] | None = None, span: str = "window",
               band: tuple[float, float] | None = None) -> pd.DataFrame:
    """Merge windows scoring at or above a threshold into detection events.

    Parameters
    ----------
    scores : DataFrame
        Index ``(file, start_time, end_time)`` (or those columns), one numeric column per
        class, e.g. from `soundscape.predict_recordings`.
    threshold : float, dict, Series or threshold table
        A window is a hit for class c when its score >= the threshold: one number for all
        classes, or one per class (a dict or Series, or the table of
        `soundscape.thresholds.choose_threshold`). With a dict and no `classes`, only the
        classes it names are used.
    min_duration : float
        Events shorter than this (seconds) are dropped, after merging.
    merge_gap : float
        Hits that overlap, touch, or are separated by at most this many seconds are
        merged into one event.
    classes : list, optional
        Score columns to use; default all (or those `threshold` names).
    span : {"window", "center", "shared"}
        What a hit stands for. ``"window"``: the whole window, so an event runs from the
        start of its first hit window to the end of its last (overlapping hits always
        merge). ``"center"``: the middle of the window, as long as the step between
        windows, so consecutive windows tile the recording; a run of hits ends at the
        first window below the threshold, and calls closer together than a window length
        become separate events when a window between them scores low. ``"shared"``: runs
        as for "center", but an event is the stretch that all its hit windows cover (a
        single call heard by every one of them lies there; one hit window gives the whole
        window), or the middles of its windows when they share none (several calls). Use
        "center" or "shared" with overlapping windows when calls come in quick succession;
        "shared" localises single calls best.
    band : (low_hz, high_hz), optional
        Frequency range of the events (``low_f``, ``high_f``, the box in Raven). Default:
        the band the model sees, which `predict_recordings` stores in
        ``scores.attrs["frequency_band"]`` (its preprocessing's `min_frequency` and
        `max_frequency`, else 0 to half its sample rate); NaN when the scores do not say.

    Returns
    -------
    DataFrame
        Columns ``file, annotation, start_time, end_time, low_f, high_f, max_score,
        mean_score, n_windows`` (scores over the hit windows of each event), sorted by file
        and start.

    Warns
    -----
    LongEventWarning
        An event covers more than half of a recording (of at least 10 windows): the
        threshold is too low for these scores, or the model does not transfer to them.
    """
    scores = _score_frame(scores)
    if not min_duration >= 0:
        raise ParameterError(f"min_duration must be >= 0 seconds, got {min_duration!r}")
    if not merge_gap >= 0:
        raise ParameterError(f"merge_gap must be >= 0 seconds, got {merge_gap!r}")
    if span not in SPANS:
        raise ParameterError(f"span must be one of {SPANS}, got {span!r}")
    classes, thresholds = _check_classes(scores, classes, threshold)
    low_f, high_f = _band(scores, band)

    file_code, names = pd.factorize(scores.index.get_level_values("file").astype(str), sort=True)
    starts = scores.index.get_level_values("start_time").to_numpy(float)
    ends = scores.index.get_level_values("end_time").to_numpy(float)
    order = np.lexsort((ends, starts, file_code))
    file_code, starts, ends = file_code[order], starts[order], ends[order]
    files = np.asarray(names, dtype=object)
    file_span = pd.Series(ends).groupby(file_code).max() - pd.Series(starts).groupby(file_code).min()
    file_span = {files[k]: float(v) for k, v in file_span.items()}
    n_file_windows = {files[k]: int(v) for k, v in pd.Series(file_code).value_counts().items()}
    window_starts, window_ends = starts, ends
    if span != "window":
        starts, ends = _center_spans(file_code, starts, ends)
    parts = []
    for c in classes:
        s = scores[c].to_numpy(float)[order]
        hit = np.flatnonzero(s >= thresholds[c])
        if not len(hit):
            continue
        f, t0, t1, v = file_code[hit], starts[hit], ends[hit], s[hit]
        # within a file, a hit opens a new event when it starts after the furthest end so
        # far (plus merge_gap); cumulative max of ends restarts at each file
        reach = pd.Series(t1).groupby(f).cummax().to_numpy()
        new = np.ones(len(hit), dtype=bool)
        new[1:] = (f[1:] != f[:-1]) | (t0[1:] - reach[:-1] > merge_gap + _TOL)
        first = np.flatnonzero(new)
        last = np.append(first[1:], len(hit)) - 1
        n = last - first + 1
        begin, end = t0[first], reach[last]
        if span == "shared":  # the stretch every hit window of the event covers, if any
            latest_start = np.maximum.reduceat(window_starts[hit], first)
            earliest_end = np.minimum.reduceat(window_ends[hit], first)
            common = latest_start < earliest_end
            begin = np.where(common, latest_start, begin)
            end = np.where(common, earliest_end, end)
        parts.append(pd.DataFrame({
            "file": files[f[first]], "annotation": c, "start_time": begin, "end_time": end,
            "low_f": low_f, "high_f": high_f, "max_score": np.maximum.reduceat(v, first),
            "mean_score": np.add.reduceat(v, first) / n, "n_windows": n.astype(np.int64)}))
    if not parts:
        return pd.DataFrame({"file": pd.Series(dtype=object), "annotation": pd.Series(dtype=object),
                             **{k: pd.Series(dtype=float) for k in EVENT_COLUMNS[2:8]},
                             "n_windows": pd.Series(dtype=np.int64)})
    out = pd.concat(parts, ignore_index=True)
    out = out[out["end_time"] - out["start_time"] >= min_duration - _TOL]
    out = out.sort_values(["file", "start_time", "annotation"], kind="stable")
    out = out.reset_index(drop=True)[EVENT_COLUMNS]
    _warn_long_events(out, file_span, n_file_windows, thresholds)
    return out


def _event_frame(events, name: str) -> pd.DataFrame:
    if not isinstance(events, pd.DataFrame):
        raise ParameterError(f"{name} must be a pandas DataFrame, got {type(events).__name__}")
    if any(n in _INDEX for n in events.index.names):
        events = events.reset_index()
    need = ["file", "start_time", "end_time", "annotation"]
    missing = [c for c in need if c not in events.columns]
    if missing:
        raise ParameterError(f"{name} lacks column(s) {missing}; columns are "
                             f"{list(events.columns)}")
    out = pd.DataFrame({c: events[c].astype(str).to_numpy() for c in ("file", "annotation")},
                       index=events.index)
    for c in ("start_time", "end_time"):
        out[c] = pd.to_numeric(events[c], errors="coerce").to_numpy(float)
    bad = out["start_time"].isna() | out["end_time"].isna() | (out["end_time"] < out["start_time"])
    if bad.any():
        raise ParameterError(f"{name} row {out.index[bad][0]}: start_time/end_time must be "
                             "numbers with end_time >= start_time")
    return out


def _overlap_pairs(d0, d1, t0, t1, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (detection, truth) overlapping by more than min_overlap seconds.

    Truth events are sorted by start; with the running maximum of their ends, the truths
    that can overlap detection i form one index range [lo_i, hi_i), expanded without
    a Python loop and then filtered on the exact overlap.
    """
    order = np.argsort(t0, kind="stable")
    s0, s1 = t0[order], t1[order]
    lo = np.searchsorted(np.maximum.accumulate(s1), d0, side="right")
    hi = np.searchsorted(s0, d1, side="left")
    counts = np.maximum(hi - lo, 0)
    det_idx = np.repeat(np.arange(len(d0)), counts)
    pos = lo[det_idx] + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    overlap = np.minimum(d1[det_idx], s1[pos]) - np.maximum(d0[det_idx], s0[pos])
    keep = overlap > min_overlap
    return det_idx[keep], order[pos[keep]]


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def match_events(detected: pd.DataFrame, truth: pd.DataFrame, min_overlap: float = 0.0,
                 class_map: Mapping[str, str] | None = None) -> dict:
    """Event-level precision, recall and F1 of detections against truth events.

    A detection and a truth event may be matched when they have the same ``file`` and
    ``annotation`` and overlap by more than ``min_overlap`` seconds. Each detection and
    each truth event is matched at most once; the matching maximises the number of
    matched pairs (Hopcroft-Karp), so the counts do not depend on row order.

    Parameters
    ----------
    detected, truth : DataFrame
        Columns ``file``, ``annotation``, ``start_time``, ``end_time`` (e.g. from
        :func:`detections` and :func:`soundscape.annotations.read_raven`). Files are compared
        as strings, so both must name the recordings the same way.
    min_overlap : float
        Seconds of overlap a match needs (strictly more than this).
    class_map : dict, optional
        Detected class name -> the truth table's name for it, e.g.
        ``{"scolopax-minor-present": "woodcock"}``; other names are kept.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (NaN when undefined), ``tp``, ``fp``, ``fn``,
        ``n_detected``, ``n_truth``, ``matches`` (DataFrame: ``file, annotation,
        detected_index, truth_index, overlap`` and both events' times) and ``per_class``
        (DataFrame of the same counts and scores per class).

    Raises
    ------
    ParameterError
        Both tables have events but no class name in common (give `class_map`), or bad
        columns or times.
    """
    if not min_overlap >= 0:
        raise ParameterError(f"min_overlap must be >= 0 seconds, got {min_overlap!r}")
    det, tru = _event_frame(detected, "detected"), _event_frame(truth, "truth")
    if class_map is not None:
        if not isinstance(class_map, Mapping):
            raise ParameterError(f"class_map must be a dict (detected name -> truth name), got "
                                 f"{type(class_map).__name__}")
        det["annotation"] = det["annotation"].map(lambda a: str(class_map.get(a, a)))
    det_names, tru_names = set(det["annotation"]), set(tru["annotation"])
    if det_names and tru_names and not det_names & tru_names:
        hint = (f"; e.g. class_map={{{sorted(det_names)[-1]!r}: {sorted(tru_names)[0]!r}}}"
                if len(tru_names) == 1 else "")
        raise ParameterError(
            f"no class name in common: the detections are {sorted(det_names)} and the truth "
            f"{sorted(tru_names)}, so nothing could match; pass class_map={{detected name: truth "
            f"name}}{hint}")
    det_files, tru_files = set(det["file"]), set(tru["file"])
    if det_files and tru_files and not det_files & tru_files:
        warnings.warn(
            f"no file in common: the detections name {sorted(det_files)[:3]} and the truth "
            f"{sorted(tru_files)[:3]}; files are compared as exact strings, so name the recordings "
            "the same way in both (e.g. read_raven(..., audio_files=<the folder you scored>))",
            UserWarning, stacklevel=2)
    d_pos = {k: v for k, v in det.groupby(["file", "annotation"]).indices.items()}
    d_start, d_end = det["start_time"].to_numpy(), det["end_time"].to_numpy()
    t_start, t_end = tru["start_time"].to_numpy(), tru["end_time"].to_numpy()
    rows, cols = [], []
    for key, ti in tru.groupby(["file", "annotation"]).indices.items():
        di = d_pos.get(key)
        if di is None:
            continue
        r, c = _overlap_pairs(d_start[di], d_end[di], t_start[ti], t_end[ti], min_overlap)
        rows.append(di[r])
        cols.append(ti[c])
    r = np.concatenate(rows) if rows else np.array([], dtype=int)
    c = np.concatenate(cols) if cols else np.array([], dtype=int)
    graph = csr_matrix((np.ones(len(r)), (r, c)), shape=(len(det), len(tru)))
    match = maximum_bipartite_matching(graph, perm_type="column") if len(r) else \
        np.full(len(det), -1)
    d_idx = np.flatnonzero(match >= 0)
    t_idx = match[d_idx]
    pairs = pd.DataFrame({
        "file": det["file"].to_numpy()[d_idx], "annotation": det["annotation"].to_numpy()[d_idx],
        "detected_index": det.index.to_numpy()[d_idx], "truth_index": tru.index.to_numpy()[t_idx],
        "detected_start": det["start_time"].to_numpy()[d_idx],
        "detected_end": det["end_time"].to_numpy()[d_idx],
        "truth_start": tru["start_time"].to_numpy()[t_idx],
        "truth_end": tru["end_time"].to_numpy()[t_idx]})
    pairs["overlap"] = (np.minimum(pairs["detected_end"], pairs["truth_end"])
                        - np.maximum(pairs["detected_start"], pairs["truth_start"]))
    pairs = pairs.sort_values(["file", "detected_start"], kind="stable").reset_index(drop=True)

    names = sorted(set(det["annotation"]) | set(tru["annotation"]))
    tp_c = pairs["annotation"].value_counts().reindex(names, fill_value=0)
    per_class = pd.DataFrame({
        "tp": tp_c, "n_detected": det["annotation"].value_counts().reindex(names, fill_value=0),
        "n_truth": tru["annotation"].value_counts().reindex(names, fill_value=0)})
    per_class["fp"] = per_class["n_detected"] - per_class["tp"]
    per_class["fn"] = per_class["n_truth"] - per_class["tp"]
    per_class["precision"] = [_ratio(a, b) for a, b in zip(per_class.tp, per_class.n_detected)]
    per_class["recall"] = [_ratio(a, b) for a, b in zip(per_class.tp, per_class.n_truth)]
    per_class["f1"] = [_ratio(2 * a, b + d) for a, b, d in
                       zip(per_class.tp, per_class.n_detected, per_class.n_truth)]
    per_class.index.name = "annotation"
    tp, n_det, n_tru = len(pairs), len(det), len(tru)
    return {"precision": _ratio(tp, n_det), "recall": _ratio(tp, n_tru),
            "f1": _ratio(2 * tp, n_det + n_tru), "tp": tp, "fp": n_det - tp, "fn": n_tru - tp,
            "n_detected": n_det, "n_truth": n_tru, "matches": pairs, "per_class": per_class}
