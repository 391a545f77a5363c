"""`train`: config + table -> a run folder with the model, statistics and description.

The declarative door over the one engine: the table is split as ``split:`` says, the
training split's statistics and the whole table's output vocabulary become the training-set
metadata, each split becomes a soundscape dataset (`soundscape.workflow.tables`), and
`soundscape.torch.train.train` (the one training loop: cache, augmentation, recipes,
checkpoints, ``resume_from``, early stopping, best model by validation macro F1) trains the
network. The run folder keeps Ludwig's layout (``model/``, ``training_statistics.json``,
``test_statistics.json``, ``metrics.csv``, ``description.json``), written from the loop's
history; the loop's own files (``best.model``, ``epoch-N.tar``) are in ``checkpoints/``.
The output folder is checked for writing before any audio is read. Until the run has
finished, its folder holds an ``INCOMPLETE`` file and ``"status": "incomplete"`` in
``description.json`` (with the error, when training failed); ``errors.csv`` lists the rows
left out and the clips the loop skipped.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..config import Config, load_config
from ..errors import AnnotationError
from ..io import atomic_write, check_writable
from ..model_file import Detector
from ..runtime import resolve_device
from ..torch.train import train as train_loop
from .data import SPLITS, Table, check_columns, read_table, required_columns, split_table
from .encoding import build_metadata, class_names
from .model import ConfigModel, make_detector, save_model_dir
from .runs import run_directory, versions, write_json
from .tables import config_dataset, output_info, split_statistics

__all__ = ["TrainResults", "train", "resolve_device", "CHECKPOINTS"]

log = logging.getLogger("soundscape.workflow")
_EPOCH_METRICS = ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1")
_HISTORY_SPLITS = {"training": "train", "validation": "valid", "test": "test"}
#: the training loop's folder inside a run folder (best.model, epoch-N.tar, its metrics)
CHECKPOINTS = "checkpoints"


@dataclass
class TrainResults:
    """What :func:`train` produced."""

    run_directory: Path | None
    model_directory: Path | None
    train_stats: dict
    test_statistics: dict | None
    detector: Detector
    metadata: dict

    @property
    def output_directory(self) -> Path | None:
        """The run folder (Ludwig's name for it)."""
        return self.run_directory


def _optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay)


def _tables(dataset, training_set, validation_set, test_set, config: dict, base_dir, data_root):
    """(source table, {split: frame}) from one data set (split by the config) or given splits."""
    columns = required_columns(config)
    if dataset is not None:
        table = read_table(dataset, base_dir=base_dir, data_root=data_root)
        check_columns(table, columns)
        return table, split_table(table, config["split"], config["trainer"]["seed"],
                                  audio_column=_audio_name(config))
    if training_set is None:
        raise AnnotationError("give a data set (dataset=...) or at least training_set=...")
    if config["split"]["type"] in ("fixed", "group"):
        columns = columns[:-1]  # the split column is not needed when the splits are given
    train = read_table(training_set, base_dir=base_dir, data_root=data_root)
    check_columns(train, columns)
    parts = {"training": train.frame}
    for name, value in (("validation", validation_set), ("test", test_set)):
        if value is None:
            parts[name] = train.frame.iloc[:0]
            continue
        t = read_table(value, base_dir=base_dir, data_root=data_root)
        check_columns(t, columns)
        if t.base_dir != train.base_dir:  # keep each split's own folder for relative paths
            t.frame = _absolute_audio(t, config)
        parts[name] = t.frame
    return train, parts


def _absolute_audio(table: Table, config: dict) -> pd.DataFrame:
    from .data import audio_paths

    frame = table.frame.copy()
    for f in config["input_features"]:
        if f["type"] == "audio":
            frame[f["name"]] = [str(p) for p in audio_paths(table, f["name"])]
    return frame


