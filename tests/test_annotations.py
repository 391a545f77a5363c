"""Tests for soundscape.annotations: Raven tables in/out and clip labels."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from soundscape.annotations import ANNOTATION_COLUMNS, clip_labels, read_raven, write_raven
from soundscape.errors import AnnotationError, ParameterError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEADER = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
          "High Freq (Hz)"]


def write_table(path: Path, header: list[str], rows: list[list]) -> Path:
    lines = ["\t".join(header)] + ["\t".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_wav(path: Path, seconds: float, sr: int = 8000) -> Path:
    soundfile.write(str(path), np.zeros(int(round(seconds * sr)), dtype=np.float32), sr)
    return path


# ------------------------------------------------------------------------- read_raven
def test_read_basic_table_finds_sibling_audio_and_annotation(tmp_path):
    wav = write_wav(tmp_path / "rec1.wav", 2.0)
    table = write_table(tmp_path / "rec1.Table.1.selections.txt", HEADER + ["Annotation"], [
        [1, "Spectrogram 1", 1, 0.5, 0.9, 100, 2000, "wren"],
        [2, "Spectrogram 1", 1, 1.2, 1.25, 0, 4000, "robin"],
    ])
    df = read_raven(table)
    assert list(df.columns[:len(ANNOTATION_COLUMNS)]) == ANNOTATION_COLUMNS
    assert df["file"].tolist() == [str(wav)] * 2
    assert df["start_time"].tolist() == [0.5, 1.2]
    assert df["end_time"].tolist() == [0.9, 1.25]
    assert df["low_f"].tolist() == [100.0, 0.0] and df["high_f"].tolist() == [2000.0, 4000.0]
    assert df["annotation"].tolist() == ["wren", "robin"]
    assert df["selection"].tolist() == [1, 2] and df["channel"].tolist() == [1, 1]
    assert df["source_table"].tolist() == [str(table)] * 2


def test_read_without_sibling_audio_uses_stem(tmp_path):
    table = write_table(tmp_path / "site3_0600.Table.1.selections.txt", HEADER + ["Annotation"],
                        [[1, "Spectrogram 1", 1, 0.0, 1.0, 0, 100, "a"]])
    assert read_raven(table)["file"].tolist() == ["site3_0600"]


def test_multi_view_rows_are_deduplicated_keeping_spectrogram(tmp_path):
    table = write_table(tmp_path / "r.txt", HEADER + ["Annotation"], [
        [1, "Waveform 1", 1, 0.1, 0.4, "", "", "a"],
        [1, "Spectrogram 1", 1, 0.1, 0.4, 500, 3000, "a"],
        [2, "Spectrogram 1", 1, 0.6, 0.8, 200, 900, "b"],
        [2, "Waveform 1", 1, 0.6, 0.8, "", "", "b"],
    ])
    df = read_raven(table)
    assert df["selection"].tolist() == [1, 2]
    assert df["view"].tolist() == ["Spectrogram 1", "Spectrogram 1"]
    assert df["low_f"].tolist() == [500.0, 200.0] and df["high_f"].tolist() == [3000.0, 900.0]


def test_multi_file_table_uses_begin_path_and_file_offset(tmp_path):
    header = HEADER + ["Begin Path", "File Offset (s)", "Annotation"]
    table = write_table(tmp_path / "all.txt", header, [
        [1, "Spectrogram 1", 1, 1.0, 1.5, 0, 8000, "/data/a.wav", 1.0, "frog"],
        [2, "Spectrogram 1", 1, 62.0, 63.25, 0, 8000, "/data/b.wav", 2.0, "frog"],
        [2, "Waveform 1", 1, 62.0, 63.25, "", "", "/data/b.wav", 2.0, "frog"],
    ])
    df = read_raven(table)
    assert df["file"].tolist() == ["/data/a.wav", "/data/b.wav"]
    assert df["start_time"].tolist() == [1.0, 2.0]
    assert df["end_time"].tolist() == pytest.approx([1.5, 3.25])


def test_multi_file_table_without_offset_is_an_error(tmp_path):
    table = write_table(tmp_path / "all.txt", HEADER + ["Begin Path", "Annotation"], [
        [1, "Spectrogram 1", 1, 1.0, 1.5, 0, 8000, "/data/a.wav", "x"],
        [2, "Spectrogram 1", 1, 62.0, 63.0, 0, 8000, "/data/b.wav", "x"],
    ])
    with pytest.raises(AnnotationError, match="File Offset"):
        read_raven(table)


def test_custom_annotation_column_detected_and_extra_columns_kept(tmp_path):
    table = write_table(tmp_path / "r.txt", HEADER + ["Delta Time (s)", "Species", "Score"], [
        [1, "Spectrogram 1", 1, 0.0, 1.0, 0, 100, 1.0, "Turdus merula", 0.9],
        [2, "Spectrogram 1", 1, 2.0, 2.5, 0, 100, 0.5, "Erithacus rubecula", 0.4],
    ])
    df = read_raven(table)
    assert df["annotation"].tolist() == ["Turdus merula", "Erithacus rubecula"]
    assert df["Score"].tolist() == [0.9, 0.4]
    assert pd.api.types.is_numeric_dtype(df["Score"])
    assert "Species" not in df.columns


def test_numeric_labels_in_usual_column_name(tmp_path):
    table = write_table(tmp_path / "r.txt", HEADER + ["Class"], [
        [1, "Spectrogram 1", 1, 0.0, 1.0, 0, 100, 1], [2, "Spectrogram 1", 1, 2.0, 3.0, 0, 100, 0]])
    assert read_raven(table)["annotation"].tolist() == ["1", "0"]


def test_ambiguous_annotation_column_names_candidates(tmp_path):
    table = write_table(tmp_path / "amb.txt", HEADER + ["Species", "Notes"], [
        [1, "Spectrogram 1", 1, 0.0, 1.0, 0, 100, "wren", "faint"]])
    with pytest.raises(AnnotationError) as err:
        read_raven(table)
    msg = str(err.value)
    assert "amb.txt" in msg and "Species" in msg and "Notes" in msg and "annotation_column" in msg
    assert read_raven(table, annotation_column="Notes")["annotation"].tolist() == ["faint"]


def test_no_annotation_column_is_an_error(tmp_path):
    table = write_table(tmp_path / "none.txt", HEADER, [[1, "Spectrogram 1", 1, 0.0, 1.0, 0, 1]])
    with pytest.raises(AnnotationError, match="none.txt.*no annotation column"):
        read_raven(table)


def test_named_annotation_column_missing(tmp_path):
    table = write_table(tmp_path / "r.txt", HEADER + ["Annotation"],
                        [[1, "Spectrogram 1", 1, 0.0, 1.0, 0, 1, "a"]])
    with pytest.raises(AnnotationError, match="'Species' not found.*Annotation"):
        read_raven(table, annotation_column="Species")


def test_missing_required_columns_named(tmp_path):
    table = write_table(tmp_path / "bad.txt", ["Selection", "Begin Time (s)", "Annotation"],
                        [[1, 0.0, "a"]])
    with pytest.raises(AnnotationError) as err:
        read_raven(table)
    msg = str(err.value)
    assert "bad.txt" in msg and "End Time (s)" in msg and "Begin Time (s)" in msg
    assert "present" in msg


@pytest.mark.parametrize("begin,end,column,what", [
    ("abc", 1.0, "Begin Time (s)", "non-numeric or infinite value 'abc'"),
    ("", 1.0, "Begin Time (s)", "empty"),
    (0.5, "inf", "End Time (s)", "infinite value 'inf'"),
    (0.5, "nan", "End Time (s)", "non-numeric or infinite value 'nan'"),
    (-0.5, 1.0, "Begin Time (s)", "negative"),
    (2.0, 1.0, "End Time (s)", "before"),
])
def test_bad_times_name_file_line_selection_column(tmp_path, begin, end, column, what):
    table = write_table(tmp_path / "times.txt", HEADER + ["Annotation"], [
        [1, "Spectrogram 1", 1, 0.0, 0.5, 0, 100, "a"],
        [7, "Spectrogram 1", 1, begin, end, 0, 100, "a"],
    ])
    with pytest.raises(AnnotationError) as err:
        read_raven(table)
    msg = str(err.value)
    assert "times.txt" in msg and "line 3" in msg and "Selection 7" in msg
    assert column in msg and what in msg


def test_header_only_table_gives_empty_frame(tmp_path):
    table = write_table(tmp_path / "empty.txt", HEADER + ["Annotation"], [])
    df = read_raven(table)
    assert df.empty and list(df.columns) == ANNOTATION_COLUMNS


def test_missing_file_and_empty_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_raven(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"\*.txt"):
        read_raven(str(tmp_path / "sub*" / "*.txt"))


def test_folder_glob_and_list_read_all_tables(tmp_path):
    for i, name in enumerate(["a", "b", "c"]):
        write_table(tmp_path / f"{name}.Table.1.selections.txt", HEADER + ["Label"],
                    [[1, "Spectrogram 1", 1, i, i + 1, 0, 10, name]])
    (tmp_path / "notes.md").write_text("not a table")
    assert sorted(read_raven(tmp_path)["file"]) == ["a", "b", "c"]
    assert len(read_raven(str(tmp_path / "*.selections.txt"))) == 3
    assert read_raven([tmp_path / "c.Table.1.selections.txt"])["annotation"].tolist() == ["c"]


def test_audio_files_mapping_callable_and_folder(tmp_path):
    table = write_table(tmp_path / "x1.Table.1.selections.txt", HEADER + ["Annotation"],
                        [[1, "Spectrogram 1", 1, 0, 1, 0, 10, "a"]])
    audio = tmp_path / "audio"
    audio.mkdir()
    wav = write_wav(audio / "x1.flac", 1.0)
    assert read_raven(table, audio_files={"x1": "/d/x1.wav"})["file"][0] == "/d/x1.wav"
    assert read_raven(table, audio_files=lambda s: f"/e/{s}.ogg")["file"][0] == "/e/x1.ogg"
    assert read_raven(table, audio_files=audio)["file"][0] == str(wav)
    with pytest.raises(AnnotationError, match="no entry for 'x1'"):
        read_raven(table, audio_files={"other": "o.wav"})


# ------------------------------------------------------------------------- write_raven
def test_round_trip_one_table_per_file(tmp_path):
    a = write_wav(tmp_path / "a.wav", 3.0, sr=16000)
    b = write_wav(tmp_path / "b.wav", 2.0, sr=8000)
    events = pd.DataFrame({
        "file": [str(a), str(b), str(a)], "start_time": [1.5, 0.25, 0.1],
        "end_time": [2.0, 0.75, 0.3], "annotation": ["wren", "robin", "robin"],
        "score": [0.9, 0.8, 0.7]})
    out = tmp_path / "tables"
    written = write_raven(events, out)
    assert sorted(p.name for p in written) == ["a.Table.1.selections.txt",
                                               "b.Table.1.selections.txt"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)  # no temps
    lines = (out / "a.Table.1.selections.txt").read_text().splitlines()
    assert lines[0].split("\t")[:8] == HEADER + ["Annotation"]
    assert lines[1].split("\t")[:3] == ["1", "Spectrogram 1", "1"]
    back = read_raven(written, audio_files={"a": str(a), "b": str(b)})
    back = back.sort_values(["file", "start_time"]).reset_index(drop=True)
    expect = events.sort_values(["file", "start_time"]).reset_index(drop=True)
    assert back["file"].tolist() == expect["file"].tolist()
    assert np.allclose(back["start_time"], expect["start_time"])
    assert np.allclose(back["end_time"], expect["end_time"])
    assert back["annotation"].tolist() == expect["annotation"].tolist()
    assert np.allclose(back["score"], expect["score"])
    assert back["low_f"].tolist() == [0.0, 0.0, 0.0]
    assert back["high_f"].tolist() == [8000.0, 8000.0, 4000.0]  # Nyquist of each file


def test_round_trip_multi_file_table_with_cumulative_begin_time(tmp_path):
    a = write_wav(tmp_path / "a.wav", 3.0)
    b = write_wav(tmp_path / "b.wav", 2.0)
    events = pd.DataFrame({"file": [str(b), str(a)], "start_time": [0.5, 1.0],
                           "end_time": [1.5, 1.25], "species": ["x", "y"],
                           "high_f": [1000.0, np.nan]})
    [table] = write_raven(events, tmp_path / "all.txt", annotation_column="species",
                          one_table_per_file=False)
    raw = pd.read_csv(table, sep="\t")
    assert list(raw["Begin Path"]) == [str(a), str(b)]
    assert list(raw["Begin Time (s)"]) == [1.0, 3.5]  # b starts after a's 3 s
    assert list(raw["End Time (s)"]) == [1.25, 4.5]
    assert list(raw["High Freq (Hz)"]) == [4000.0, 1000.0]
    back = read_raven(table)
    assert back["file"].tolist() == [str(a), str(b)]
    assert back["start_time"].tolist() == [1.0, 0.5] and back["end_time"].tolist() == [1.25, 1.5]
    assert back["annotation"].tolist() == ["y", "x"]


def test_multi_file_without_readable_audio_falls_back_to_offsets(tmp_path):
    events = pd.DataFrame({"file": ["/no/a.wav", "/no/b.wav"], "start_time": [1.0, 2.0],
                           "end_time": [2.0, 3.0], "annotation": ["x", "x"]})
    [table] = write_raven(events, tmp_path, one_table_per_file=False)
    raw = pd.read_csv(table, sep="\t")
    assert list(raw["Begin Time (s)"]) == [1.0, 2.0]
    assert list(raw["High Freq (Hz)"]) == [0.0, 0.0]


def test_write_raven_accepts_indexed_events_and_checks_columns(tmp_path):
    events = pd.DataFrame({"file": ["a.wav"], "start_time": [0.0], "end_time": [1.0],
                           "bird": ["x"]}).set_index(["file", "start_time", "end_time"])
    [table] = write_raven(events, tmp_path, annotation_column="bird")
    assert read_raven(table)["annotation"].tolist() == ["x"]
    with pytest.raises(ParameterError, match=r"\['annotation'\]"):
        write_raven(events, tmp_path)
    bad = pd.DataFrame({"file": ["a"], "start_time": [2.0], "end_time": [1.0],
                        "annotation": ["x"]})
    with pytest.raises(ParameterError, match="before"):
        write_raven(bad, tmp_path)


# ------------------------------------------------------------------------- clip_labels
def ann(rows):
    return pd.DataFrame(rows, columns=["file", "start_time", "end_time", "annotation"])


def test_clip_labels_straddle_and_min_label_overlap():
    a = ann([["f", 0.8, 1.6, "x"]])
    got = clip_labels(a, 1.0, min_label_overlap=0.25, file_durations={"f": 3.0})
    assert got.index.names == ["file", "start_time", "end_time"]
    assert got.index.get_level_values("start_time").tolist() == [0.0, 1.0, 2.0]
    assert got["x"].tolist() == [0, 1, 0]
    got = clip_labels(a, 1.0, min_label_overlap=0.1, file_durations={"f": 3.0})
    assert got["x"].tolist() == [1, 1, 0]
    assert got["x"].dtype.kind == "i"


def test_clip_labels_short_annotations_and_touching():
    a = ann([["f", 0.3, 0.4, "inside"], ["f", 0.95, 1.05, "split"], ["f", 2.0, 2.5, "touch"]])
    got = clip_labels(a, 1.0, min_label_overlap=0.25, file_durations={"f": 3.0})
    assert got["inside"].tolist() == [1, 0, 0]  # shorter than 0.25 s but wholly inside
    assert got["split"].tolist() == [0, 0, 0]  # 0.05 s in each clip
    assert got["touch"].tolist() == [0, 0, 1]  # starts at clip 2's start, ends inside it
    got0 = clip_labels(a, 1.0, min_label_overlap=0.0, file_durations={"f": 3.0})
    assert got0["split"].tolist() == [1, 1, 0]
    assert got0["touch"].tolist() == [0, 0, 1]  # touching clip 1's end is no overlap
    point = clip_labels(ann([["f", 1.0, 1.0, "p"]]), 1.0, min_label_overlap=0.0,
                        file_durations={"f": 3.0})
    assert point["p"].tolist() == [0, 1, 0]  # a zero-length event belongs to the clip it starts


def test_clip_labels_with_clip_overlap():
    a = ann([["f", 1.2, 1.8, "x"]])
    got = clip_labels(a, 2.0, clip_overlap=1.0, min_label_overlap=0.5,
                      file_durations={"f": 4.0})
    idx = got.index
    assert idx.get_level_values("start_time").tolist() == [0.0, 1.0, 2.0]
    assert idx.get_level_values("end_time").tolist() == [2.0, 3.0, 4.0]
    assert got["x"].tolist() == [1, 1, 0]


def test_clip_labels_fractional_step_has_clean_times():
    got = clip_labels(ann([["f", 0.0, 0.2, "x"]]), 0.3, clip_overlap=0.2, min_label_overlap=0.05,
                      file_durations={"f": 1.0})
    starts = got.index.get_level_values("start_time").to_numpy()
    assert len(starts) == 8 and starts[3] == 0.3 and starts[-1] == 0.7
    assert got["x"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_clip_labels_final_clip():
    a = ann([["f", 3.2, 3.5, "x"]])
    dropped = clip_labels(a, 1.0, file_durations={"f": 3.5})
    assert dropped.index.get_level_values("end_time").tolist() == [1.0, 2.0, 3.0]
    assert dropped["x"].sum() == 0
    full = clip_labels(a, 1.0, file_durations={"f": 3.5}, final_clip="full")
    assert full.index[-1] == ("f", 2.5, 3.5) and full["x"].tolist() == [0, 0, 0, 1]
    exact = clip_labels(a, 1.0, file_durations={"f": 3.0}, final_clip="full")
    assert len(exact) == 3  # no duplicate last clip when the grid already ends at the file end
    short = clip_labels(ann([["g", 0.1, 0.5, "x"]]), 2.0, file_durations={"g": 1.5},
                        final_clip="full")
    assert list(short.index) == [("g", 0.0, 1.5)] and short["x"].tolist() == [1]
    assert clip_labels(ann([["g", 0.1, 0.5, "x"]]), 2.0, file_durations={"g": 1.5}).empty


def test_clip_labels_classes_and_unannotated_files():
    a = ann([["f", 0.0, 1.0, "x"], ["f", 1.0, 2.0, "y"], ["f", 0.0, 2.0, "z"]])
    got = clip_labels(a, 1.0, classes=["y", "x", "w"], file_durations={"f": 2.0, "empty": 2.0})
    assert list(got.columns) == ["y", "x", "w"]
    assert got.loc["f", ["y", "x", "w"]].to_numpy().tolist() == [[0, 1, 0], [1, 0, 0]]
    assert got.loc["empty"].to_numpy().sum() == 0 and len(got.loc["empty"]) == 2


def test_clip_labels_durations_from_audio_or_last_annotation(tmp_path):
    wav = write_wav(tmp_path / "r.wav", 4.0)
    a = ann([[str(wav), 0.0, 0.5, "x"], ["/missing.wav", 1.0, 2.6, "x"]])
    with pytest.warns(UserWarning, match="missing.wav.*last annotation"):
        got = clip_labels(a, 1.0)
    assert len(got.loc[str(wav)]) == 4
    assert got.loc["/missing.wav"]["x"].tolist() == [0, 1]  # 2.6 s: two whole clips


def test_clip_labels_bad_input():
    a = ann([["f", 0.0, 1.0, "x"]])
    with pytest.raises(ParameterError, match="clip_overlap"):
        clip_labels(a, 1.0, clip_overlap=1.0, file_durations={"f": 2})
    with pytest.raises(ParameterError, match="clip_duration"):
        clip_labels(a, 0.0)
    with pytest.raises(ParameterError, match="final_clip"):
        clip_labels(a, 1.0, final_clip="extend", file_durations={"f": 2})
    with pytest.raises(ParameterError, match="annotation"):
        clip_labels(a.drop(columns="annotation"), 1.0)
    with pytest.raises(AnnotationError, match="no class"):
        clip_labels(ann([["f", 0.0, 1.0, ""]]), 1.0, file_durations={"f": 2})


# ------------------------------------------------------------------------- real data
FINCH = DATA / "bengalese_finch"


@pytest.fixture(scope="module")
def finch():
    if not (FINCH / "raven").is_dir():
        pytest.skip(f"Bengalese finch data not found at {FINCH} (shared data folder absent)")
    return read_raven(FINCH / "raven", audio_files=FINCH / "audio")


def test_finch_raven_tables_match_annotations_csv(finch):
    ref = pd.read_csv(FINCH / "annotations.csv")
    assert len(finch) == len(ref) == 1048
    got = finch.assign(name=finch["file"].map(lambda f: Path(f).name))
    got = got.sort_values(["name", "start_time"]).reset_index(drop=True)
    ref = ref.assign(name=ref["filename"].map(lambda f: Path(f).name))
    ref = ref.sort_values(["name", "onset_s"]).reset_index(drop=True)
    assert got["name"].tolist() == ref["name"].tolist()
    assert np.allclose(got["start_time"], ref["onset_s"], atol=1e-5)
    assert np.allclose(got["end_time"], ref["offset_s"], atol=1e-5)
    assert got["annotation"].tolist() == ref["label"].tolist()
    assert all(Path(f).is_file() for f in finch["file"].unique())


def test_finch_clip_labels_reproduce_shipped_1s_labels(finch):
    """clip_labels_1s.csv: 1-s clips from 0, partial last clip dropped; a syllable type is
    present when it overlaps the clip by >= 0.02 s, and song is present when any syllable
    overlaps it at all (both conventions give the same song column on this data)."""
    ref = pd.read_csv(FINCH / "clip_labels_1s.csv")
    for overlap in (0.02, 0.0):
        got = clip_labels(finch, 1.0, min_label_overlap=overlap).reset_index()
        got["filename"] = "audio/" + got["file"].map(lambda f: Path(f).name)
        merged = ref.merge(got, on=["filename", "start_time", "end_time"], how="outer",
                           indicator=True)
        assert (merged["_merge"] == "both").all() and len(merged) == len(ref) == 174
        classes = sorted(finch["annotation"].unique())
        assert (merged["song_present"] == merged[classes].max(axis=1)).all()
    got = clip_labels(finch, 1.0, min_label_overlap=0.02).reset_index()
    got["filename"] = "audio/" + got["file"].map(lambda f: Path(f).name)
    merged = ref.merge(got, on=["filename", "start_time", "end_time"])
    present = merged[classes].to_numpy(bool)
    listed = [";".join(c for c, p in zip(classes, row) if p) for row in present]
    assert listed == merged["syllables_present"].fillna("").tolist()
