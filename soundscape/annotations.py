"""Raven Pro selection tables in and out, and one-hot clip labels from annotations.

An *annotation table* here is a tidy DataFrame with one row per annotated sound and
the columns ``file``, ``start_time``, ``end_time`` (seconds within ``file``),
``low_f``, ``high_f`` (Hz) and ``annotation`` (the class), as returned by
:func:`read_raven`.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from soundscape.audio_files import AUDIO_SUFFIXES
from soundscape.errors import AnnotationError, ParameterError
from soundscape.io import atomic_write

__all__ = ["read_raven", "write_raven", "clip_labels", "ANNOTATION_COLUMNS"]

ANNOTATION_COLUMNS = [
    "file", "start_time", "end_time", "low_f", "high_f", "annotation",
    "selection", "channel", "view", "source_table",
]
#: suffixes tried when a selection table names its recording without one (the one suffix list)
AUDIO_EXTENSIONS = tuple(sorted(AUDIO_SUFFIXES)) + tuple(sorted(s.upper() for s in AUDIO_SUFFIXES))

# Raven measurement columns (lower case); never taken for the annotation column.
_RAVEN_STANDARD = {
    "selection", "view", "channel", "begin time (s)", "end time (s)", "low freq (hz)",
    "high freq (hz)", "begin path", "end path", "begin file", "end file", "file offset (s)",
    "begin date", "end date", "begin clock time", "end clock time", "begin date time",
    "end date time", "begin hour", "delta time (s)", "delta freq (hz)",
}
# Usual names of annotation columns, used when no column holds text (numeric labels).
_USUAL_NAMES = {"annotation", "species", "label", "class", "call type", "sound type", "tag",
                "category", "id"}
_UNIT_SUFFIX = re.compile(r"\([^()]*\)\s*$")
_TABLE_SUFFIX = re.compile(r"(\.Table\.\d+)?(\.selections)?\.txt$", re.IGNORECASE)
_TOL = 1e-9


# --------------------------------------------------------------------------- reading
def _table_paths(paths) -> list[Path]:
    """Expand a path, folder, glob string or list of them into table files."""
    items = list(paths) if isinstance(paths, (list, tuple)) else [paths]
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.selections.txt")) or sorted(p.glob("*.txt"))
            if not found:
                raise FileNotFoundError(f"no Raven selection tables (*.txt) in folder {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif isinstance(item, str) and glob.has_magic(item):
            found = sorted(Path(x) for x in glob.glob(item))
            if not found:
                raise FileNotFoundError(f"no Raven selection tables match {item!r}")
            out.extend(found)
        else:
            raise FileNotFoundError(f"Raven selection table not found: {p}")
    return out


def _split_table(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Parse a tab-separated table into strings; also return each row's line number."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # Raven on Windows writes the system code page
    lines = text.splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise AnnotationError(f"{path}: empty file, expected a Raven header line "
                              "('Selection<TAB>View<TAB>Channel<TAB>Begin Time (s)...')")
    header = [h.strip() for h in numbered[0][1].split("\t")]
    while header and not header[-1]:
        header.pop()
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise AnnotationError(f"{path}: duplicate header columns {dupes}")
    rows, line_no = [], []
    for no, ln in numbered[1:]:
        fields = [f.strip() for f in ln.split("\t")]
        if len(fields) > len(header):
            if any(fields[len(header):]):
                raise AnnotationError(
                    f"{path}: line {no} has {len(fields)} fields but the header has "
                    f"{len(header)} columns {header}")
            fields = fields[:len(header)]
        rows.append(fields + [""] * (len(header) - len(fields)))
        line_no.append(no)
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    return frame, np.asarray(line_no, dtype=int)


def _where(path, lines, sel, i) -> str:
    return f"{path}: line {lines[i]} (Selection {sel[i]})"


def _first_bad(bad: np.ndarray, path, lines, sel, problem: Callable[[int], str]) -> None:
    """Raise naming the first row where ``bad`` holds."""
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AnnotationError(f"{_where(path, lines, sel, i)}: {problem(i)}")


def _numeric(frame, col, path, lines, sel, *, empty=None) -> np.ndarray:
    """Column as float; a non-numeric cell (or an empty one when empty is None) is an error."""
    raw = frame[col].astype(str)
    vals = pd.to_numeric(raw.where(raw != "", None), errors="coerce").to_numpy(float)
    bad = ~np.isfinite(vals) & ((raw != "").to_numpy() | (empty is None))
    _first_bad(bad, path, lines, sel, lambda i: f"column {col!r} has an " + (
        "empty cell" if raw.iloc[i] == "" else f"non-numeric or infinite value {raw.iloc[i]!r}")
        + f" ({int(bad.sum())} bad row(s) in this column)")
    return np.where(np.isnan(vals), np.nan if empty is None else empty, vals)


def _find_annotation_column(frame, path, annotation_column) -> str | None:
    cols = list(frame.columns)
    if annotation_column is not None:
        if annotation_column not in cols:
            raise AnnotationError(f"{path}: annotation column {annotation_column!r} not found;"
                                  f" columns are {cols}")
        return annotation_column
    other = [c for c in cols if c.lower() not in _RAVEN_STANDARD and not _UNIT_SUFFIX.search(c)]
    if frame.empty:
        usual = [c for c in other if c.lower() in _USUAL_NAMES]
        return (usual or other or [None])[0]

    def holds_text(c):
        s = frame[c].astype(str)
        s = s[s != ""]
        return len(s) > 0 and pd.to_numeric(s, errors="coerce").isna().any()

    text = [c for c in other if holds_text(c)]
    if len(text) == 1:
        return text[0]
    if not text:
        usual = [c for c in other if c.lower() in _USUAL_NAMES]
        if len(usual) == 1:
            return usual[0]
    if text:
        raise AnnotationError(f"{path}: {len(text)} columns could hold the annotations: {text};"
                              " pass annotation_column= to choose one")
    raise AnnotationError(f"{path}: no annotation column found (no column other than Raven "
                          f"measurements holds text; others are {other}); pass "
                          f"annotation_column= one of {cols}")


def _audio_for_table(path: Path, audio_files) -> str:
    stem = _TABLE_SUFFIX.sub("", path.name)
    if audio_files is not None and not isinstance(audio_files, (str, os.PathLike)):
        if callable(audio_files):
            return str(audio_files(stem))
        for key in (stem, path.name, str(path)):
            if key in audio_files:
                return str(audio_files[key])
        raise AnnotationError(f"{path}: audio_files has no entry for {stem!r} "
                              f"(tried keys {stem!r}, {path.name!r}, {str(path)!r})")
    folder = Path(audio_files) if audio_files is not None else path.parent
    if Path(stem).suffix.lower() in AUDIO_SUFFIXES and (folder / stem).is_file():
        return str(folder / stem)
    for ext in AUDIO_EXTENSIONS:
        if (folder / (stem + ext)).is_file():
            return str(folder / (stem + ext))
    return str(folder / stem) if audio_files is not None else stem


def _read_one(path: Path, annotation_column, audio_files) -> pd.DataFrame:
    frame, lines = _split_table(path)
    lower = {c.lower(): c for c in frame.columns}
    missing = [c for c in ("Begin Time (s)", "End Time (s)") if c.lower() not in lower]
    if missing:
        raise AnnotationError(f"{path}: missing required column(s) {missing}; "
                              f"columns present are {list(frame.columns)}")
    col = {k: lower.get(k.lower()) for k in (
        "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
        "High Freq (Hz)", "Begin Path", "File Offset (s)")}
    ann_col = _find_annotation_column(frame, path, annotation_column)
    n = len(frame)
    if col["Selection"]:
        raw_sel = frame[col["Selection"]].to_numpy(str)
        sel = _numeric(frame, col["Selection"], path, lines, raw_sel)
        _first_bad(sel != np.round(sel), path, lines, raw_sel,
                   lambda i: f"column {col['Selection']!r} must be a whole number")
        sel = sel.astype(np.int64)
    else:
        sel = np.arange(1, n + 1, dtype=np.int64)
    view = frame[col["View"]].to_numpy(str) if col["View"] else np.full(n, "Spectrogram 1")
    # Raven repeats each selection once per view: keep one row, the spectrogram's if any.
    # Rows of other views of a selection are dropped; rows sharing a view are all kept.
    order = np.argsort(~np.char.startswith(np.char.lower(view), "spectro"), kind="stable")
    uniq, first = np.unique(sel[order], return_index=True)
    keep = np.flatnonzero(view == view[order[first]][np.searchsorted(uniq, sel)])
    frame, lines, sel = frame.iloc[keep].reset_index(drop=True), lines[keep], sel[keep]
    numbers, counts = np.unique(sel, return_counts=True)
    if (counts > 1).any():
        repeated = numbers[counts > 1]
        where = "; ".join(f"Selection {n} on lines {lines[sel == n].tolist()}" for n in repeated[:3])
        warnings.warn(f"{path}: {len(repeated)} selection number(s) appear on more than one line "
                      f"of the same view ({where}); all these rows are kept", UserWarning,
                      stacklevel=3)

    b_col, e_col = col["Begin Time (s)"], col["End Time (s)"]
    begin, end = (_numeric(frame, c, path, lines, sel) for c in (b_col, e_col))
    for name, vals in ((b_col, begin), (e_col, end)):
        _first_bad(vals < 0, path, lines, sel, lambda i: f"column {name!r} is negative ({vals[i]})")
    _first_bad(end < begin, path, lines, sel,
               lambda i: f"column {e_col!r} ({end[i]}) is before {b_col!r} ({begin[i]})")
    start, stop = begin, end
    if col["Begin Path"]:
        files = frame[col["Begin Path"]].to_numpy(str)
        _first_bad(files == "", path, lines, sel, lambda i: f"{col['Begin Path']!r} is empty")
        if col["File Offset (s)"]:
            start = _numeric(frame, col["File Offset (s)"], path, lines, sel)
            _first_bad(start < 0, path, lines, sel, lambda i: f"column "
                       f"{col['File Offset (s)']!r} is negative ({start[i]})")
            stop = start + (end - begin)
        elif len(set(files)) > 1:
            raise AnnotationError(f"{path}: table covers {len(set(files))} audio files "
                                  f"(column {col['Begin Path']!r}) but has no 'File Offset (s)' "
                                  "column, so times within each file are unknown")
    else:
        files = np.full(len(frame), _audio_for_table(path, audio_files), dtype=object)
    freq = {k: _numeric(frame, col[h], path, lines, sel, empty=np.nan) if col[h]
            else np.full(len(frame), np.nan)
            for k, h in (("low_f", "Low Freq (Hz)"), ("high_f", "High Freq (Hz)"))}
    out = pd.DataFrame({
        "file": pd.Series(files, dtype=object).astype(str),
        "start_time": start.astype(float),
        "end_time": stop.astype(float),
        **freq,
        "annotation": frame[ann_col].astype(str) if ann_col else pd.Series([""] * len(frame)),
        "selection": sel,
        "channel": (_numeric(frame, col["Channel"], path, lines, sel, empty=1).astype(np.int64)
                    if col["Channel"] else np.ones(len(frame), np.int64)),
        "view": view[keep],
        "source_table": str(path),
    })
    used = {c for c in col.values() if c} | {ann_col}
    for extra in (c for c in frame.columns if c not in used):
        raw = frame[extra].astype(str)
        num = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
        out[extra] = num if (num.notna() | (raw == "")).all() else raw
    return out


def read_raven(paths, annotation_column: str | None = None,
               audio_files: Mapping | Callable[[str], str] | str | os.PathLike | None = None
               ) -> pd.DataFrame:
    """Read Raven Pro selection tables into one tidy annotation table.

    Parameters
    ----------
    paths : path, folder, glob string, or list of them
        A folder means its ``*.selections.txt`` tables (or all ``*.txt`` if none are named so).
    annotation_column : str, optional
        Header of the column holding the class. By default it is the one column that is
        not a Raven measurement and holds text (or, if none holds text, the one named like
        ``Annotation``/``Species``/``Label``/``Class``).
    audio_files : mapping, callable, or folder, optional
        Where each table's audio is, for tables without ``Begin Path``: a mapping keyed by
        the table's stem (name without ``.Table.1.selections.txt``), its file name or path;
        a callable ``stem -> audio path``; or a folder in which ``<stem>.wav/.flac/.ogg/.mp3``
        is looked up. By default the audio is looked up beside the table; the bare stem
        is used when it is not found.

    Returns
    -------
    pandas.DataFrame
        Columns ``file, start_time, end_time, low_f, high_f, annotation, selection,
        channel, view, source_table``, then any other columns of the tables. One row per
        selection (duplicate view rows dropped). In multi-file tables (``Begin Path`` and
        ``File Offset (s)``), times are relative to each row's file.

    Raises
    ------
    FileNotFoundError
        A table (or every match of a folder/glob) is missing.
    AnnotationError
        Missing columns, ambiguous annotation column, or bad times (names file, line,
        selection and column).
    """
    tables = [_read_one(p, annotation_column, audio_files) for p in _table_paths(paths)]
    tables = [t for t in tables if len(t)]
    if not tables:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in ANNOTATION_COLUMNS})
        return empty.astype({"start_time": float, "end_time": float, "low_f": float,
                             "high_f": float, "selection": np.int64, "channel": np.int64})
    out = pd.concat(tables, ignore_index=True)
    _warn_duplicate_selections(out)
    return out


_SAME_SELECTION = ["file", "channel", "start_time", "end_time", "low_f", "high_f", "annotation"]


def _warn_duplicate_selections(table: pd.DataFrame) -> None:
    """Warn when selections repeat another's file, channel, times, frequencies and class."""
    dup = table.duplicated(_SAME_SELECTION, keep="first")
    if not dup.any():
        return
    first = table.drop_duplicates(_SAME_SELECTION, keep="first").set_index(_SAME_SELECTION)
    examples = []
    for _, row in table[dup].head(3).iterrows():
        orig = first.loc[tuple(row[c] for c in _SAME_SELECTION)]
        orig = orig.iloc[0] if isinstance(orig, pd.DataFrame) else orig
        examples.append(f"Selection {row['selection']} of {row['source_table']} repeats Selection "
                        f"{orig['selection']} of {orig['source_table']} ({row['file']}, "
                        f"{row['start_time']}-{row['end_time']} s, {row['annotation']!r})")
    warnings.warn(f"{int(dup.sum())} duplicate selection(s): " + "; ".join(examples)
                  + ". They are kept; drop them (e.g. table.drop_duplicates()) if they were "
                  "entered twice", UserWarning, stacklevel=3)