def train(
    config: str | os.PathLike | dict | Config,
    dataset=None,
    *,
    training_set=None,
    validation_set=None,
    test_set=None,
    output_directory: str | os.PathLike | None = "results",
    experiment_name: str = "experiment",
    base_dir: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    resume_from: str | os.PathLike | None = None,
    small_data_warning: bool = True,
    precision: str | None = None,
) -> TrainResults:
    """Train the model a config describes.

    Parameters
    ----------
    config : path, dict or Config
    dataset : path, registry URI or DataFrame
        One table, split as the config's ``split:`` says. Or give ``training_set`` (and
        optionally ``validation_set`` / ``test_set``) tables instead.
    output_directory : path or None
        Where the run folder ``<experiment_name>_run[_N]`` is made; None writes nothing.
    base_dir : path, optional
        Folder for relative audio paths of DataFrames (files: the file's folder).
    data_root : path, optional
        Folder of local data sets for ``soundscape://`` URIs.
    device : str, optional
        ``"cpu"``, ``"cuda"``...; default: CUDA when available.
    progress : bool
        Show tqdm progress bars on stderr.
    resume_from : path, optional
        An interrupted run folder (or its ``checkpoints/`` folder or one ``epoch-N.tar``):
        training continues from the last checkpoint and the results go into that run folder.
    small_data_warning : bool
        Warn once when the validation split has fewer than 20 rows or fewer than 5 of a
        class (see `soundscape.torch.train.train`); `kfold_cross_validate` turns it off for
        its folds.
    precision : {"auto", "fp32", "bf16", "fp16"}, optional
        Number format of training; default the config's ``trainer.precision`` ("auto").

    Returns
    -------
    TrainResults
    """
    started = time.time()
    cfg = load_config(config)
    conf = cfg.to_dict()
    trainer = conf["trainer"]
    if precision is not None:  # the command line's --precision wins over the config
        trainer["precision"] = precision
    device = resolve_device(device)
    if resume_from is not None:  # before any audio is read: can the run's files be written?
        check_writable(_run_of(Path(resume_from)), "run folder to resume")
    elif output_directory is not None:
        check_writable(output_directory, "output directory")
    table, parts = _tables(dataset, training_set, validation_set, test_set, conf, base_dir, data_root)
    full = pd.concat([parts[s] for s in SPLITS])
    metadata = build_metadata(conf, full, parts["training"], table.source)
    classes = class_names(metadata, conf)
    torch.manual_seed(trainer["seed"])
    network = ConfigModel(conf, metadata, len(classes))
    prep = network.preprocessing
    metadata[network.audio_name] = {"type": "audio", "preprocessing": prep.to_dict(),
                                    "feature_shape": list(prep.input_shape),
                                    "num_samples": prep.clip_samples}
    out_name, out_meta = output_info(conf, metadata)
    data = {}
    for split in SPLITS:
        if len(parts[split]):
            data[split] = config_dataset(conf, metadata, prep, table, parts[split],
                                         desc=f"{split} audio", augmentations=_augmentations(trainer)
                                         if split == "training" else None)
    if "training" not in data or data["training"].dataset is None:
        raise AnnotationError(f"{table.source}: no training rows with readable audio")
    usable = {s: d for s, d in data.items() if d.dataset is not None}
    run_dir = None
    if resume_from is not None:
        run_dir = _run_of(Path(resume_from))
    elif output_directory is not None:
        run_dir = run_directory(output_directory, experiment_name)
    scratch = tempfile.TemporaryDirectory(prefix="soundscape-run-") if run_dir is None else None
    save_dir = (run_dir or Path(scratch.name)) / CHECKPOINTS
    description = {
        "experiment_name": experiment_name if resume_from is None else (run_dir.name if run_dir else None),
        "run_directory": run_dir.resolve() if run_dir is not None else None,
        "dataset": table.source, "config": conf, "versions": versions(), "device": str(device),
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
    }
    if run_dir is not None:
        _mark_incomplete(run_dir, description)
    try:
        return _train_and_save(conf, trainer, table, full, parts, data, usable, metadata, network,
                               out_name, out_meta, run_dir, save_dir, device, progress, resume_from,
                               started, description, small_data_warning)
    except BaseException as exc:
        if run_dir is not None:
            _mark_incomplete(run_dir, description, exc, data)
        raise
    finally:
        if scratch is not None:
            scratch.cleanup()


