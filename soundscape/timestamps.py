"""When a recording started: from recorder metadata, the file name, or a user table.

Autonomous recorders stamp their files in a few common ways:

- AudioMoth writes a comment (the WAV ``ICMT`` chunk) such as ``Recorded at 19:30:00
  01/05/2024 (UTC) by AudioMoth 24F319055FDF1B37 at medium gain while battery was 4.3V
  and temperature was 12.5C.``;
- GUANO metadata (Wildlife Acoustics, AudioMoth firmware with GUANO, Kaleidoscope) holds a
  ``Timestamp`` and often the device serial and temperature (read with the optional
  ``guano`` package, extra ``metadata``);
- nearly every recorder names files ``YYYYMMDD_HHMMSS`` (``20240501_193000.WAV``,
  ``SITE_20240501_193000.wav``).

`recording_start` tries these in turn and returns a timezone-aware `datetime`;
`recording_metadata` returns it with the device id, gain, battery and temperature where
present; `add_datetimes` adds ``start_datetime`` / ``end_datetime`` columns to score and
detection tables. A file whose time cannot be read is a `ParameterError` naming the file.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Mapping
from zoneinfo import ZoneInfo

import pandas as pd

from .errors import ParameterError

__all__ = ["recording_start", "recording_metadata", "parse_filename_time", "add_datetimes",
           "read_wav_comment", "stamp_audio", "FILENAME_PATTERNS"]

#: file-name patterns tried in order (named groups Y m d H M S); a user pattern goes first
FILENAME_PATTERNS = (
    r"(?P<Y>\d{4})(?P<m>\d{2})(?P<d>\d{2})[_T-](?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})",
    r"(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})[_T ](?P<H>\d{2})[-:_](?P<M>\d{2})[-:_](?P<S>\d{2})",
)

_AUDIOMOTH = re.compile(
    r"Recorded at (?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2}) (?P<d>\d{2})/(?P<m>\d{2})/(?P<Y>\d{4})"
    r"\s*\((?P<tz>UTC(?:[+-]\d{1,2}(?::?\d{2})?)?)\)")
_DEVICE = re.compile(r"by (?P<device>AudioMoth [0-9A-Fa-f]+)")
_GAIN = re.compile(r"at (?P<gain>[\w-]+) gain")
_BATTERY = re.compile(r"battery (?:state )?was (?:(?:less|greater) than )?(?P<battery>[\d.]+)V")
_TEMPERATURE = re.compile(r"temperature was (?P<temperature>-?[\d.]+)C")


def _zone(tz: str | tzinfo | None) -> tzinfo:
    if tz is None:
        return timezone.utc
    if isinstance(tz, tzinfo):
        return tz
    if str(tz).upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(str(tz))
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError
        raise ParameterError(f"unknown time zone {tz!r} (use an IANA name such as "
                             f"'America/New_York', or 'UTC')") from exc


def _localize(moment: datetime, tz: str | tzinfo | None) -> datetime:
    return moment.replace(tzinfo=_zone(tz)) if moment.tzinfo is None else moment


# --------------------------------------------------------------------------- WAV comments
def read_wav_comment(path: str | Path) -> str | None:
    """The text of a WAV file's ``ICMT`` (LIST/INFO comment) chunk, or None.

    Only the chunk headers are read (no audio data); a non-WAV file gives None.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "little" if head[:4] == b"RIFF" else "big"
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], order)
                if cid == b"LIST":
                    body = fh.read(size + (size & 1))
                    if body[:4] == b"INFO":
                        pos = 4
                        while pos + 8 <= len(body):
                            sid = body[pos:pos + 4]
                            ssize = int.from_bytes(body[pos + 4:pos + 8], order)
                            if sid == b"ICMT":
                                text = body[pos + 8:pos + 8 + ssize]
                                return text.split(b"\0")[0].decode("utf-8", "replace").strip()
                            pos += 8 + ssize + (ssize & 1)
                else:
                    fh.seek(size + (size & 1), 1)
    except OSError:
        return None


