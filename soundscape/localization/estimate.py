"""`localize`: detections on a reference recorder -> source positions from TDOAs.

For every detection the same window of the common clock is cut from the reference and
its neighbours, time differences of arrival are estimated by batched GCC-PHAT in the
detection's frequency band, and the position is solved by least squares.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from ..audio import Audio
from ..errors import ParameterError
from .array import RecorderArray, speed_of_sound as _speed_of_sound
from .gcc import gcc_phat
from .solve import solve_tdoa, tdoa_of

__all__ = ["localize", "QUALITY_FLAGS"]

#: quality flags, best first
QUALITY_FLAGS = ("ok", "outside_array", "high_residual", "too_few_recorders")
#: whole files up to this many seconds are read once and kept in memory
_CACHE_SECONDS = 600.0


class _Reader:
    """Windows of the recordings, zero-filled outside a file, at one sample rate."""

    def __init__(self, array: RecorderArray, sample_rate: int | None):
        self.array = array
        rates = {f: array.file_info(i)[0] for i, f in enumerate(array.files)}
        if sample_rate is None and len(set(rates.values())) > 1:
            raise ParameterError(
                f"recorders have different sample rates ({rates}); pass sample_rate= "
                "to resample them to one"
            )
        self.rate = int(sample_rate or next(iter(rates.values())))
        self._cache: dict[int, np.ndarray] = {}

    def window(self, i: int, t0: float, n: int) -> tuple[np.ndarray, float]:
        """`n` samples of recorder `i` from common-clock time `t0`: (samples, true start)."""
        native, frames = self.array.file_info(i)
        k0 = int(round((t0 - self.array.start[i]) * native))
        n_native = int(np.ceil(n * native / self.rate)) + (0 if native == self.rate else 16)
        out = np.zeros(n_native, dtype=np.float32)
        a, b = max(k0, 0), min(k0 + n_native, frames)
        if b > a:
            out[a - k0 : b - k0] = self._read(i, a, b, native, frames)
        if native != self.rate:
            out = resample_poly(out, self.rate, native).astype(np.float32)
        return out[:n], self.array.start[i] + k0 / native

    def _read(self, i: int, a: int, b: int, native: int, frames: int) -> np.ndarray:
        path = self.array.files[i]
        if frames / native <= _CACHE_SECONDS:
            if i not in self._cache:
                self._cache[i] = Audio.from_file(path).samples
            return self._cache[i][a:b]
        return Audio.from_file(path, offset=a / native, duration=(b - a) / native).samples[: b - a]


def _class_column(detections: pd.DataFrame) -> str | None:
    for name in ("class", "annotation", "label", "species"):
        if name in detections.columns:
            return name
    return None


def _check_detections(detections: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(detections, pd.DataFrame):
        raise ParameterError(f"detections must be a DataFrame, got {type(detections).__name__}")
    missing = {"file", "start_time", "end_time"} - set(detections.columns)
    if missing:
        raise ParameterError(
            f"detections lack column(s) {sorted(missing)}; they have {list(detections.columns)}"
        )
    det = detections.reset_index(drop=True)
    t0, t1 = det["start_time"].to_numpy(float), det["end_time"].to_numpy(float)
    bad = np.flatnonzero(~(np.isfinite(t0) & np.isfinite(t1) & (t1 > t0) & (t0 >= 0)))
    if len(bad):
        r = int(bad[0])
        raise ParameterError(
            f"detection row {r} ({det['file'].iloc[r]}): start_time {t0[r]} and end_time {t1[r]} "
            "must be finite with 0 <= start_time < end_time"
        )
    return det


def _hull(points: np.ndarray) -> np.ndarray:
    """Corners of the convex hull of 2-D points, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted(map(tuple, np.unique(points, axis=0)))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        out: list = []
        for p in seq:
            while (
                len(out) >= 2
                and (
                    (out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                    - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])
                )
                <= 0
            ):
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def _inside_hull(point: np.ndarray, corners: np.ndarray, margin: float) -> bool:
    """Whether `point` (x, y) is in the hull of `corners`, grown by `margin` about its centre."""
    hull = _hull(corners)
    if len(hull) < 3:  # collinear recorders enclose nothing
        return False
    centre = hull.mean(axis=0)
    hull = centre + (hull - centre) * (1.0 + margin)
    edge = np.roll(hull, -1, axis=0) - hull
    rel = point - hull
    return bool((edge[:, 0] * rel[:, 1] - edge[:, 1] * rel[:, 0] >= 0).all())


