"""Which clips the review page shows: candidates from score / detection tables and sampling."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _review_data import make_inputs
from soundscape.errors import ParameterError
from soundscape.review import candidates, read_candidates, select_clips
from soundscape.review.selection import CANDIDATE_COLUMNS


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("review-selection"))


def _synthetic(n_per_class=200, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for c in ("a", "b"):
        starts = np.arange(n_per_class) * 3.0
        rows.append(pd.DataFrame({"file": "rec.wav", "start_time": starts, "end_time": starts + 3,
                                  "annotation": c, "max_score": rng.beta(0.5, 0.5, n_per_class)}))
    return candidates(pd.concat(rows, ignore_index=True))


def test_score_table_gives_one_candidate_per_window_and_class(inputs):
    cands = read_candidates(inputs["scores_path"])
    assert list(cands.columns) == CANDIDATE_COLUMNS
    assert len(cands) == 2 * len(inputs["scores"])
    assert set(cands["annotation"]) == {"woodcock", "intro"}
    assert cands["item_id"].is_unique
    woodcock = cands[cands["annotation"] == "woodcock"].set_index(["file", "start_time"])["score"]
    expected = inputs["scores"]["woodcock"].droplevel("end_time")
    np.testing.assert_allclose(woodcock.loc[expected.index].to_numpy(), expected.to_numpy(),
                               rtol=1e-6)
    # the in-memory table (MultiIndex) gives the same; min_score keeps the higher windows
    same = candidates(inputs["scores"])
    assert same["item_id"].tolist() == cands["item_id"].tolist()
    high = candidates(inputs["scores"], min_score=0.5, classes=["woodcock"])
    assert (high["score"] >= 0.5).all() and set(high["annotation"]) == {"woodcock"}


def test_detection_table_gives_one_candidate_per_event(inputs, tmp_path):
    cands = read_candidates(inputs["events_path"])
    events = inputs["events"]
    assert len(cands) == len(events)
    np.testing.assert_allclose(np.sort(cands["score"]), np.sort(events["max_score"]))
    woodcock = cands["annotation"] == "woodcock"
    assert (cands.loc[woodcock, "low_f"] == 2000).all()
    assert (cands.loc[woodcock, "high_f"] == 8000).all()
    assert (cands.loc[~woodcock, "low_f"] == 800).all()
    events.to_parquet(tmp_path / "d.parquet")
    assert read_candidates(tmp_path / "d.parquet")["item_id"].tolist() == cands["item_id"].tolist()


def test_raven_table_is_read_as_candidates(inputs, tmp_path):
    from soundscape.annotations import write_raven

    events = inputs["events"].rename(columns={"max_score": "score"})
    [table] = write_raven(events, tmp_path)
    cands = read_candidates(table, audio_root=inputs["audio"])
    assert len(cands) == len(events)
    assert set(cands["file"]) == {str(inputs["recording"])}


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="score or detection table"):
        read_candidates(tmp_path / "missing.csv")
    (tmp_path / "t.csv").write_text("file,start_time\nx.wav,0\n")
    with pytest.raises(ParameterError, match=r"t.csv.*lacks column\(s\) \['end_time'\]"):
        read_candidates(tmp_path / "t.csv")
    with pytest.raises(ParameterError, match="not a predict_recordings output folder|manifest"):
        read_candidates(tmp_path)
    with pytest.raises(ParameterError, match="mode must be one of"):
        select_clips(_synthetic(), mode="best")
    with pytest.raises(ParameterError, match="n .clips per class"):
        select_clips(_synthetic(), mode="top", n=0)
    with pytest.raises(ParameterError, match=r"unknown class\(es\) \['c'\]"):
        candidates(pd.DataFrame({"file": ["x"], "start_time": [0], "end_time": [1], "a": [0.5]}),
                   classes=["c"])


def test_all_and_top():
    cands = _synthetic()
    assert len(select_clips(cands, "all")) == len(cands)
    top = select_clips(cands, "top", n=5)
    assert top.groupby("annotation").size().to_dict() == {"a": 5, "b": 5}
    for c, group in top.groupby("annotation"):
        best = cands[cands["annotation"] == c]["score"].nlargest(5).to_numpy()
        np.testing.assert_allclose(group["score"].to_numpy(), best)


def test_uncertain_takes_the_scores_nearest_the_centre():
    cands = _synthetic()
    picked = select_clips(cands, "uncertain", n=7)
    for c, group in picked.groupby("annotation"):
        worst_kept = (group["score"] - 0.5).abs().max()
        left_out = cands.loc[(cands["annotation"] == c) & ~cands["item_id"].isin(group["item_id"])]
        assert len(group) == 7 and worst_kept <= (left_out["score"] - 0.5).abs().min()
    shifted = select_clips(cands, "uncertain", n=3, center=0.9)
    assert ((shifted["score"] - 0.9).abs() < 0.2).all()


def test_stratified_spreads_clips_over_score_bins():
    cands = _synthetic()
    picked = select_clips(cands, "stratified", n=20, bins=5, seed=3)
    assert picked.groupby("annotation").size().to_dict() == {"a": 20, "b": 20}
    for c, group in picked.groupby("annotation"):
        assert group["score_bin"].value_counts().to_dict() == {b: 4 for b in range(5)}
        assert group["item_id"].is_unique
    again = select_clips(cands, "stratified", n=20, bins=5, seed=3)
    assert again["item_id"].tolist() == picked["item_id"].tolist()  # same seed, same clips
    other = select_clips(cands, "stratified", n=20, bins=5, seed=4)
    assert other["item_id"].tolist() != picked["item_id"].tolist()


def test_stratified_gives_the_share_of_sparse_bins_to_the_others():
    scores = np.r_[np.full(50, 0.05), [0.55], np.full(50, 0.95)]
    table = pd.DataFrame({"file": "r.wav", "start_time": np.arange(101.0),
                          "end_time": np.arange(101.0) + 1, "annotation": "a", "score": scores})
    picked = select_clips(candidates(table), "stratified", n=21, bins=3)
    assert len(picked) == 21
    counts = picked["score_bin"].value_counts().to_dict()
    assert counts[1] == 1 and counts[0] + counts[2] == 20 and abs(counts[0] - counts[2]) <= 1
    # fewer candidates than asked: all of them
    assert len(select_clips(candidates(table.head(5)), "stratified", n=50)) == 5


def test_stratified_on_real_detections(inputs):
    cands = read_candidates(inputs["events_path"])
    picked = select_clips(cands, "stratified", n=6, bins=3)
    sizes = picked.groupby("annotation").size()
    counts = cands.groupby("annotation").size()
    assert (sizes == np.minimum(counts, 6)).all()
    assert Path(picked["file"].iloc[0]).is_file()
