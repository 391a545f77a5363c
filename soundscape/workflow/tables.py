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
from .data import Table, audio_paths
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

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def skipped(self) -> int:
        return len(self.failures)


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
                   augmentations: dict | None = None) -> ConfigData:
    """The dataset of `frame`'s rows (audio, other inputs and, optionally, targets)."""
    audio_name = next(f["name"] for f in config["input_features"] if f["type"] == "audio")
    sub = Table(frame.reset_index(drop=True), table.base_dir, table.source)
    paths = audio_paths(sub, audio_name)
    bad_rows = [(i, str(p), r) for i, p in enumerate(paths) if (r := _unreadable(p)) is not None]
    _check_failures(bad_rows, len(paths), f"{table.source} ({desc})", strict)
    bad = {i for i, _, _ in bad_rows}
    failures = [(_line(frame.index[i]), p, r) for i, p, r in bad_rows]
    keep = np.array([i not in bad for i in range(len(paths))], dtype=bool)
    kept = sub.frame[keep].reset_index(drop=True)
    if not len(kept):
        return ConfigData(None, kept, None, keep, failures)
    cats, nums = encode_inputs(metadata, config, kept, table.source)
    extra = {k: v for k, v in (("__categories__", cats), ("__scalars__", nums)) if v is not None}
    files = [str(p) for p, good in zip(paths, keep) if good]
    targets = encode_targets(metadata, config, kept, table.source) if with_targets else None
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
    return ConfigData(dataset, kept, targets, keep, failures)


def _line(label) -> int | str:
    """The 1-based line of a table row in its CSV file (the header is line 1)."""
    return int(label) + 2 if isinstance(label, (int, np.integer)) else str(label)


def _check_failures(failures: list, total: int, source: str, strict: bool) -> None:
    """Raise when every file (or, with `strict`, any; otherwise more than half) failed."""
    if not failures:
        return
    row, _, reason = failures[0]
    if strict or len(failures) == total or len(failures) > total / 2:
        raise AudioFileError(f"{source}: {len(failures)} of {total} audio file(s) could not be read; "
                             f"first (row {row}): {reason}")
    log.warning("skipped %d of %d rows whose audio could not be read; first (row %d): %s",
                len(failures), total, row, reason)


def split_statistics(detector: Detector, data: ConfigData, out_meta: dict, batch_size: int = 32,
                     device=None, precision: str = "auto", compile: bool = False,
                     summary: dict | None = None) -> tuple[dict, np.ndarray]:
    """(statistics, probabilities) of `detector` on a split with targets (one predictor).

    `summary`, a dict, receives the predictor's ``attrs["summary"]`` (how the model ran).
    """
    scores = predict_clips(detector, data.dataset, batch_size=batch_size, activation=None,
                           device=device, precision=precision, compile=compile)
    if summary is not None:
        summary.update(scores.attrs.get("summary", {}))
    logits = scores.to_numpy(np.float32)
    probs = probabilities(out_meta, logits)
    loss = float("nan")
    if data.targets is not None and len(logits):
        x = torch.tensor(logits)
        y = torch.tensor(np.asarray(data.targets))
        if out_meta["type"] == "category":
            loss = float(torch.nn.functional.cross_entropy(x, y.long()))
        else:
            loss = float(torch.nn.functional.binary_cross_entropy_with_logits(
                x, y.float().reshape(x.shape)))
    return compute_statistics(out_meta, np.asarray(data.targets), probs, loss), probs


def probabilities(out_meta: dict, logits: np.ndarray) -> np.ndarray:
    """Probabilities of an output from the network's logits (binary: one column, flattened)."""
    x = torch.from_numpy(np.array(logits, np.float32))
    if out_meta["type"] == "category":
        return x.softmax(dim=1).numpy()
    p = x.sigmoid().numpy()
    return p[:, 0] if out_meta["type"] == "binary" else p
