"""Recording start times from AudioMoth comments, GUANO, file names and tables."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import soundfile

from soundscape.audio import Audio
from soundscape.errors import ParameterError
from soundscape.timestamps import (add_datetimes, parse_filename_time, read_wav_comment,
                                   recording_metadata, recording_start, stamp_audio)

COMMENT = ("Recorded at 19:30:00 01/05/2024 (UTC+1) by AudioMoth 24F319055FDF1B37 at medium "
           "gain while battery was 4.3V and temperature was 12.5C.")


def _wav(path, seconds=2.0, comment=None, rate=8000):
    with soundfile.SoundFile(path, "w", rate, 1, "PCM_16") as f:
        if comment:
            f.comment = comment
        f.write(np.zeros(int(seconds * rate)))
    return path


def test_audiomoth_comment_gives_time_and_recorder_state(tmp_path):
    path = _wav(tmp_path / "5E2A1B00.WAV", comment=COMMENT)
    assert read_wav_comment(path) == COMMENT
    meta = recording_metadata(path)
    assert meta["start_datetime"] == datetime(2024, 5, 1, 18, 30, tzinfo=timezone.utc)
    assert meta["time_source"] == "audiomoth_comment"
    assert (meta["device_id"], meta["gain"], meta["battery_v"], meta["temperature_c"]) == (
        "AudioMoth 24F319055FDF1B37", "medium", 4.3, 12.5)
    audio = stamp_audio(Audio.from_file(path, offset=1.0))
    assert audio.metadata["start_datetime"] == datetime(2024, 5, 1, 18, 30, 1, tzinfo=timezone.utc)


def test_guano_timestamp(tmp_path):
    guano = pytest.importorskip("guano", reason="the metadata extra (guano) is not installed")
    path = _wav(tmp_path / "bat.wav")
    g = guano.GuanoFile(str(path))
    g["Timestamp"] = datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)
    g["Serial"] = "SM4-123"
    g.write()
    meta = recording_metadata(path)
    assert meta["start_datetime"] == datetime(2024, 5, 1, 20, 0, tzinfo=timezone.utc)
    assert meta["time_source"] == "guano" and meta["device_id"] == "SM4-123"
    assert soundfile.info(path).duration == pytest.approx(2.0)


@pytest.mark.parametrize("name", ["20240501_193000.WAV", "SITE_20240501_193000.wav",
                                  "a_2024-05-01_19-30-00.flac", "S4A_20240501T193000.wav"])
def test_common_filename_patterns(name):
    assert parse_filename_time(name) == datetime(2024, 5, 1, 19, 30, tzinfo=timezone.utc)


def test_user_pattern_and_zone():
    got = parse_filename_time("rec 01.05.2024 1930.wav", pattern="%d.%m.%Y %H%M",
                              tz="America/New_York")
    assert got.astimezone(timezone.utc) == datetime(2024, 5, 1, 23, 30, tzinfo=timezone.utc)
    regex = r"(?P<d>\d{2})(?P<m>\d{2})(?P<Y>\d{4})-(?P<H>\d{2})(?P<M>\d{2})"
    assert parse_filename_time("01052024-1930.wav", pattern=regex).hour == 19


def test_table_of_starts_wins_and_errors_name_the_file(tmp_path):
    path = _wav(tmp_path / "20240501_193000.wav")
    table = pd.DataFrame({"file": ["20240501_193000.wav"], "start_datetime": ["2024-06-01 01:00"]})
    assert recording_start(path, starts=table).month == 6
    with pytest.raises(ParameterError, match="20240501_193000.wav: unparseable"):
        recording_start(path, starts={str(path): "not a time"})
    with pytest.raises(ParameterError, match="nameless.wav.*start time"):
        recording_start(_wav(tmp_path / "nameless.wav"))
    with pytest.raises(ParameterError, match="time zone"):
        recording_start(path, tz="Mars/Olympus")


def test_add_datetimes_on_score_and_detection_tables(tmp_path):
    path = str(_wav(tmp_path / "SITE_20240501_235959.wav"))
    scores = pd.DataFrame({"woodcock": [0.1, 0.9]}, index=pd.MultiIndex.from_tuples(
        [(path, 0.0, 1.0), (path, 1.0, 2.0)], names=["file", "start_time", "end_time"]))
    out = add_datetimes(scores)
    assert list(out.index.names) == ["file", "start_time", "end_time"]
    assert out["start_datetime"].iloc[1] == pd.Timestamp("2024-05-02 00:00:00", tz="UTC")
    assert out["end_datetime"].iloc[1] == pd.Timestamp("2024-05-02 00:00:01", tz="UTC")
    events = pd.DataFrame({"file": [path], "annotation": ["woodcock"], "start_time": [0.5],
                           "end_time": [1.5]})
    local = add_datetimes(events, output_tz="Europe/Berlin")
    assert str(local["start_datetime"].dt.tz) == "Europe/Berlin"
    assert local["start_datetime"].iloc[0] == pd.Timestamp("2024-05-01 23:59:59.5", tz="UTC")
    assert (local["end_datetime"] - local["start_datetime"]).iloc[0] == timedelta(seconds=1)
