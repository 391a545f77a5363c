"""The driver's side of a `predict_recordings` run, whichever engine scores the windows.

`RecordingJob` opens the output folder (`OutputFolder`: run settings, resume, claims),
plans the windows of the recordings still to do, takes each finished recording's table or
error (writing it through the output folder at once), and assembles the returned table
and its ``attrs``. The local engine and the Ray engine (`soundscape.torch.ray_engine`)
both go through it, so folder layout, ``manifest.jsonl``, ``errors.csv``, resume and the
summary are the same whichever ran a job.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Callable

import pandas as pd
from tqdm import tqdm

from ..model_file import Detector, to_plain
from ..preprocessing import Preprocessing
from .outputs import OutputFolder, read_table
from .windows import plan_windows

logger = logging.getLogger("soundscape.predict")


class RecordingJob:
    """One `predict_recordings` run on the driver (see the module docstring).

    Parameters
    ----------
    model : Detector
    prep : Preprocessing
        The model's preprocessing with the run's window length.
    paths : list of str
        The recordings, in the order of the returned table.
    output_dir : path, optional
    output_format, overwrite, clip_overlap, final_clip, return_scores
        As in `predict_recordings`.
    activation : str or None
        The activation's name (for ``run.json``).
    weights_digest : callable
        ``Detector -> str``: the weights' digest recorded in ``run.json``.
    error_record : callable
        ``(path, exception) -> {"file", "error"}`` (logs the failure).
    empty_scores : callable
        ``classes -> DataFrame``: the table returned when nothing was scored.
    progress : bool or "always"
        As in `predict_recordings`; `progress_disabled` is tqdm's `disable`.
    """

    def __init__(self, model: Detector, prep: Preprocessing, paths: list, output_dir, output_format: str,
                 overwrite: bool, clip_overlap: float, final_clip, activation: str | None,
                 return_scores: bool, weights_digest: Callable, error_record: Callable,
                 empty_scores: Callable, progress, progress_disabled):
        self.t_start = time.perf_counter()
        self.model, self.prep, self.paths = model, prep, list(paths)
        self.classes = list(model.classes)
        self.output_dir, self.output_format, self.overwrite = output_dir, output_format, overwrite
        self.clip_overlap, self.final_clip, self.activation = clip_overlap, final_clip, activation
        self.return_scores, self.weights_digest = return_scores, weights_digest
        self.error_record, self.empty_scores = error_record, empty_scores
        self.progress, self.disable = progress, progress_disabled
        self.out: OutputFolder | None = None
        self.results: dict[int, pd.DataFrame | None] = {}
        self.errors: dict[int, dict] = {}
        self.plans: list = []
        self.n_skipped = 0
        self.n_claimed_elsewhere = 0
        self.bar_files = self.bar_windows = None
        self.plan_of: dict = {}
        self.n_windows = 0

    # ------------------------------------------------------------------ set-up
    def settings(self, precision: str) -> dict:
        """The run's settings as ``run.json`` records them (`precision`: as resolved)."""
        model = self.model
        return json.loads(json.dumps(to_plain({
            "architecture": model.architecture, "classes": self.classes,
            "weights_sha1": self.weights_digest(model), "preprocessing": self.prep.to_dict(),
            "clip_overlap": self.clip_overlap, "final_clip": self.final_clip,
            "activation": self.activation, "output_format": self.output_format,
            "precision": precision})))

    def open(self, precision: str) -> list:
        """Open the output folder, plan the recordings still to do; returns the ``(k, plan)`` list.

        Recordings already in the folder are read back (when scores are returned) and
        counted as skipped; those another live job has claimed are left to it; those that
        cannot be planned (missing, unreadable, too short) are errors, in ``errors.csv``.
        """
        if self.output_dir is not None:
            self.out = OutputFolder(self.output_dir, self.settings(precision), self.output_format,
                                    self.overwrite)
        out = self.out
        for k, path in enumerate(self.paths):
            done = out.finished(path) if out is not None else None
            if done is not None:
                if self.return_scores:
                    self.results[k] = read_table(done)
                self.n_skipped += 1
                continue
            if out is not None and not out.claim(path):  # another live job is scoring it
                self.n_claimed_elsewhere += 1
                continue
            try:
                self.plans.append((k, plan_windows(path, self.prep, self.clip_overlap, self.final_clip)))
            except Exception as exc:
                self.errors[k] = self.error_record(path, exc)
        if out is not None and self.errors:
            self._write_errors()
        self.plan_of = dict(self.plans)
        self.n_windows = sum(len(p) for _, p in self.plans)
        self.bar_files = tqdm(total=len(self.plans), desc="files", unit="file", disable=self.disable,
                              file=sys.stderr, position=0)
        self.bar_windows = tqdm(total=self.n_windows, desc="windows", unit="win", disable=self.disable,
                                file=sys.stderr, position=1)
        return self.plans

    # ------------------------------------------------------------------ results
    def scored(self, k: int, frame: pd.DataFrame) -> None:
        """Recording k is done: write its table (and manifest record) at once."""
        path = self.plan_of[k].path
        if self.out is not None:
            self.out.write(path, frame)
            self.out.release(path)
        self.results[k] = frame if self.return_scores else None
        self.bar_files.update(1)

    def failed(self, k: int, record: dict) -> None:
        """Recording k failed: its record goes to ``errors.csv`` at once."""
        self.errors[k] = record
        self.bar_files.update(1)
        if self.out is not None:
            self._write_errors()

    def windows_done(self, n: int) -> None:
        self.bar_windows.update(n)

    def _write_errors(self) -> None:
        self.out.write_errors(pd.DataFrame([self.errors[k] for k in sorted(self.errors)],
                                           columns=["file", "error"]))

    def close(self) -> None:
        """End the claims and progress bars (also after a failure)."""
        if self.out is not None:
            self.out.release_all()
        for bar in (self.bar_windows, self.bar_files):
            if bar is not None:
                bar.close()

    # ------------------------------------------------------------------ the table
    def table(self, engine_summary: dict) -> pd.DataFrame:
        """The returned table with ``attrs`` (``errors``, ``summary``, ``frequency_band``)."""
        from .predict import frequency_band

        results, errors = self.results, self.errors
        frames = [results[k] for k in sorted(results) if results[k] is not None]
        table = pd.concat(frames) if frames else self.empty_scores(self.classes)
        error_list = [errors[k] for k in sorted(errors)]
        if self.out is not None:
            self.out.write_errors(pd.DataFrame(error_list, columns=["file", "error"]))
        seconds = time.perf_counter() - self.t_start
        n_scored = len(results) - (self.n_skipped if self.return_scores else 0)
        n_windows = self.n_windows - sum(len(p) for k, p in self.plans if k in errors)
        summary = {
            "n_files": len(self.paths), "n_scored": n_scored, "n_skipped": self.n_skipped,
            "n_failed": len(error_list), "n_windows": int(n_windows), "seconds": round(seconds, 3),
            **engine_summary, "n_claimed_by_other_jobs": self.n_claimed_elsewhere,
        }
        table.attrs["errors"] = error_list
        table.attrs["summary"] = summary
        table.attrs["frequency_band"] = frequency_band(self.prep)
        message = (f"predict_recordings: {n_scored} recording(s) scored ({summary['n_windows']} windows, "
                   f"{seconds:.1f} s), {self.n_skipped} already done, {len(error_list)} failed"
                   + (f"; see {self.out.errors_path}" if self.out is not None and error_list else ""))
        logger.log(logging.WARNING if error_list else logging.INFO, message)
        if self.progress:
            print(message, file=sys.stderr)
        return table

