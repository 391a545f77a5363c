"""Config tables -> the package's own datasets, and the statistics of a model on one.

A config run's table (audio paths, category / number inputs, the output column) becomes a
`SingleTargetAudioDataset` (category output) or `MultiTargetAudioDataset` (binary and set
outputs) with the model's `Preprocessing`, so config runs load, cache and augment audio
exactly like the classic door. Category and number inputs ride along as the dataset's
``extra_inputs``. Unreadable audio is found up front (a header read per file): a few bad
files are skipped and listed, most or all failing is an error naming the first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..audio import audio_info
from ..datasets import AudioDataset, MultiTargetAudioDataset, SingleTargetAudioDataset
from ..errors import AudioFileError
from ..model_file import Detector
from ..torch.predict import predict as predict_clips
from .data import Table, audio_paths, row_number
from .encoding import class_names, encode_inputs, encode_targets
from .evaluation import compute_statistics

__all__ = ["ConfigData", "config_dataset", "split_statistics", "output_info"]

log = logging.getLogger("soundscape.workflow")


@dataclass
class ConfigData:
    """One split as a dataset: the rows whose audio could be read, and those that could not."""

    dataset: AudioDataset | None
    frame: pd.DataFrame  # the rows kept
    targets: np.ndarray | None
    keep: np.ndarray  # bool per input row: audio readable
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (CSV line, path, reason)
    failed_rows: list[int] = field(default_factory=list)  # input position of each failure
    lines: list = field(default_factory=list)  # file line (or row label) of each kept row

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def skipped(self) -> int:
        return len(self.failures)

    def record_failures(self, failed: list[tuple[int, str]], lines: list) -> None:
        """Add clips of the dataset (kept positions, reasons) that failed later, when scored."""
        kept = np.flatnonzero(self.keep)
        for j, reason in failed:
            row = int(kept[j])
            if row not in self.failed_rows:
                self.failed_rows.append(row)
                self.failures.append((lines[j], str(self.dataset.paths[j]), reason))
        order = np.argsort(self.failed_rows, kind="stable")  # input order, as errors.csv lists them
        self.failed_rows = [self.failed_rows[i] for i in order]
        self.failures = [self.failures[i] for i in order]


def _unreadable(path) -> str | None:
    try:
        info = audio_info(path)
    except Exception as exc:  # missing, not audio, unreadable header
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        return reason if str(path) in reason else f"{path}: {reason}"
    if info.frames <= 0:
        return f"{path}: file holds no audio samples"
    return None


def output_info(config: dict, metadata: dict) -> tuple[str, dict]:
    """(name, metadata) of the config's output feature."""
    name = config["output_features"][0]["name"]
    return name, metadata[name]


def config_dataset(config: dict, metadata: dict, preprocessing, table: Table, frame: pd.DataFrame,
                   with_targets: bool = True, desc: str = "audio", strict: bool = False,
                   augmentations: dict | None = None, tolerate_most: bool = False) -> ConfigData:
    """The dataset of `frame`'s rows (audio, other inputs and, optionally, targets).

    Rows whose audio cannot be read are left out and listed in ``failures``; more than
    half of them failing raises (a wrong folder, most likely), unless `tolerate_most`
    (prediction: every row gets its own result or error), and so does every one failing.
    """
    audio_name = next(f["name"] for f in config["input_features"] if f["type"] == "audio")
    sub = Table(frame, table.base_dir, table.source)  # index kept: messages name file lines
    paths = audio_paths(sub, audio_name)
    bad_rows = [(i, str(p), r) for i, p in enumerate(paths) if (r := _unreadable(p)) is not None]
    failures = [(_line(frame.index[i], table.source), p, r) for i, p, r in bad_rows]
    _check_failures(failures, len(paths), table.source, strict, desc, tolerate_most)
    bad = {i for i, _, _ in bad_rows}
    keep = np.array([i not in bad for i in range(len(paths))], dtype=bool)
    labelled = frame[keep]  # the input rows' own index, so encoding errors name their lines
    kept = labelled.reset_index(drop=True)
    failed_rows = [i for i, _, _ in bad_rows]
    if not len(kept):
        return ConfigData(None, kept, None, keep, failures, failed_rows)
    cats, nums = encode_inputs(metadata, config, labelled, table.source)
    extra = {k: v for k, v in (("__categories__", cats), ("__scalars__", nums)) if v is not None}
    files = [str(p) for p, good in zip(paths, keep) if good]
    targets = encode_targets(metadata, config, labelled, table.source) if with_targets else None
    _, out_meta = output_info(config, metadata)
    classes = class_names(metadata, config)
    common = dict(filename_column="file", preprocessing=preprocessing, extra_inputs=extra,
                  **(augmentations or {}))
    if out_meta["type"] == "category":
        df = pd.DataFrame({"file": files})
        if targets is not None:
            df["label"] = targets
        dataset = SingleTargetAudioDataset(df, dict(enumerate(classes)),
                                           label_column="label" if targets is not None else None, **common)
    else:
        values = np.zeros((len(files), len(classes)), np.float32) if targets is None else targets
        df = pd.DataFrame(np.asarray(values, np.float32).reshape(len(files), len(classes)),
                          columns=[f"_class{i}" for i in range(len(classes))])
        df.insert(0, "file", files)
        dataset = MultiTargetAudioDataset(df, classes=list(df.columns[1:]), **common)
        dataset.classes = list(classes)
        dataset.label_dict = dict(enumerate(classes))
    return ConfigData(dataset, kept, targets, keep, failures, failed_rows,
                      [_line(v, table.source) for v in labelled.index])


