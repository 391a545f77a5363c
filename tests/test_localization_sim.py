"""Localization on simulated physics: a real call (ESC-10 dog bark) propagated into a grid.

Each test writes the recorders' WAV files to a tmp folder: propagation delays as FFT phase
shifts (fractional samples), 1/r spreading, white noise at a given SNR and a small unknown
clock error per recorder; `localize` must find the sources again. Tests that need the
real clip skip without ``shared/data``; the synthetic-chirp ones always run.
"""

import numpy as np
import pandas as pd
import pytest

from soundscape import Audio
from soundscape.errors import ParameterError
from soundscape.localization import (
    RecorderArray,
    chirp,
    grid_positions,
    localize,
    plot_localizations,
    simulate_array,
    simulated_detections,
)

RATE = 22050
GRID = grid_positions(3, 25.0)  # 9 recorders over 50 x 50 m
SOURCES = np.array([[12.0, 31.0], [40.0, 8.0], [26.0, 24.0], [5.0, 44.0], [33.0, 41.0]])


@pytest.fixture(scope="module")
def dog_bark(shared_data) -> np.ndarray:
    """0.3 s of the loudest part of an ESC-10 dog bark, band-limited to 500-4000 Hz."""
    clip = Audio.from_file(shared_data / "esc10" / "audio" / "1-100032-A.ogg", sample_rate=RATE)
    x = clip.bandpass(500, 4000).samples.astype(float)
    n = int(0.3 * RATE)
    i = int(np.argmax(np.convolve(x**2, np.ones(n), "valid")))
    return x[i : i + n] * np.hanning(n)


def _detections(table, truth, recorders, band=(500, 4000), cls="dog"):
    """One detection per source on its nearest recorder, around the true arrival."""
    return simulated_detections(table, truth, recorders, band, annotation=cls)


def _run(call, tmp_path, snr, sources=SOURCES, recorders=GRID, seed=0, **kw):
    emit = 0.3 + 0.7 * np.arange(len(sources))
    table, truth = simulate_array(
        call,
        RATE,
        recorders,
        sources,
        emit,
        tmp_path,
        duration=emit[-1] + 1.0,
        snr_db=snr,
        clock_jitter=5e-5,
        seed=seed,
        **kw,
    )
    array = RecorderArray(table)
    out = localize(_detections(table, truth, recorders), array)
    err = np.hypot(out["x"] - truth["x"], out["y"] - truth["y"]).to_numpy()
    return out, err, array, truth


def test_simulated_delays_match_geometry(tmp_path):
    call = chirp(RATE)
    table, truth = simulate_array(
        call, RATE, GRID[:2], SOURCES[:1], [0.2], tmp_path, duration=1.0, snr_db=60, speed=343.0
    )
    for i in range(2):
        x = Audio.from_file(table["file"].iloc[i]).samples
        lag = int(np.argmax(np.correlate(x, call, "valid")))
        assert lag / RATE == pytest.approx(truth[f"arrival_{i}"].iloc[0], abs=1.5 / RATE)
    assert truth["arrival_0"].iloc[0] == pytest.approx(0.2 + np.hypot(*SOURCES[0]) / 343.0)


def test_real_call_20db_within_one_metre(dog_bark, tmp_path):
    out, err, _, _ = _run(dog_bark, tmp_path, snr=20)
    assert (err < 1.0).all(), err
    assert (out["quality"] == "ok").all()
    assert (out["n_recorders"] == 9).all()
    assert (out["residual_ms"] < 0.3).all()
    assert list(out["class"]) == ["dog"] * len(SOURCES)
    assert {
        "x",
        "y",
        "residual_ms",
        "n_recorders",
        "class",
        "start_time",
        "end_time",
        "reference_file",
        "quality",
    } <= set(out.columns)


def test_real_call_degrades_gracefully_with_snr(dog_bark, tmp_path):
    med = {}
    for snr in (10, -10, -25):
        out, err, _, _ = _run(dog_bark, tmp_path / str(snr), snr=snr, seed=snr + 50)
        ok = (out["quality"] == "ok").to_numpy()
        med[snr] = (np.median(err), ok.mean())
        assert (err[ok] < 2.0).all(), (
            snr,
            err,
            out["quality"].tolist(),
        )  # what passes as ok is right
    assert med[10][0] < 1.0 and med[10][1] == 1.0
    assert med[-10][0] < 1.0
    assert med[-25][1] < 0.5  # at -25 dB most calls are flagged rather than misplaced


def test_source_outside_the_array_is_flagged(dog_bark, tmp_path):
    out, err, _, _ = _run(
        dog_bark, tmp_path, snr=20, sources=np.array([[25.0, 25.0], [160.0, 30.0]])
    )
    assert out["quality"].tolist()[0] == "ok" and err[0] < 1.0
    assert out["quality"].iloc[1] != "ok"


