"""Tabular data for the config-driven workflow: read, check columns, resolve audio paths, split.

A data set is a CSV (or TSV / Parquet) file with one row per example: a column of audio file
paths for every audio input (relative to the table's folder, or absolute), a column per other
input, and the output column(s). ``ludwig://NAME`` and ``soundscape://NAME`` name a data set of
:mod:`soundscape.dataset_registry`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data_selection import train_valid_split
from ..errors import AnnotationError, ConfigError
from ..io import missing_file

__all__ = ["Table", "read_table", "required_columns", "check_columns", "split_table", "SPLITS"]

log = logging.getLogger("soundscape.workflow")

#: split names, in the order of ``split.probabilities``
SPLITS = ("training", "validation", "test")
_FIXED_NAMES = {
    "0": "training", "train": "training", "training": "training",
    "1": "validation", "val": "validation", "valid": "validation", "validation": "validation",
    "dev": "validation",
    "2": "test", "test": "test",
}


def _counted_from_file(source: str) -> bool:
    return str(source).lower().endswith((".csv", ".tsv", ".tab", ".txt"))


def row_number(label, source: str):
    """The number a message gives a table row: its 1-based line in a CSV/TSV file (the
    header is line 1), else the row's index label (counted from 0)."""
    if isinstance(label, (int, np.integer)):
        return int(label) + 2 if _counted_from_file(source) else int(label)
    return label


def rows_text(labels, source: str, limit: int = 5) -> str:
    """``file lines 2, 5, 12`` (CSV/TSV) or ``rows 0, 3, 10 (counted from 0)`` for messages."""
    labels = list(labels)
    nums = ", ".join(str(row_number(v, source)) for v in labels[:limit])
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    plural = "s" if len(labels) != 1 else ""
    if _counted_from_file(source):
        return f"file line{plural} {nums}{more}"
    return f"row{plural} {nums}{more} (counted from 0)"


@dataclass
class Table:
    """A data set's rows and the folder its relative audio paths are relative to."""

    frame: pd.DataFrame
    base_dir: Path
    source: str

    def __len__(self) -> int:
        return len(self.frame)


