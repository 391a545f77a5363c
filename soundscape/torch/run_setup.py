"""The set-up of a training run: the `_Run` state, its data loaders, the model's
preprocessing, the recipe, and the notes about a too-small validation set.

Used by `soundscape.torch.train.train`; `checkpoints` saves and restores a `_Run`.
"""

from __future__ import annotations

import logging
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from ..errors import ParameterError
from ..io import check_writable, clean_stale_temp_files
from ..model_file import Detector, model_payload
from ..models import PICKLED_MODULE, default_preprocessing, identify
from ..preprocessing import Preprocessing
from ..recipes import Recipe, dataset_labels
from ..runtime import default_loader_settings, resolve_device, resolve_precision, worker_init
from .checkpoints import config_hash, new_run_id, run_identity

logger = logging.getLogger("soundscape.train")


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
    generator: torch.Generator | None = None  # the shuffling / sampling generator
    run_id: str = ""  # see checkpoints.new_run_id; a resumed run keeps its checkpoint's
    identity: dict = field(default_factory=dict)  # checkpoints.run_identity
    config_hash: str = ""
    checkpoints: list[str] = field(default_factory=list)  # epoch-N.tar names this run wrote
    started: str = ""

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
    # the arguments are valid; before any clip is read: can the run's files be written there?
    check_writable(save_dir, "training save_dir", needed_bytes=_minimum_checkpoint_bytes(model))
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
    run.generator = generator
    common = dict(batch_size=int(batch_size), num_workers=int(num_workers), collate_fn=_collate,
                  pin_memory=device.type == "cuda")
    if int(num_workers) > 0:
        # seeded runs start fresh workers each epoch, seeded from the saved generator, so a
        # resumed run draws the augmentations an uninterrupted one would
        common.update(worker_init_fn=worker_init, persistent_workers=seed is None,
                      multiprocessing_context=settings["multiprocessing_context"])
    sampler = recipe.sampler(lambda: dataset_labels(train_dataset), generator)
    order = (dict(sampler=sampler) if sampler is not None
             else dict(shuffle=True, generator=generator))
    run.train_loader = DataLoader(_SafeDataset(train_dataset), **order, **common)
    run.valid_loader = DataLoader(_SafeDataset(valid_dataset), shuffle=False, **common)
    if test_dataset is not None and len(test_dataset):
        run.test_loader = DataLoader(_SafeDataset(test_dataset), shuffle=False, **common)
    run.identity = run_identity(run, optimizer, loss_fn, recipe)  # before a schedule moves the LR
    run.config_hash = config_hash(run.identity)
    run.run_id = new_run_id()
    run.started = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    _apply_recipe(run, recipe, train_dataset, seed)
    return run


def _minimum_checkpoint_bytes(model: torch.nn.Module) -> int:
    """Bytes one checkpoint takes at least: the weights twice (states and embedded model)."""
    network = model.network if isinstance(model, Detector) else model
    if not isinstance(network, torch.nn.Module):
        return 0
    return 2 * sum(t.numel() * t.element_size() for t in network.state_dict().values())


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


def validation_counts(run_classes: list[str], dataset: Dataset, multi_target: bool) -> dict[str, int] | None:
    """Clips per class of a labelled dataset (multi-target: positives per class, and the
    negatives of a single class), or None when the dataset does not expose labels."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        return None
    labels = np.asarray(labels)
    if multi_target or labels.ndim == 2:
        labels = labels.reshape(len(labels), -1)
        counts = {c: int((labels[:, k] > 0.5).sum()) for k, c in enumerate(run_classes)
                  if k < labels.shape[1]}
        if labels.shape[1] == 1:
            counts[f"not {run_classes[0]}"] = int((labels[:, 0] <= 0.5).sum())
        return counts
    values = labels.reshape(-1).astype(np.int64)
    return {c: int((values == k).sum()) for k, c in enumerate(run_classes)}


def _warn_small_validation(run: _Run, valid_dataset: Dataset) -> str | None:
    """Log once when the validation set is too small for its metrics to mean much; the
    message, or None."""
    from ..thresholds import small_data_message

    counts = validation_counts(run.classes, valid_dataset, run.multi_target)
    if counts is None:
        return None
    message = small_data_message(
        "the validation set", len(valid_dataset), counts,
        "cross-validate (e.g. sklearn.model_selection.StratifiedKFold over the clips, one "
        "train() per fold, or `soundscape train --k_fold 5`) and report the mean and spread")
    if message is not None:
        logger.warning(message)
    return message
