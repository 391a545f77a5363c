"""Tests for soundscape.detections: score windows to events, and event matching."""

import numpy as np
import pandas as pd
import pytest

from soundscape.annotations import read_raven, write_raven
from soundscape.detections import EVENT_COLUMNS, detections, match_events
from soundscape.errors import ParameterError


def score_table(rows: dict[str, list], file="a.wav", step=1.0, length=1.0, start=0.0):
    n = len(next(iter(rows.values())))
    starts = start + np.arange(n) * step
    idx = pd.MultiIndex.from_arrays([[file] * n, starts, starts + length],
                                    names=["file", "start_time", "end_time"])
    return pd.DataFrame(rows, index=idx)


def test_consecutive_windows_merge_and_scores_summarised():
    s = score_table({"x": [0.9, 0.7, 0.1, 0.6, 0.2]})
    d = detections(s, threshold=0.5)
    assert list(d.columns) == EVENT_COLUMNS
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 2.0], [3.0, 4.0]]
    assert d["max_score"].tolist() == [0.9, 0.6]
    assert d["mean_score"].tolist() == pytest.approx([0.8, 0.6])
    assert d["n_windows"].tolist() == [2, 1]
    assert set(d["annotation"]) == {"x"} and set(d["file"]) == {"a.wav"}


def test_threshold_is_inclusive():
    d = detections(score_table({"x": [0.5, 0.49]}), threshold=0.5)
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 1.0]]


def test_overlapping_windows_merge_and_fractional_steps_touch():
    s = score_table({"x": [0.9, 0.9, 0.1, 0.1, 0.9]}, step=0.5, length=1.0)
    d = detections(s)
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 1.5], [2.0, 3.0]]
    s = score_table({"x": [0.9] * 5}, step=0.1, length=0.1)  # 0.1 * 3 != 0.3 in floats
    d = detections(s)
    assert len(d) == 1 and d["end_time"][0] == pytest.approx(0.5) and d["n_windows"][0] == 5


def test_merge_gap_and_min_duration():
    s = score_table({"x": [0.9, 0.1, 0.9, 0.1, 0.1, 0.9]})
    assert len(detections(s)) == 3
    merged = detections(s, merge_gap=1.0)  # 1-s gap merges, 2-s gap does not
    assert merged[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 3.0], [5.0, 6.0]]
    assert merged["n_windows"].tolist() == [2, 1]
    assert detections(s, merge_gap=1.0, min_duration=2.0)[
        ["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 3.0]]
    assert detections(s, min_duration=1.0)["n_windows"].tolist() == [1, 1, 1]
    assert detections(s, min_duration=1.01).empty


def test_per_class_thresholds_files_and_sorting():
    a = score_table({"x": [0.9, 0.2, 0.3], "y": [0.2, 0.35, 0.2]}, file="b.wav")
    b = score_table({"x": [0.1, 0.6, 0.6], "y": [0.4, 0.1, 0.1]}, file="a.wav")
    s = pd.concat([a, b]).sample(frac=1.0, random_state=0)  # order must not matter
    d = detections(s, threshold={"x": 0.55, "y": 0.3})
    assert d[["file", "annotation", "start_time", "end_time"]].values.tolist() == [
        ["a.wav", "y", 0.0, 1.0], ["a.wav", "x", 1.0, 3.0],
        ["b.wav", "x", 0.0, 1.0], ["b.wav", "y", 1.0, 2.0]]
    only_y = detections(s, threshold={"y": 0.3}, classes=["y"])
    assert set(only_y["annotation"]) == {"y"} and len(only_y) == 2


def test_events_do_not_merge_across_files():
    s = pd.concat([score_table({"x": [0.1, 0.9]}, file="a.wav"),
                   score_table({"x": [0.9, 0.1]}, file="b.wav")])
    d = detections(s, merge_gap=10.0)
    assert d[["file", "start_time", "end_time"]].values.tolist() == [
        ["a.wav", 1.0, 2.0], ["b.wav", 0.0, 1.0]]


def test_scores_as_columns_and_empty_result():
    s = score_table({"x": [0.1, 0.2]}).reset_index()
    d = detections(s)
    assert d.empty and list(d.columns) == EVENT_COLUMNS


def test_bad_scores_are_parameter_errors():
    s = score_table({"x": [0.9, np.nan], "y": [0.1, 0.2]})
    with pytest.raises(ParameterError, match="'x'.*1 NaN"):
        detections(s)
    assert len(detections(s, classes=["y"], threshold=0.15)) == 1
    with pytest.raises(ParameterError, match=r"unknown class.*\['z'\].*\['x', 'y'\]"):
        detections(s, classes=["z"])
    with pytest.raises(ParameterError, match="no value for class.*'y'"):
        detections(s.fillna(0), threshold={"x": 0.5}, classes=["x", "y"])
    with pytest.raises(ParameterError, match=r"indexed by \(file, start_time, end_time\)"):
        detections(pd.DataFrame({"x": [0.5]}))
    with pytest.raises(ParameterError, match="merge_gap"):
        detections(s.fillna(0), merge_gap=-1)
    with pytest.raises(ParameterError, match="not numeric"):
        detections(s.fillna(0).assign(x="high"))


def test_detections_written_to_raven_and_read_back(tmp_path):
    s = score_table({"x": [0.9, 0.8, 0.1, 0.7]}, file=str(tmp_path / "rec.wav"))
    d = detections(s)
    [table] = write_raven(d, tmp_path / "out")
    back = read_raven(table, audio_files=lambda stem: str(tmp_path / f"{stem}.wav"))
    assert back[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 2.0], [3.0, 4.0]]
    assert back["annotation"].tolist() == ["x", "x"]
    assert back["max_score"].tolist() == [0.9, 0.7] and back["n_windows"].tolist() == [2, 1]
    result = match_events(d, back)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 0)