def _check_overlap(array: RecorderArray, groups: dict[int, list[int]]) -> None:
    cov = array.coverage()
    start, end = cov["start"].to_numpy(), cov["end"].to_numpy()
    for ref, rows in groups.items():
        others = [r for r in rows if r != ref]
        if others and not any(min(end[ref], end[r]) > max(start[ref], start[r]) for r in others):
            r = others[0]
            raise ParameterError(
                f"recordings do not overlap in time: {array.files[ref]!r} covers "
                f"{start[ref]:.3f}-{end[ref]:.3f} s and its neighbours (e.g. {array.files[r]!r}, "
                f"{start[r]:.3f}-{end[r]:.3f} s) none of it, on the "
                "common clock; check the start_time / clock_offset columns of the array"
            )


def localize(
    detections: pd.DataFrame,
    array: RecorderArray,
    max_distance: float | None = None,
    temperature: float | None = None,
    speed_of_sound: float | None = None,
    min_recorders: int | None = None,
    max_residual_ms: float = 0.5,
    hull_margin: float = 0.1,
    min_peak: float = 0.0,
    bandpass: tuple[float, float] | None = None,
    weighting: str = "phat",
    sample_rate: int | None = None,
    reject_outliers: bool = True,
    batch_size: int = 32,
    tdoa_tolerance: float = 0.02,
) -> pd.DataFrame:
    """Estimate where each detected call came from.

    Parameters
    ----------
    detections : DataFrame
        ``file`` (a recorder of `array`, the reference), ``start_time``, ``end_time``
        (seconds in that file), optionally ``low_f``/``high_f`` (Hz, the band the
        correlation uses) and a class column (``class``, ``annotation``, ``label``).
    array : RecorderArray
        Positions and start times of the recorders.
    max_distance : float, optional
        Use only neighbours within this many metres of the reference (default all).
    temperature : float, optional
        Air temperature (degrees C) for the speed of sound; default 20.
    speed_of_sound : float, optional
        m/s; overrides `temperature`.
    min_recorders : int, optional
        Fewest recorders (reference included) with a valid TDOA; default dims + 2.
    max_residual_ms : float
        RMS TDOA residual above which an estimate is flagged ``high_residual``.
    hull_margin : float
        An estimate outside the recorders' convex hull grown by this fraction is flagged
        ``outside_array`` (TDOA positions of outside sources are unreliable in range).
    min_peak : float
        Drop pairs whose GCC-PHAT peak (coherent fraction, 0-1) is below this.
    bandpass : (low_f, high_f), optional
        Band for every detection, overriding ``low_f``/``high_f`` columns.
    weighting : {"phat", "none"}
        Cross-correlation weighting.
    sample_rate : int, optional
        Resample all recordings to this rate (needed when they differ).
    reject_outliers : bool
        While the residual is too high, drop the pair that fits worst and solve again (at
        most half of the pairs, never below `min_recorders` or dims + 2 recorders).
    batch_size : int
        Detections per batched FFT.
    tdoa_tolerance : float
        A pair's TDOA may exceed distance / speed of sound by this fraction (plus one
        sample) before it is rejected as impossible: the speed of sound is uncertain by a
        few per cent (temperature, wind) and recorder clocks by a little.

    Returns
    -------
    DataFrame
        One row per detection: ``x, y[, z], residual_ms, n_recorders, class, start_time,
        end_time, reference_file, quality`` plus ``x_std, y_std, cov_xy`` (m, m, m^2;
        from the least-squares Jacobian), ``gcc_peak`` (mean PHAT peak of the pairs used,
        0-1: near 0.05 is noise), ``recorders`` (files used, ``;``-separated) and ``time``
        (start on the common clock). Rows that could not be solved have NaN
        positions and quality ``too_few_recorders``.
    """
    det = _check_detections(detections)
    if speed_of_sound is None:
        speed = _speed_of_sound(20.0 if temperature is None else temperature)
    else:
        if not (np.isfinite(speed_of_sound) and speed_of_sound > 0):
            raise ParameterError(
                f"speed_of_sound must be a positive number of m/s, got {speed_of_sound!r}"
            )
        speed = float(speed_of_sound)
    dims = array.dims
    min_recorders = dims + 2 if min_recorders is None else int(min_recorders)
    if min_recorders < dims + 1:
        raise ParameterError(
            f"min_recorders must be >= {dims + 1} for a {dims}-D array, got {min_recorders}"
        )
    if not 0 <= tdoa_tolerance < 1:
        raise ParameterError(f"tdoa_tolerance must be a fraction in [0, 1), got {tdoa_tolerance!r}")
    if batch_size < 1:
        raise ParameterError(f"batch_size must be >= 1, got {batch_size!r}")
    refs = [array.index(f) for f in det["file"]]
    groups = {r: array.neighbours(array.files[r], max_distance) for r in set(refs)}
    _check_overlap(array, groups)
    reader = _Reader(array, sample_rate)
    rate, dist = reader.rate, array.distances()
    cov = array.coverage()
    f_start, f_end = cov["start"].to_numpy(), cov["end"].to_numpy()

    t0 = det["start_time"].to_numpy(float)
    t1 = det["end_time"].to_numpy(float)
    if bandpass is not None:
        bands = np.tile(np.asarray(bandpass, dtype=float), (len(det), 1))
    else:
        lo = det["low_f"].to_numpy(float) if "low_f" in det.columns else np.full(len(det), np.nan)
        hi = det["high_f"].to_numpy(float) if "high_f" in det.columns else np.full(len(det), np.nan)
        bands = np.column_stack([lo, hi])
    pads = (
        np.array([dist[r, groups[r]].max() / speed for r in refs]) * (1 + tdoa_tolerance)
        + 2.0 / rate
    )
    lengths = np.ceil((t1 - t0 + 2 * pads) * rate).astype(int)
    order = np.argsort(lengths, kind="stable")

    results: list[dict] = [None] * len(det)
    for b0 in range(0, len(order), batch_size):
        idx = order[b0 : b0 + batch_size]
        n = int(lengths[idx].max())
        n_rec = max(len(groups[refs[j]]) for j in idx)
        windows = np.zeros((len(idx), n_rec, n), dtype=np.float32)
        max_lags = np.full((len(idx), n_rec - 1), np.nan)
        shifts = np.zeros((len(idx), n_rec))
        for k, j in enumerate(idx):
            ref, rows = refs[j], groups[refs[j]]
            g0 = array.start[ref] + t0[j] - pads[j]
            core0, core1 = array.start[ref] + t0[j], array.start[ref] + t1[j]
            for m, r in enumerate(rows):
                if m and (core0 < f_start[r] - 1e-9 or core1 > f_end[r] + 1e-9):
                    continue  # this recorder does not cover the call: leave it out
                windows[k, m, : lengths[j]], shifts[k, m] = reader.window(r, g0, int(lengths[j]))
                if m:
                    max_lags[k, m - 1] = dist[ref, r] / speed * (1 + tdoa_tolerance)
            # the reference keeps only the detection itself; the neighbours keep the margins
            # the call can shift into, so other calls nearby correlate less
            cut = int(round(pads[j] * rate))
            windows[k, 0, :cut] = 0.0
            windows[k, 0, lengths[j] - cut :] = 0.0
        tdoa, peak, _ = gcc_phat(windows, rate, max_lags, bands[idx], weighting)
        tdoa = tdoa + (shifts[:, 1:] - shifts[:, :1])  # windows start a fraction of a sample apart
        for k, j in enumerate(idx):
            results[j] = _solve_one(
                array,
                groups[refs[j]],
                tdoa[k],
                peak[k],
                speed,
                min_peak,
                min_recorders,
                max_residual_ms,
                hull_margin,
                reject_outliers,
            )
    return _table(det, refs, array, results, t0, dims)


