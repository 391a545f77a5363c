"""The synthetic sample data: regenerated files match the committed ones, and sound right."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundscape import sample_data
from soundscape.audio import Audio
from soundscape.spectrogram import Spectrogram

COMMITTED = Path(__file__).resolve().parents[1] / "sample_data"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample_data")
    paths = sample_data.generate(out)
    return out, paths


def _pcm(path: Path) -> np.ndarray:
    data, _ = sf.read(str(path), dtype="int16")
    return data.astype(np.int32)


def test_regenerated_files_match_committed(regenerated):
    out, paths = regenerated
    committed_csv = COMMITTED / "woodcock_labeled_data" / "woodcock_labels.csv"
    assert paths["labels"].read_text() == committed_csv.read_text()
    for clip in paths["clips"]:
        mine = _pcm(clip)
        theirs = _pcm(COMMITTED / "woodcock_labeled_data" / clip.name)
        assert mine.shape == theirs.shape
        assert np.max(np.abs(mine - theirs)) <= 1, clip.name  # allow 1 LSB of float rounding
    table = COMMITTED / "field_recording" / "field_recording.Table.1.selections.txt"
    assert paths["selections"].read_text() == table.read_text()
    field = _pcm(COMMITTED / "field_recording" / "field_recording.flac")
    assert np.max(np.abs(_pcm(paths["field_recording"]) - field)) <= 1


def test_labels_follow_the_tutorial_layout():
    labels = pd.read_csv(COMMITTED / "woodcock_labeled_data" / "woodcock_labels.csv")
    assert list(labels.columns) == ["filename", "woodcock", "sound_type"]
    assert labels.shape == (29, 3)
    counts = labels.groupby(["woodcock", "sound_type"]).size().to_dict()
    assert counts == {("present", "song"): 20, ("present", "call"): 2, ("absent", "na"): 7}
    # the tutorial looks at row 0 (a song), row 1 (an absence) and rows 8 and 22 (calls)
    assert labels.loc[0, "sound_type"] == "song"
    assert labels.loc[1, "woodcock"] == "absent"
    assert set(labels.loc[[8, 22], "sound_type"]) == {"call"}
    assert labels["filename"].str.fullmatch(r"[0-9a-f]{32}\.wav").all()
    for name in labels["filename"]:
        info = sf.info(str(COMMITTED / "woodcock_labeled_data" / name))
        assert info.samplerate == 22050 and info.frames == 44100 and info.channels == 1


def _band_energy(path: Path, low: float, high: float) -> np.ndarray:
    spec = Spectrogram.from_audio(Audio.from_file(path)).bandpass(low, high)
    power = 10.0 ** (spec.spectrogram.astype(np.float64) / 10)
    return power.sum(axis=0)


def test_peents_stand_out_in_their_band_and_absences_are_not_quieter_overall():
    labels = pd.read_csv(COMMITTED / "woodcock_labeled_data" / "woodcock_labels.csv")
    folder = COMMITTED / "woodcock_labeled_data"
    songs = labels[labels.sound_type == "song"].filename
    absent = labels[labels.woodcock == "absent"].filename
    # each song has a frame far louder in 2-4.5 kHz than its own median frame
    contrast = [np.max(e) / np.median(e) for e in (_band_energy(folder / f, 2000, 4500) for f in songs)]
    assert np.median(contrast) > 10
    # classes are not separable by overall loudness: some absences are louder than some songs
    rms = {f: float(np.sqrt(np.mean(Audio.from_file(folder / f).samples ** 2))) for f in labels.filename}
    assert max(rms[f] for f in absent) > min(rms[f] for f in songs)


def test_field_recording_truth_table_is_consistent():
    folder = COMMITTED / "field_recording"
    info = sf.info(str(folder / "field_recording.flac"))
    assert info.frames / info.samplerate == pytest.approx(600.0)
    table = pd.read_csv(folder / "field_recording.Table.1.selections.txt", sep="\t")
    assert {"Begin Time (s)", "End Time (s)", "Species"} <= set(table.columns)
    assert len(table) == sample_data.FIELD_PEENTS
    assert (table["Begin Time (s)"] >= 0).all()
    assert (table["End Time (s)"] <= 600).all()
    assert (table["End Time (s)"] > table["Begin Time (s)"]).all()
    assert set(table["Species"]) == {"woodcock"}


def test_other_seed_gives_other_audio_and_long_recordings_are_cheap():
    a, truth_a = sample_data.synthetic_recording(20.0, 16000, seed=1, n_peents=2)
    b, _ = sample_data.synthetic_recording(20.0, 16000, seed=2, n_peents=2)
    assert a.shape == b.shape == (320000,)
    assert not np.allclose(a, b)
    assert len(truth_a) == 2 and (truth_a.end_time <= 20.0).all()
    with pytest.raises(ValueError, match="n_peents"):
        sample_data.synthetic_recording(2.0, 16000, seed=1, n_peents=100)


def test_command_line_writes_the_files(tmp_path):
    assert sample_data.main(["--out", str(tmp_path / "out"), "--seed", "3"]) == 0
    assert (tmp_path / "out" / "woodcock_labeled_data" / "woodcock_labels.csv").exists()
    assert (tmp_path / "out" / "field_recording" / "field_recording.flac").exists()
