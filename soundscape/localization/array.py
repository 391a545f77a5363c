"""Recorder arrays: positions in a local metric frame, start times and clock corrections.

A `RecorderArray` holds one row per recorder file: its position in metres (``x``, ``y``
and optionally ``z``, or ``latitude``/``longitude`` converted to a local east/north frame
around the centroid) and when its recording started on a common clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..audio_files import audio_info
from ..errors import ParameterError

__all__ = ["RecorderArray", "speed_of_sound", "lonlat_to_local", "EARTH_RADIUS_M"]

#: mean Earth radius (IUGG), metres
EARTH_RADIUS_M = 6_371_008.8


def speed_of_sound(temperature: float = 20.0) -> float:
    """Speed of sound in dry air (m/s) at `temperature` degrees Celsius.

    Uses ``331.3 * sqrt(1 + T / 273.15)`` (343.2 m/s at 20 degrees C).
    """
    if not np.isfinite(temperature) or temperature <= -273.15:
        raise ParameterError(
            f"temperature must be a finite number of degrees C > -273.15, got {temperature!r}"
        )
    return float(331.3 * np.sqrt(1.0 + temperature / 273.15))


def lonlat_to_local(
    latitude, longitude, origin: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Project latitude/longitude (degrees) to east/north metres (equirectangular).

    Parameters
    ----------
    latitude, longitude : array-like
        Degrees (WGS84).
    origin : (lat0, lon0), optional
        Centre of the projection; default the centroid of the points.

    Returns
    -------
    x, y : ndarray
        Metres east and north of the origin (accurate to well under a centimetre over a
        few hundred metres).
    origin : (lat0, lon0)
    """
    lat = np.asarray(latitude, dtype=float)
    lon = np.asarray(longitude, dtype=float)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise ParameterError("latitude and longitude must be finite numbers of degrees")
    if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
        raise ParameterError("latitude must lie in [-90, 90] and longitude in [-180, 180] degrees")
    if origin is None:
        origin = (float(lat.mean()), float(lon.mean()))
    lat0, lon0 = origin
    dlon = (lon - lon0 + 180.0) % 360.0 - 180.0
    x = EARTH_RADIUS_M * np.radians(dlon) * np.cos(np.radians(lat0))
    y = EARTH_RADIUS_M * np.radians(lat - lat0)
    return x, y, (float(lat0), float(lon0))


def _start_seconds(values: pd.Series) -> np.ndarray:
    """Start times as float seconds: numbers as they are, datetimes relative to the earliest."""
    if pd.api.types.is_numeric_dtype(values):
        out = values.to_numpy(float)
    else:
        try:
            stamps = pd.to_datetime(values, utc=True, format="mixed")
        except (ValueError, TypeError) as exc:
            raise ParameterError(
                f"start_time column: cannot read the values as seconds or datetimes ({exc})"
            ) from exc
        out = ((stamps - stamps.min()).dt.total_seconds()).to_numpy(float)
    if not np.isfinite(out).all():
        raise ParameterError("start_time column: every recorder needs a finite start time")
    return out


def _metadata_starts(files: list[str]) -> dict:
    """``{file: Audio.metadata["start_datetime"]}`` for files whose metadata has one."""
    from ..audio import Audio

    out = {}
    for f in files:
        if not Path(f).is_file():
            return {}
        meta = Audio.from_file(f, duration=1e-3).metadata
        if meta.get("start_datetime") is None:
            return {}
        out[f] = meta["start_datetime"]
    return out


