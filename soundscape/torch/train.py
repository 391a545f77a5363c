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

import copy
import json
import logging
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import ModelFileError, ParameterError, TrainingError
from ..helpers import atomic_path
from ..io import clean_stale_temp_files
from ..runtime import (ThreadTuner, default_loader_settings, resolve_device, resolve_precision,
                       thread_candidates, worker_init)
from ..metrics import (
    array_record,
    flat_record,
    multi_target_metrics,
    plain_record,
    plot_history,
    read_history,
    single_target_metrics,
    to_json,
)
from ..model_file import Detector, _torch_load, atomic_torch_save, model_payload
from ..preprocessing import Preprocessing
from ..recipes import Recipe, dataset_labels, mixed_loss, mixup
from ..models import PICKLED_MODULE, default_preprocessing, identify

__all__ = ["train", "plot_history", "read_history", "latest_checkpoint"]

logger = logging.getLogger("soundscape.train")

#: metrics printed each epoch, in order (the classic log)
LOGGED = ("loss", "accuracy", "precision", "recall", "f1")
#: extra metrics printed for multi-target training
LOGGED_MULTI = (
    "roc_auc", "average_precision", "macro_f1", "macro_roc_auc", "macro_average_precision",
)
BEST_MODEL = "best.model"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.tar$")
_TRAIN_TRUST_HINT = "pass trusted=True to train() (as to load_model(path, trusted=True))"


# --------------------------------------------------------------------------- skipping bad clips
class _Failed(NamedTuple):
    where: str
    error: str


