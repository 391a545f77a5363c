"""The training loop: `train(save_dir, model, train_dataset, valid_dataset, ...)`.

Each epoch trains on `train_dataset`, evaluates on `valid_dataset`, prints the metrics
(in the classic log format: ``Epoch N`` / ``  Validation results:`` / ``    name: value``),
keeps the best model by validation macro F1 as ``best.model``, writes ``epoch-N.tar``
checkpoints every `log_every` epochs and ``metrics.csv`` / ``metrics.json`` every epoch.
Clips that fail to load are logged once and skipped; a NaN loss stops training.
Recipe options (LR schedule, label smoothing, mixup, class balance, early stopping) are
off by default; see `soundscape.recipes.Recipe`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import ParameterError, TrainingError
from ..metrics import multi_target_metrics, plot_history, read_history, single_target_metrics
from ..model_file import Detector
from ..recipes import Recipe, mixed_loss, mixup
from ..runtime import ThreadTuner, thread_candidates
from .run_setup import (_Failed, _progress, _Run, _setup, _warn_small_validation,
                        validation_counts)
from .checkpoints import (BEST_MODEL, _metadata, _restore_best, _resume, _save_checkpoint,
                          _update_best, _write_metrics, latest_checkpoint, warn_about_other_runs,
                          write_run_file)

__all__ = ["train", "plot_history", "read_history", "latest_checkpoint", "validation_counts"]

logger = logging.getLogger("soundscape.train")

#: metrics printed each epoch, in order (the classic log)
LOGGED = ("loss", "accuracy", "precision", "recall", "f1")
#: extra metrics printed for multi-target training
LOGGED_MULTI = (
    "roc_auc", "average_precision", "macro_f1", "macro_roc_auc", "macro_average_precision",
)


# --------------------------------------------------------------------------- one epoch
def _note_failures(run: _Run, failed: list[_Failed]) -> None:
    for f in failed:
        if f.where not in run.skipped:
            run.skipped[f.where] = f.error
            logger.warning("skipping %s: %s", f.where, f.error)


def _to_device(x, device):
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=True) for k, v in x.items()}
    return x.to(device, non_blocking=True)


def _batch_len(batch: dict) -> int:
    x = batch["X"]
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _forward(run: _Run, batch: dict, training: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = _to_device(batch["X"], run.device)
    if "y" not in batch:
        raise ParameterError(
            "dataset items have no 'y': create the dataset with label_column= to train"
        )
    y = batch["y"].to(run.device, non_blocking=True)
    y = y.float() if run.multi_target else y.view(-1).long()
    loss_fn = run.train_loss_fn if training and run.train_loss_fn is not None else run.loss_fn
    mixed = None
    if training and run.recipe.mixup_alpha > 0 and len(y) > 1:
        x, y_a, y_b, lam = mixup(x, y, run.recipe.mixup_alpha, run.mix_generator)
        mixed = (y_a, y_b, lam)
    with run.precision.autocast():
        logits = run.network(run.precision.input(x))
    logits = logits.float()  # losses and metrics in fp32 whatever the model ran at
    if logits.ndim != 2 or logits.shape[1] != len(run.classes):
        raise ParameterError(
            f"the model outputs shape {tuple(logits.shape)} but the dataset has "
            f"{len(run.classes)} classes {run.classes}; give the model's last layer "
            f"{len(run.classes)} outputs"
        )
    if mixed is not None:
        return logits, y, mixed_loss(loss_fn, logits, *mixed)
    return logits, y, loss_fn(logits, y)


def _metrics(run: _Run, logits: list[torch.Tensor], targets: list[torch.Tensor]) -> dict:
    if not logits:
        return {}
    out = torch.cat(logits).float()
    y = torch.cat(targets).numpy()
    if run.multi_target:
        return multi_target_metrics(y, torch.sigmoid(out).numpy())
    return single_target_metrics(y, out.argmax(dim=1).numpy(), len(run.classes))


def _run_epoch(run: _Run, epoch: int) -> dict:
    """One pass over the training data; returns loss and metrics of the training predictions."""
    run.network.train()
    total, n, logits_all, y_all = 0.0, 0, [], []
    loader = _progress(run.train_loader, run.progress, f"epoch {epoch} train",
                       len(run.train_loader))
    last = time.perf_counter()
    for b, (batch, failed) in enumerate(loader):
        _note_failures(run, failed)
        if batch is None or (_batch_len(batch) < 2 and run.batchnorm_1d):
            continue  # (1-d batch norm cannot train on a single example)
        if run.tuner is not None:
            torch.set_num_threads(run.tuner.threads())
        run.optimizer.zero_grad(set_to_none=True)
        logits, y, loss = _forward(run, batch, training=True)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at epoch {epoch}, batch {b}: training diverged. "
                "Try a lower learning rate, or check the labels and inputs for NaN values."
            )
        loss.backward()
        run.optimizer.step()
        if run.recipe.lr_schedule is not None:
            run.scheduler.step()
        total += float(loss.item()) * len(y)
        n += len(y)
        logits_all.append(logits.detach().cpu())
        y_all.append(y.detach().cpu())
        if run.tuner is not None:
            now = time.perf_counter()
            run.tuner.record(len(y), now - last)  # the step, waiting for the batch included
            last = now
    if n == 0:
        examples = "; ".join(f"{k}: {v}" for k, v in list(run.skipped.items())[:3])
        raise TrainingError(f"epoch {epoch}: no training clip could be loaded ({examples})")
    return {"loss": total / n, **_metrics(run, logits_all, y_all)}


@torch.no_grad()
def _evaluate(run: _Run, loader: DataLoader, desc: str = "validate", required: bool = False) -> dict:
    """Loss and metrics of the model on `loader`, in eval mode.

    With `required` (the validation set, which picks the best model), a loader none of
    whose clips could be read raises TrainingError naming examples.
    """
    run.network.eval()
    total, n, logits_all, y_all = 0.0, 0, [], []
    for batch, failed in _progress(loader, run.progress, desc, len(loader)):
        _note_failures(run, failed)
        if batch is None:
            continue
        logits, y, loss = _forward(run, batch)
        total += float(loss.item()) * len(y)
        n += len(y)
        logits_all.append(logits.cpu())
        y_all.append(y.cpu())
    if n == 0:
        if required:
            dataset = getattr(loader.dataset, "dataset", loader.dataset)
            where = getattr(dataset, "clip_path", None)
            names = {str(where(i)) for i in range(len(dataset))} if callable(where) else set(run.skipped)
            examples = "; ".join(f"{k}: {v}" for k, v in run.skipped.items() if k in names)
            raise TrainingError(
                f"no validation clip could be read (all {len(dataset)} were skipped), so the "
                f"epochs cannot be scored; first: {examples[:600] or '(no reason recorded)'}")
        return {"loss": float("nan")}
    return {"loss": total / n, **_metrics(run, logits_all, y_all)}


def _format(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return np.array2string(value, max_line_width=10**9)
    return repr(float(value)) if isinstance(value, (float, np.floating)) else str(value)


def _print_epoch(run: _Run, record: dict) -> None:
    names = LOGGED + (LOGGED_MULTI if run.multi_target else ())
    lines = [f"Epoch {record['epoch']}", "  Validation results:"]
    for split in ("train", "valid"):
        for name in names:
            key = f"{split}_{name}"
            if key in record and not (split == "train" and name.startswith("macro_")):
                lines.append(f"    {key}: {_format(record[key])}")
    print("\n".join(lines), flush=True)


# --------------------------------------------------------------------------- public API
def _history_frame(run: _Run) -> pd.DataFrame:
    frame = pd.DataFrame(run.history)
    frame.attrs.update(classes=list(run.classes), skipped_files=list(run.skipped),
                       skipped_errors=dict(run.skipped),
                       best_epoch=run.best_epoch, save_dir=str(run.save_dir),
                       best_model=str(run.save_dir / BEST_MODEL), stopped_early=run.stopped_early,
                       precision=run.precision.name,
                       **(run.tuner.summary() if run.tuner is not None else
                          {"threads": torch.get_num_threads()}))
    return frame


def train(
    save_dir: str | Path,
    model: torch.nn.Module,
    train_dataset: Dataset,
    valid_dataset: Dataset,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    epochs: int = 25,
    batch_size: int | None = None,
    num_workers: int | None = None,
    log_every: int = 5,
    *,
    scheduler: Any = None,
    device: str | torch.device | None = None,
    seed: int | None = None,
    resume_from: str | Path | None = None,
    progress_bar: bool | None = None,
    print_logging: bool = True,
    lr_schedule: str | None = None,
    warmup_epochs: float = 0.0,
    label_smoothing: float = 0.0,
    mixup_alpha: float = 0.0,
    class_balance: str | None = None,
    early_stopping: int | None = None,
    monitor: str = "valid_macro_f1",
    restore_best: bool | None = None,
    test_dataset: Dataset | None = None,
    metadata: dict | None = None,
    precision: str = "auto",
    trusted: bool = False,
    small_data_warning: bool = True,
    threads: int | None = None,
) -> pd.DataFrame:
    """Train `model` and keep the best one by validation macro F1.

    Parameters
    ----------
    save_dir : path
        Output folder (created if missing): ``best.model``, ``epoch-N.tar``,
        ``metrics.csv``, ``metrics.json``.
    model : torch.nn.Module
        A network mapping (batch, 3, H, W) to (batch, n_classes) logits, e.g. a torchvision
        ResNet18 with ``fc`` replaced, `soundscape.models.resnet18(n)`, or a `Detector`.
    train_dataset, valid_dataset : Dataset
        Soundscape datasets (their `label_dict` and `preprocessing` are saved with the model).
    optimizer : torch.optim.Optimizer
        Built on ``model.parameters()``.
    loss_fn : callable
        E.g. ``CrossEntropyLoss()`` (single-target) or ``BCEWithLogitsLoss()`` (multi-target).
    epochs : int
    batch_size, num_workers : int, optional
        Default: chosen from the machine by `soundscape.loading.default_loader_settings`
        (32 clips and half the CPUs as loader workers on a CPU; 64 and all CPUs but one
        on a GPU).
    log_every : int
        Save ``epoch-N.tar`` every this many epochs (and at the last one).
    scheduler : optional
        A torch LR scheduler, stepped once per epoch (``ReduceLROnPlateau`` with the
        validation loss).
    device : optional
        Default: CUDA when available, else CPU.
    seed : int, optional
        Seeds torch, numpy and the shuffling for repeatable runs. A seeded run resumed
        from a checkpoint ends with the weights of an uninterrupted one (loader workers,
        if any, are then started afresh each epoch).
    resume_from : path, optional
        A checkpoint, or a save_dir whose run's latest ``epoch-N.tar`` is used: continue
        that run (model, optimizer, scheduler, epoch counter, history and random states
        are restored). A checkpoint of a run with another configuration (architecture,
        classes, preprocessing, optimizer and its hyperparameters, loss, recipe) is
        refused with a ParameterError naming the differences; `epochs` may differ. A new
        run (without `resume_from`) in a save_dir holding another run's files warns.
    progress_bar : bool, optional
        tqdm bars on stderr; default: only in a terminal or notebook.
    print_logging : bool
        Print each epoch's metrics to stdout.
    lr_schedule, warmup_epochs, label_smoothing, mixup_alpha, class_balance, early_stopping,
    monitor, restore_best
        Recipe options, all off by default; see `soundscape.recipes.Recipe`. E.g.
        ``lr_schedule="one_cycle", mixup_alpha=0.2, early_stopping=10``. `lr_schedule`
        steps every batch and replaces `scheduler`; `monitor` also picks ``best.model``.
    test_dataset : Dataset, optional
        Also evaluated every epoch (``test_*`` columns; not printed, never used to pick
        the best model).
    metadata : dict, optional
        Saved with every model file of the run (e.g. the config workflow's metadata).
    precision : {"auto", "fp32", "bf16", "fp16"}
        Number format of the forward pass (`soundscape.runtime.resolve_precision`): "auto"
        trains under bf16 autocast with channels-last on CPUs with native bf16 and on GPUs,
        fp32 elsewhere; losses, metrics and weights stay fp32. Recorded in the model files.
    trusted : bool
        Allow `resume_from` checkpoints (and ``best.model``, read back by `restore_best`)
        to hold arbitrary pickled Python objects: needed to resume a network of your own
        classes (not a registered architecture), which checkpoints store pickled. Loading
        pickled code runs it, so pass this only for files from a source you trust (as
        ``load_model(path, trusted=True)``). Torch/torchvision layers need no trust.
    small_data_warning : bool
        Warn once when the validation set has fewer than 20 clips or fewer than 5 of a
        class: its metrics, and the best epoch picked by them, then mostly reflect which
        clips happened to land in it. The warning is logged (logger ``soundscape.train``)
        before the first epoch and, with `print_logging` when logging is configured (so
        the log line may not be on screen), printed after the last. False for runs that
        are themselves folds of a cross-validation.
    threads : int, optional
        Torch threads of the training steps on a CPU. Default: measured while training
        (`soundscape.runtime.ThreadTuner`: all CPUs, one fewer or half of them, whichever
        runs the batches fastest; on a machine busy with other work fewer threads often
        win); the counts tried are in ``attrs["threads_clips_per_s"]``. A run with a `seed`
        keeps ``torch.get_num_threads()`` instead, so that it repeats exactly.

    Returns
    -------
    DataFrame
        One row per epoch: ``epoch``, ``train_loss``, ``train_accuracy``,
        ``train_precision`` ... ``valid_f1`` (per-class metrics are numpy arrays). ``attrs``
        holds ``classes``, ``skipped_files``, ``best_epoch`` and ``best_model`` (the path of
        ``best.model``, which `soundscape.load_model` reads). The trained network itself
        is also accepted by `predict` / `predict_recordings` afterwards.

    Raises
    ------
    TrainingError
        The loss became NaN (names epoch and batch), or no training (or no validation)
        clip could be loaded.
    OutputError
        `save_dir` cannot be written (checked before any clip is read), or a file could
        not be written during training (disk full): names the file.
    ModelFileError
        A checkpoint to resume from holds pickled objects other than torch layers and
        `trusted` is False.
    """
    recipe = Recipe(lr_schedule, warmup_epochs, label_smoothing, mixup_alpha, class_balance,
                    early_stopping, monitor, restore_best)
    run = _setup(save_dir, model, train_dataset, valid_dataset, optimizer, loss_fn, epochs,
                 batch_size, num_workers, log_every, scheduler, device, seed, progress_bar,
                 print_logging, recipe, test_dataset, metadata, precision)
    if resume_from is not None:
        _resume(run, resume_from, trusted)
    else:
        warn_about_other_runs(run)
    write_run_file(run)
    small_note = _warn_small_validation(run, valid_dataset) if small_data_warning else None
    threads_before = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParameterError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    elif run.device.type == "cpu" and seed is None:
        # (a seeded run keeps torch's thread count: the count changes the order of float
        # sums, so measuring counts would make two seeded runs differ)
        run.tuner = ThreadTuner(thread_candidates())
    try:
        return _train_epochs(run, recipe, trusted, small_note)
    finally:
        torch.set_num_threads(threads_before)


def _train_epochs(run: _Run, recipe: Recipe, trusted: bool, small_note: str | None) -> pd.DataFrame:
    for epoch in range(run.start_epoch, run.epochs):
        started = time.perf_counter()
        train_out = _run_epoch(run, epoch)
        valid_out = _evaluate(run, run.valid_loader, required=True)
        record = {"epoch": epoch}
        record.update({f"train_{k}": v for k, v in train_out.items()})
        record.update({f"valid_{k}": v for k, v in valid_out.items()})
        if run.test_loader is not None:
            record.update({f"test_{k}": v for k, v in _evaluate(run, run.test_loader, "test").items()})
        record["lr"] = float(run.optimizer.param_groups[0]["lr"])
        record["seconds"] = time.perf_counter() - started
        run.history.append(record)
        logger.info("epoch %d/%d: %s", epoch + 1, run.epochs, ", ".join(
            f"{split} loss {record[f'{split}_loss']:.4f} acc {record.get(f'{split}_accuracy', float('nan')):.3f}"
            for split in ("train", "valid", "test") if f"{split}_loss" in record))
        if run.print_logging:
            _print_epoch(run, record)
        if run.scheduler is not None and recipe.lr_schedule is None:
            if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                run.scheduler.step(record["valid_loss"])
            else:
                run.scheduler.step()
        _update_best(run, record)
        run.stopped_early = run.tracker.should_stop
        if (epoch + 1) % run.log_every == 0 or epoch == run.epochs - 1 or run.stopped_early:
            _save_checkpoint(run, epoch)
        _write_metrics(run)
        if run.stopped_early:
            if run.print_logging:
                print(f"Early stopping: {recipe.monitor} did not improve for "
                      f"{recipe.early_stopping} epochs (best epoch {run.best_epoch})", flush=True)
            break
    if recipe.restores_best:
        _restore_best(run, trusted)
    write_run_file(run, "complete")
    if run.print_logging and small_note is not None and logger.hasHandlers():
        # the log went to handlers (a file, the CLI); say it where the epochs were printed too
        print(f"Note: {small_note}", flush=True)
    if run.print_logging and run.best_epoch is not None:
        best = run.save_dir / BEST_MODEL
        print(f"Training complete. Best model: epoch {run.best_epoch}, saved to {best}", flush=True)
    attach_detector(run.network, run.detector(_metadata(run, run.history[-1]) if run.history else {}))
    return _history_frame(run)


def attach_detector(network: torch.nn.Module, detector: Detector) -> None:
    """Remember on a trained network what makes it a Detector (so `predict(network, ...)` works)."""
    object.__setattr__(network, "_soundscape_detector",
                       (detector.architecture, detector.classes, detector.multi_target,
                        detector.preprocessing, detector.architecture_kwargs, detector.metadata))
