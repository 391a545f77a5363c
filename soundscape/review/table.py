"""The review table: one row per clip shown, with the reviewer's verdict.

Columns: those of the candidates (``item_id, file, start_time, end_time, annotation,
score, low_f, high_f``, and ``score_bin`` for a stratified selection), then ``order``
(the review order), ``verdict`` (``""`` not yet reviewed, ``yes``, ``no``, ``unsure`` or
``other``), ``other_class`` (the right class when the verdict is ``other``), ``note`` and
``reviewed_at`` (UTC, ISO 8601).

Every verdict is saved at once: under a lock file beside the table, the table is read
from disk, the one row changed and the whole table written atomically
(`soundscape.io.atomic_write`). Two browser tabs, or two processes, answering at the same
time therefore keep each other's verdicts, and a table is never half written. Reopening
a table continues where the reviewer stopped.

The table reads back as training labels (`review_labels`, like
`soundscape.annotations.clip_labels`), as Raven selection tables (`write_review_raven`)
and as a folder of WAV clips with a label CSV (`export_clips`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from soundscape.errors import AnnotationError, ParameterError
from soundscape.io import atomic_write, exclusive_lock

from .selection import CANDIDATE_COLUMNS

__all__ = ["ReviewTable", "VERDICTS", "default_review_path", "read_review", "review_labels",
           "review_events", "write_review_raven", "export_clips"]

#: what a reviewer can answer ("" = not reviewed yet)
VERDICTS = ("yes", "no", "unsure", "other")
REVIEW_COLUMNS = ["order", "verdict", "other_class", "note", "reviewed_at"]
_TEXT = ["item_id", "file", "annotation", "verdict", "other_class", "note", "reviewed_at"]
#: one in-process lock per table path (threads of one server; flock covers processes)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def default_review_path(source: str | os.PathLike) -> Path:
    """Where the review table of `source` goes: ``<stem>.review.csv`` beside it (Parquet
    stays Parquet); inside a `predict_recordings` output folder, ``review.csv``."""
    source = Path(source)
    if source.is_dir():
        return source / "review.csv"
    suffix = ".parquet" if source.suffix.lower() == ".parquet" else ".csv"
    stem = source.name[:-len(".Table.1.selections.txt")] if source.name.endswith(
        ".Table.1.selections.txt") else source.stem
    return source.with_name(f"{stem}.review{suffix}")


def read_review(path: str | os.PathLike) -> pd.DataFrame:
    """Read a review table (CSV or Parquet); text columns hold ``""`` where empty."""
    path = Path(path)
    if not path.is_file():
        from soundscape.io import missing_file

        raise missing_file(path, "review table")
    if path.suffix.lower() == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, keep_default_na=False, na_values={
            c: [""] for c in ("start_time", "end_time", "score", "low_f", "high_f", "order")},
            dtype={c: str for c in _TEXT})
    missing = [c for c in CANDIDATE_COLUMNS + REVIEW_COLUMNS if c not in table.columns]
    if missing:
        raise AnnotationError(f"{path} is no review table: it lacks column(s) {missing}")
    for c in _TEXT:
        table[c] = table[c].fillna("").astype(str)
    bad = ~table["verdict"].isin(("",) + VERDICTS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise AnnotationError(f"{path} row {i}: verdict {table['verdict'].iloc[i]!r} is not one "
                              f"of {VERDICTS} (or empty)")
    return table


def _write(table: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() == ".parquet":
        atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False), what="review table")
    else:
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, lineterminator="\n"),
                     what="review table")


class ReviewTable:
    """A review table on disk, safe to update from several threads and processes.

    Parameters
    ----------
    path : path
        The table (``.csv`` or ``.parquet``). An existing table is continued.
    clips : DataFrame, optional
        The selected clips (`select_clips`). Clips that the table lacks are appended to it
        (in their order); clips already in it keep their verdicts.
    """

    def __init__(self, path: str | os.PathLike, clips: pd.DataFrame | None = None):
        self.path = Path(path)
        if self.path.suffix.lower() not in (".csv", ".parquet"):
            raise ParameterError(f"review table {self.path} must end in .csv or .parquet")
        with _LOCKS_GUARD:
            self._thread_lock = _LOCKS.setdefault(str(self.path.resolve()), threading.Lock())
        with self.locked():
            if self.path.exists():
                table = read_review(self.path)
                if clips is not None:
                    new = clips[~clips["item_id"].isin(table["item_id"])]
                    if len(new):
                        table = pd.concat([table, self._fresh(new, int(table["order"].max()) + 1
                                                              if len(table) else 0)],
                                          ignore_index=True)
                        _write(table, self.path)
            elif clips is None:
                from soundscape.io import missing_file

                raise missing_file(self.path, "review table")
            else:
                _write(self._fresh(clips, 0), self.path)

    @staticmethod
    def _fresh(clips: pd.DataFrame, first: int) -> pd.DataFrame:
        missing = [c for c in CANDIDATE_COLUMNS if c not in clips.columns]
        if missing:
            raise ParameterError(f"clips lack column(s) {missing}; make them with "
                                 "soundscape.review.select_clips")
        out = clips.reset_index(drop=True).copy()
        out["order"] = np.arange(first, first + len(out))
        for c in ("verdict", "other_class", "note", "reviewed_at"):
            out[c] = ""
        extra = [c for c in out.columns if c not in CANDIDATE_COLUMNS + REVIEW_COLUMNS]
        return out[CANDIDATE_COLUMNS + extra + REVIEW_COLUMNS]

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the table's lock (threads of this process and, on POSIX, other processes)."""
        with self._thread_lock, exclusive_lock(self.path.with_name(f".{self.path.name}.lock")):
            yield

    def read(self) -> pd.DataFrame:
        """The table as it is on disk now, in review order."""
        return read_review(self.path).sort_values("order", kind="stable").reset_index(drop=True)

    def set_verdict(self, item_id: str, verdict: str, other_class: str = "",
                    note: str | None = None) -> dict:
        """Save the verdict on one clip at once; returns its row (a dict).

        Parameters
        ----------
        item_id : str
            The clip (``item_id`` column).
        verdict : {"yes", "no", "unsure", "other", ""}
            ``""`` clears the verdict.
        other_class : str
            The right class, with ``"other"`` (required then).
        note : str, optional
            Free text; None keeps the note the clip has.
        """
        verdict = str(verdict)
        if verdict not in ("",) + VERDICTS:
            raise ParameterError(f"verdict must be one of {VERDICTS} (or '' to clear), got "
                                 f"{verdict!r}")
        other_class = str(other_class or "").strip()
        if verdict == "other" and not other_class:
            raise ParameterError("verdict 'other' needs other_class (the class it really is)")
        with self.locked():
            table = read_review(self.path)
            where = np.flatnonzero(table["item_id"].to_numpy() == item_id)
            if not len(where):
                raise ParameterError(f"no clip {item_id!r} in the review table {self.path}")
            i = table.index[where[0]]
            table.loc[i, "verdict"] = verdict
            table.loc[i, "other_class"] = other_class if verdict == "other" else ""
            if note is not None:
                table.loc[i, "note"] = " ".join(str(note).split())  # one line
            table.loc[i, "reviewed_at"] = (datetime.now(timezone.utc).isoformat(timespec="seconds")
                                           if verdict else "")
            _write(table, self.path)
            return _row(table.loc[i])

    def progress(self, table: pd.DataFrame | None = None) -> dict:
        """``{"reviewed": ..., "total": ..., "next": order position of the first clip
        without a verdict (or None)}``."""
        table = self.read() if table is None else table
        open_ = np.flatnonzero(table["verdict"].to_numpy() == "")
        return {"reviewed": int(len(table) - len(open_)), "total": int(len(table)),
                "next": int(open_[0]) if len(open_) else None}