class _SafeDataset(Dataset):
    """Wraps a dataset so an item that raises comes back as a `_Failed` record."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        try:
            return self.dataset[i]
        except Exception as exc:  # any failure to produce an item: skip it, training goes on
            where = self.dataset.clip_path(i) if hasattr(self.dataset, "clip_path") else f"item {i}"
            return _Failed(str(where), f"{type(exc).__name__}: {exc}")


def _collate(items: list) -> tuple[Any, list[_Failed]]:
    failed = [it for it in items if isinstance(it, _Failed)]
    good = [it for it in items if not isinstance(it, _Failed)]
    return (default_collate(good) if good else None), failed


# --------------------------------------------------------------------------- run state
@dataclass
class _Run:
    network: torch.nn.Module
    architecture: str
    architecture_kwargs: dict
    classes: list[str]
    label_dict: dict
    multi_target: bool
    preprocessing: Preprocessing
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loss_fn: Any
    device: torch.device
    save_dir: Path
    epochs: int
    log_every: int
    progress: bool
    print_logging: bool
    train_loader: DataLoader = None
    valid_loader: DataLoader = None
    test_loader: DataLoader = None
    history: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    best_score: float = -math.inf
    best_epoch: int | None = None
    start_epoch: int = 0
    recipe: Recipe = field(default_factory=Recipe)
    train_loss_fn: Any = None  # the recipe's training loss (weights, smoothing)
    mix_generator: torch.Generator | None = None
    tracker: Any = None  # recipes.EarlyStopping of recipe.monitor
    batchnorm_1d: bool = False
    precision: Any = None  # runtime.Precision
    tuner: Any = None  # runtime.ThreadTuner: the model's thread count, measured per batch (CPU)
    best_state: dict | None = None
    stopped_early: bool = False

    metadata: dict = field(default_factory=dict)  # saved with every model file of the run

    def detector(self, metadata: dict | None = None) -> Detector:
        """The network as it is now, with its classes and preprocessing."""
        return Detector(self.network, self.architecture, self.classes, self.multi_target,
                        self.preprocessing, self.architecture_kwargs,
                        {**self.metadata, **(metadata or {})})

    def payload(self, metadata: dict) -> dict:
        """The model-file dict of the network as it is now."""
        payload = model_payload(self.detector(metadata))
        if self.architecture == PICKLED_MODULE:  # the module itself travels in the file
            payload["architecture_kwargs"] = {"module": self.network}
        return payload


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def _progress(iterable, enabled: bool, desc: str, total: int):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, leave=False, dynamic_ncols=True)


def _classes_of(dataset: Dataset) -> tuple[list[str], dict]:
    label_dict = getattr(dataset, "label_dict", None)
    if not label_dict:
        raise ParameterError(
            f"train_dataset ({type(dataset).__name__}) has no label_dict; use a soundscape dataset "
            "or set dataset.label_dict = {0: 'name', ...}"
        )
    keys = sorted(label_dict)
    if keys != list(range(len(keys))):
        raise ParameterError(
            f"label_dict keys must be 0..{len(keys) - 1} (the model's outputs), got {keys}"
        )
    return [str(label_dict[k]) for k in keys], dict(label_dict)


def _input_shape(x) -> tuple:
    return {k: tuple(v.shape) for k, v in x.items()} if isinstance(x, dict) else tuple(x.shape)


def _model_preprocessing(model, arch: str, kwargs: dict, datasets: list) -> Preprocessing:
    """The preprocessing of the run: the model's own for datasets made without one.

    A `Detector` carries its preprocessing, and registered architectures such as
    ``compact_cnn`` declare the one they are built for; datasets built with the default
    preprocessing switch to it. Then one input is pushed through the network, so a model
    that cannot take the datasets' inputs fails here with both shapes named, not deep in
    torch during the first epoch.
    """
    datasets = [d for d in datasets if d is not None]
    first = datasets[0]
    p = first.preprocessing
    own = (model.preprocessing if isinstance(model, Detector)
           else default_preprocessing(arch, p.sample_rate, p.clip_duration))
    if own is not None:
        for d in datasets:
            if not getattr(d, "preprocessing_given", True) and callable(getattr(d, "use_preprocessing", None)):
                d.use_preprocessing(own)
    prep = first.preprocessing
    others = [d.preprocessing for d in datasets[1:] if d.preprocessing.input_shape != prep.input_shape]
    if others:
        raise ParameterError(f"train and validation datasets make inputs of different shapes "
                             f"{prep.input_shape} and {others[0].input_shape}; build them with one "
                             "preprocessing")
    network = model.network if isinstance(model, Detector) else model
    try:
        x = first.feature(0) if callable(getattr(first, "feature", None)) else first[0]["X"]
    except Exception:  # an unreadable first clip is reported (and skipped) by the loop
        return prep
    x = {k: v[None] for k, v in x.items()} if isinstance(x, dict) else x[None]
    was_training = network.training
    try:
        network.eval()
        with torch.no_grad():
            network(x)
    except Exception as exc:
        hint = (f"; the model's own preprocessing makes inputs of shape {own.input_shape}: build the "
                "datasets with preprocessing=<that> or without preprocessing arguments"
                if own is not None else "")
        raise ParameterError(
            f"the model ({type(network).__name__}) cannot take the datasets' inputs of shape "
            f"{_input_shape(x)[1:] if not isinstance(x, dict) else _input_shape(x)} "
            f"(feature {prep.feature!r}){hint} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from exc
    finally:
        network.train(was_training)
    return prep


def _setup(save_dir, model, train_dataset, valid_dataset, optimizer, loss_fn, epochs, batch_size,
           num_workers, log_every, scheduler, device, seed, progress_bar, print_logging,
           recipe: Recipe = Recipe(), test_dataset=None, metadata=None, precision: str = "auto") -> _Run:
    device = resolve_device(device)
    settings = default_loader_settings(device)  # defaults chosen from the machine
    batch_size = settings["batch_size"] if batch_size is None else batch_size
    num_workers = settings["num_workers"] if num_workers is None else num_workers
    if int(epochs) < 1 or int(batch_size) < 1 or int(log_every) < 1 or int(num_workers) < 0:
        raise ParameterError(
            "need epochs >= 1, batch_size >= 1, log_every >= 1, num_workers >= 0; got "
            f"epochs={epochs}, batch_size={batch_size}, log_every={log_every}, "
            f"num_workers={num_workers}"
        )
    if valid_dataset is None or len(valid_dataset) == 0 or len(train_dataset) == 0:
        raise ParameterError("train_dataset and valid_dataset must both hold at least one clip")
    if not isinstance(getattr(train_dataset, "preprocessing", None), Preprocessing):
        raise ParameterError(
            f"train_dataset ({type(train_dataset).__name__}) has no .preprocessing; the model file "
            "needs it to prepare audio at prediction time (use a soundscape dataset)"
        )
    multi = getattr(train_dataset, "multi_target", None)
    if multi is None:
        multi = isinstance(loss_fn, (torch.nn.BCEWithLogitsLoss, torch.nn.BCELoss))
    classes, label_dict = _classes_of(train_dataset)
    if isinstance(model, Detector):
        network, arch = model.network, model.architecture
        kwargs = {k: v for k, v in model.architecture_kwargs.items() if k != "weights"}
    elif isinstance(model, torch.nn.Module):
        network = model
        arch, kwargs = identify(model, len(classes))
        if "module" in kwargs:
            logger.warning(
                "%s is not a registered architecture: model files will hold the pickled module; "
                "load them with load_model(path, trusted=True) where its class can be imported",
                type(model).__name__,
            )
    else:
        raise ParameterError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    preprocessing = _model_preprocessing(model, arch, kwargs, [train_dataset, valid_dataset, test_dataset])
    if seed is not None:
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
    network.to(device)
    progress = sys.stderr.isatty() or _in_notebook() if progress_bar is None else bool(progress_bar)
    run = _Run(network, arch, kwargs, classes, label_dict, bool(multi), preprocessing, optimizer,
               scheduler, loss_fn, device, Path(save_dir), int(epochs), int(log_every), progress,
               print_logging)
    run.metadata = dict(metadata or {})
    run.batchnorm_1d = any(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules())
    if precision == "int8":
        raise ParameterError("precision 'int8' is for prediction only (a quantized copy of a trained "
                             "network); train in 'auto', 'bf16' or 'fp32'")
    run.precision = resolve_precision(precision, device)
    run.precision.prepare(network)
    run.save_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temp_files(run.save_dir)  # left by saves of earlier runs that were killed
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    common = dict(batch_size=int(batch_size), num_workers=int(num_workers), collate_fn=_collate,
                  pin_memory=device.type == "cuda")
    if int(num_workers) > 0:
        common.update(worker_init_fn=worker_init, persistent_workers=True,
                      multiprocessing_context=settings["multiprocessing_context"])
    sampler = recipe.sampler(lambda: dataset_labels(train_dataset), generator)
    order = (dict(sampler=sampler) if sampler is not None
             else dict(shuffle=True, generator=generator))
    run.train_loader = DataLoader(_SafeDataset(train_dataset), **order, **common)
    run.valid_loader = DataLoader(_SafeDataset(valid_dataset), shuffle=False, **common)
    if test_dataset is not None and len(test_dataset):
        run.test_loader = DataLoader(_SafeDataset(test_dataset), shuffle=False, **common)
    _apply_recipe(run, recipe, train_dataset, seed)
    return run


def _apply_recipe(run: _Run, recipe: Recipe, train_dataset: Dataset, seed: int | None) -> None:
    run.recipe, run.tracker = recipe, recipe.tracker()
    run.train_loss_fn = recipe.training_loss(run.loss_fn, lambda: dataset_labels(train_dataset),
                                             len(run.classes), run.multi_target)
    if isinstance(run.train_loss_fn, torch.nn.Module):
        run.train_loss_fn.to(run.device)
    if recipe.mixup_alpha > 0:
        run.mix_generator = torch.Generator().manual_seed(0 if seed is None else seed + 1)
    if recipe.lr_schedule is not None:
        if run.scheduler is not None:
            raise ParameterError("give either scheduler= (your own) or lr_schedule=, not both")
        run.scheduler = recipe.scheduler(run.optimizer, run.epochs, len(run.train_loader))


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
def _evaluate(run: _Run, loader: DataLoader, desc: str = "validate") -> dict:
    """Loss and metrics of the model on `loader`, in eval mode."""
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


# --------------------------------------------------------------------------- saving
def _metadata(run: _Run, record: dict) -> dict:
    return {"label_dict": run.label_dict, "epoch": record["epoch"], "metrics": to_json(record),
            "trained_by": "soundscape.torch.train", "precision": run.precision.name}


def _save_checkpoint(run: _Run, epoch: int) -> Path:
    """Write ``epoch-N.tar``: states to resume from plus an embedded model file."""
    record = run.history[-1]
    checkpoint = {
        "format": "soundscape-checkpoint",
        "epoch": epoch,
        "model_state_dict": run.network.state_dict(),
        "optimizer_state_dict": run.optimizer.state_dict(),
        "scheduler_state_dict": run.scheduler.state_dict() if run.scheduler is not None else None,
        "label_dict": run.label_dict,
        "classes": run.classes,
        "multi_target": run.multi_target,
        "preprocessing": run.preprocessing.to_dict(),
        "metrics": plain_record(record),
        "history": [plain_record(r) for r in run.history],
        "skipped_files": list(run.skipped),
        "skipped_errors": dict(run.skipped),
        "best_score": run.best_score,
        "best_epoch": run.best_epoch,
        "model": run.payload(_metadata(run, record)),
    }
    return atomic_torch_save(checkpoint, run.save_dir / f"epoch-{epoch}.tar")


def _write_metrics(run: _Run) -> None:
    """Rewrite metrics.csv (per-class values in ``name[class]`` columns) and metrics.json."""
    frame = pd.DataFrame([flat_record(r, run.classes) for r in run.history])
    with atomic_path(run.save_dir / "metrics.csv") as tmp:
        frame.to_csv(tmp, index=False)
    doc = {"classes": run.classes, "label_dict": run.label_dict, "multi_target": run.multi_target,
           "best_epoch": run.best_epoch, "skipped_files": list(run.skipped), "epochs": run.history}
    with atomic_path(run.save_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(to_json(doc), indent=1), encoding="utf-8")


def _update_best(run: _Run, record: dict) -> None:
    """Save ``best.model`` when `record` is the best epoch by ``recipe.monitor``."""
    if run.tracker.update(record):
        run.best_score, run.best_epoch = run.tracker.best_score, record["epoch"]
        atomic_torch_save(run.payload(_metadata(run, record)), run.save_dir / BEST_MODEL)
        if run.recipe.restores_best:
            run.best_state = copy.deepcopy(run.network.state_dict())


def _restore_best(run: _Run, trusted: bool = False) -> None:
    """Load the best epoch's weights into the network (kept in memory, else from best.model).

    ``best.model`` is read like `load_model` reads it: a pickled network of your own
    classes in it needs `trusted` (train's ``trusted=True``).
    """
    state = run.best_state
    path = run.save_dir / BEST_MODEL
    if state is None and path.exists():
        try:
            state = _torch_load(path, trusted, hint=_TRAIN_TRUST_HINT)["state_dict"]
        except ModelFileError as exc:
            raise ModelFileError(f"restore_best: {exc}") from exc
    if state is not None:
        run.network.load_state_dict(state)


# --------------------------------------------------------------------------- resuming
def latest_checkpoint(path: str | Path) -> Path:
    """`path` if it is a file, else the ``epoch-N.tar`` with the largest N in folder `path`."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from: no checkpoint file or folder at {path}")
    found = [(int(m.group(1)), p) for p in path.iterdir() if (m := _CHECKPOINT.match(p.name))]
    if not found:
        raise FileNotFoundError(f"resume_from: no epoch-N.tar checkpoint in {path}")
    return max(found)[1]


