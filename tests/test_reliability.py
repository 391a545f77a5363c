"""Bad inputs handled cleanly: file lists, truncated recordings, duplicate labels."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from _audio_files import mp3_in_wav
from soundscape.audio import Audio, audio_info
from soundscape.errors import AudioFileError
from soundscape.model_file import Detector
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
PREP = Preprocessing(sample_rate=RATE, clip_duration=1.0, window_samples=256, overlap_samples=128,
                     height=32, width=32, channels=1)
MP3_OK = "MP3" in sf.available_formats()
needs_mp3 = pytest.mark.skipif(not MP3_OK, reason=f"libsndfile {sf.__libsndfile_version__} has no MP3")


@register("test_reliability_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(2, num_classes))


def _detector() -> Detector:
    torch.manual_seed(0)
    return Detector(build("test_reliability_tiny", 2), "test_reliability_tiny", ["a", "b"], False, PREP)


def _noise(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * rate)).astype(np.float32)


def _cut(path: Path, fraction: float) -> Path:
    """A copy of `path` without its last `fraction` of bytes (the header is unchanged)."""
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * (1 - fraction))])
    return out


# ---------------------------------------------------------------------------- item 7: file lists
@pytest.fixture
def bad_entries(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _noise(3.0), RATE)
    folder_wav = tmp_path / "x.wav"
    folder_wav.mkdir()
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop.name)
    empty = tmp_path / "empty_site"
    empty.mkdir()
    return {"good": good, "folder": folder_wav, "glob": str(tmp_path / "nothing*.flac"),
            "loop": loop, "empty": empty}


def test_bad_entries_in_a_file_list_fail_one_by_one(bad_entries, tmp_path):
    from soundscape.torch.predict import predict_recordings
    from soundscape.torch.windows import find_audio_files

    files = [bad_entries[k] for k in ("folder", "good", "glob", "loop", "empty")]
    found = find_audio_files(files)
    assert found == [str(f) for f in files]  # nothing dropped, nothing raised
    result = predict_recordings(_detector(), files, output_dir=tmp_path / "out", progress=False)
    assert set(result.index.get_level_values("file")) == {str(bad_entries["good"])}
    reasons = {e["file"]: e["error"] for e in result.attrs["errors"]}
    assert "is a folder, not an audio file" in reasons[str(bad_entries["folder"])]
    assert "is a folder, not an audio file" in reasons[str(bad_entries["empty"])]
    assert "no files match the pattern" in reasons[bad_entries["glob"]]
    assert "symbolic link loop" in reasons[str(bad_entries["loop"])]
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert len(errors) == 4


def test_file_key_survives_a_symlink_loop(bad_entries):
    from soundscape.torch.outputs import file_key

    assert file_key(bad_entries["loop"]) == os.path.abspath(bad_entries["loop"])


def test_links_in_a_folder_are_reported_not_skipped(tmp_path):
    from soundscape.torch.windows import find_audio_files

    sf.write(tmp_path / "a.wav", _noise(1.0), RATE)
    (tmp_path / "loop.wav").symlink_to("loop.wav")
    (tmp_path / "gone.flac").symlink_to("missing.flac")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to("..")  # a folder loop: not followed
    assert find_audio_files(tmp_path) == [str(tmp_path / n) for n in ("a.wav", "gone.flac", "loop.wav")]
    with pytest.raises(FileNotFoundError, match="broken symbolic link"):
        audio_info(tmp_path / "gone.flac")
    with pytest.raises(AudioFileError, match="symbolic link loop"):
        Audio.from_file(tmp_path / "loop.wav")


def test_a_single_missing_or_empty_input_is_still_an_error(tmp_path):
    from soundscape.torch.windows import find_audio_files

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no audio files"):
        find_audio_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_audio_files(tmp_path / "recordings")
    with pytest.raises(FileNotFoundError, match="no files match the pattern"):
        find_audio_files(str(tmp_path / "*.wav"))
    assert find_audio_files([tmp_path / "missing.wav"]) == [str(tmp_path / "missing.wav")]


# ---------------------------------------------------------------------------- item 8: truncation
@pytest.mark.parametrize("ext", ["wav", "flac", pytest.param("mp3", marks=needs_mp3)])
def test_slightly_truncated_recordings_are_read_with_a_warning(tmp_path, ext, caplog):
    path = tmp_path / f"rec.{ext}"
    sf.write(path, _noise(10.0), RATE)
    cut = _cut(path, 0.003)  # a recorder stopped while writing: 0.3 % of the bytes missing
    with caplog.at_level(logging.WARNING, logger="soundscape.audio"):
        info = audio_info(cut)
        audio = Audio.from_file(cut)
    assert 9.4 < info.duration < 10.0 and len(audio) == info.frames
    assert np.array_equal(audio.samples[:1000], Audio.from_file(path).samples[:1000])
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "cut_rec" in warning and "truncated" in warning and "s (" in warning  # the shortfall
    end = Audio.from_file(cut, offset=9.0)
    assert 0 < end.duration <= 1.0
    with pytest.raises(AudioFileError, match="truncated"):
        Audio.from_file(cut, max_truncation=0)  # strict: every truncated file refused


@pytest.mark.parametrize("ext", ["wav", "flac", pytest.param("mp3", marks=needs_mp3)])
def test_badly_truncated_recordings_are_refused(tmp_path, ext):
    path = tmp_path / f"rec.{ext}"
    sf.write(path, _noise(10.0), RATE)
    cut = _cut(path, 0.2)  # 2 s missing: above the allowance min(1 s, 5 %)
    with pytest.raises(AudioFileError, match=r"cut_rec.*truncated"):
        audio_info(cut)
    with pytest.raises(AudioFileError, match=r"cut_rec.*truncated"):
        Audio.from_file(cut)
    with pytest.raises(AudioFileError, match="truncated"):  # 20 % is over the 5 % cap too
        audio_info(cut, max_truncation=float("inf"))


def test_allowance_is_the_smaller_of_seconds_and_fraction():
    from soundscape.audio import truncation_allowance

    assert truncation_allowance(2.0) == pytest.approx(0.1)  # 5 % of a 2-s clip
    assert truncation_allowance(3600.0) == 1.0  # 1 s of an hour
    assert truncation_allowance(3600.0, max_truncation=0) == 0.0
    with pytest.raises(ValueError, match="max_truncation"):
        truncation_allowance(10.0, max_truncation=-1)


def test_predict_recordings_scores_a_slightly_truncated_wav(tmp_path):
    from soundscape.torch.predict import predict_recordings

    path = tmp_path / "rec.wav"
    sf.write(path, _noise(10.0), RATE)
    cut = _cut(path, 0.005)
    result = predict_recordings(_detector(), [cut], progress=False)
    assert result.attrs["errors"] == [] and len(result) == 9


@needs_mp3
def test_mpeg_decoder_messages_do_not_leak_to_stderr(tmp_path, capfd):
    path = mp3_in_wav(tmp_path / "recorder.wav", _noise(3.0, 16000), 16000, tail=b"\0" * 2000)
    probe = subprocess.run([sys.executable, "-c", f"import soundfile; soundfile.read({str(path)!r})"],
                           capture_output=True, text=True)
    if not probe.stderr.strip():
        pytest.skip("this libmpg123 prints nothing for the test file")
    assert sf.info(str(path)).subtype == "MPEG_LAYER_III"
    capfd.readouterr()
    print("before", file=sys.stderr, flush=True)
    info = audio_info(path)
    audio = Audio.from_file(path, offset=1.0, duration=1.0)
    print("after", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert info.frames > 0 and len(audio) == 16000
    assert probe.stderr.strip().splitlines()[0] not in err
    assert err.splitlines() == ["before", "after"]  # other output still gets through


# ---------------------------------------------------------------------------- item 9: labels
def _labels(n_files: int = 20, repeats: int = 2) -> pd.DataFrame:
    rows = [{"file": f"audio/{i:02d}.wav", "Labels": "song" if i % 2 else "none"}
            for i in range(n_files)]
    return pd.DataFrame(rows * repeats).sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.mark.parametrize("stratify", [None, "Labels"])
def test_duplicate_rows_never_straddle_the_split(stratify):
    from soundscape.data_selection import train_valid_split

    df = _labels()
    for seed in range(5):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train, valid = train_valid_split(df, stratify_from_column=stratify, random_state=seed,
                                             train_size=0.75)
        assert set(train["file"]).isdisjoint(valid["file"]), "a file is on both sides"
        assert any("20 row(s) repeat the clip of an earlier row" in str(w.message) for w in caught)
        assert len(train) + len(valid) == len(df)
        # a quarter of the 20 distinct clips (stratified: 3 of each class's 10)
        assert len(set(valid["file"])) == (5 if stratify is None else 6)


def test_binary_split_groups_paths_in_the_index():
    from soundscape.data_selection import binary_train_valid_split

    df = _labels().set_index("file")
    with pytest.warns(UserWarning, match="the index|'file'"):
        train, valid = binary_train_valid_split(df, "song")
    assert set(train.index).isdisjoint(valid.index)


def test_clips_of_one_file_are_still_split_by_clip():
    from soundscape.data_selection import train_valid_split

    df = pd.DataFrame({"file": ["a.wav"] * 10, "start_time": np.arange(10.0),
                       "end_time": np.arange(10.0) + 1, "y": [0, 1] * 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # distinct clips: no duplicate warning
        train, valid = train_valid_split(df, stratify_from_column="y")
    assert (len(train), len(valid)) == (8, 2)
    twice = pd.concat([df, df.iloc[:2]], ignore_index=True)
    with pytest.warns(UserWarning, match="'file' and 'start_time' and 'end_time'"):
        train, valid = train_valid_split(twice, stratify_from_column="y")
    key = lambda d: set(zip(d["file"], d["start_time"]))  # noqa: E731
    assert key(train).isdisjoint(key(valid))


def test_conflicting_labels_of_a_repeated_clip_are_named():
    from soundscape.data_selection import train_valid_split

    df = _labels(repeats=1)
    df = pd.concat([df, df.iloc[:1].assign(Labels="other")], ignore_index=True)
    with pytest.warns(UserWarning, match="different 'Labels' values"):
        train_valid_split(df, stratify_from_column="Labels", file_column="file")


def _raven(path: Path, rows: list[list]) -> Path:
    header = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
              "High Freq (Hz)", "Annotation"]
    path.write_text("\n".join("\t".join(str(v) for v in r) for r in [header] + rows) + "\n")
    return path


def test_duplicate_raven_selections_are_warned_about(tmp_path):
    from soundscape.annotations import read_raven

    sf.write(tmp_path / "rec.wav", np.zeros(RATE * 3, np.float32), RATE)
    table = _raven(tmp_path / "rec.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.5, 0.9, 100, 2000, "wren"],
        [2, "Spectrogram 1", 1, 1.2, 1.3, 100, 2000, "wren"],
        [3, "Spectrogram 1", 1, 0.5, 0.9, 100, 2000, "wren"],  # entered twice
        [2, "Spectrogram 1", 1, 2.0, 2.2, 100, 2000, "robin"],  # number used twice
    ])
    with pytest.warns(UserWarning) as record:
        df = read_raven(table)
    messages = " | ".join(str(w.message) for w in record)
    assert "Selection 3 of" in messages and "repeats Selection 1" in messages
    assert "Selection 2 on lines [3, 5]" in messages
    assert len(df) == 4  # warned about, not dropped


def test_annotations_past_the_end_of_the_recording_are_warned_about(tmp_path):
    from soundscape.annotations import clip_labels, read_raven

    sf.write(tmp_path / "rec.wav", np.zeros(RATE * 3, np.float32), RATE)
    table = _raven(tmp_path / "rec.Table.1.selections.txt", [
        [1, "Spectrogram 1", 1, 0.5, 0.9, 100, 2000, "wren"],
        [7, "Spectrogram 1", 1, 2.5, 4.2, 100, 2000, "wren"],  # the file lasts 3 s
        [8, "Spectrogram 1", 1, 2.0, 3.0, 100, 2000, "wren"],  # ends exactly at the end: fine
    ])
    ann = read_raven(table)
    with pytest.warns(UserWarning, match=r"1 annotation\(s\) end after the end.*Selection 7 of "
                                         r".*rec\.Table\.1\.selections\.txt ends at 4\.200 s but "
                                         r".*rec\.wav lasts 3\.000 s"):
        labels = clip_labels(ann, 1.0)
    assert len(labels) == 3
