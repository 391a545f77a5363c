"""Simulated recorder arrays: a call propagated to every recorder, written as WAV files.

Physics: straight-line propagation at the speed of sound (fractional delays applied as
an FFT phase shift), spherical spreading (amplitude 1/r relative to 1 m), white noise at
a given SNR and a small random clock error per recorder. Used by the tests, the tutorial
and the benchmark; the truth it returns is what `localize` should recover.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import fft as sp_fft
from scipy import signal

from ..audio import Audio
from ..errors import ParameterError

__all__ = ["grid_positions", "chirp", "simulate_array", "simulated_detections"]


def grid_positions(n_side: int = 3, spacing: float = 25.0) -> np.ndarray:
    """(n_side^2, 2) positions of a square grid of recorders `spacing` m apart, from (0, 0)."""
    g = np.arange(n_side) * float(spacing)
    xx, yy = np.meshgrid(g, g)
    return np.column_stack([xx.ravel(), yy.ravel()])


def chirp(
    sample_rate: int = 22050, duration: float = 0.3, f0: float = 1500.0, f1: float = 4500.0
) -> np.ndarray:
    """A Hann-windowed linear frequency sweep (a synthetic call), peak 1."""
    t = np.arange(int(duration * sample_rate)) / sample_rate
    return (signal.chirp(t, f0, duration, f1) * np.hanning(len(t))).astype(np.float64)


def _add_delayed(out: np.ndarray, call: np.ndarray, delay_samples: float, gain: float) -> None:
    """Add `gain * call` starting `delay_samples` (fractional) into `out`, in place.

    The fractional part is an FFT phase shift of the call on a short buffer, which is then
    added at the integer offset (the call is band-limited, so the shift is exact up to the
    buffer's edges, where a Hann-tapered call is ~0).
    """
    whole = int(np.floor(delay_samples))
    n_buf = sp_fft.next_fast_len(len(call) + 64, real=True)
    spec = sp_fft.rfft(call, n=n_buf)
    freqs = np.arange(len(spec)) / n_buf
    piece = (
        sp_fft.irfft(spec * np.exp(-2j * np.pi * freqs * (delay_samples - whole)), n=n_buf) * gain
    )
    a, b = max(whole, 0), min(whole + n_buf, len(out))
    if b > a:
        out[a:b] += piece[a - whole : b - whole]


def simulate_array(
    call: np.ndarray,
    sample_rate: int,
    recorders: np.ndarray,
    sources: np.ndarray,
    emit_times,
    out_dir: str | Path,
    duration: float,
    snr_db: float = 20.0,
    speed: float = 343.0,
    clock_jitter: float = 0.0,
    start_times=None,
    source_level: float = 0.5,
    reference_distance: float | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one WAV file per recorder with the calls of `sources` as they would arrive.

    Parameters
    ----------
    call : ndarray
        The emitted signal (band-limit it first, e.g. ``Audio.bandpass``).
    sample_rate : int
        Hz.
    recorders : ndarray (n, 2 or 3)
        Recorder positions, metres.
    sources : ndarray (m, 2 or 3)
        Source positions, metres.
    emit_times : array-like (m,)
        When each call is emitted, seconds on the common clock.
    out_dir : path
        Folder for ``rec_00.wav``, ``rec_01.wav``...
    duration : float
        Length of each recording, seconds.
    snr_db : float
        Call power (over the call) at `reference_distance` over the noise power (white,
        full band).
    speed : float
        Speed of sound, m/s.
    clock_jitter : float
        Standard deviation (s) of an unknown clock error per recorder.
    start_times : array-like (n,), optional
        When each recording starts on the common clock (default all 0).
    source_level : float
        Peak amplitude of the call at `reference_distance`.
    reference_distance : float, optional
        Metres; default the median source-recorder distance (so `snr_db` is typical).
    seed : int
        Random seed (noise and clock errors).

    Returns
    -------
    array_table : DataFrame
        ``file, x, y[, z], start_time`` for `RecorderArray`.
    truth : DataFrame
        ``source, x, y[, z], emit_time`` and ``arrival_<i>`` (seconds in each file).
    """
    recorders = np.asarray(recorders, dtype=float)
    sources = np.atleast_2d(np.asarray(sources, dtype=float))
    emit = np.atleast_1d(np.asarray(emit_times, dtype=float))
    if (
        recorders.ndim != 2
        or recorders.shape[1] not in (2, 3)
        or sources.shape[1] != recorders.shape[1]
    ):
        raise ParameterError(
            f"recorders {recorders.shape} and sources {sources.shape} need the same 2 or 3 columns"
        )
    if len(emit) != len(sources):
        raise ParameterError(f"emit_times has {len(emit)} values for {len(sources)} sources")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_rec, n = len(recorders), int(round(duration * sample_rate))
    starts = np.zeros(n_rec) if start_times is None else np.asarray(start_times, dtype=float)
    clock = rng.normal(0.0, clock_jitter, n_rec) if clock_jitter > 0 else np.zeros(n_rec)
    ranges = np.sqrt(((sources[:, None, :] - recorders[None, :, :]) ** 2).sum(-1))  # (m, n)
    ref_d = float(np.median(ranges)) if reference_distance is None else float(reference_distance)
    call = np.asarray(call, dtype=float)
    call = call / np.max(np.abs(call)) * source_level
    call_power = np.mean(call[np.abs(call) > 1e-3 * source_level] ** 2)
    noise_std = np.sqrt(call_power / 10 ** (snr_db / 10))
    arrivals = np.zeros((len(sources), n_rec))
    rows = []
    for i in range(n_rec):
        x = rng.normal(0.0, noise_std, n)
        for s in range(len(sources)):
            arrivals[s, i] = emit[s] + ranges[s, i] / speed - starts[i]
            delay = (arrivals[s, i] + clock[i]) * sample_rate
            _add_delayed(x, call, delay, ref_d / max(ranges[s, i], 1.0))
        peak = np.max(np.abs(x))
        if peak > 0.99:
            x *= 0.99 / peak
        path = out_dir / f"rec_{i:02d}.wav"
        Audio(x.astype(np.float32), sample_rate).save(path, subtype="FLOAT")
        row = {"file": str(path), "x": recorders[i, 0], "y": recorders[i, 1]}
        if recorders.shape[1] == 3:
            row["z"] = recorders[i, 2]
        row["start_time"] = starts[i]
        rows.append(row)
    truth = pd.DataFrame(sources, columns=["x", "y", "z"][: sources.shape[1]])
    truth.insert(0, "source", np.arange(len(sources)))
    truth["emit_time"] = emit
    for i in range(n_rec):
        truth[f"arrival_{i}"] = arrivals[:, i]
    return pd.DataFrame(rows), truth


def simulated_detections(table: pd.DataFrame, truth: pd.DataFrame, recorders: np.ndarray,
                         band: tuple[float, float], annotation: str = "call",
                         before: float = 0.05, after: float = 0.35) -> pd.DataFrame:
    """The detections a perfect detector would give `localize` for a `simulate_array` run.

    One detection per simulated call, on the recorder nearest its source (in x, y), from
    `before` seconds before the true arrival there to `after` seconds after it.

    Parameters
    ----------
    table, truth : DataFrame
        What `simulate_array` returned (``table`` may have other start times: only its
        ``file`` column is used).
    recorders : ndarray (n, 2 or 3)
        The recorder positions given to `simulate_array`, in the same order.
    band : (low, high)
        The call's frequency band in Hz (``low_f`` / ``high_f``).
    annotation : str
        The class of every detection.

    Returns
    -------
    DataFrame
        ``file, start_time, end_time, low_f, high_f, annotation``, one row per source.
    """
    positions = np.asarray(recorders, dtype=float)[:, :2]
    sources = truth[["x", "y"]].to_numpy(dtype=float)
    distance = np.hypot(*(sources[:, None, :] - positions[None, :, :]).transpose(2, 0, 1))
    nearest = np.argmin(distance, axis=1)
    arrivals = truth[[f"arrival_{i}" for i in range(len(positions))]].to_numpy(dtype=float)
    arrival = arrivals[np.arange(len(sources)), nearest]
    return pd.DataFrame({
        "file": table["file"].to_numpy()[nearest],
        "start_time": arrival - before,
        "end_time": arrival + after,
        "low_f": float(band[0]),
        "high_f": float(band[1]),
        "annotation": annotation,
    })