class RecorderArray:
    """Positions and synchronised start times of the recorders of an array.

    Parameters
    ----------
    positions : DataFrame
        One row per recorder: ``file`` and either ``x``, ``y`` [, ``z``] in metres or
        ``latitude``, ``longitude`` [, ``elevation``] in degrees/metres (converted to a
        local east/north/up frame around the centroid). Optional ``start_time``: when the
        recording started, in seconds on a common clock or as datetimes; missing, the
        audio metadata ``start_datetime`` is used where every file has one (see
        `start_datetimes`), else all recordings are taken to start together. Optional
        ``clock_offset`` (seconds the recorder's clock runs ahead of true time).
    clock_offsets : DataFrame or dict, optional
        Per-recorder clock corrections, ``{file: seconds}`` or a table with columns
        ``file`` and ``clock_offset``; they replace the column of `positions`. A
        recorder's true start is ``start_time - clock_offset``.
    start_datetimes : dict, optional
        ``{file: datetime}`` start times, used when `positions` has no ``start_time``
        column; when neither is given, ``Audio.metadata["start_datetime"]`` of every file
        is used if all files have one.

    Attributes
    ----------
    files : list of str
    xyz : ndarray (n, dims)
        Positions in metres.
    start : ndarray (n,)
        Corrected start times, seconds after the earliest recording started.
    origin : (lat, lon) or None
        The projection centre when positions were given in degrees.
    """

    def __init__(
        self,
        positions: pd.DataFrame,
        clock_offsets: pd.DataFrame | Mapping | None = None,
        start_datetimes: Mapping | None = None,
    ):
        if not isinstance(positions, pd.DataFrame):
            raise ParameterError(
                f"positions must be a DataFrame with a file column, got {type(positions).__name__}"
            )
        if "file" not in positions.columns:
            raise ParameterError(
                f"positions needs a 'file' column; it has {list(positions.columns)}"
            )
        table = positions.reset_index(drop=True)
        self.files = [str(f) for f in table["file"]]
        if len(set(self.files)) != len(self.files):
            dup = pd.Series(self.files)[pd.Series(self.files).duplicated()].iloc[0]
            raise ParameterError(f"positions lists file {dup!r} more than once")
        if len(self.files) < 2:
            raise ParameterError(f"an array needs at least 2 recorders, got {len(self.files)}")
        self.origin: tuple[float, float] | None = None
        if {"x", "y"} <= set(table.columns):
            cols = ["x", "y"] + (["z"] if "z" in table.columns else [])
            xyz = table[cols].to_numpy(float)
        elif {"latitude", "longitude"} <= set(table.columns):
            x, y, self.origin = lonlat_to_local(table["latitude"], table["longitude"])
            xyz = np.column_stack([x, y])
            if "elevation" in table.columns:
                elev = table["elevation"].to_numpy(float)
                xyz = np.column_stack([xyz, elev - elev.mean()])
        else:
            raise ParameterError(
                "positions needs columns x, y [, z] (metres) or latitude, longitude; "
                f"it has {list(table.columns)}"
            )
        if not np.isfinite(xyz).all():
            bad = self.files[int(np.flatnonzero(~np.isfinite(xyz).all(axis=1))[0])]
            raise ParameterError(f"position of {bad!r} is not finite")
        self.xyz = xyz
        if "start_time" in table.columns:
            start = _start_seconds(table["start_time"])
        elif (start_datetimes := start_datetimes or _metadata_starts(self.files)) and all(
            f in start_datetimes for f in self.files
        ):
            start = _start_seconds(pd.Series([start_datetimes[f] for f in self.files]))
        else:
            start = np.zeros(len(self.files))
        offsets = self._offsets(table, clock_offsets)
        start = start - offsets
        self.start = start - start.min()
        self.clock_offset = offsets
        self._index = {f: i for i, f in enumerate(self.files)}
        self._info: dict[str, tuple[int, int]] = {}

    def _offsets(self, table: pd.DataFrame, clock_offsets) -> np.ndarray:
        if clock_offsets is None:
            if "clock_offset" in table.columns:
                out = table["clock_offset"].fillna(0.0).to_numpy(float)
            else:
                out = np.zeros(len(self.files))
        else:
            if isinstance(clock_offsets, pd.DataFrame):
                missing = {"file", "clock_offset"} - set(clock_offsets.columns)
                if missing:
                    raise ParameterError(f"clock_offsets table lacks column(s) {sorted(missing)}")
                clock_offsets = dict(
                    zip(clock_offsets["file"].astype(str), clock_offsets["clock_offset"])
                )
            unknown = set(map(str, clock_offsets)) - set(self.files)
            if unknown:
                raise ParameterError(
                    f"clock_offsets names file(s) not in the array: {sorted(unknown)}"
                )
            out = np.array([float(clock_offsets.get(f, 0.0)) for f in self.files])
        if not np.isfinite(out).all():
            raise ParameterError("clock_offset values must be finite seconds")
        return out

    # ------------------------------------------------------------------ basics
    @property
    def dims(self) -> int:
        """2 (x, y) or 3 (x, y, z)."""
        return self.xyz.shape[1]

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        span = np.ptp(self.xyz[:, :2], axis=0)
        return (f"<RecorderArray({len(self)} recorders, {self.dims}-D, "
                f"span {span[0]:.1f} x {span[1]:.1f} m)>")

    def index(self, file) -> int:
        """Row of `file` in the array (ParameterError if it is not a recorder)."""
        try:
            return self._index[str(file)]
        except KeyError:
            raise ParameterError(
                f"file {str(file)!r} is not a recorder of the array "
                f"(recorders: {self.files[:5]}{'...' if len(self) > 5 else ''})"
            ) from None

    def table(self) -> pd.DataFrame:
        """The array as a table: file, x, y [, z], start_time (corrected seconds)."""
        cols = {"file": self.files, "x": self.xyz[:, 0], "y": self.xyz[:, 1]}
        if self.dims == 3:
            cols["z"] = self.xyz[:, 2]
        cols["start_time"] = self.start
        return pd.DataFrame(cols)

    def distances(self) -> np.ndarray:
        """(n, n) matrix of recorder-to-recorder distances in metres."""
        diff = self.xyz[:, None, :] - self.xyz[None, :, :]
        return np.sqrt((diff**2).sum(-1))

    def neighbours(self, file, max_distance: float | None = None) -> list[int]:
        """Rows of the recorders within `max_distance` metres of `file` (itself first)."""
        i = self.index(file)
        d = self.distances()[i]
        keep = np.flatnonzero(d <= (np.inf if max_distance is None else max_distance))
        keep = keep[np.argsort(d[keep], kind="stable")]
        return [int(k) for k in keep]

    # ------------------------------------------------------------------ time
    def file_info(self, i: int) -> tuple[int, int]:
        """(sample_rate, frames) of recorder `i` (read once from the header)."""
        f = self.files[i]
        if f not in self._info:
            if not Path(f).exists():
                raise FileNotFoundError(f"recorder file {f!r} of the array does not exist")
            info = audio_info(f)
            self._info[f] = (int(info.samplerate), int(info.frames))
        return self._info[f]

    def coverage(self) -> pd.DataFrame:
        """Each recording's span on the common clock: file, start, end (seconds)."""
        rows = []
        for i, f in enumerate(self.files):
            rate, frames = self.file_info(i)
            rows.append((f, self.start[i], self.start[i] + frames / rate))
        return pd.DataFrame(rows, columns=["file", "start", "end"])

    def check_overlap(self, rows: list[int] | None = None) -> None:
        """Raise ParameterError naming the files when recordings share no common time."""
        rows = list(range(len(self))) if rows is None else rows
        cov = self.coverage().iloc[rows]
        i_late, i_early = int(np.argmax(cov["start"].to_numpy())), int(
            np.argmin(cov["end"].to_numpy())
        )
        if cov["start"].iloc[i_late] >= cov["end"].iloc[i_early]:
            raise ParameterError(
                f"recordings do not overlap in time: {cov['file'].iloc[i_early]!r} ends at "
                f"{cov['end'].iloc[i_early]:.3f} s but {cov['file'].iloc[i_late]!r} starts at "
                f"{cov['start'].iloc[i_late]:.3f} s on the common clock; check the start_time and "
                "clock_offset columns"
            )
