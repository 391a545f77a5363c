"""Unit tests of soundscape.localization: array tables, GCC-PHAT, the TDOA solvers, errors."""

import numpy as np
import pandas as pd
import pytest

from soundscape.errors import ParameterError
from soundscape.localization import (
    RecorderArray,
    closed_form,
    gcc_phat,
    grid_positions,
    localize,
    lonlat_to_local,
    solve_tdoa,
    speed_of_sound,
    tdoa_of,
)
from soundscape.localization.gcc import parabolic_peak


def _table(n=4, spacing=50.0):
    pos = grid_positions(int(np.sqrt(n)), spacing)
    return pd.DataFrame(
        {"file": [f"r{i}.wav" for i in range(len(pos))], "x": pos[:, 0], "y": pos[:, 1]}
    )


def test_speed_of_sound_from_temperature():
    assert speed_of_sound(0) == pytest.approx(331.3)
    assert speed_of_sound(20) == pytest.approx(343.2, abs=0.05)
    with pytest.raises(ParameterError, match="temperature"):
        speed_of_sound(-300)


def test_lonlat_to_local_metres():
    x, y, origin = lonlat_to_local([50.0, 50.001], [8.0, 8.0])
    assert origin == pytest.approx((50.0005, 8.0))
    assert y[1] - y[0] == pytest.approx(111.195, rel=1e-4)  # 0.001 degree of latitude
    x, _, _ = lonlat_to_local([50.0, 50.0], [8.0, 8.001])
    assert x[1] - x[0] == pytest.approx(111.195 * np.cos(np.radians(50)), rel=1e-4)
    with pytest.raises(ParameterError, match="latitude"):
        lonlat_to_local([95.0], [0.0])


def test_array_from_xy_latlon_and_start_times():
    arr = RecorderArray(_table())
    assert len(arr) == 4 and arr.dims == 2
    assert arr.distances()[0, 3] == pytest.approx(50 * np.sqrt(2))
    assert arr.neighbours("r0.wav", max_distance=60) == [0, 1, 2]
    geo = pd.DataFrame(
        {
            "file": ["a", "b", "c"],
            "latitude": [50.0, 50.0, 50.0005],
            "longitude": [8.0, 8.0007, 8.0],
            "start_time": [
                "2026-05-01 05:00:00",
                "2026-05-01 05:00:00.25",
                "2026-05-01 04:59:59.5",
            ],
        }
    )
    arr = RecorderArray(geo)
    assert arr.origin is not None
    assert arr.xyz.mean(axis=0) == pytest.approx([0, 0], abs=1e-6)
    assert arr.start == pytest.approx([0.5, 0.75, 0.0])
    fixed = RecorderArray(geo, clock_offsets={"b": 0.25})  # b's clock ran 0.25 s fast
    assert fixed.start == pytest.approx([0.5, 0.5, 0.0])
    tab = pd.DataFrame({"file": ["b"], "clock_offset": [0.25]})
    assert RecorderArray(geo, clock_offsets=tab).start == pytest.approx(fixed.start)
    dt = {
        "a": pd.Timestamp("2026-05-01 05:00:01"),
        "b": pd.Timestamp("2026-05-01 05:00:00"),
        "c": pd.Timestamp("2026-05-01 05:00:00"),
    }
    assert RecorderArray(geo.drop(columns="start_time"), start_datetimes=dt).start == pytest.approx(
        [1, 0, 0]
    )


@pytest.mark.parametrize(
    "table, match",
    [
        (pd.DataFrame({"x": [0, 1], "y": [0, 1]}), "'file' column"),
        (pd.DataFrame({"file": ["a", "a"], "x": [0, 1], "y": [0, 1]}), "more than once"),
        (pd.DataFrame({"file": ["a", "b"], "east": [0, 1]}), "x, y"),
        (pd.DataFrame({"file": ["a"], "x": [0], "y": [0]}), "at least 2"),
        (pd.DataFrame({"file": ["a", "b"], "x": [0, np.nan], "y": [0, 1]}), "'b'"),
    ],
)
def test_array_errors_name_the_problem(table, match):
    with pytest.raises(ParameterError, match=match):
        RecorderArray(table)