# --------------------------------------------------------------------------- writing
def _audio_info(path: Path) -> tuple[float, float] | None:
    """(sample rate, duration) of an audio file, or None if it cannot be read."""
    from soundscape.audio import _is_mpeg, quiet_mpeg_decoder

    try:
        with quiet_mpeg_decoder(_is_mpeg(path)):
            info = soundfile.info(str(path))
    except (RuntimeError, OSError, ValueError):
        return None
    return float(info.samplerate), float(info.frames) / float(info.samplerate)


def _atomic_write(path: Path, frame: pd.DataFrame) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            frame.to_csv(fh, sep="\t", index=False, na_rep="", lineterminator="\n")

    return atomic_write(path, write, make_parents=True)


def write_raven(events: pd.DataFrame, path_or_dir: str | os.PathLike,
                annotation_column: str = "annotation", one_table_per_file: bool = True,
                audio_root: str | os.PathLike | None = None) -> list[Path]:
    """Write events as Raven Pro selection tables.

    Parameters
    ----------
    events : DataFrame
        Columns (or index levels) ``file``, ``start_time``, ``end_time`` and
        ``annotation_column``; optional ``low_f``/``high_f``; other columns (e.g. ``score``)
        are written as extra columns.
    path_or_dir : path
        With ``one_table_per_file`` a folder receiving ``<audio stem>.Table.1.selections.txt``
        per recording; otherwise the single table's path (a folder gets
        ``all_files.Table.1.selections.txt``).
    annotation_column : str
        Column holding the class; written under the header ``Annotation`` when it is
        ``"annotation"``, else under its own name.
    one_table_per_file : bool
        False writes one table with ``Begin Path`` and ``File Offset (s)``; ``Begin Time (s)``
        is then cumulative over the files in sorted order, as Raven does for multi-file
        tables. When any file's duration cannot be read, ``Begin Time (s)`` falls back to
        the offset within each file.
    audio_root : path, optional
        Folder that relative ``file`` paths are relative to (for reading sample rate and
        duration, and for ``Begin Path``).

    Notes
    -----
    ``Low Freq (Hz)`` defaults to 0 and ``High Freq (Hz)`` to the Nyquist frequency read
    from the audio file (0 if unreadable). Each table is written to a temporary file and
    then moved into place.

    Returns
    -------
    list of Path
        The tables written.
    """
    if not isinstance(events, pd.DataFrame):
        raise ParameterError(f"events must be a pandas DataFrame, got {type(events).__name__}")
    ev = events.reset_index() if any(n in ("file", "start_time", "end_time")
                                     for n in events.index.names) else events.copy()
    missing = [c for c in ("file", "start_time", "end_time", annotation_column)
               if c not in ev.columns]
    if missing:
        raise ParameterError(f"events lack column(s) {missing} (annotation_column="
                             f"{annotation_column!r}); columns are {list(ev.columns)}")
    for c in ("start_time", "end_time"):
        ev[c] = pd.to_numeric(ev[c], errors="coerce").astype(float).round(9)
    bad = ev["start_time"].isna() | ev["end_time"].isna() | (ev["start_time"] < 0)
    bad |= ev["end_time"] < ev["start_time"]
    if bad.any():
        r = ev[bad].iloc[0]
        raise ParameterError(f"events row {ev.index[bad][0]}: start_time {r['start_time']} and "
                             f"end_time {r['end_time']} must be numbers >= 0, end not before start")
    ev["file"] = ev["file"].astype(str)
    ev = ev.sort_values(["file", "start_time", "end_time"], kind="stable").reset_index(drop=True)
    root = Path(audio_root) if audio_root is not None else None
    audio = {f: (root / f if root is not None and not Path(f).is_absolute() else Path(f))
             for f in ev["file"].unique()}
    info = {f: _audio_info(p) for f, p in audio.items()}
    nyquist = ev["file"].map(lambda f: info[f][0] / 2 if info[f] else 0.0).astype(float)
    begin, end = ev["start_time"], ev["end_time"]
    raven = pd.DataFrame({
        "Selection": 0, "View": "Spectrogram 1", "Channel": 1,
        "Begin Time (s)": begin, "End Time (s)": end,
        "Low Freq (Hz)": ev["low_f"].astype(float).fillna(0.0) if "low_f" in ev else 0.0,
        "High Freq (Hz)": ev["high_f"].astype(float).fillna(nyquist) if "high_f" in ev else nyquist,
    }, index=ev.index)
    if not one_table_per_file:
        raven["Begin Path"] = ev["file"].map(lambda f: str(audio[f]))
        raven["File Offset (s)"] = begin
        if all(info.values()):  # Raven's multi-file time: files laid end to end
            durations = np.array([info[f][1] for f in audio])
            before = dict(zip(audio, np.concatenate([[0.0], np.cumsum(durations)[:-1]])))
            raven["Begin Time (s)"] = (begin + ev["file"].map(before)).round(9)
            raven["End Time (s)"] = (raven["Begin Time (s)"] + (end - begin)).round(9)
    label_header = "Annotation" if annotation_column == "annotation" else annotation_column
    for c in [annotation_column] + [c for c in ev.columns if c not in (
            "file", "start_time", "end_time", "low_f", "high_f", annotation_column)]:
        vals = ev[c]
        if c == annotation_column or not pd.api.types.is_numeric_dtype(vals):
            vals = vals.astype(str).str.replace(r"[\t\r\n]", " ", regex=True)
        raven[label_header if c == annotation_column else c] = vals

    target = Path(path_or_dir)
    if not one_table_per_file:
        if target.is_dir():
            target = target / "all_files.Table.1.selections.txt"
        return [_atomic_write(target, raven.assign(Selection=np.arange(1, len(raven) + 1)))]
    if target.exists() and not target.is_dir():
        raise ParameterError(f"path_or_dir {target} is a file; one_table_per_file=True "
                             "needs a folder")
    stems = pd.Series({f: Path(f).stem for f in audio}, dtype=object)
    if stems.duplicated().any():
        clash = sorted(stems[stems.duplicated(keep=False)].index)
        raise ParameterError(f"files with the same name would write the same table: {clash};"
                             " use one_table_per_file=False")
    return [_atomic_write(target / f"{stems[f]}.Table.1.selections.txt",
                          part.assign(Selection=np.arange(1, len(part) + 1)))
            for f, part in raven.groupby(ev["file"], sort=True)]