def events(rows):
    return pd.DataFrame(rows, columns=["file", "annotation", "start_time", "end_time"])


def test_match_events_counts_hand_example():
    truth = events([["a", "x", 0.0, 1.0], ["a", "x", 5.0, 6.0], ["a", "y", 2.0, 3.0],
                    ["b", "x", 0.0, 1.0]])
    det = events([
        ["a", "x", 0.5, 1.5],   # tp (truth 0)
        ["a", "x", 0.8, 0.9],   # fp: truth 0 already matched
        ["a", "y", 5.0, 6.0],   # fp: right time, wrong class
        ["b", "x", 1.0, 2.0],   # fp: only touches truth 3
        ["c", "x", 0.0, 1.0],   # fp: file has no truth
        ["a", "y", 2.9, 4.0],   # tp with 0.1 s overlap
    ])
    r = match_events(det, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 4, 2)
    assert r["precision"] == pytest.approx(2 / 6) and r["recall"] == pytest.approx(2 / 4)
    assert r["f1"] == pytest.approx(2 * 2 / (6 + 4))
    assert sorted(r["matches"]["truth_index"]) == [0, 2]
    assert r["per_class"].loc["y", ["tp", "fp", "fn"]].tolist() == [1, 1, 0]
    strict = match_events(det, truth, min_overlap=0.2)  # the 0.1 s overlap no longer counts
    assert (strict["tp"], strict["fp"], strict["fn"]) == (1, 5, 3)


def test_match_events_maximises_matches_regardless_of_order():
    # d0 overlaps t0 and t1, d1 overlaps only t0: a greedy pass taking d0-t0 would leave
    # d1 unmatched; the maximum matching pairs d0-t1 and d1-t0.
    truth = events([["a", "x", 0.0, 2.0], ["a", "x", 2.5, 4.0]])
    det = events([["a", "x", 0.5, 3.0], ["a", "x", 1.0, 1.5]])
    for d in (det, det.iloc[::-1]):
        r = match_events(d, truth)
        assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 0)
    assert np.isnan(match_events(events([]), events([]))["precision"])


def test_match_events_bad_input():
    with pytest.raises(ParameterError, match=r"truth lacks column\(s\) \['annotation'\]"):
        match_events(events([]), pd.DataFrame({"file": [], "start_time": [], "end_time": []}))
    with pytest.raises(ParameterError, match="min_overlap"):
        match_events(events([]), events([]), min_overlap=-1)


def test_match_events_agrees_with_dense_assignment_on_random_events():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(3)
    for trial in range(20):
        def random_events(n):
            start = rng.uniform(0, 20, n)
            return events([[rng.choice(["a", "b"]), rng.choice(["x", "y"]), s,
                            s + rng.uniform(0.1, 3)] for s in start])
        det, truth = random_events(rng.integers(0, 25)), random_events(rng.integers(0, 25))
        min_overlap = [0.0, 0.3][trial % 2]
        same = ((det["file"].to_numpy()[:, None] == truth["file"].to_numpy()[None, :])
                & (det["annotation"].to_numpy()[:, None] == truth["annotation"].to_numpy()))
        overlap = (np.minimum(det["end_time"].to_numpy()[:, None], truth["end_time"].to_numpy())
                   - np.maximum(det["start_time"].to_numpy()[:, None],
                                truth["start_time"].to_numpy()))
        ok = same & (overlap > min_overlap)
        rows, cols = linear_sum_assignment(ok.astype(float), maximize=True)
        expected = int(ok[rows, cols].sum())
        r = match_events(det, truth, min_overlap=min_overlap)
        assert r["tp"] == expected
        m = r["matches"]
        assert m["truth_index"].is_unique and m["detected_index"].is_unique
        assert (m["overlap"] > min_overlap).all()