def read_table(dataset, base_dir: str | os.PathLike | None = None, data_root=None) -> Table:
    """Read a data set given as a path, a registry URI or a DataFrame.

    Parameters
    ----------
    dataset : str, Path or DataFrame
        ``.csv`` / ``.tsv`` / ``.parquet`` file, ``ludwig://NAME`` / ``soundscape://NAME``, or
        a DataFrame (its relative audio paths are taken relative to ``base_dir``).
    base_dir : path, optional
        Folder for relative audio paths of a DataFrame (default: the current folder).
    data_root : path, optional
        Folder holding local data sets (``esc10/``, ``fsdd/``) for registry URIs.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    AnnotationError
        The file cannot be parsed or holds no rows.
    """
    if isinstance(dataset, pd.DataFrame):
        if dataset.empty:
            raise AnnotationError("the data set (a DataFrame) has no rows")
        return Table(dataset.reset_index(drop=True), Path(base_dir or os.getcwd()), "DataFrame")
    text = str(dataset)
    from ..dataset_registry import is_uri, resolve

    path = resolve(text, data_root=data_root) if is_uri(text) else Path(text).expanduser()
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; expected a CSV, TSV or Parquet file")
    if not path.is_file():
        raise missing_file(path, "data set file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if suffix in (".tsv", ".tab") else ",")
    except pd.errors.EmptyDataError:
        raise AnnotationError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnnotationError(f"{path}: cannot be read as a table ({reason})") from None
    if frame.empty:
        raise AnnotationError(f"{path}: has a header but no rows (columns: {list(frame.columns)})")
    frame.columns = [str(c).strip() for c in frame.columns]
    return Table(frame, Path(base_dir) if base_dir else path.resolve().parent, str(path))


def required_columns(config: dict, with_outputs: bool = True) -> list[str]:
    """Columns the config reads: every input feature, and the output column(s)."""
    cols = [f["name"] for f in config["input_features"]]
    if with_outputs:
        out = config["output_features"][0]
        cols += list(out.get("columns") or [out["name"]]) if out["type"] == "set" else [out["name"]]
    if config["split"]["type"] in ("fixed", "group"):
        cols.append(config["split"]["column"])
    return cols


def check_columns(table: Table, columns: list[str], what: str = "the config") -> None:
    """Raise AnnotationError naming the first column of ``columns`` missing from ``table``."""
    missing = [c for c in columns if c not in table.frame.columns]
    if missing:
        raise AnnotationError(
            f"{table.source}: column {missing[0]!r} named in {what} is missing"
            + (f" (also missing: {', '.join(map(repr, missing[1:]))})" if len(missing) > 1 else "")
            + f"; the columns are: {', '.join(map(str, table.frame.columns))}"
        )


def audio_paths(table: Table, column: str) -> list[Path]:
    """Absolute paths of a column of audio paths (relative ones are under ``table.base_dir``)."""
    values = table.frame[column]
    empty = values.isna() | (values.astype(str).str.strip() == "")
    if empty.any():
        raise AnnotationError(
            f"{table.source}: column {column!r} has empty audio paths "
            f"({rows_text(values.index[empty.to_numpy()], table.source)})"
        )
    out = []
    for v in values.astype(str):
        p = Path(v.strip()).expanduser()
        out.append(p if p.is_absolute() else table.base_dir / p)
    return out


def _fixed_split(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    raw = frame[column]
    keys = raw.map(lambda v: str(int(v)) if isinstance(v, (int, float, np.number)) and not pd.isna(v)
                   and float(v).is_integer() else str(v).strip().lower())
    names = keys.map(_FIXED_NAMES)
    bad = names.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise AnnotationError(
            f"{source}: split column {column!r} has value {raw.iloc[i]!r} "
            f"({rows_text([raw.index[i]], source)}); "
            "allowed: 0/train/training, 1/validation/valid/val, 2/test"
        )
    return names.to_numpy(dtype=object)


def _random_split(n: int, probabilities, seed: int, groups=None) -> np.ndarray:
    """Shuffle and cut by `probabilities`; rows with equal `groups` values stay together
    (with all values distinct this is the plain row shuffle)."""
    rng = np.random.default_rng(seed)
    codes = np.arange(n) if groups is None else pd.factorize(pd.Series(groups).astype(str))[0]
    n_groups = int(codes.max()) + 1 if n else 0
    order = rng.permutation(n_groups)
    sizes = np.bincount(codes, minlength=n_groups)[order]
    start = np.cumsum(sizes) - sizes  # rows before each group in the shuffled order
    cuts = np.round(np.cumsum(probabilities)[:2] * n).astype(int)
    cuts[0] = max(cuts[0], 1)
    cuts[1] = max(cuts[1], cuts[0])
    group_names = np.empty(n_groups, dtype=object)
    group_names[order] = np.where(start < cuts[0], "training",
                                  np.where(start < cuts[1], "validation", "test"))
    return group_names[codes]


def _group_split(frame: pd.DataFrame, column: str, probabilities, seed: int, source: str):
    p_train, p_valid, p_test = probabilities
    names = np.full(len(frame), "training", dtype=object)
    if p_train >= 1.0:
        return names
    work = frame[[column]].copy()
    work["_pos"] = np.arange(len(frame))
    try:
        train, rest = train_valid_split(work, train_size=p_train, random_state=seed, group_column=column)
        names[rest["_pos"].to_numpy()] = "validation" if p_test == 0 else "test"
        if p_valid > 0 and p_test > 0:
            share = p_valid / (p_valid + p_test)
            valid, _ = train_valid_split(rest, train_size=share, random_state=seed, group_column=column)
            names[valid["_pos"].to_numpy()] = "validation"
    except (ValueError, KeyError) as exc:
        raise AnnotationError(f"{source}: cannot split by group column {column!r}: {exc}") from None
    return names


def split_table(table: Table, split: dict, seed: int = 42,
                audio_column: str | None = None) -> dict[str, pd.DataFrame]:
    """Split rows into ``training`` / ``validation`` / ``test`` as ``split:`` in the config says.

    - ``random``: shuffled with ``seed`` and cut by ``probabilities``; rows naming the same
      file in `audio_column` stay on one side (a warning names duplicated files);
    - ``fixed``: a column holding 0/1/2 or train/validation/test;
    - ``group``: whole groups (a column: speaker, site, recording, fold) go to one side.

    Returns a dict of the three (possibly empty) DataFrames, original index kept.
    """
    frame = table.frame
    kind = split["type"]
    if kind == "fixed":
        names = _fixed_split(frame, split["column"], table.source)
    elif kind == "group":
        names = _group_split(frame, split["column"], split["probabilities"], seed, table.source)
    elif kind == "random":
        groups = None
        if audio_column is not None and audio_column in frame.columns:
            groups = frame[audio_column]
            dup = groups[groups.duplicated(keep=False)]
            if len(dup):
                log.warning("%s: %d rows name a file that another row names too (e.g. %s); they are "
                            "kept on one side of the split", table.source, len(dup), dup.iloc[0])
        names = _random_split(len(frame), split["probabilities"], seed, groups)
    else:  # pragma: no cover - the schema allows only the three
        raise ConfigError(f"split.type: unknown split {kind!r}")
    parts = {name: frame[names == name] for name in SPLITS}
    if parts["training"].empty:
        raise AnnotationError(f"{table.source}: the split leaves no training rows ({kind} split)")
    return parts
