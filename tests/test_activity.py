"""Activity tables with effort, and their plots."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import soundfile  # noqa: E402

from soundscape.activity import (activity, plot_dates, plot_heatmap, plot_hour_of_day,  # noqa: E402
                                 recording_table, site_of)
from soundscape.errors import ParameterError  # noqa: E402


@pytest.fixture()
def night(tmp_path):
    """Site A: 30-min files at 22:00, 23:00 and (next day) 01:00 (a gap at midnight); site B: one."""
    rate, files = 100, []
    for name in ["A_20240501_220000.wav", "A_20240501_230000.wav", "A_20240502_010000.wav",
                 "B_20240501_220000.wav"]:
        path = tmp_path / name
        soundfile.write(path, np.zeros(rate * 1800, dtype=np.float32), rate, subtype="PCM_16")
        files.append(str(path))
    det = pd.DataFrame({"file": [files[0]] * 3 + [files[2]] + [files[3]],
                        "annotation": "woodcock",
                        "start_time": [10.0, 100.0, 1790.0, 5.0, 60.0],
                        "end_time": [12.0, 102.0, 1792.0, 7.0, 62.0]})
    return tmp_path, files, det


def test_site_of():
    assert site_of("/x/NORTH_1_20240501_193000.WAV") == "NORTH_1"
    assert site_of("/data/pond/rec001.wav") == "pond"


def test_hourly_activity_counts_and_effort(night):
    root, files, det = night
    table = activity(det, recordings=root, by="hour")
    a = table[table["site"] == "A"].set_index("period")
    assert list(a.index.hour) == [22, 23, 1]  # midnight unrecorded: absent, not zero
    assert list(a["detections"]) == [3, 0, 1]
    assert np.allclose(a["effort_minutes"], 30.0)
    assert a["detections_per_hour"].iloc[0] == pytest.approx(6.0)
    b = table[table["site"] == "B"]
    assert b["detections"].tolist() == [1] and b["effort_minutes"].tolist() == [30.0]


def test_hour_of_day_day_per_file_and_zone(night):
    root, files, det = night
    hod = activity(det, recordings=root, by="hour_of_day")
    a = hod[hod["site"] == "A"].set_index("period")
    assert a.loc[22, "detections"] == 3 and a.loc[1, "effort_minutes"] == 30.0
    day = activity(det, recordings=root, by="day", per="file")
    assert len(day) == 4 and day["detections"].sum() == 5
    local = activity(det, recordings=root, by="hour_of_day", output_tz="Etc/GMT+2")  # UTC-2
    assert sorted(local[local["site"] == "A"]["period"]) == [20, 21, 23]
    # effort split across hour boundaries: a 30-min file starting 22:45
    recs = pd.DataFrame({"file": ["x.wav"], "start_datetime": ["2024-05-01 22:45"],
                         "duration": [1800.0]})
    one = activity(pd.DataFrame({"file": ["x.wav"], "start_time": [1.0]}), recordings=recs)
    assert one["effort_minutes"].tolist() == [15.0, 15.0]
    assert one["detections"].tolist() == [1, 0]


def test_errors(night):
    root, files, det = night
    with pytest.raises(ParameterError, match="by must be"):
        activity(det, recordings=root, by="week")
    with pytest.raises(ParameterError, match="not among the recordings"):
        activity(det.assign(file="elsewhere/other.wav"), recordings=root)
    assert len(recording_table(root)) == 4


def test_plots_return_figures_and_write_files(night, tmp_path):
    root, files, det = night
    hourly = activity(det, recordings=root, by="hour")
    for plot, table, name in [(plot_hour_of_day, hourly, "hod.png"),
                              (plot_dates, activity(det, recordings=root, by="day"), "dates.png"),
                              (plot_heatmap, hourly, "heat.png")]:
        fig = plot(table, fname=tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000 and fig.axes
    with pytest.raises(ParameterError, match="by in"):
        plot_heatmap(activity(det, recordings=root, by="day"))


def test_cli_writes_table_and_plots(night, tmp_path):
    from soundscape.cli import main

    root, files, det = night
    det.to_csv(tmp_path / "det.csv", index=False)
    out = tmp_path / "out"
    status = main(["activity", str(tmp_path / "det.csv"), "--recordings", str(root), "--by",
                   "hour_of_day", "--output", str(tmp_path / "act.csv"), "--plots", str(out)])
    assert status == 0
    table = pd.read_csv(tmp_path / "act.csv")
    assert table["detections"].sum() == 5 and set(table["site"]) == {"A", "B"}
    assert sorted(p.name for p in out.iterdir()) == ["dates.png", "heatmap.png", "hour_of_day.png"]
    assert main(["activity", str(tmp_path / "det.csv"), "--recordings", str(root),
                 "--by", "week"]) == 2