def _train_and_save(conf, trainer, table, full, parts, data, usable, metadata, network, out_name,
                    out_meta, run_dir, save_dir, device, progress, resume_from, started,
                    description, small_data_warning: bool = True) -> TrainResults:
    """The training loop, then the run folder's files (the second half of `train`)."""
    valid = usable.get("validation", usable["training"])
    if "validation" not in usable:
        log.info("no validation split: the best epoch is chosen on the training split")
    multi = out_meta["type"] != "category"
    loss_fn = torch.nn.BCEWithLogitsLoss() if multi else torch.nn.CrossEntropyLoss()
    history = train_loop(
        save_dir, network, usable["training"].dataset, valid.dataset,
        _optimizer(trainer["optimizer"], network.parameters(), trainer["learning_rate"],
                   trainer["weight_decay"]),
        loss_fn, epochs=trainer["epochs"], batch_size=trainer["batch_size"], num_workers=0,
        log_every=1, device=device, seed=trainer["seed"],
        resume_from=None if resume_from is None else _checkpoints_of(Path(resume_from)),
        progress_bar=progress, print_logging=False, lr_schedule=trainer["lr_schedule"],
        warmup_epochs=trainer["warmup_epochs"], label_smoothing=trainer["label_smoothing"],
        mixup_alpha=trainer["mixup_alpha"], class_balance=trainer["class_balance"],
        early_stopping=trainer["early_stop"], restore_best=True,
        test_dataset=usable["test"].dataset if "test" in usable else None,
        metadata={"output_feature": out_name, "output_type": out_meta["type"]},
        small_data_warning=small_data_warning and "validation" in usable,
        precision=trainer.get("precision", "auto"))
    network.eval().cpu()
    best = int(history.attrs["best_epoch"] if history.attrs["best_epoch"] is not None else len(history) - 1)
    summary = {"epochs_run": int(len(history)), "best_epoch": best + 1,
               "stopped_early": bool(history.attrs["stopped_early"]),
               "seconds": round(time.time() - started, 2),
               "precision": history.attrs.get("precision", trainer.get("precision", "auto"))}
    stats = _ludwig_statistics(history, out_name, usable)
    stats["summary"] = summary
    detector = make_detector(network, {"training": summary, "precision": summary["precision"]})
    test_stats = None
    if "test" in usable:
        s, _ = split_statistics(detector, usable["test"], out_meta, trainer["batch_size"])
        test_stats = {out_name: s, "combined": {"loss": s["loss"]}}
    model_dir = None
    if run_dir is not None:
        model_dir = save_model_dir(detector, run_dir / "model")
        write_json(stats, run_dir / "training_statistics.json")
        if test_stats is not None:
            write_json(test_stats, run_dir / "test_statistics.json")
        metrics = _metrics_csv(stats, out_name)
        atomic_write(run_dir / "metrics.csv", lambda tmp: metrics.to_csv(tmp, index=False),
                     what="metrics table")
        _errors_csv(data, history, run_dir / "errors.csv")
        write_json({
            **description,
            "status": "complete",
            "data_set_size": {
                "rows": int(len(full)),
                **{s: int(len(data[s])) if s in data else 0 for s in SPLITS},
                "skipped_unreadable_audio": {s: data[s].skipped for s in data},
            },
            "training": summary,
        }, run_dir / "description.json")
        (run_dir / INCOMPLETE).unlink(missing_ok=True)
        log.info("saved the run to %s", run_dir)
    return TrainResults(run_dir, model_dir, stats, test_stats, detector, metadata)


#: marker file of a run folder whose training has not finished (removed on success)
INCOMPLETE = "INCOMPLETE"