def _audiomoth(comment: str) -> dict:
    """Start time and recorder state from an AudioMoth comment ({} if it is not one)."""
    found = _AUDIOMOTH.search(comment)
    if not found:
        return {}
    g = found.groupdict()
    moment = datetime(int(g["Y"]), int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"]))
    offset = g["tz"][3:]
    zone = timezone.utc
    if offset:
        sign = -1 if offset[0] == "-" else 1
        hours, _, minutes = offset[1:].partition(":")
        if not minutes and len(hours) > 2:  # UTC+0530
            hours, minutes = hours[:-2], hours[-2:]
        h, m = int(hours), int(minutes or 0)
        zone = timezone(sign * timedelta(hours=h, minutes=m))
    out: dict = {"start_datetime": moment.replace(tzinfo=zone), "time_source": "audiomoth_comment"}
    for pattern, key, cast in ((_DEVICE, "device_id", str), (_GAIN, "gain", str),
                               (_BATTERY, "battery_v", float),
                               (_TEMPERATURE, "temperature_c", float)):
        hit = pattern.search(comment)
        if hit:
            out[key] = cast(hit.group(1))
    return out


def _guano(path: Path) -> dict:
    """Start time and device details from GUANO metadata ({} without guano or metadata)."""
    try:
        import guano
    except ImportError:
        return {}
    try:
        meta = guano.GuanoFile(str(path))
    except Exception:  # not a WAV, no GUANO chunk, or a malformed one
        return {}
    if not meta:
        return {}
    out: dict = {}
    stamp = meta.get("Timestamp", None)
    if isinstance(stamp, datetime):
        out["start_datetime"], out["time_source"] = stamp, "guano"
    for key, name in (("Serial", "device_id"), ("Make", "make"), ("Model", "model"),
                      ("Temperature Int", "temperature_c"), ("Temperature Ext", "temperature_c")):
        value = meta.get(key, None)
        if value is not None and name not in out:
            out[name] = _number(value) if name == "temperature_c" else str(value)
    return out


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


# --------------------------------------------------------------------------- file names
def parse_filename_time(name: str | Path, pattern: str | None = None,
                        tz: str | tzinfo | None = None) -> datetime | None:
    """The date and time in a file name, or None when no pattern matches.

    Parameters
    ----------
    name : str or Path
        A file name or path (only the name is used).
    pattern : str, optional
        A ``datetime.strptime`` format matched anywhere in the name (e.g.
        ``"%Y%m%d_%H%M%S"``) or a regular expression with named groups ``Y m d H M S``;
        tried before the built-in `FILENAME_PATTERNS`.
    tz : str or tzinfo, optional
        Time zone of the stamp (names carry none); default UTC.
    """
    stem = Path(name).name
    patterns = list(FILENAME_PATTERNS)
    if pattern is not None:
        if "%" in pattern:
            moment = _strptime_anywhere(stem, pattern)
            if moment is not None:
                return _localize(moment, tz)
        else:
            patterns.insert(0, pattern)
    for regex in patterns:
        for hit in re.finditer(regex, stem):
            g = hit.groupdict()
            try:
                moment = datetime(int(g["Y"]), int(g["m"]), int(g["d"]), int(g.get("H") or 0),
                                  int(g.get("M") or 0), int(g.get("S") or 0))
            except (ValueError, KeyError):
                continue
            return _localize(moment, tz)
    return None


def _strptime_anywhere(stem: str, fmt: str) -> datetime | None:
    """`strptime` of `fmt` on every substring of the length the format gives."""
    width = len(datetime(2000, 10, 10, 10, 10, 10).strftime(fmt))
    for i in range(0, max(1, len(stem) - width + 1)):
        try:
            return datetime.strptime(stem[i:i + width], fmt)
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------- public API
def recording_metadata(path: str | Path, pattern: str | None = None,
                       tz: str | tzinfo | None = None,
                       starts: Mapping | pd.DataFrame | None = None,
                       required: bool = False) -> dict:
    """Start time and recorder details of one file.

    Sources, first found wins: the user table `starts`, GUANO metadata, an AudioMoth
    comment, the file name.

    Parameters
    ----------
    path : str or Path
    pattern : str, optional
        A file-name pattern (see `parse_filename_time`).
    tz : str or tzinfo, optional
        Zone of times that carry none (file names, the table); default UTC.
    starts : dict or DataFrame, optional
        Start times given by the user: ``{file: datetime or ISO text}``, or a table with
        columns ``file`` and ``start_datetime``. Files are matched by full path, then by
        name.
    required : bool
        Raise when no source gives a time (default: ``start_datetime`` is None).

    Returns
    -------
    dict
        ``start_datetime`` (aware datetime or None), ``time_source``, and where present
        ``device_id``, ``gain``, ``battery_v``, ``temperature_c``, ``comment``.
    """
    path = Path(path)
    out: dict = {"start_datetime": None, "time_source": None}
    if starts is not None:
        given = _lookup(starts, path)
        if given is not None:
            out.update(start_datetime=_parse_given(given, path, tz), time_source="table")
    comment = read_wav_comment(path) if path.is_file() else None
    if comment:
        out["comment"] = comment
    found = {**_audiomoth(comment or ""), **_guano(path)} if path.is_file() else {}
    if out["start_datetime"] is None and found.get("start_datetime") is not None:
        out.update(start_datetime=found["start_datetime"], time_source=found["time_source"])
    for key, value in found.items():
        if key not in ("start_datetime", "time_source"):
            out.setdefault(key, value)
    if out["start_datetime"] is None:
        moment = parse_filename_time(path, pattern, tz)
        if moment is not None:
            out.update(start_datetime=moment, time_source="filename")
    if out["start_datetime"] is not None:
        out["start_datetime"] = _localize(out["start_datetime"], tz)
    elif required:
        raise ParameterError(
            f"{path}: cannot read the recording's start time: no GUANO or AudioMoth timestamp, "
            "and the name matches no pattern (expected e.g. 20240501_193000.wav); pass "
            "pattern='%Y%m%d_%H%M%S'-style or a table of starts")
    return out


def recording_start(path: str | Path, pattern: str | None = None,
                    tz: str | tzinfo | None = None,
                    starts: Mapping | pd.DataFrame | None = None) -> datetime:
    """The timezone-aware start time of a recording (ParameterError naming the file if none).

    See `recording_metadata` for the sources and parameters.
    """
    return recording_metadata(path, pattern, tz, starts, required=True)["start_datetime"]


def _lookup(starts, path: Path):
    if isinstance(starts, pd.DataFrame):
        missing = {"file", "start_datetime"} - set(starts.columns)
        if missing:
            raise ParameterError(f"the table of starts needs columns 'file' and "
                                 f"'start_datetime'; it lacks {sorted(missing)}")
        starts = dict(zip(starts["file"].astype(str), starts["start_datetime"]))
    for key in (str(path), path.name):
        if key in starts:
            return starts[key]
    by_name = {Path(str(k)).name: v for k, v in starts.items()}
    return by_name.get(path.name)


def _parse_given(value, path, tz) -> datetime:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"{path}: unparseable start time {value!r} ({exc})") from None
    if pd.isna(stamp):
        raise ParameterError(f"{path}: start time is missing (NaT)")
    return _localize(stamp.to_pydatetime(), tz)