# --------------------------------------------------------------------------- clip labels
#: seconds an annotation may end after its recording before `clip_labels` warns
_PAST_END_TOL = 1e-3


def _warn_past_end(annotations: pd.DataFrame, ann: pd.DataFrame, durations: dict,
                   guessed: set) -> None:
    """Warn about annotations ending after the end of their recording (clips stop there)."""
    dur = ann["file"].map(durations)
    past = (ann["end_time"] > dur + _PAST_END_TOL) & ~ann["file"].isin(guessed)
    if not past.any():
        return
    examples = []
    for i in ann.index[past][:3]:
        r = annotations.loc[i]
        what = (f"Selection {r['selection']}" if "selection" in annotations.columns
                else f"row {i}")
        if "source_table" in annotations.columns:
            what += f" of {r['source_table']}"
        examples.append(f"{what} ends at {float(r['end_time']):.3f} s but {r['file']} lasts "
                        f"{durations[str(r['file'])]:.3f} s")
    warnings.warn(f"{int(past.sum())} annotation(s) end after the end of their recording: "
                  + "; ".join(examples) + ". Only the part within the recording is labelled; "
                  "check the table (another recording's selections?) or file_durations=",
                  UserWarning, stacklevel=3)


def _clip_grid(duration: float, clip: float, step: float, final_clip) -> np.ndarray:
    """Start times of the clips tiling [0, duration)."""
    n_full = int(np.floor((duration - clip) / step + _TOL)) + 1 if duration + _TOL >= clip else 0
    starts = np.round(np.arange(n_full) * step, 9)
    if final_clip == "full":
        last_end = starts[-1] + clip if n_full else 0.0
        if n_full == 0 or duration - last_end > _TOL:
            starts = np.append(starts, round(max(duration - clip, 0.0), 9))
    return starts


