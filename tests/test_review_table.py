"""The review table: saved at once, resumable, concurrent-safe; back as labels, Raven, clips."""

import threading

import numpy as np
import pandas as pd
import pytest
import soundfile

from _review_data import make_inputs
from soundscape.annotations import clip_labels, read_raven
from soundscape.errors import AnnotationError, ParameterError
from soundscape.review import (ReviewTable, default_review_path, export_clips, read_candidates,
                               read_review, review_events, review_labels, select_clips,
                               write_review_raven)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("review-table"))


@pytest.fixture
def clips(inputs):
    return select_clips(read_candidates(inputs["events_path"]), "all")


def test_default_path_is_beside_the_input(tmp_path):
    assert default_review_path(tmp_path / "det.csv") == tmp_path / "det.review.csv"
    assert default_review_path(tmp_path / "det.parquet") == tmp_path / "det.review.parquet"
    raven = tmp_path / "rec.Table.1.selections.txt"
    assert default_review_path(raven) == tmp_path / "rec.review.csv"
    assert default_review_path(tmp_path) == tmp_path / "review.csv"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_verdicts_are_saved_at_once_and_resume(clips, tmp_path, suffix):
    path = tmp_path / f"review{suffix}"
    table = ReviewTable(path, clips)
    assert table.progress() == {"reviewed": 0, "total": len(clips), "next": 0}
    ids = clips["item_id"].tolist()
    table.set_verdict(ids[0], "yes", note="clear peent\tfaint intro")
    table.set_verdict(ids[1], "other", other_class="intro")
    table.set_verdict(ids[2], "unsure", note="NA")
    on_disk = read_review(path)  # written through: a fresh read sees every verdict
    assert on_disk["verdict"].tolist()[:4] == ["yes", "other", "unsure", ""]
    assert on_disk["note"].tolist()[:3] == ["clear peent faint intro", "", "NA"]
    assert on_disk["other_class"].tolist()[1] == "intro"
    assert on_disk["reviewed_at"].iloc[0].endswith("+00:00")
    assert on_disk["reviewed_at"].iloc[3] == ""
    # reopening (with the same or a longer selection) continues where the reviewer stopped
    again = ReviewTable(path, clips)
    assert again.progress() == {"reviewed": 3, "total": len(clips), "next": 3}
    extra = clips.head(1).assign(item_id="new|0|1|x", file="new.wav", start_time=0.0,
                                 end_time=1.0, annotation="x")
    more = ReviewTable(path, pd.concat([clips, extra], ignore_index=True))
    assert more.progress()["total"] == len(clips) + 1
    assert more.read()["item_id"].iloc[-1] == "new|0|1|x"
    table.set_verdict(ids[0], "")  # cleared
    assert read_review(path)["verdict"].iloc[0] == ""


def test_bad_verdicts_are_refused(clips, tmp_path):
    table = ReviewTable(tmp_path / "r.csv", clips)
    with pytest.raises(ParameterError, match="verdict must be one of"):
        table.set_verdict(clips["item_id"].iloc[0], "maybe")
    with pytest.raises(ParameterError, match="needs other_class"):
        table.set_verdict(clips["item_id"].iloc[0], "other")
    with pytest.raises(ParameterError, match="no clip 'nope'"):
        table.set_verdict("nope", "yes")
    with pytest.raises(ParameterError, match=r"\.csv or \.parquet"):
        ReviewTable(tmp_path / "r.txt", clips)
    with pytest.raises(FileNotFoundError, match="review table"):
        ReviewTable(tmp_path / "absent.csv")
    broken = read_review(tmp_path / "r.csv")
    broken.loc[2, "verdict"] = "perhaps"
    broken.to_csv(tmp_path / "broken.csv", index=False)
    with pytest.raises(AnnotationError, match="row 2: verdict 'perhaps'"):
        read_review(tmp_path / "broken.csv")