def _line(label, source: str = ".csv") -> int | str:
    """The 1-based line of a table row in its CSV file (the header is line 1); for other
    sources (DataFrame, Parquet) the row's index label."""
    number = row_number(label, source)
    return number if isinstance(number, int) else str(number)


def _check_failures(failures: list, total: int, source: str, strict: bool, desc: str = "",
                    tolerate_most: bool = False) -> None:
    """Raise when every file (or, with `strict`, any; otherwise, unless `tolerate_most`,
    more than half) failed.

    `failures` are (row number of the message, path, reason) records.
    """
    if not failures:
        return
    row, _, reason = failures[0]
    word = "line" if str(source).lower().endswith((".csv", ".tsv", ".tab", ".txt")) else "row"
    if strict or len(failures) == total or (len(failures) > total / 2 and not tolerate_most):
        raise AudioFileError(f"{source}{f' ({desc})' if desc else ''}: {len(failures)} of {total} "
                             f"audio file(s) could not be read; first ({word} {row}): {reason}")
    log.warning("skipped %d of %d rows whose audio could not be read; first (%s %s): %s",
                len(failures), total, word, row, reason)


class _Positions(torch.utils.data.Dataset):
    """A soundscape dataset seen by position only, so `predict` returns the positions it scored."""

    def __init__(self, dataset: AudioDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return self.dataset[i]

    def feature(self, i: int):
        return self.dataset.feature(i)

    def clip_path(self, i: int) -> str:
        return self.dataset.clip_path(i)


def predict_rows(detector: Detector, data: ConfigData, batch_size: int = 32, device=None,
                 summary: dict | None = None, **options) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(logits of every kept row, NaN where its clip could not be loaded; those (position, reason)).

    Header checks catch most unreadable files up front; this catches the rest (a file
    whose samples cannot be decoded, NaN samples), so each row keeps its place. `options`
    go to `predict` (``precision``, ``compile``); `summary` receives its ``attrs["summary"]``.
    """
    result = predict_clips(detector, _Positions(data.dataset), batch_size=batch_size,
                           activation=None, device=device, **options)
    if summary is not None:
        summary.update(result.attrs.get("summary", {}))
    logits = np.full((len(data.dataset), len(detector.classes)), np.nan, dtype=np.float32)
    done = np.asarray(result.index, dtype=np.int64)
    logits[done] = result.to_numpy(np.float32)
    missing = np.setdiff1d(np.arange(len(data.dataset)), done)
    reasons = [str(e.get("error", "could not be loaded")) for e in result.attrs.get("errors") or []]
    reasons += ["could not be loaded"] * (len(missing) - len(reasons))
    failed = [(int(j), r if str(data.dataset.paths[j]) in r else f"{data.dataset.paths[j]}: {r}")
              for j, r in zip(missing, reasons)]
    if failed:
        data.record_failures(failed, data.lines)
        log.warning("%d of %d clips could not be loaded when scored; first: %s", len(failed),
                    len(data.dataset), failed[0][1])
    return logits, failed


def split_statistics(detector: Detector, data: ConfigData, out_meta: dict, batch_size: int = 32,
                     device=None, precision: str = "auto", compile: bool = False,
                     summary: dict | None = None) -> tuple[dict, np.ndarray]:
    """(statistics, probabilities) of `detector` on a split with targets (one predictor).

    Clips that fail to load when scored get NaN probabilities, are left out of the
    statistics and are added to ``data.failures``. `summary`, a dict, receives the
    predictor's ``attrs["summary"]`` (how the model ran).
    """
    logits, _ = predict_rows(detector, data, batch_size, device, summary=summary,
                             precision=precision, compile=compile)
    probs = probabilities(out_meta, logits)
    ok = ~np.isnan(logits).any(axis=1)
    logits = logits[ok]
    targets = None if data.targets is None else np.asarray(data.targets)[ok]
    loss = float("nan")
    if data.targets is not None and len(logits):
        x = torch.tensor(logits)
        y = torch.tensor(targets)
        if out_meta["type"] == "category":
            loss = float(torch.nn.functional.cross_entropy(x, y.long()))
        else:
            loss = float(torch.nn.functional.binary_cross_entropy_with_logits(
                x, y.float().reshape(x.shape)))
    return compute_statistics(out_meta, targets, probs[ok], loss), probs


def probabilities(out_meta: dict, logits: np.ndarray) -> np.ndarray:
    """Probabilities of an output from the network's logits (binary: one column, flattened)."""
    x = torch.from_numpy(np.array(logits, np.float32))
    if out_meta["type"] == "category":
        return x.softmax(dim=1).numpy()
    p = x.sigmoid().numpy()
    return p[:, 0] if out_meta["type"] == "binary" else p