def clip_labels(annotations: pd.DataFrame, clip_duration: float, clip_overlap: float = 0.0,
                min_label_overlap: float = 0.25, classes: list[str] | None = None,
                file_durations: Mapping[str, float] | None = None,
                final_clip: str | None = None) -> pd.DataFrame:
    """One-hot labels of fixed-length clips from an annotation table.

    Parameters
    ----------
    annotations : DataFrame
        Columns ``file``, ``start_time``, ``end_time``, ``annotation`` (e.g. from
        :func:`read_raven`).
    clip_duration, clip_overlap : float
        Clips of ``clip_duration`` s start at 0 and every ``clip_duration - clip_overlap`` s.
    min_label_overlap : float
        A clip gets class c when an annotation of c overlaps it by at least this many
        seconds, or covers all of it (clip shorter than this), or lies wholly inside it
        (annotation shorter than this). Touching without overlap never counts.
    classes : list of str, optional
        Columns, in order; annotations of other classes are ignored. Default: all
        annotated classes, sorted.
    file_durations : mapping, optional
        ``file -> seconds``. Files listed here without annotations get all-zero rows.
        Missing durations are read from the audio file; if it cannot be read, the last
        annotation's end time is used and a warning says so.
    final_clip : None or "full"
        None drops a final partial clip; "full" adds a clip ending exactly at the end of
        the file (starting ``clip_duration`` earlier, or at 0 for a shorter file).

    Returns
    -------
    DataFrame
        Index ``(file, start_time, end_time)``, one 0/1 int column per class.
    """
    if not clip_duration > 0 or not np.isfinite(clip_duration):
        raise ParameterError(f"clip_duration must be > 0 seconds, got {clip_duration!r}")
    if not 0 <= clip_overlap < clip_duration:
        raise ParameterError(f"clip_overlap must be >= 0 and < clip_duration "
                             f"({clip_duration}), got {clip_overlap!r}")
    if not min_label_overlap >= 0:
        raise ParameterError(f"min_label_overlap must be >= 0, got {min_label_overlap!r}")
    if final_clip not in (None, "full"):
        raise ParameterError(f"final_clip must be None or 'full', got {final_clip!r}")
    missing = [c for c in ("file", "start_time", "end_time", "annotation")
               if c not in annotations.columns]
    if missing:
        raise ParameterError(f"annotations lack column(s) {missing}; columns are "
                             f"{list(annotations.columns)}")
    ann = annotations[["file", "start_time", "end_time", "annotation"]].copy()
    ann["file"] = ann["file"].astype(str)
    for c in ("start_time", "end_time"):
        ann[c] = pd.to_numeric(ann[c], errors="coerce")
    bad = ann["start_time"].isna() | ann["end_time"].isna() | (ann["end_time"] < ann["start_time"])
    if bad.any():
        r = ann[bad].iloc[0]
        raise AnnotationError(f"annotation row {ann.index[bad][0]} of file {r['file']}: "
                              f"start_time {r['start_time']} / end_time {r['end_time']} must "
                              "be numbers with end_time >= start_time")
    if classes is None:
        empty = ann["annotation"].isna() | (ann["annotation"].astype(str).str.strip() == "")
        if empty.any():
            r = ann[empty].iloc[0]
            raise AnnotationError(f"{int(empty.sum())} annotation(s) have no class, e.g. row "
                                  f"{ann.index[empty][0]} of file {r['file']} at "
                                  f"{r['start_time']} s; fill them or pass classes=")
        classes = sorted(ann["annotation"].astype(str).unique())
    classes = [str(c) for c in classes]
    if len(set(classes)) != len(classes):
        raise ParameterError(f"classes has duplicates: {classes}")
    ann = ann[ann["annotation"].astype(str).isin(classes)]
    code = pd.Categorical(ann["annotation"].astype(str), categories=classes).codes

    durations = {str(k): float(v) for k, v in (file_durations or {}).items()}
    guessed = []
    for f in sorted(set(annotations["file"].astype(str)) - set(durations)):
        got = _audio_info(Path(f))
        if got is None:
            ends = annotations.loc[annotations["file"].astype(str) == f, "end_time"]
            durations[f] = float(pd.to_numeric(ends).max())
            guessed.append(f)
        else:
            durations[f] = got[1]
    if guessed:
        warnings.warn(f"could not read the duration of {len(guessed)} audio file(s) "
                      f"(e.g. {guessed[0]}); using their last annotation's end time instead. "
                      "Pass file_durations= to set them.", UserWarning, stacklevel=2)

    _warn_past_end(annotations, ann, durations, set(guessed))

    step = clip_duration - clip_overlap
    by_file = {f: idx for f, idx in ann.groupby("file").indices.items()}
    a_start_all, a_end_all = ann["start_time"].to_numpy(float), ann["end_time"].to_numpy(float)
    blocks, index_parts = [], []
    for f in sorted(durations):
        starts = _clip_grid(durations[f], clip_duration, step, final_clip)
        ends = starts + clip_duration
        if final_clip == "full":  # the last clip ends at the file end, also in short files
            ends = np.minimum(ends, durations[f])
        ends = np.round(ends, 9)
        onehot = np.zeros((len(starts), len(classes)), dtype=np.int64)
        rows = by_file.get(f, np.array([], dtype=int))
        if len(starts) and len(rows):
            a0, a1, k = a_start_all[rows], a_end_all[rows], code[rows]
            # clips that can touch annotation j are a contiguous index range [lo, hi)
            lo = np.searchsorted(ends, a0, side="left")
            hi = np.searchsorted(starts, a1, side="right")
            counts = np.maximum(hi - lo, 0)
            ann_idx = np.repeat(np.arange(len(rows)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            clip_idx = lo[ann_idx] + offsets
            c0, c1 = starts[clip_idx], ends[clip_idx]
            s0, s1 = a0[ann_idx], a1[ann_idx]
            overlap = np.minimum(c1, s1) - np.maximum(c0, s0)
            need = np.minimum(min_label_overlap, np.minimum(c1 - c0, s1 - s0))
            hit = (overlap > _TOL) & (overlap >= need - _TOL)
            point = (s1 - s0 <= _TOL) & (s0 >= c0) & (s0 < c1)
            hit |= point
            onehot[clip_idx[hit], k[ann_idx[hit]]] = 1
        blocks.append(onehot)
        index_parts.append((np.full(len(starts), f, dtype=object), starts, ends))
    index = pd.MultiIndex.from_arrays(
        [np.concatenate([p[i] for p in index_parts]) if index_parts else np.array([], dtype=d)
         for i, d in enumerate((object, float, float))],
        names=["file", "start_time", "end_time"])
    data = np.vstack(blocks) if blocks else np.zeros((0, len(classes)), dtype=np.int64)
    return pd.DataFrame(data, index=index, columns=classes)
