"""Batched generalized cross-correlation with PHAT weighting (Knapp & Carter 1976).

All detections of a batch are transformed at once: windows ``(batch, recorders, samples)``
-> one rfft -> cross-spectra against recorder 0 -> PHAT weights, band limit -> one irfft.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sp_fft

from ..dsp import frequency_mask
from ..errors import ParameterError

__all__ = ["gcc_phat", "parabolic_peak", "BEYOND_RATIO"]

#: a pair is rejected when the correlation peaks this many times higher at a lag beyond
#: distance / speed of sound than within it (another sound, an echo, a bad clock)
BEYOND_RATIO = 1.5


def parabolic_peak(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Offset (in samples, within [-0.5, 0.5]) of the vertex of the parabola through 3 points."""
    denom = left - 2.0 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(np.abs(denom) > 1e-12, 0.5 * (left - right) / denom, 0.0)
    return np.clip(delta, -0.5, 0.5)


def gcc_phat(
    windows: np.ndarray,
    sample_rate: int,
    max_lags: np.ndarray,
    bands: np.ndarray | None = None,
    weighting: str = "phat",
    upsample: int = 4,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time differences of arrival of recorders 1..R-1 relative to recorder 0.

    Parameters
    ----------
    windows : ndarray (batch, R, samples)
        The same time window cut from every recorder (zeros where a recorder is missing).
    sample_rate : int
        Hz.
    max_lags : ndarray (batch, R-1)
        Largest physically possible |TDOA| of each pair in seconds (distance / speed of
        sound); the correlation peak is searched only within it. NaN marks a missing pair.
    bands : ndarray (batch, 2), optional
        ``(low_f, high_f)`` in Hz of each detection; bins outside are ignored (NaN = no limit).
    weighting : {"phat", "none"}
        PHAT whitens the cross-spectrum (sharp peaks, robust to reverberation and
        coloured noise); "none" is plain cross-correlation.
    upsample : int
        Around the integer peak, evaluate the correlation (directly from the
        cross-spectrum) on a grid this many times finer than the samples before the
        parabolic fit, which removes most of its bias on sharp PHAT peaks.
    workers : int, optional
        Threads for scipy.fft.

    Returns
    -------
    tdoa : ndarray (batch, R-1)
        Seconds by which the call reaches recorder i later than recorder 0 (parabolic
        sub-sample interpolation); NaN where rejected: a missing recorder, or an
        impossible TDOA (the peak within the physical range lies at its edge, or the
        correlation peaks `BEYOND_RATIO` times higher at a lag beyond distance / speed
        of sound).
    peak : ndarray (batch, R-1)
        Peak height; for PHAT the fraction of coherent in-band energy (0-1).
    n_fft : ndarray
        The transform length used (scalar array).
    """
    if windows.ndim != 3 or windows.shape[1] < 2:
        raise ParameterError(
            f"windows must have shape (batch, recorders >= 2, samples), got {windows.shape}"
        )
    if weighting not in ("phat", "none"):
        raise ParameterError(f"weighting must be 'phat' or 'none', got {weighting!r}")
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample < 1:
        raise ParameterError(f"upsample must be a positive integer, got {upsample!r}")
    batch, n_rec, n = windows.shape
    n_fft = sp_fft.next_fast_len(2 * n, real=True)
    spec = sp_fft.rfft(np.asarray(windows, dtype=np.float32), n=n_fft, axis=-1, workers=workers)
    cross = spec[:, 1:, :] * np.conj(spec[:, :1, :])
    if weighting == "phat":
        mag = np.abs(cross)
        floor = 1e-6 * mag.max(axis=-1, keepdims=True) + 1e-30
        cross = cross / np.maximum(mag, floor)
    n_bins = cross.shape[-1]
    if bands is not None:
        mask = np.ones((batch, n_bins), dtype=bool)
        for b, (lo, hi) in enumerate(np.asarray(bands, dtype=float)):
            lo = None if not np.isfinite(lo) or lo <= 0 else float(lo)
            hi = None if not np.isfinite(hi) or hi >= sample_rate / 2 else float(hi)
            if lo is not None or hi is not None:
                mask[b] = frequency_mask(n_fft, sample_rate, lo, hi)
        cross = cross * mask[:, None, :]
        used = mask.sum(axis=-1).astype(float)
    else:
        used = np.full(batch, float(n_bins))
    corr = sp_fft.irfft(cross, n=n_fft, axis=-1, workers=workers)
    scale = (n_fft / (2.0 * used))[:, None] if weighting == "phat" else np.ones((batch, 1))
    corr = corr * scale[..., None]  # PHAT: coherent in-band energy -> ~1

    max_lags = np.asarray(max_lags, dtype=float)
    missing = ~np.isfinite(max_lags)
    kmax = np.where(missing, 0, np.ceil(np.nan_to_num(max_lags) * sample_rate) + 2).astype(int)
    kmax = np.minimum(kmax, n - 2)
    k_all = int(kmax.max())
    lags = np.arange(-k_all, k_all + 1)
    seg = corr[:, :, lags % n_fft]  # (batch, R-1, 2K+1)
    seg = np.where(np.abs(lags)[None, None, :] > kmax[:, :, None], -np.inf, seg)
    arg = np.argmax(seg, axis=-1)
    coarse = lags[arg]
    at_edge = np.abs(coarse) >= kmax
    beyond = corr.max(axis=-1) > BEYOND_RATIO * np.take_along_axis(seg, arg[..., None], -1)[..., 0]
    # refine: the correlation between samples, evaluated from the cross-spectrum on a grid
    # `upsample` times finer around the coarse peak, then a parabola through the best 3
    steps = np.linspace(-1.0, 1.0, 2 * upsample + 1)
    cols = np.flatnonzero(mask.any(axis=0)) if bands is not None else np.arange(n_bins)
    weight = np.where((cols == 0) | ((n_fft % 2 == 0) & (cols == n_bins - 1)), 1.0, 2.0)
    omega = (2j * np.pi * cols / n_fft).astype(np.complex64)
    shift = np.exp(omega * coarse[..., None].astype(np.float32))
    base = cross[..., cols] * weight.astype(np.float32) * shift  # (batch, R-1, bins)
    grid = np.exp(omega[:, None] * steps[None, :].astype(np.float32))  # (bins, S)
    fine = (base.reshape(-1, len(cols)) @ grid).real.reshape(base.shape[:2] + (len(steps),))
    fine = fine / n_fft * scale[..., None]
    j = np.clip(np.argmax(fine, axis=-1), 1, 2 * upsample - 1)
    pick = lambda o: np.take_along_axis(fine, (j + o)[..., None], -1)[..., 0]  # noqa: E731
    peak = pick(0)
    frac = parabolic_peak(pick(-1), peak, pick(1)) * (steps[1] - steps[0])
    tdoa = (coarse + steps[j] + frac) / sample_rate
    limit = np.nan_to_num(max_lags) + 1.0 / sample_rate
    bad = missing | at_edge | beyond | (np.abs(tdoa) > limit) | ~np.isfinite(peak)
    tdoa = np.where(bad, np.nan, tdoa)
    peak = np.where(missing, np.nan, peak)
    return tdoa, peak, np.asarray(n_fft)