# ------------------------------------------------------------------ thresholds, spans, bands
def test_dict_threshold_uses_only_the_classes_it_names():
    s = score_table({"x": [0.9, 0.1], "y": [0.95, 0.99]})
    d = detections(s, threshold={"x": 0.5})
    assert set(d["annotation"]) == {"x"} and len(d) == 1
    assert detections(s, threshold=pd.Series({"y": 0.9}))["annotation"].tolist() == ["y"]
    table = pd.DataFrame({"threshold": [0.5], "precision": [1.0]}, index=["x"])
    assert detections(s, threshold=table)["annotation"].tolist() == ["x"]
    with pytest.raises(ParameterError, match="'threshold' column"):
        detections(s, threshold=pd.DataFrame({"t": [0.5]}, index=["x"]))
    with pytest.raises(ParameterError, match=r"threshold has unknown class.*\['z'\]"):
        detections(s, threshold={"z": 0.5})


def test_center_span_splits_calls_closer_than_a_window():
    # 2-s windows every 0.5 s; a low window at 2.0-4.0 separates two runs of hits
    s = score_table({"x": [0.1, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.1]}, step=0.5, length=2.0)
    assert len(detections(s, threshold=0.5)) == 1  # whole windows overlap: one event
    d = detections(s, threshold=0.5, span="center")
    # window k stands for its middle 0.5 s: [k*0.5 + 0.75, k*0.5 + 1.25]
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[1.25, 2.75], [3.25, 4.25]]
    assert d["n_windows"].tolist() == [3, 2]
    with pytest.raises(ParameterError, match="span must be one of"):
        detections(s, span="middle")


def test_shared_span_is_what_every_hit_window_covers():
    # one call heard by windows starting 1.0, 1.5, 2.0 (each 2 s long): they share 2.0-3.0
    s = score_table({"x": [0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.8, 0.1]}, step=0.5, length=2.0)
    d = detections(s, threshold=0.5, span="shared")
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[2.0, 3.0], [4.0, 6.0]]
    # a run longer than a window shares nothing: the middles of its windows are used
    long_run = score_table({"x": [0.9] * 8}, step=0.5, length=2.0)
    d = detections(long_run, threshold=0.5, span="shared")
    assert d[["start_time", "end_time"]].to_numpy().tolist() == [[0.75, 4.75]]
    # windows that do not overlap: every span is the window itself
    s = score_table({"x": [0.9, 0.1, 0.9]})
    for span in ("center", "shared"):
        d = detections(s, span=span)
        assert d[["start_time", "end_time"]].to_numpy().tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_event_band_from_argument_or_from_the_scores():
    s = score_table({"x": [0.9, 0.1]})
    assert detections(s)[["low_f", "high_f"]].isna().all(axis=None)
    s.attrs["frequency_band"] = (1500.0, 8000.0)
    assert detections(s)[["low_f", "high_f"]].to_numpy().tolist() == [[1500.0, 8000.0]]
    assert detections(s, band=(2000, 4000))[["low_f", "high_f"]].to_numpy().tolist() == [
        [2000.0, 4000.0]]
    for bad in [(4000, 2000), (-1, 100), "wide", (1, 2, 3)]:
        with pytest.raises(ParameterError, match="band"):
            detections(s, band=bad)


def test_band_reaches_the_raven_table(tmp_path):
    s = score_table({"x": [0.9, 0.1]}, file=str(tmp_path / "rec.wav"))
    [table] = write_raven(detections(s, band=(1500, 8000)), tmp_path / "out")
    back = read_raven(table, audio_files=lambda stem: str(tmp_path / f"{stem}.wav"))
    assert back[["low_f", "high_f"]].to_numpy().tolist() == [[1500.0, 8000.0]]


def test_warning_when_one_event_covers_most_of_a_recording():
    from soundscape.detections import LongEventWarning

    s = score_table({"x": [0.95] * 18 + [0.2, 0.3]})
    with pytest.warns(LongEventWarning, match=r"threshold 0.8 for 'x' makes one event cover 18 of 20 s"):
        detections(s, threshold=0.8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detections(s, threshold=0.99)  # no event
        detections(score_table({"x": [0.9, 0.9, 0.1]}), threshold=0.5)  # a few clips: no warning
        detections(score_table({"x": [0.9, 0.1] * 10}), threshold=0.5)  # short events


def test_match_events_class_map_and_no_common_class():
    truth = events([["a", "woodcock", 0.0, 1.0], ["a", "woodcock", 5.0, 6.0]])
    det = events([["a", "scolopax-minor-present", 0.5, 1.5]])
    with pytest.raises(ParameterError, match=r"no class name in common.*scolopax-minor-present.*"
                                             r"woodcock.*class_map"):
        match_events(det, truth)
    r = match_events(det, truth, class_map={"scolopax-minor-present": "woodcock"})
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    assert r["per_class"].index.tolist() == ["woodcock"]
    with pytest.raises(ParameterError, match="class_map must be a dict"):
        match_events(det, truth, class_map=["woodcock"])
    # an empty side is not a mismatch: nothing detected means recall 0
    assert match_events(events([]), truth)["recall"] == 0.0


def test_match_events_warns_when_no_file_is_in_common():
    truth = events([["/data/a.wav", "x", 0.0, 1.0]])
    det = events([["a.wav", "x", 0.0, 1.0]])
    with pytest.warns(UserWarning, match="no file in common"):
        r = match_events(det, truth)
    assert r["tp"] == 0