def test_chirp_four_recorders_and_plot(tmp_path):
    grid = grid_positions(2, 50.0)
    out, err, array, truth = _run(
        chirp(RATE), tmp_path, snr=20, sources=SOURCES[:3], recorders=grid
    )
    assert (err < 1.0).all(), err
    fig = plot_localizations(out, array, truth=truth, fname=tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000
    assert len(fig.axes) == 2  # map and colour bar
    with pytest.raises(ParameterError, match="color_by"):
        plot_localizations(out, array, color_by="nope")


def test_batches_give_the_same_answer_as_single_detections(tmp_path):
    # calls 0.5 s apart: the padded windows of corner and centre references differ in
    # length, and a batch must not let a window run into the next call
    table, truth = simulate_array(
        chirp(RATE),
        RATE,
        GRID,
        SOURCES,
        0.3 + 0.5 * np.arange(5),
        tmp_path,
        duration=3.5,
        snr_db=10,
        seed=3,
    )
    det = _detections(table, truth, GRID)
    a = localize(det, RecorderArray(table), batch_size=32)
    b = localize(det, RecorderArray(table), batch_size=1)
    np.testing.assert_allclose(a[["x", "y"]], b[["x", "y"]], atol=1e-3)
    assert (a["quality"] == "ok").all() and (a["n_recorders"] == 9).all()


def test_start_times_and_clock_offsets_synchronise(tmp_path):
    starts = np.array([0.0, 0.137, 0.05, 0.311, 0.0, 0.2, 0.09, 0.41, 0.003])
    table, truth = simulate_array(
        chirp(RATE),
        RATE,
        GRID,
        SOURCES,
        0.6 + 0.7 * np.arange(5),
        tmp_path,
        duration=4.5,
        snr_db=20,
        start_times=starts,
        seed=4,
    )
    det = _detections(table, truth, GRID)
    err = lambda out: np.hypot(out["x"] - truth["x"], out["y"] - truth["y"])  # noqa: E731
    assert (err(localize(det, RecorderArray(table))) < 1.0).all()
    skewed = table.assign(start_time=table["start_time"] + np.where(np.arange(9) == 4, 0.004, 0.0))
    bad = localize(det, RecorderArray(skewed))  # recorder 4's clock 4 ms fast, uncorrected
    fixed = localize(det, RecorderArray(skewed, clock_offsets={table["file"].iloc[4]: 0.004}))
    assert (err(fixed) < 1.0).all()
    assert err(bad).max() > 1.0 or (bad["quality"] != "ok").any() or (bad["n_recorders"] < 9).any()


def test_files_that_do_not_overlap_in_time_are_an_error(tmp_path):
    table, truth = simulate_array(
        chirp(RATE), RATE, GRID[:4], SOURCES[:1], [0.2], tmp_path, duration=1.0
    )
    late = table.assign(start_time=[0.0, 5.0, 5.0, 5.0])
    det = pd.DataFrame({"file": [table["file"].iloc[0]], "start_time": [0.1], "end_time": [0.5]})
    with pytest.raises(ParameterError, match="do not overlap in time"):
        localize(det, RecorderArray(late))


def test_latlon_array_and_3d(tmp_path):
    rec = np.column_stack([GRID, [0, 1, 2, 0.5, 8, 1, 2, 0, 1.5]])
    src = np.array([[14.0, 27.0, 3.0]])
    table, truth = simulate_array(
        chirp(RATE), RATE, rec, src, [0.3], tmp_path, duration=1.2, snr_db=30
    )
    det = _detections(table, truth, rec)
    out = localize(det, RecorderArray(table), min_recorders=6)
    assert np.hypot(out["x"] - 14.0, out["y"] - 27.0).iloc[0] < 1.0
    assert "z" in out.columns
    lat0, m_per_deg = 50.0, 111_195.08
    geo = pd.DataFrame(
        {
            "file": table["file"],
            "latitude": lat0 + table["y"] / m_per_deg,
            "longitude": 8.0 + table["x"] / (m_per_deg * np.cos(np.radians(lat0))),
        }
    )
    arr = RecorderArray(geo)
    out = localize(det, arr)
    centre = GRID.mean(axis=0)
    assert np.hypot(out["x"] - (14.0 - centre[0]), out["y"] - (27.0 - centre[1])).iloc[0] < 1.0


def test_start_datetime_from_audio_metadata(tmp_path, monkeypatch):
    table, _ = simulate_array(
        chirp(RATE), RATE, GRID[:4], SOURCES[:1], [0.2], tmp_path, duration=0.5
    )
    stamps = {
        f: pd.Timestamp("2026-05-01 05:00:00") + pd.Timedelta(seconds=0.1 * i)
        for i, f in enumerate(table["file"])
    }
    load = Audio.from_file.__func__

    def with_start(cls, path, *args, **kwargs):
        audio = load(cls, path, *args, **kwargs)
        audio.metadata["start_datetime"] = stamps[str(path)]
        return audio

    monkeypatch.setattr(Audio, "from_file", classmethod(with_start))
    arr = RecorderArray(table.drop(columns="start_time"))
    assert arr.start == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_simulated_detections_sit_on_the_nearest_recorder_around_the_arrival(tmp_path):
    sources = np.array([[1.0, 2.0], [49.0, 26.0]])  # nearest: recorder 0 (0, 0), 5 (50, 25)
    table, truth = simulate_array(chirp(RATE), RATE, GRID, sources, [0.3, 1.0], tmp_path,
                                  duration=2.0, seed=5)
    det = simulated_detections(table, truth, GRID, (1200, 5000), annotation="chirp")
    assert det["file"].tolist() == [table["file"][0], table["file"][5]]
    np.testing.assert_allclose(det["start_time"], [truth["arrival_0"][0] - 0.05,
                                                    truth["arrival_5"][1] - 0.05])
    np.testing.assert_allclose(det["end_time"] - det["start_time"], 0.4)
    assert (det["low_f"] == 1200).all() and (det["annotation"] == "chirp").all()
    loc = localize(det, RecorderArray(table))
    np.testing.assert_allclose(loc[["x", "y"]], sources, atol=0.2)