def test_array_rejects_unknown_clock_offset_file_and_unknown_recorder():
    with pytest.raises(ParameterError, match="not in the array"):
        RecorderArray(_table(), clock_offsets={"nope.wav": 0.1})
    with pytest.raises(ParameterError, match="not a recorder"):
        RecorderArray(_table()).index("nope.wav")


def test_parabolic_peak_is_exact_for_a_parabola():
    v = -((np.array([-1.0, 0.0, 1.0]) - 0.3) ** 2)
    assert parabolic_peak(v[0], v[1], v[2]) == pytest.approx(0.3)


def test_gcc_phat_recovers_fractional_delays_batched():
    rng = np.random.default_rng(0)
    rate, n = 16000, 4096
    base = rng.normal(size=n + 200)
    delays = np.array([[3.25, -17.6, 40.1], [0.0, 12.5, -5.75]])  # samples
    win = np.zeros((2, 4, n))
    spec = np.fft.rfft(base)
    freqs = np.fft.rfftfreq(len(base))
    for b in range(2):
        win[b, 0] = base[100 : 100 + n]
        for i, d in enumerate(delays[b]):
            win[b, i + 1] = np.fft.irfft(spec * np.exp(-2j * np.pi * freqs * d), len(base))[
                100 : 100 + n
            ]
    lags = np.full((2, 3), 60 / rate)
    tdoa, peak, _ = gcc_phat(win, rate, lags, bands=np.array([[200, 6000], [np.nan, np.nan]]))
    assert tdoa * rate == pytest.approx(delays, abs=0.1)
    assert (peak > 0.8).all()
    lags[0, 2] = 10 / rate  # physically 10 samples at most, but the peak lies at 40: rejected
    tdoa, _, _ = gcc_phat(win, rate, lags)
    assert np.isnan(tdoa[0, 2]) and np.isfinite(tdoa[0, :2]).all()
    lags[1, 0] = np.nan  # a missing recorder
    assert np.isnan(gcc_phat(win, rate, lags)[0][1, 0])


@pytest.mark.parametrize("source", [[12.0, 31.0], [-30.0, 70.0]])
def test_closed_form_and_least_squares_are_exact_without_noise(source):
    pos = grid_positions(3, 25.0)
    tdoa = tdoa_of(np.array(source), pos, 343.0)
    assert closed_form(pos, tdoa, 343.0) == pytest.approx(source, abs=1e-6)
    est, rms, cov = solve_tdoa(pos, tdoa, 343.0)
    assert est == pytest.approx(source, abs=1e-5)
    assert rms < 1e-6 and cov.shape == (2, 2)
    assert closed_form(pos[:3], tdoa[:2], 343.0) is None  # too few for the linear system


def test_solve_3d():
    pos = np.array(
        [[0, 0, 0], [40, 0, 2], [0, 40, 5], [40, 40, 0], [20, 20, 12], [0, 20, 1]], float
    )
    src = np.array([15.0, 22.0, 4.0])
    est, rms, _ = solve_tdoa(pos, tdoa_of(src, pos, 340.0), 340.0)
    assert est == pytest.approx(src, abs=1e-4)


def test_localize_checks_its_inputs(tmp_path):
    arr = RecorderArray(_table())
    with pytest.raises(ParameterError, match="lack column"):
        localize(pd.DataFrame({"file": ["r0.wav"]}), arr)
    with pytest.raises(ParameterError, match="row 0"):
        localize(pd.DataFrame({"file": ["r0.wav"], "start_time": [2.0], "end_time": [1.0]}), arr)
    with pytest.raises(ParameterError, match="not a recorder"):
        localize(pd.DataFrame({"file": ["x.wav"], "start_time": [0.0], "end_time": [1.0]}), arr)
    with pytest.raises(ParameterError, match="speed_of_sound"):
        localize(
            pd.DataFrame({"file": ["r0.wav"], "start_time": [0.0], "end_time": [1.0]}),
            arr,
            speed_of_sound=-1,
        )
    with pytest.raises(FileNotFoundError, match="r0.wav"):
        localize(pd.DataFrame({"file": ["r0.wav"], "start_time": [0.0], "end_time": [1.0]}), arr)