def _mark_incomplete(run_dir: Path, description: dict, error: BaseException | None = None,
                     data: dict | None = None) -> None:
    """Say in the run folder that the run is not finished: ``INCOMPLETE`` and
    ``"status": "incomplete"`` in description.json (with the error once it failed)."""
    import contextlib

    reason = None
    if error is not None:
        text = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    lines = [f"This run has not finished: training started {description['started']} "
             + ("and failed." if reason else "and is running or was stopped."),
             *( [f"error: {reason}"] if reason else []),
             "The model and statistics in this folder are missing or from an earlier attempt.",
             f"Continue it with: soundscape train --config <config> --dataset <data> "
             f"--resume_from {run_dir}", ""]
    with contextlib.suppress(OSError):  # best effort: the disk may be full
        atomic_write(run_dir / INCOMPLETE, lambda tmp: tmp.write_text("\n".join(lines), encoding="utf-8"),
                     what="run status marker")
        write_json({**description, "status": "incomplete", **({"error": reason} if reason else {})},
                   run_dir / "description.json")
        if data is not None:
            _errors_csv(data, None, run_dir / "errors.csv")


def _audio_name(config: dict) -> str:
    return next(f["name"] for f in config["input_features"] if f["type"] == "audio")


def _augmentations(trainer: dict) -> dict:
    """Dataset augmentation arguments of the trainer's ``augmentation`` keys (none by default)."""
    aug = dict(trainer.get("augmentation") or {})
    if not (aug.get("time_masks") or aug.get("frequency_masks") or aug.get("add_noise")):
        return {}
    return aug


def _checkpoints_of(path: Path) -> Path:
    """The checkpoint (folder) to resume: a run folder's ``checkpoints/``, or `path` itself."""
    return path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path


def _run_of(path: Path) -> Path:
    """The run folder of a resume path (the run, its checkpoints folder, or a checkpoint)."""
    if path.is_file():
        path = path.parent
    if path.name == CHECKPOINTS:
        path = path.parent
    if not (path / CHECKPOINTS).is_dir():
        raise FileNotFoundError(f"resume_from: {path} is not a run folder of `soundscape train` "
                                f"(no {CHECKPOINTS}/ folder in it)")
    return path


def _macro(value) -> float:
    arr = np.asarray(value, dtype=float)
    return float(np.nanmean(arr)) if arr.size and not np.all(np.isnan(arr)) else float("nan")


def _ludwig_statistics(history: pd.DataFrame, out_name: str, usable: dict) -> dict:
    """Ludwig's per-epoch statistics of each split, from the training loop's history."""
    stats = {}
    for split, prefix in _HISTORY_SPLITS.items():
        if split not in usable or f"{prefix}_loss" not in history:
            continue
        rows = history.to_dict("records")
        series = {"loss": [float(r[f"{prefix}_loss"]) for r in rows],
                  "accuracy": [float(r.get(f"{prefix}_accuracy", np.nan)) for r in rows]}
        for name in ("precision", "recall", "f1"):
            series[f"macro_{name}"] = [_macro(r.get(f"{prefix}_{name}", np.nan)) for r in rows]
        stats[split] = {out_name: {m: series[m] for m in _EPOCH_METRICS},
                        "combined": {"loss": series["loss"]}}
    return stats


def _errors_csv(data: dict, history: pd.DataFrame | None, path: Path) -> None:
    """``errors.csv``: every input row left out (unreadable audio), and clips the loop skipped."""
    rows = [{"split": s, "row": r, "file": f, "error": e}
            for s, d in data.items() for r, f, e in d.failures]
    known = {r["file"] for r in rows}
    skipped = (history.attrs.get("skipped_errors") or {}) if history is not None else {}
    rows += [{"split": "", "row": "", "file": f, "error": e} for f, e in skipped.items()
             if f not in known]
    frame = pd.DataFrame(rows, columns=["split", "row", "file", "error"])
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False), what="error list")


def _metrics_csv(stats: dict, out_name: str) -> pd.DataFrame:
    columns = {}
    for split in SPLITS:
        if split in stats:
            for metric, values in stats[split][out_name].items():
                columns[f"{split}_{metric}"] = values
    frame = pd.DataFrame(columns)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame
