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
* ``errors.csv``: ``file, error`` for every recording that could not be scored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..errors import ParameterError

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


def atomic_write(path: Path, writer: Callable[[str], Any]) -> Path:
    """Call `writer(tmp_path)` for a temp file beside `path`, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_table(frame: pd.DataFrame, path: Path, output_format: str) -> Path:
    """Write a score table (index written as columns) atomically."""
    flat = frame.reset_index()
    if output_format == "parquet":
        return atomic_write(path, lambda tmp: flat.to_parquet(tmp, index=False))
    return atomic_write(path, lambda tmp: flat.to_csv(tmp, index=False, lineterminator="\n"))


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one score table written by `write_table` (index: file, start_time, end_time)."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    frame["file"] = frame["file"].astype(str)
    frame = frame.set_index(INDEX)
    return frame.astype("float32")  # scores are float32, as predict_recordings returns them


def file_key(path: str | Path) -> str:
    """Absolute path used to recognise a recording across runs."""
    return str(Path(path).resolve())


def file_stamp(path: str | Path) -> dict:
    """Size and modification time of a recording (a changed file is scored again)."""
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


class OutputFolder:
    """The output folder of one `predict_recordings` run (see the module docstring)."""

    def __init__(self, root: str | Path, settings: dict, output_format: str, overwrite: bool = False):
        self.root = Path(root)
        self.format = check_format(output_format)
        self.root.mkdir(parents=True, exist_ok=True)
        self.manifest = self.root / "manifest.jsonl"
        self.errors_path = self.root / "errors.csv"
        run = self.root / "run.json"
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
        if overwrite and self.manifest.exists():
            self.manifest.unlink()
        atomic_write(run, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=1, sort_keys=True),
                                                            encoding="utf-8"))
        self.done = self._read_manifest()
        # rewrite it without lines cut by an interrupted run, so appends start on a new line
        if self.manifest.exists():
            text = "".join(json.dumps(e) + "\n" for e in self.done.values())
            atomic_write(self.manifest, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))

    def _read_manifest(self) -> dict[str, dict]:
        done: dict[str, dict] = {}
        if not self.manifest.exists():
            return done
        for line in self.manifest.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut by an interrupted run
                continue
            if isinstance(entry, dict) and "key" in entry:
                done[entry["key"]] = entry
        return done

    def finished(self, path: str | Path) -> Path | None:
        """The score file of `path` if an earlier run finished it and it is unchanged."""
        entry = self.done.get(file_key(path))
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
        entry = {"key": file_key(path), "file": str(path), "output": str(out.relative_to(self.root)),
                 "n_windows": int(len(scores)), **file_stamp(path)}
        with open(self.manifest, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[entry["key"]] = entry
        return out

    def write_errors(self, errors: pd.DataFrame) -> Path:
        return atomic_write(self.errors_path,
                            lambda tmp: errors.to_csv(tmp, index=False, lineterminator="\n"))


def read_scores(output_dir: str | Path) -> pd.DataFrame:
    """All score tables of a `predict_recordings` output folder as one table.

    Returns a DataFrame indexed by ``(file, start_time, end_time)``, one column per
    class, in manifest order; ``attrs["frequency_band"]`` is the model's band (from
    ``run.json``), as `predict_recordings` gives it.
    """
    root = Path(output_dir)
    manifest = root / "manifest.jsonl"
    if not manifest.exists():
        raise FileNotFoundError(f"{root}: no manifest.jsonl; not a predict_recordings output folder")
    outputs: dict[str, str] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        outputs[entry["key"]] = entry["output"]
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
