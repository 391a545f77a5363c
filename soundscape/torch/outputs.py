"""Per-file score outputs of `predict_recordings`: atomic writes, manifest and resume.

An output folder holds

* ``scores/<stem>-<hash>.csv`` (or ``.parquet``): one table per recording, columns
  ``file, start_time, end_time`` and one score column per class, written atomically as
  soon as the recording is finished;
* ``manifest.jsonl``: one JSON line per finished recording (its path, size and mtime,
  the score file, the number of windows), appended after the score file is in place.
  A re-run skips recordings listed here whose size and mtime are unchanged;
* ``run.json``: the model and window settings; a re-run with other settings is refused
  (use another folder or ``overwrite=True``);
* ``errors.csv``: ``file, error`` for every recording that could not be scored (and
  has not been scored since);
* ``.lock`` and ``claims/``: lock files of concurrent jobs (see below).

Several jobs may write into one folder at once (two ``predict_recordings`` runs, or
one per machine on a shared disk with working ``flock``). The manifest is append-only:
each record is one ``write`` on a file opened with ``O_APPEND``, under an exclusive
``fcntl.flock`` of ``.lock`` (also held while ``run.json`` is checked and while
``overwrite=True`` clears the folder), so no job's records are lost or interleaved. A
job reads records other jobs append as it goes, so it skips recordings they finished.
`OutputFolder.claim` lets jobs split the work: a recording claimed by a live job is
left to it (the claim is an ``flock`` that ends with its process). Without ``fcntl``
(Windows) there is no locking: use one job per folder there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from ..errors import ParameterError
from ..io import atomic_write as _atomic_write
from ..io import clean_stale_temp_files, exclusive_lock, is_temp_file, write_failure, write_json

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

INDEX = ["file", "start_time", "end_time"]
FORMATS = ("csv", "parquet")


def check_format(output_format: str) -> str:
    """Validate `output_format`; parquet needs pyarrow."""
    if output_format not in FORMATS:
        raise ParameterError(f"output_format must be one of {FORMATS}, got {output_format!r}")
    if output_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ParameterError(
                "output_format='parquet' needs pyarrow: pip install pyarrow "
                "(or pip install soundscape[parquet]); or use output_format='csv'"
            ) from exc
    return output_format


def atomic_write(path: Path, writer: Callable[[Path], Any], what: str = "file") -> Path:
    """Call `writer(tmp_path)` for a temp file beside `path`, then rename it onto `path`.

    A thin wrapper of `soundscape.io.atomic_write` (creates missing folders; a full disk
    raises `OutputError` naming `what` and `path`).
    """
    return _atomic_write(path, writer, make_parents=True, what=what)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Parquet of a score table, built column by column from numpy.

    pandas' ``to_parquet`` spent ~1 s per table on a 1024-column embedding table (its
    per-column conversion), twice BirdNET's inference time for a 5-s clip; this takes a
    few ms. Dictionary encoding is kept for the file column only (repeated strings), not
    for the scores (floats, where it only grew the files).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    index = frame.index.to_frame(index=False)
    values = np.ascontiguousarray(frame.to_numpy().T)
    arrays = [pa.array(index[c].to_numpy()) for c in index.columns] + [pa.array(v) for v in values]
    names = [str(c) for c in index.columns] + [str(c) for c in frame.columns]
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path, use_dictionary=["file"])


def write_table(frame: pd.DataFrame, path: Path, output_format: str) -> Path:
    """Write a score table (index written as columns) atomically."""
    if output_format == "parquet":
        numeric = all(pd.api.types.is_float_dtype(t) for t in frame.dtypes)
        if numeric and list(frame.index.names) == INDEX:
            return atomic_write(path, lambda tmp: _write_parquet(frame, tmp), "score table")
        flat = frame.reset_index()
        return atomic_write(path, lambda tmp: flat.to_parquet(tmp, index=False), "score table")
    flat = frame.reset_index()
    return atomic_write(path, lambda tmp: flat.to_csv(tmp, index=False, lineterminator="\n"),
                        "score table")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one score table written by `write_table` (index: file, start_time, end_time)."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    frame["file"] = frame["file"].astype(str)
    frame = frame.set_index(INDEX)
    return frame.astype("float32")  # scores are float32, as predict_recordings returns them


def file_key(path: str | Path) -> str:
    """Absolute path used to recognise a recording across runs.

    Symbolic links are resolved; a path that cannot be resolved (a symbolic link loop)
    gives its absolute path, so the recording fails later with a clear message instead
    of stopping the run here.
    """
    try:
        return str(Path(path).resolve())
    except (RuntimeError, OSError):  # RuntimeError: symlink loop (Python < 3.13)
        return os.path.abspath(os.fspath(path))


def file_stamp(path: str | Path) -> dict:
    """Size and modification time of a recording (a changed file is scored again)."""
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _parse_records(data: bytes) -> tuple[list[dict], int]:
    """Manifest records in `data` and the number of bytes up to the last complete line."""
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by an interrupted run
            continue
        if isinstance(entry, dict) and "key" in entry and "output" in entry:
            records.append(entry)
    return records, end


def _score_files(root: Path) -> set[str]:
    """Score tables in ``root/scores`` (relative to root), temp files left out."""
    folder = root / "scores"
    if not folder.is_dir():
        return set()
    return {f"scores/{p.name}" for p in folder.iterdir()
            if p.suffix in (".csv", ".parquet") and not is_temp_file(p.name) and p.is_file()}


@contextlib.contextmanager
def _naming_write_failures(path: Path, what: str) -> Iterator[None]:
    """Re-raise a failed write (disk full...) as an `OutputError` naming `path` and `what`."""
    try:
        yield
    except OSError as exc:
        failure = write_failure(exc, path, what)
        if failure is None:
            raise
        raise failure from exc


class OutputFolder:
    """The output folder of one `predict_recordings` run (see the module docstring).

    Safe for concurrent jobs on one folder: see the module docstring.
    """

    def __init__(self, root: str | Path, settings: dict, output_format: str, overwrite: bool = False):
        self.root = Path(root)
        self.format = check_format(output_format)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = self.root / "manifest.jsonl"
        self.errors_path = self.root / "errors.csv"
        self.lock_path = self.root / ".lock"
        self.claims_dir = self.root / "claims"
        self._claims: dict[str, int] = {}
        self._manifest_id: tuple[int, int] | None = None
        self._manifest_offset = 0
        self.done: dict[str, dict] = {}
        clean_stale_temp_files(self.root)
        clean_stale_temp_files(self.root / "scores")
        run = self.root / "run.json"
        with self._locked():
            if run.exists() and not overwrite:
                try:
                    previous = json.loads(run.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    previous = None
                if previous != settings:
                    changed = sorted(k for k in set(settings) | set(previous or {})
                                     if (previous or {}).get(k) != settings.get(k))
                    raise ParameterError(
                        f"{self.root} holds results of a run with other settings (differing: "
                        f"{changed}); use another output_dir or pass overwrite=True to start over"
                    )
            if overwrite:  # start over: results of earlier runs go
                for rel in _score_files(self.root):
                    (self.root / rel).unlink(missing_ok=True)
                self.manifest.unlink(missing_ok=True)
                self.errors_path.unlink(missing_ok=True)
            if not run.exists() or overwrite:
                write_json(settings, run, indent=1, sort_keys=True)
        self._refresh()

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the folder's exclusive lock (``.lock``; no-op without fcntl)."""
        with exclusive_lock(self.lock_path):
            yield

    def claim(self, path: str | Path) -> bool:
        """Claim recording `path` for this job; False when another live job holds it.

        A job should score only the recordings it could claim, and `release` them when
        done (the claim also ends when the process does, however it ends). Always True
        without fcntl (no concurrency control there).
        """
        key = file_key(path)
        if key in self._claims or fcntl is None:
            return True
        self.claims_dir.mkdir(exist_ok=True)
        lock = self.claims_dir / (self.score_path(path).stem + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # BlockingIOError: another job holds it
            os.close(fd)
            return False
        self._claims[key] = fd
        return True

    def release(self, path: str | Path) -> None:
        """End this job's claim of `path` (no-op if it holds none)."""
        fd = self._claims.pop(file_key(path), None)
        if fd is not None:
            os.close(fd)

    def release_all(self) -> None:
        """End all claims of this job."""
        for fd in self._claims.values():
            os.close(fd)
        self._claims.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release_all()

    # ------------------------------------------------------------------ manifest
    def _refresh(self) -> None:
        """Read the manifest records appended since the last read (by any job)."""
        try:
            with open(self.manifest, "rb") as fh:
                st = os.fstat(fh.fileno())
                ident = (st.st_dev, st.st_ino)
                if ident != self._manifest_id or st.st_size < self._manifest_offset:
                    self._manifest_id, self._manifest_offset = ident, 0  # a new file: all of it
                    self.done = {}
                fh.seek(self._manifest_offset)
                data = fh.read()
        except FileNotFoundError:
            self._manifest_id, self._manifest_offset, self.done = None, 0, {}
            return
        records, used = _parse_records(data)
        self._manifest_offset += used
        for entry in records:
            self.done[entry["key"]] = entry

    def _read_manifest(self) -> dict[str, dict]:
        self._refresh()
        return self.done

    def _append(self, entry: dict) -> None:
        """Append one record: a single O_APPEND write, under the folder lock."""
        line = (json.dumps(entry) + "\n").encode("utf-8")
        with self._locked(), _naming_write_failures(self.manifest, "manifest"):
            fd = os.open(self.manifest, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # after a line cut by an interrupted run
                while line:
                    line = line[os.write(fd, line):]
                os.fsync(fd)
            finally:
                os.close(fd)

    def finished(self, path: str | Path) -> Path | None:
        """The score file of `path` if a run (this one, an earlier or a concurrent one)
        finished it and the recording is unchanged."""
        key = file_key(path)
        if key not in self.done:
            self._refresh()  # another job may have finished it since
        entry = self.done.get(key)
        if entry is None:
            return None
        try:
            same = file_stamp(path) == {"size": entry.get("size"), "mtime_ns": entry.get("mtime_ns")}
        except OSError:
            return None
        out = self.root / entry.get("output", "")
        return out if same and out.is_file() else None

    def score_path(self, path: str | Path) -> Path:
        digest = hashlib.sha1(file_key(path).encode("utf-8")).hexdigest()[:10]
        return self.root / "scores" / f"{Path(path).stem}-{digest}.{self.format}"

    def write(self, path: str | Path, scores: pd.DataFrame) -> Path:
        """Write one recording's scores, then record it in the manifest."""
        out = write_table(scores, self.score_path(path), self.format)
        entry = {"key": file_key(path), "file": str(path), "output": out.relative_to(self.root).as_posix(),
                 "n_windows": int(len(scores)), **file_stamp(path)}
        self._append(entry)
        self.done[entry["key"]] = entry
        return out

    def write_errors(self, errors: pd.DataFrame) -> Path:
        """Write ``errors.csv``: `errors` plus the rows of earlier or concurrent jobs for
        recordings not in `errors` and not scored since."""
        with self._locked():
            self._refresh()
            frame = errors
            if self.errors_path.exists():
                try:
                    previous = pd.read_csv(self.errors_path, dtype=str, keep_default_na=False)
                except (OSError, ValueError):
                    previous = None
                if previous is not None and {"file", "error"} <= set(previous.columns):
                    new = set(errors["file"].astype(str))
                    keep = [f not in new and file_key(f) not in self.done for f in previous["file"]]
                    if any(keep):
                        frame = pd.concat([errors, previous.loc[keep, ["file", "error"]]],
                                          ignore_index=True)
            return atomic_write(self.errors_path,
                                lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"),
                                "error list")


def read_scores(output_dir: str | Path) -> pd.DataFrame:
    """All score tables of a `predict_recordings` output folder as one table.

    Returns a DataFrame indexed by ``(file, start_time, end_time)``, one column per
    class, in manifest order. The manifest is checked against the score files: a
    recording in the manifest whose score file is missing, and a score file the
    manifest does not list (a job stopped between writing it and recording it, or a
    concurrent job is writing it now), are left out with a warning naming them.
    ``attrs["frequency_band"]`` is the model's band (from ``run.json``), as
    `predict_recordings` gives it.
    """
    root = Path(output_dir)
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        raise FileNotFoundError(f"{root}: no manifest.jsonl; not a predict_recordings output folder")
    records, _ = _parse_records(manifest.read_bytes() + b"\n")
    outputs: dict[str, str] = {}
    for entry in records:
        outputs[entry["key"]] = str(entry["output"]).replace(os.sep, "/")
    missing = [out for out in outputs.values() if not (root / out).is_file()]
    unlisted = sorted(_score_files(root) - set(outputs.values()))
    if missing:
        warnings.warn(
            f"{root}: {len(missing)} recording(s) listed in manifest.jsonl have no score file "
            f"(e.g. {missing[0]}); they are left out. Re-run predict_recordings with this "
            "output_dir to score them again.", UserWarning, stacklevel=2)
    if unlisted:
        warnings.warn(
            f"{root}: {len(unlisted)} score file(s) are not listed in manifest.jsonl (e.g. "
            f"{unlisted[0]}): a run stopped between writing and recording them, or one is "
            "still running; they are left out. Re-run predict_recordings with this output_dir "
            "to finish them.", UserWarning, stacklevel=2)
    tables = [read_table(root / out) for out in outputs.values() if (root / out).is_file()]
    if not tables:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], [], []], names=INDEX))
    table = pd.concat(tables)
    band = _run_band(root / "run.json")
    if band is not None:
        table.attrs["frequency_band"] = band
    return table


def _run_band(run: Path) -> tuple[float, float] | None:
    """(low, high) Hz the model of a run saw, from its run.json preprocessing, or None."""
    try:
        prep = json.loads(run.read_text(encoding="utf-8"))["preprocessing"]
        rate = float(prep["sample_rate"])
        low = 0.0 if prep.get("min_frequency") is None else float(prep["min_frequency"])
        high = rate / 2 if prep.get("max_frequency") is None else float(prep["max_frequency"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return low, min(high, rate / 2)