def _solve_one(
    array: RecorderArray,
    rows: list[int],
    tdoa: np.ndarray,
    peak: np.ndarray,
    speed: float,
    min_peak: float,
    min_recorders: int,
    max_residual_ms: float,
    hull_margin: float,
    reject_outliers: bool,
) -> dict:
    dims = array.dims
    n_pairs = len(rows) - 1
    tdoa, peak = tdoa[:n_pairs], peak[:n_pairs]
    keep = np.flatnonzero(np.isfinite(tdoa) & (np.nan_to_num(peak, nan=-1.0) >= min_peak))
    empty = {
        "pos": np.full(dims, np.nan),
        "residual_ms": np.nan,
        "cov": np.full((dims, dims), np.nan),
        "used": [rows[0]] + [rows[k + 1] for k in keep],
        "quality": "too_few_recorders",
        "peak": float(np.mean(peak[keep])) if len(keep) else np.nan,
    }
    if len(keep) + 1 < min_recorders:
        return empty
    floor = max(min_recorders, dims + 2, len(keep) + 1 - len(keep) // 2)  # drop at most half
    while True:
        used = [rows[0]] + [rows[k + 1] for k in keep]
        pos, rms, cov = solve_tdoa(array.xyz[used], tdoa[keep], speed)
        if not (reject_outliers and rms > max_residual_ms and len(keep) + 1 > floor):
            break
        worst = np.argmax(np.abs(tdoa_of(pos, array.xyz[used], speed) - tdoa[keep]))
        keep = np.delete(keep, worst)
    quality = "ok"
    if not np.isfinite(pos).all():
        return empty
    if rms > max_residual_ms:
        quality = "high_residual"
    elif not _inside_hull(pos[:2], array.xyz[used, :2], hull_margin):
        quality = "outside_array"
    return {
        "pos": pos,
        "residual_ms": rms,
        "cov": cov,
        "used": used,
        "quality": quality,
        "peak": float(np.mean(peak[keep])),
    }


def _table(
    det: pd.DataFrame,
    refs: list[int],
    array: RecorderArray,
    results: list[dict],
    t0: np.ndarray,
    dims: int,
) -> pd.DataFrame:
    pos = np.array([r["pos"] for r in results]).reshape(len(det), dims)
    covs = np.array([r["cov"] for r in results]).reshape(len(det), dims, dims)
    cls = _class_column(det)
    out = {"x": pos[:, 0], "y": pos[:, 1]}
    if dims == 3:
        out["z"] = pos[:, 2]
    out.update(
        {
            "residual_ms": [r["residual_ms"] for r in results],
            "n_recorders": np.array([len(r["used"]) for r in results], dtype=np.int64),
            "class": det[cls].to_numpy() if cls else np.full(len(det), None, dtype=object),
            "start_time": det["start_time"].to_numpy(float),
            "end_time": det["end_time"].to_numpy(float),
            "reference_file": det["file"].astype(str).to_numpy(),
            "quality": [r["quality"] for r in results],
            "gcc_peak": [r["peak"] for r in results],
            "x_std": np.sqrt(np.clip(covs[:, 0, 0], 0, None)),
            "y_std": np.sqrt(np.clip(covs[:, 1, 1], 0, None)),
            "cov_xy": covs[:, 0, 1],
            "recorders": [";".join(array.files[i] for i in r["used"]) for r in results],
            "time": np.array([array.start[r] for r in refs]) + t0,
        }
    )
    return pd.DataFrame(out)