def test_concurrent_verdicts_are_all_kept(clips, tmp_path):
    """Threads and separate table objects (two browser tabs, two processes) lose nothing."""
    path = tmp_path / "r.csv"
    ReviewTable(path, clips)
    ids = clips["item_id"].tolist()
    tables = [ReviewTable(path), ReviewTable(path)]
    errors = []

    def answer(k):
        try:
            for i in range(k, len(ids), 2):
                tables[k].set_verdict(ids[i], "yes" if i % 3 else "no", note=f"tab {k}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=answer, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    final = read_review(path)
    assert (final["verdict"] != "").all()
    assert final["note"].tolist() == [f"tab {i % 2}" for i in range(len(ids))]


def test_concurrent_processes_keep_each_others_verdicts(clips, tmp_path):
    """Another process answering the odd clips while this one answers the even ones."""
    import subprocess
    import sys

    path = tmp_path / "r.csv"
    table = ReviewTable(path, clips)
    ids = clips["item_id"].tolist()
    code = ("import sys; from soundscape.review import ReviewTable, read_review\n"
            "t = ReviewTable(sys.argv[1]); ids = read_review(sys.argv[1])['item_id'].tolist()\n"
            "print('ready', flush=True); sys.stdin.readline()\n"
            "for i in range(1, len(ids), 2): t.set_verdict(ids[i], 'no')\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    for i in range(0, len(ids), 2):
        table.set_verdict(ids[i], "yes")
    assert proc.wait(timeout=120) == 0
    final = read_review(path)["verdict"].tolist()
    assert final == ["yes" if i % 2 == 0 else "no" for i in range(len(ids))]


def _answered(clips, tmp_path):
    table = ReviewTable(tmp_path / "r.csv", clips)
    ids = clips["item_id"].tolist()
    pattern = ["yes", "no", "unsure", "other"]
    for i, item in enumerate(ids):
        verdict = pattern[i % 4]
        table.set_verdict(item, verdict, other_class="bird" if verdict == "other" else "")
    return table


def test_review_reads_back_as_clip_labels(inputs, clips, tmp_path):
    table = _answered(clips, tmp_path)
    labels = review_labels(table)
    review = table.read()
    judged = review[review["verdict"] != "unsure"]
    assert list(labels.index.names) == ["file", "start_time", "end_time"]
    assert sorted(labels.columns) == sorted({"bird", *clips["annotation"]})
    assert len(labels) == len(judged.drop_duplicates(["file", "start_time", "end_time"]))
    assert labels.dtypes.unique().tolist() == [np.dtype("int64")]
    yes = review[review["verdict"] == "yes"].iloc[0]
    assert labels.loc[(yes["file"], yes["start_time"], yes["end_time"]), yes["annotation"]] == 1
    other = review[review["verdict"] == "other"].iloc[0]
    row = labels.loc[(other["file"], other["start_time"], other["end_time"])]
    assert row["bird"] == 1 and row[other["annotation"]] == 0
    # the same layout as clip_labels: labels of the verified events on the clips' grid agree
    events = review_events(table)
    grid = clip_labels(events, clip_duration=1.0, classes=list(labels.columns),
                       file_durations={str(inputs["recording"]): 180.0})
    assert list(grid.index.names) == list(labels.index.names)
    assert list(grid.columns) == list(labels.columns)
    assert grid.dtypes.tolist() == labels.dtypes.tolist()


def test_review_written_as_raven_tables(inputs, clips, tmp_path):
    table = _answered(clips, tmp_path)
    [path] = write_review_raven(table, tmp_path / "raven")
    back = read_raven(path, annotation_column="Annotation", audio_files=inputs["audio"])
    review = table.read()
    kept = review[review["verdict"].isin(["yes", "other"])]
    assert len(back) == len(kept)
    expected = np.where(kept["verdict"] == "other", kept["other_class"], kept["annotation"])
    assert sorted(back["annotation"]) == sorted(expected)
    assert set(back["file"]) == {str(inputs["recording"])}
    assert {"verdict", "detected", "score"} <= set(back.columns)


def test_reviewed_clips_exported_as_wavs_with_labels(inputs, clips, tmp_path):
    table = _answered(clips, tmp_path)
    labels_path = export_clips(table, inputs["audio"], tmp_path / "export", context=0.5)
    labels = pd.read_csv(labels_path, index_col="file")
    expected = review_labels(table)
    assert len(labels) == len(expected)
    assert list(labels.columns) == list(expected.columns)
    sources = pd.read_csv(tmp_path / "export" / "sources.csv")
    for name, src in zip(labels.index[:5], sources.itertuples()):
        info = soundfile.info(tmp_path / "export" / name)
        assert info.samplerate == 22050
        assert info.duration == pytest.approx(min(src.source_end, 180.0) - src.source_start,
                                              abs=1e-3)


def test_review_labels_and_exported_clips_feed_a_training_dataset(inputs, clips, tmp_path,
                                                                  monkeypatch):
    from soundscape.datasets import MultiTargetAudioDataset

    table = _answered(clips, tmp_path)
    labels = review_labels(table)
    dataset = MultiTargetAudioDataset(labels, height=64, width=64)
    item = dataset[0]
    assert tuple(item["y"].shape) == (len(labels.columns),)
    assert item["y"].tolist() == labels.iloc[0].tolist()
    exported = pd.read_csv(export_clips(table, inputs["audio"], tmp_path / "export"))
    monkeypatch.chdir(tmp_path / "export")
    from_files = MultiTargetAudioDataset(exported, filename_column="file", height=64, width=64)
    assert len(from_files) == len(labels)
    assert from_files[0]["X"].shape[-2:] == (64, 64)
