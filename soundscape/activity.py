"""Activity summaries: detections per hour, day or hour of day, with recording effort.

A period without recordings is not a period without calls. `activity` therefore counts
detections per period *and* the minutes recorded in it (from every recording's start
time and duration, see `soundscape.timestamps`), and gives the rate per recorded hour;
periods nobody recorded do not appear. Plots: `plot_hour_of_day`, `plot_dates`,
`plot_heatmap` (date x hour of day per site); each takes ``fname=`` and returns the figure.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from .audio_files import audio_info, find_audio_files
from .errors import ParameterError
from .timestamps import _zone, recording_start

__all__ = ["activity", "recording_table", "site_of", "plot_hour_of_day", "plot_dates",
           "plot_heatmap", "BY", "PER"]

BY = ("hour", "day", "hour_of_day")
PER = ("site", "file")
_SUMS = ["detections", "effort_minutes"]
_SITE = re.compile(r"^(?P<site>.+?)[_-]\d{8}[_T-]?\d{6}")


def site_of(file: str | Path) -> str:
    """Site of a recording: the name's prefix before ``YYYYMMDD_HHMMSS`` (``SITE_...``),
    else the name of its folder."""
    path = Path(str(file))
    hit = _SITE.match(path.name)
    return hit.group("site") if hit else (path.parent.name or ".")


def recording_table(recordings, starts: Mapping | pd.DataFrame | None = None,
                    pattern: str | None = None, tz: str | tzinfo | None = None) -> pd.DataFrame:
    """One row per recording: ``file, start_datetime, end_datetime, duration``.

    Parameters
    ----------
    recordings : folder, file, list of files, or DataFrame
        Audio files (folders are searched recursively), or a table with ``file`` and
        ``start_datetime`` and ``duration`` (seconds) or ``end_datetime``.
    starts, pattern, tz
        How start times are found (see `soundscape.timestamps.recording_metadata`).
    """
    if isinstance(recordings, pd.DataFrame):
        table = recordings.copy()
        if "file" not in table.columns or "start_datetime" not in table.columns:
            raise ParameterError("a recordings table needs columns 'file' and 'start_datetime' "
                                 "(and 'duration' or 'end_datetime')")
        start = pd.to_datetime(table["start_datetime"])
        start = start.dt.tz_localize(_zone(tz)) if start.dt.tz is None else start
        table["start_datetime"] = start.dt.tz_convert("UTC")
        if "duration" in table.columns:
            table["end_datetime"] = table["start_datetime"] + pd.to_timedelta(
                table["duration"].astype(float), unit="s")
        elif "end_datetime" in table.columns:
            end = pd.to_datetime(table["end_datetime"])
            end = end.dt.tz_localize(_zone(tz)) if end.dt.tz is None else end
            table["end_datetime"] = end.dt.tz_convert("UTC")
            table["duration"] = (table["end_datetime"] - table["start_datetime"]).dt.total_seconds()
        else:
            raise ParameterError("a recordings table needs 'duration' (s) or 'end_datetime'")
        return table[["file", "start_datetime", "end_datetime", "duration"]]
    files = find_audio_files(recordings)
    if not files:
        raise ParameterError(f"no audio files found in {recordings!r}")
    rows = []
    for f in files:
        start = pd.Timestamp(recording_start(f, pattern, tz, starts)).tz_convert("UTC")
        duration = float(audio_info(f).duration)
        rows.append((str(f), start, start + pd.Timedelta(seconds=duration), duration))
    return pd.DataFrame(rows, columns=["file", "start_datetime", "end_datetime", "duration"])


def _unit(by: str) -> str:
    return "D" if by == "day" else "h"


def _effort(recs: pd.DataFrame, by: str, zone) -> pd.DataFrame:
    """Recorded seconds per (file, period start) in the output zone."""
    unit = _unit(by)
    parts = []
    for f, s, e in zip(recs["file"], recs["start_datetime"], recs["end_datetime"]):
        s, e = s.tz_convert(zone), e.tz_convert(zone)
        if e <= s:
            continue
        edges = pd.date_range(s.floor(unit), e, freq=unit).as_unit("ns")
        lo = np.maximum(edges.asi8, s.as_unit("ns").value)
        hi = np.minimum((edges + pd.Timedelta(1, unit)).asi8, e.as_unit("ns").value)
        keep = hi > lo
        parts.append(pd.DataFrame({"file": f, "period": edges[keep],
                                   "effort_s": (hi - lo)[keep] / 1e9}))
    if not parts:
        raise ParameterError("the recordings hold no recorded time")
    return pd.concat(parts, ignore_index=True)


def activity(detections: pd.DataFrame, recordings=None, by: str = "hour", per: str = "site",
             starts: Mapping | pd.DataFrame | None = None, pattern: str | None = None,
             tz: str | tzinfo | None = None, output_tz: str | tzinfo | None = None,
             site: Callable[[str], str] | Mapping[str, str] | None = None) -> pd.DataFrame:
    """Detections and recording effort per period: a tidy table.

    Parameters
    ----------
    detections : DataFrame
        A detection table (columns ``file, start_time, end_time``, optionally
        ``annotation``; from `soundscape.detections.detections`), or a score table
        thresholded into one.
    recordings : optional
        Every recording made (see `recording_table`), including those without
        detections; default: the files named in `detections`.
    by : {"hour", "day", "hour_of_day"}
        Period: clock hours, calendar days, or the hour of day (0-23, pooled over days).
    per : {"site", "file"}
        Rows per site (see `site_of`, or pass `site`) or per recording.
    starts, pattern, tz
        How start times are found (see `soundscape.timestamps.recording_metadata`).
    output_tz : str or tzinfo, optional
        Zone of the periods (hours of day are local to it); default UTC.
    site : callable or dict, optional
        Site of each file (default `site_of`).

    Returns
    -------
    DataFrame
        Columns ``site`` (or ``file``), ``annotation``, ``period`` (timestamp, or the hour
        0-23 for "hour_of_day"), ``detections``, ``effort_minutes``, ``detections_per_hour``;
        one row per recorded period and annotation (0 detections included).
    """
    if by not in BY:
        raise ParameterError(f"by must be one of {BY}, got {by!r}")
    if per not in PER:
        raise ParameterError(f"per must be one of {PER}, got {per!r}")
    if not isinstance(detections, pd.DataFrame):
        raise ParameterError(f"detections must be a DataFrame, got {type(detections).__name__}")
    det = detections.reset_index() if "file" not in detections.columns else detections.copy()
    for col in ("file", "start_time"):
        if col not in det.columns:
            raise ParameterError(f"detections need a {col!r} column; columns are "
                                 f"{list(det.columns)}")
    if "annotation" not in det.columns:
        det["annotation"] = "detection"
    det["file"] = det["file"].astype(str)
    zone = _zone(output_tz)
    recs = recording_table(sorted(det["file"].unique()) if recordings is None else recordings,
                           starts, pattern, tz)
    recs["file"] = recs["file"].astype(str)
    origin = dict(zip(recs["file"], recs["start_datetime"]))
    lost = sorted(set(det["file"]) - set(origin))
    if lost:
        names = {Path(f).name: f for f in origin}
        det["file"] = [f if f in origin else names.get(Path(f).name, f) for f in det["file"]]
        lost = sorted(set(det["file"]) - set(origin))
        if lost:
            raise ParameterError(f"{len(lost)} detection file(s) are not among the recordings, "
                                 f"e.g. {lost[0]}")
    when = pd.DatetimeIndex(det["file"].map(origin)) + pd.to_timedelta(
        det["start_time"].astype(float).to_numpy(), unit="s")
    det["period"] = when.tz_convert(zone).floor(_unit(by)).as_unit("ns")
    effort = _effort(recs, by, zone)
    key = "site" if per == "site" else "file"
    if per == "site":
        if site is None:
            name_of = site_of
        elif isinstance(site, Mapping):
            name_of = lambda f: site.get(f, site.get(Path(f).name, site_of(f)))  # noqa: E731
        else:
            name_of = site
        sites = {f: str(name_of(f)) for f in recs["file"]}
        effort["site"], det["site"] = effort["file"].map(sites), det["file"].map(sites)
    if by == "hour_of_day":
        effort["period"], det["period"] = effort["period"].dt.hour, det["period"].dt.hour
    effort = effort.groupby([key, "period"], as_index=False)["effort_s"].sum()
    counts = det.groupby([key, "annotation", "period"]).size().rename("detections")
    classes = sorted(det["annotation"].astype(str).unique()) or ["detection"]
    grid = effort.merge(pd.DataFrame({"annotation": classes}), how="cross")
    out = grid.merge(counts.reset_index(), on=[key, "annotation", "period"], how="left")
    out["detections"] = out["detections"].fillna(0).astype(np.int64)
    out["effort_minutes"] = out.pop("effort_s") / 60.0
    out["detections_per_hour"] = out["detections"] / (out["effort_minutes"] / 60.0)
    out = out.sort_values([key, "annotation", "period"], kind="stable").reset_index(drop=True)
    out.attrs.update(by=by, per=per, tz=str(zone))
    return out[[key, "annotation", "period", "detections", "effort_minutes", "detections_per_hour"]]


# --------------------------------------------------------------------------- plots
def _check(table: pd.DataFrame, by: Iterable[str], what: str) -> str:
    got = table.attrs.get("by")
    if got not in by:
        raise ParameterError(f"{what} needs an activity table with by in {tuple(by)}, "
                             f"got by={got!r}")
    return "site" if "site" in table.columns else "file"


def _finish(fig, fname):
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=120)
    return fig


def plot_hour_of_day(table: pd.DataFrame, fname: str | Path | None = None, rate: bool = True):
    """Detections per recorded hour (or counts) against hour of day, one line per site.

    `table` comes from ``activity(..., by="hour_of_day")`` or ``by="hour"``.
    """
    import matplotlib.pyplot as plt

    key = _check(table, ("hour", "hour_of_day"), "plot_hour_of_day")
    t = table.copy()
    if t.attrs["by"] == "hour":
        t["period"] = pd.DatetimeIndex(t["period"]).hour
    g = t.groupby([key, "annotation", "period"], as_index=False)[_SUMS].sum()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for (name, cls), part in g.groupby([key, "annotation"]):
        y = part["detections"] / (part["effort_minutes"] / 60) if rate else part["detections"]
        ax.plot(part["period"], y, marker="o", label=f"{name} / {cls}")
    ax.set(xlabel=f"hour of day ({table.attrs.get('tz', 'UTC')})",
           ylabel="detections per recorded hour" if rate else "detections", xlim=(-0.5, 23.5))
    ax.set_xticks(range(0, 24, 2))
    ax.legend(fontsize="small")
    return _finish(fig, fname)


def plot_dates(table: pd.DataFrame, fname: str | Path | None = None, rate: bool = True):
    """Detections per recorded hour (or counts) per date; from ``by="day"`` or ``by="hour"``."""
    import matplotlib.pyplot as plt

    key = _check(table, ("hour", "day"), "plot_dates")
    t = table.copy()
    t["period"] = pd.DatetimeIndex(t["period"]).floor("D")
    g = t.groupby([key, "annotation", "period"], as_index=False)[_SUMS].sum()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for (name, cls), part in g.groupby([key, "annotation"]):
        y = part["detections"] / (part["effort_minutes"] / 60) if rate else part["detections"]
        ax.plot(part["period"].dt.tz_localize(None), y, marker="o", label=f"{name} / {cls}")
    ax.set(xlabel="date", ylabel="detections per recorded hour" if rate else "detections")
    ax.legend(fontsize="small")
    fig.autofmt_xdate()
    return _finish(fig, fname)


def plot_heatmap(table: pd.DataFrame, fname: str | Path | None = None,
                 annotation: str | None = None):
    """Date x hour-of-day heat map of detections per recorded hour, one panel per site.

    Unrecorded hours are blank (not zero). `table` comes from ``activity(..., by="hour")``.
    """
    import matplotlib.pyplot as plt

    key = _check(table, ("hour",), "plot_heatmap")
    t = table if annotation is None else table[table["annotation"] == annotation]
    t = t.groupby([key, "period"], as_index=False)[_SUMS].sum()
    period = pd.DatetimeIndex(t["period"])
    t["date"], t["hour"] = period.tz_localize(None).floor("D"), period.hour
    sites = list(dict.fromkeys(t[key]))
    fig, axes = plt.subplots(len(sites), 1, figsize=(7, 1.2 + 1.8 * len(sites)), squeeze=False,
                             layout="constrained")
    image = None
    for ax, name in zip(axes[:, 0], sites):
        part = t[t[key] == name]
        rate = part["detections"] / (part["effort_minutes"] / 60)
        grid = part.assign(rate=rate).pivot_table(index="date", columns="hour", values="rate")
        grid = grid.reindex(columns=range(24))
        image = ax.imshow(grid.to_numpy(float), aspect="auto", cmap="viridis",
                          extent=(-0.5, 23.5, len(grid) - 0.5, -0.5), interpolation="nearest")
        ax.set_yticks(range(len(grid)))
        ax.set_yticklabels([d.strftime("%Y-%m-%d") for d in grid.index], fontsize="small")
        ax.set(title=str(name), xlabel=f"hour of day ({table.attrs.get('tz', 'UTC')})")
        ax.set_xticks(range(0, 24, 2))
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="detections per recorded hour")
    if fname is not None:
        fig.savefig(fname, dpi=120)
    return fig


# --------------------------------------------------------------------------- command line
def add_command(subparsers, common) -> None:
    """Register ``soundscape activity`` on the CLI's subparsers."""
    import argparse

    p = subparsers.add_parser(
        "activity", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="detections per hour / day / hour of day, with recording effort",
        description="Count detections per period with the minutes recorded in it (periods "
                    "without recordings are left out, not read as absences).",
        epilog="example:\n  soundscape activity detections.csv --recordings recordings/ --by hour "
               "--output activity.csv --plots plots/")
    p.add_argument("detections", help="detection table (CSV/TSV with file, start_time, ...)")
    p.add_argument("--recordings", required=True,
                   help="folder (searched recursively) or file of every recording made")
    p.add_argument("--by", choices=BY, default="hour")
    p.add_argument("--per", choices=PER, default="site")
    p.add_argument("--pattern", help="file-name time pattern, e.g. %%Y%%m%%d_%%H%%M%%S")
    p.add_argument("--tz", help="zone of times without one (file names); default UTC")
    p.add_argument("--output_tz", help="zone of the periods (hours of day); default UTC")
    p.add_argument("--output", default="activity.csv", help="table to write (default activity.csv)")
    p.add_argument("--plots", help="folder for the hour-of-day, date and heat-map plots (PNG)")


def run_command(args) -> int:
    """``soundscape activity``: write the table (and plots); returns the exit status."""
    source = Path(args.detections)
    sep = "\t" if source.suffix.lower() in (".tsv", ".txt") else ","
    det = pd.read_csv(source, sep=sep)
    kw = dict(recordings=args.recordings, per=args.per, pattern=args.pattern, tz=args.tz,
              output_tz=args.output_tz)
    table = activity(det, by=args.by, **kw)
    table.to_csv(args.output, index=False)
    print(f"wrote {args.output} ({len(table)} rows)")
    if args.plots:
        import matplotlib

        matplotlib.use("Agg")
        out = Path(args.plots)
        out.mkdir(parents=True, exist_ok=True)
        hourly = table if args.by == "hour" else activity(det, by="hour", **kw)
        plot_hour_of_day(hourly, fname=out / "hour_of_day.png")
        plot_dates(hourly, fname=out / "dates.png")
        plot_heatmap(hourly, fname=out / "heatmap.png")
        print(f"wrote hour_of_day.png, dates.png, heatmap.png to {out}")
    return 0