def _load_checkpoint(path: Path, trusted: bool) -> dict:
    """Load a checkpoint without running code from it, unless `trusted`.

    Checkpoints hold tensors, plain values and, for a network that is not a registered
    architecture, the pickled network. Without `trusted` (train's ``trusted=True``) only
    torch/torchvision layer classes are allowed in it (as `load_model` allows them); a
    network of your own classes, or anything else, raises ModelFileError.
    """
    try:
        return _torch_load(path, trusted, hint=_TRAIN_TRUST_HINT)
    except ModelFileError as exc:
        raise ModelFileError(f"resume_from: {exc}") from exc
    except Exception as exc:
        first_line = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ParameterError(f"resume_from: {path} is not a readable checkpoint "
                             f"({type(exc).__name__}: {first_line})") from exc


def _resume(run: _Run, resume_from: str | Path, trusted: bool = False) -> None:
    """Restore the run's state from a checkpoint (see `_load_checkpoint` for `trusted`)."""
    path = latest_checkpoint(resume_from)
    ckpt = _load_checkpoint(path, trusted=trusted)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "soundscape-checkpoint":
        raise ParameterError(
            f"resume_from: {path} is not a checkpoint written by soundscape's train()"
        )
    if list(ckpt["classes"]) != run.classes:
        raise ParameterError(f"resume_from: {path} was trained on classes {ckpt['classes']}, "
                             f"but the dataset has {run.classes}")
    run.network.load_state_dict(ckpt["model_state_dict"])
    run.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    if run.scheduler is not None and ckpt.get("scheduler_state_dict") is not None:
        run.scheduler.load_state_dict(ckpt["scheduler_state_dict"])
    run.history = [array_record(r) for r in ckpt["history"] if r["epoch"] <= ckpt["epoch"]]
    run.skipped = dict(ckpt.get("skipped_errors") or {})
    run.best_score, run.best_epoch = ckpt["best_score"], ckpt["best_epoch"]
    run.start_epoch = int(ckpt["epoch"]) + 1
    if run.best_epoch is not None:
        run.tracker.best_score, run.tracker.best_epoch = run.best_score, run.best_epoch
        run.tracker.bad_epochs = int(ckpt["epoch"]) - int(run.best_epoch)
    logger.info("resuming from %s at epoch %d", path, run.start_epoch)


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
        Seeds torch, numpy and the shuffling for repeatable runs.
    resume_from : path, optional
        A checkpoint, or a save_dir whose latest ``epoch-N.tar`` is used: continue that run
        (model, optimizer, scheduler, epoch counter and history are restored).
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
    threads : int, optional
        Torch threads of the training steps on a CPU. Default: measured while training
        (`soundscape.runtime.ThreadTuner`: all CPUs, one fewer or half of them, whichever
        runs the batches fastest; on a machine busy with other work fewer threads often
        win); the counts tried are in ``attrs["threads_clips_per_s"]``.

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
        The loss became NaN (names epoch and batch), or no training clip could be loaded.
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
    threads_before = torch.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParameterError(f"threads must be an integer >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    elif run.device.type == "cpu":
        run.tuner = ThreadTuner(thread_candidates())
    try:
        return _train_epochs(run, recipe, trusted)
    finally:
        torch.set_num_threads(threads_before)


def _train_epochs(run: _Run, recipe: Recipe, trusted: bool) -> pd.DataFrame:
    for epoch in range(run.start_epoch, run.epochs):
        started = time.perf_counter()
        train_out = _run_epoch(run, epoch)
        valid_out = _evaluate(run, run.valid_loader)
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