def add_datetimes(table: pd.DataFrame, starts: Mapping | pd.DataFrame | None = None,
                  pattern: str | None = None, tz: str | tzinfo | None = None,
                  output_tz: str | tzinfo | None = None) -> pd.DataFrame:
    """A copy of a score or detection table with ``start_datetime`` / ``end_datetime`` columns.

    Parameters
    ----------
    table : DataFrame
        A score table (index ``file, start_time, end_time``) or a detection table
        (columns ``file, start_time, end_time``); times are seconds from the file's start.
    starts : dict or DataFrame, optional
        Start time per file (see `recording_metadata`); files not in it are read from
        their metadata or names.
    pattern, tz
        File-name pattern and zone of naive times (see `recording_metadata`).
    output_tz : str or tzinfo, optional
        Zone of the new columns; default UTC.

    Raises
    ------
    ParameterError
        A file whose start time cannot be found or parsed (the message names it).
    """
    if not isinstance(table, pd.DataFrame):
        raise ParameterError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    indexed = "file" in (table.index.names or []) and "file" not in table.columns
    frame = table.reset_index() if indexed else table
    for col in ("file", "start_time", "end_time"):
        if col not in frame.columns:
            raise ParameterError(f"table needs 'file', 'start_time' and 'end_time' (index or "
                                 f"columns); it lacks {col!r}")
    files = frame["file"].astype(str)
    origin = {f: recording_start(f, pattern, tz, starts) for f in files.unique()}
    zone = _zone(output_tz)
    base = pd.to_datetime(files.map(lambda f: origin[f].astimezone(timezone.utc)), utc=True)
    out = table.copy()
    start = base + pd.to_timedelta(frame["start_time"].to_numpy(float), unit="s")
    end = base + pd.to_timedelta(frame["end_time"].to_numpy(float), unit="s")
    out["start_datetime"] = pd.DatetimeIndex(start).tz_convert(zone)
    out["end_datetime"] = pd.DatetimeIndex(end).tz_convert(zone)
    return out


def stamp_audio(audio, pattern: str | None = None, tz: str | tzinfo | None = None,
                starts: Mapping | pd.DataFrame | None = None):
    """A copy of `audio` (from `Audio.from_file`) whose metadata has its start time.

    ``metadata["start_datetime"]`` is the recording's start plus the segment's offset;
    the recorder details of `recording_metadata` are added too.
    """
    path = audio.metadata.get("path")
    if path is None:
        raise ParameterError("audio has no metadata['path'] (load it with Audio.from_file)")
    meta = recording_metadata(path, pattern, tz, starts, required=True)
    meta["start_datetime"] += timedelta(seconds=float(audio.metadata.get("offset", 0.0)))
    return type(audio)._trusted(audio.samples, audio.sample_rate, {**audio.metadata, **meta})