def _row(row: pd.Series) -> dict:
    out = {}
    for k, v in row.items():
        if isinstance(v, (np.floating, float)):
            out[k] = None if not np.isfinite(v) else float(v)
        elif isinstance(v, np.integer):
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _as_review(review) -> pd.DataFrame:
    if isinstance(review, ReviewTable):
        return review.read()
    if isinstance(review, (str, os.PathLike)):
        return read_review(review)
    if not isinstance(review, pd.DataFrame):
        raise ParameterError(f"review must be a review table (path, ReviewTable or DataFrame), "
                             f"got {type(review).__name__}")
    return review


def review_events(review, verdicts: tuple[str, ...] = ("yes", "other")) -> pd.DataFrame:
    """The reviewed clips as events of their verified class.

    A ``yes`` keeps the clip's class, an ``other`` gets ``other_class``; ``no`` and
    ``unsure`` are left out unless named in `verdicts` (they keep the detected class).
    Columns ``file, start_time, end_time, low_f, high_f, annotation, score, detected,
    verdict, note``.
    """
    table = _as_review(review)
    table = table[table["verdict"].isin(verdicts)]
    label = np.where(table["verdict"] == "other", table["other_class"], table["annotation"])
    return pd.DataFrame({
        "file": table["file"].to_numpy(), "start_time": table["start_time"].to_numpy(float),
        "end_time": table["end_time"].to_numpy(float), "low_f": table["low_f"].to_numpy(float),
        "high_f": table["high_f"].to_numpy(float), "annotation": label,
        "score": table["score"].to_numpy(float), "detected": table["annotation"].to_numpy(),
        "verdict": table["verdict"].to_numpy(), "note": table["note"].to_numpy()})


