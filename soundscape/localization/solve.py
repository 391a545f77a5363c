"""Source position from time differences of arrival (TDOA).

A closed-form linear start (Gillette & Silverman 2008, the "soundfinder" idea: the range
to the reference recorder is one more unknown of a linear system) is refined by
nonlinear least squares on the TDOAs (scipy.optimize.least_squares).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

__all__ = ["closed_form", "solve_tdoa", "tdoa_of"]


def tdoa_of(source: np.ndarray, positions: np.ndarray, speed: float) -> np.ndarray:
    """TDOAs (s) of recorders 1..n-1 relative to recorder 0 for a source at `source`."""
    r = np.sqrt(((positions - source) ** 2).sum(-1))
    return (r[1:] - r[0]) / speed


def closed_form(positions: np.ndarray, tdoa: np.ndarray, speed: float) -> np.ndarray | None:
    """Linear TDOA solution (Gillette & Silverman 2008).

    With the reference recorder at the origin and ``d_i = c * tdoa_i``, every recorder
    gives ``2 p_i . s + 2 d_i r_0 = |p_i|^2 - d_i^2``, linear in the source ``s`` and the
    range ``r_0`` to the reference; solved by least squares.

    Parameters
    ----------
    positions : ndarray (n, dims)
        Recorder 0 is the reference.
    tdoa : ndarray (n-1,)
        Seconds, relative to recorder 0.
    speed : float
        m/s.

    Returns
    -------
    ndarray (dims,) or None
        None when there are fewer than dims + 2 recorders or the system is degenerate.
    """
    n, dims = positions.shape
    if n < dims + 2:
        return None
    p = positions[1:] - positions[0]
    d = speed * tdoa
    a = np.column_stack([2.0 * p, 2.0 * d])
    b = (p**2).sum(-1) - d**2
    sol, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if rank < dims + 1 or not np.isfinite(sol).all():
        return None
    return sol[:dims] + positions[0]


def solve_tdoa(
    positions: np.ndarray, tdoa: np.ndarray, speed: float, start: np.ndarray | None = None
) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares source position from TDOAs.

    Parameters
    ----------
    positions : ndarray (n, dims)
        Recorder 0 is the reference; n >= dims + 1.
    tdoa : ndarray (n-1,)
        Seconds relative to recorder 0.
    speed : float
        Speed of sound, m/s.
    start : ndarray (dims,), optional
        First guess; default the closed form, else the centroid (several starts are
        tried and the best kept).

    Returns
    -------
    position : ndarray (dims,)
    residual_ms : float
        RMS of the TDOA residuals in milliseconds.
    covariance : ndarray (dims, dims)
        ``sigma^2 (J^T J)^-1`` with sigma the RMS residual (NaN when undetermined).
    """
    dims = positions.shape[1]
    span = max(float(np.ptp(positions, axis=0).max()), 1.0)
    centroid = positions.mean(axis=0)
    starts = [s for s in (start, closed_form(positions, tdoa, speed)) if s is not None]
    starts.append(centroid)
    if dims >= 2:  # a guess on the far side of the reference from the centroid helps edge sources
        starts.append(positions[0] + (positions[0] - centroid) * 2.0)
    if dims == 3:  # arrays are often near-planar: z starts at the recorders' height
        starts = [
            np.array([s[0], s[1], centroid[2]]) if abs(s[2] - centroid[2]) > 10 * span else s
            for s in starts
        ]

    def fun(s):
        return (tdoa_of(s, positions, speed) - tdoa) * 1e3  # ms

    def jac(s):
        diff = s - positions
        r = np.maximum(np.sqrt((diff**2).sum(-1)), 1e-9)
        u = diff / r[:, None]
        return (u[1:] - u[0]) / speed * 1e3

    best = None
    for s0 in starts:
        s0 = np.asarray(s0, dtype=float)
        if not np.isfinite(s0).all() or np.abs(s0 - centroid).max() > 100 * span:
            continue
        res = least_squares(
            fun,
            s0,
            jac=jac,
            method="lm" if len(tdoa) >= dims else "trf",
            xtol=1e-10,
            ftol=1e-10,
            max_nfev=200,
        )
        if best is None or res.cost < best.cost:
            best = res
    pos = best.x
    r = best.fun
    dof = max(len(r) - dims, 1)
    rms = float(np.sqrt((r**2).sum() / dof)) if len(r) > dims else float(np.sqrt((r**2).mean()))
    j = best.jac
    try:
        cov = np.linalg.inv(j.T @ j) * max(rms, 1e-3) ** 2
    except np.linalg.LinAlgError:
        cov = np.full((dims, dims), np.nan)
    return pos, rms, cov
