"""Map of localizations: recorders, position estimates coloured by residual, error ellipses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ParameterError
from .array import RecorderArray

__all__ = ["plot_localizations"]


def plot_localizations(
    localizations: pd.DataFrame,
    array: RecorderArray,
    ax=None,
    color_by: str = "residual_ms",
    ellipses: bool = True,
    n_sigma: float = 2.0,
    truth: pd.DataFrame | None = None,
    only_ok: bool = False,
    labels: bool = True,
    fname: str | Path | None = None,
):
    """Plot recorders and position estimates on a metric map.

    Parameters
    ----------
    localizations : DataFrame
        The output of `localize`.
    array : RecorderArray
        The recorders (drawn as triangles, labelled with their file stems).
    ax : matplotlib Axes, optional
        Draw into it; default a new figure.
    color_by : str
        Numeric column colouring the estimates (default ``residual_ms``).
    ellipses : bool
        Draw `n_sigma` error ellipses from ``x_std``, ``y_std``, ``cov_xy``.
    truth : DataFrame, optional
        True source positions (``x``, ``y``) drawn as crosses.
    only_ok : bool
        Draw only estimates whose quality is ``ok``; the others are drawn hollow otherwise.
    labels : bool
        Label the recorders.
    fname : path, optional
        Save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    if color_by not in localizations.columns:
        raise ParameterError(
            f"color_by={color_by!r} is not a column of the localizations "
            f"({list(localizations.columns)})"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5.5))
    else:
        fig = ax.figure
    ax.scatter(
        array.xyz[:, 0], array.xyz[:, 1], marker="^", s=80, c="k", label="recorders", zorder=3
    )
    if labels:
        for f, (x, y) in zip(array.files, array.xyz[:, :2]):
            ax.annotate(Path(f).stem, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    loc = localizations[np.isfinite(localizations["x"]) & np.isfinite(localizations["y"])]
    ok = (loc["quality"] == "ok").to_numpy()
    if only_ok:
        loc, ok = loc[ok], ok[ok]
    values = loc[color_by].to_numpy(float)
    vmin, vmax = (np.nanmin(values), np.nanmax(values)) if len(values) else (0.0, 1.0)
    sc = None
    if ok.any():
        sc = ax.scatter(
            loc["x"][ok],
            loc["y"][ok],
            c=values[ok],
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            s=30,
            label="estimates",
            zorder=4,
        )
    if (~ok).any():
        ax.scatter(
            loc["x"][~ok],
            loc["y"][~ok],
            facecolors="none",
            edgecolors="tab:red",
            s=40,
            label="flagged",
            zorder=4,
        )
    if ellipses and {"x_std", "y_std", "cov_xy"} <= set(loc.columns):
        for _, r in loc.iterrows():
            cov = np.array([[r["x_std"] ** 2, r["cov_xy"]], [r["cov_xy"], r["y_std"] ** 2]])
            if not np.isfinite(cov).all():
                continue
            w, v = np.linalg.eigh(cov)
            angle = np.degrees(np.arctan2(v[1, 1], v[0, 1]))
            width, height = 2 * n_sigma * np.sqrt(np.maximum(w[::-1], 0))
            ax.add_patch(
                Ellipse(
                    (r["x"], r["y"]),
                    width,
                    height,
                    angle=angle,
                    fill=False,
                    lw=0.8,
                    color="tab:blue" if r["quality"] == "ok" else "tab:red",
                )
            )
    if truth is not None:
        ax.scatter(
            truth["x"], truth["y"], marker="x", c="tab:orange", s=50, label="true sources", zorder=5
        )
    if sc is not None:
        fig.colorbar(sc, ax=ax, label=color_by)
    ax.set_xlabel("x (m, east)")
    ax.set_ylabel("y (m, north)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Acoustic localizations")
    if fname is not None:
        fig.savefig(fname, dpi=120, bbox_inches="tight")
    return fig