def review_labels(review, classes: list[str] | None = None) -> pd.DataFrame:
    """The reviewed clips as training labels, like `soundscape.annotations.clip_labels`.

    One row per reviewed clip (``yes``, ``no`` or ``other``; ``unsure`` is left out),
    indexed by ``(file, start_time, end_time)``, one 0/1 int column per class: ``yes``
    sets the clip's class, ``other`` sets ``other_class``, ``no`` sets nothing. A clip
    reviewed for several classes gets all its confirmed classes. Classes not reviewed on
    a clip count as absent, as in `clip_labels`.

    Parameters
    ----------
    review : path, ReviewTable or DataFrame
    classes : list of str, optional
        The columns; default every class the table names (detected or given as other).
    """
    table = _as_review(review)
    table = table[table["verdict"].isin(("yes", "no", "other"))]
    if classes is None:
        other = table.loc[table["verdict"] == "other", "other_class"]
        named = set(table["annotation"]) | set(other)
        classes = sorted(c for c in named if c)
    classes = [str(c) for c in classes]
    key = pd.MultiIndex.from_arrays([table["file"].to_numpy(), table["start_time"].to_numpy(float),
                                     table["end_time"].to_numpy(float)],
                                    names=["file", "start_time", "end_time"])
    label = np.where(table["verdict"] == "other", table["other_class"],
                     np.where(table["verdict"] == "yes", table["annotation"], ""))
    onehot = pd.DataFrame(0, index=key, columns=classes, dtype=np.int64)
    for j, c in enumerate(classes):
        onehot[c] = (label == c).astype(np.int64)
    return onehot.groupby(level=[0, 1, 2], sort=True).max()


def write_review_raven(review, path_or_dir: str | os.PathLike,
                       verdicts: tuple[str, ...] = ("yes", "other"), **kwargs) -> list[Path]:
    """Write the verified clips (`review_events`) as Raven selection tables.

    Other keyword arguments go to `soundscape.annotations.write_raven` (e.g.
    ``one_table_per_file=False``, ``audio_root=``). The table's ``Annotation`` is the
    verified class; ``score``, ``detected``, ``verdict`` and ``note`` are extra columns.
    """
    from soundscape.annotations import write_raven

    return write_raven(review_events(review, verdicts), path_or_dir, **kwargs)


def export_clips(review, audio_root: str | os.PathLike, out_dir: str | os.PathLike,
                 context: float = 0.0, verdicts: tuple[str, ...] = ("yes", "no", "other")
                 ) -> Path:
    """Write the reviewed clips as WAV files with a label CSV; returns the label CSV's path.

    ``out_dir/clips/<recording stem>_<start ms>-<end ms>.wav`` per clip (the clip plus
    `context` s either side), ``out_dir/labels.csv`` with a ``file`` column (relative to
    `out_dir`) and one 0/1 column per class (`review_labels`: read it with
    ``pd.read_csv(path, index_col="file")`` for `train()`), and ``out_dir/sources.csv``
    naming the recording and times each clip was cut from.
    """
    import soundfile

    from .media import AudioRoot, read_span

    table = _as_review(review)
    table = table[table["verdict"].isin(verdicts)]
    root = AudioRoot(audio_root)
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    labels = review_labels(table)
    names, sources = [], []
    for (file, start, end) in labels.index:
        t0, t1 = max(0.0, start - context), end + context
        name = f"clips/{Path(file).stem}_{round(start * 1000):d}-{round(end * 1000):d}.wav"
        samples, rate = read_span(root.resolve(file), t0, t1)
        atomic_write(out_dir / name, lambda tmp: soundfile.write(
            str(tmp), samples, rate, format="WAV", subtype="PCM_16"), what="audio clip")
        names.append(name)
        sources.append({"file": name, "source_file": file, "source_start": t0, "source_end": t1})
    labels = labels.reset_index(drop=True)
    labels.insert(0, "file", names)
    path = out_dir / "labels.csv"
    atomic_write(path, lambda tmp: labels.to_csv(tmp, index=False, lineterminator="\n"),
                 what="label table")
    merged = pd.DataFrame(sources, columns=["file", "source_file", "source_start", "source_end"])
    atomic_write(out_dir / "sources.csv",
                 lambda tmp: merged.to_csv(tmp, index=False, lineterminator="\n"),
                 what="clip sources")
    return path
