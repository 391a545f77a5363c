"""Training recipe pieces: learning-rate schedules, early stopping, class balance, label
smoothing and mixup.

Each piece is small and independent; `soundscape.torch.train.train` switches them on with
keyword options (all off by default), and a hand-written loop can use them directly:

>>> sched = lr_schedule(optimizer, "cosine", epochs=30, steps_per_epoch=len(loader),
...                     warmup_epochs=2)          # step it after every optimizer.step()
>>> x, y_a, y_b, lam = mixup(x, y, alpha=0.2)
>>> loss = mixed_loss(loss_fn, model(x), y_a, y_b, lam)

When each helps:

- warm-up + cosine / one-cycle: training from scratch, and large learning rates; they
  usually beat a constant rate for the same number of epochs.
- label smoothing (0.05-0.1): small data sets and noisy labels; keeps the network from
  becoming over-confident. Not for multi-target detection where scores are thresholded.
- mixup (alpha 0.2-0.4): small data sets of one-of-n classes; blends two clips' images and
  their labels. Needs more epochs to pay off.
- class balance: rare species. ``"sampler"`` draws every class equally often per epoch;
  ``"loss"`` keeps the data order and weighs the loss by inverse class frequency.
- early stopping: long runs with a validation set that represents the target recordings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .errors import ParameterError

__all__ = [
    "Recipe", "CLASS_BALANCE", "LR_SCHEDULES", "lr_schedule", "EarlyStopping", "class_counts",
    "class_weights",
    "sample_weights", "balanced_sampler", "dataset_labels", "smooth_targets", "SmoothedLoss",
    "mixup", "mixup_weights", "mix_targets", "mixed_loss",
]

#: names accepted by `lr_schedule`
LR_SCHEDULES = ("constant", "cosine", "one_cycle")
#: values of `Recipe.class_balance`
CLASS_BALANCE = (None, "sampler", "loss")


# --------------------------------------------------------------------------- LR schedules
def lr_schedule(optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int,
                warmup_epochs: float = 0.0, min_lr_ratio: float = 0.0
                ) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-batch learning-rate schedule around the optimizer's current learning rate.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Its learning rate(s) are the peak rates.
    name : {"constant", "cosine", "one_cycle"}
        ``constant``: linear warm-up, then the peak rate. ``cosine``: linear warm-up
        from 0, then a cosine decay to ``min_lr_ratio * peak``. ``one_cycle``: torch's
        `OneCycleLR` (warm-up share ``warmup_epochs / epochs``, 0.3 when 0).
    epochs, steps_per_epoch : int
        Length of training; call ``.step()`` after every optimizer step.
    warmup_epochs : float
        Epochs of linear warm-up (may be fractional).
    min_lr_ratio : float
        Final rate as a share of the peak (cosine only).
    """
    if name not in LR_SCHEDULES:
        raise ParameterError(f"lr_schedule must be one of {LR_SCHEDULES}, got {name!r}")
    epochs, steps_per_epoch = int(epochs), int(steps_per_epoch)
    if epochs < 1 or steps_per_epoch < 1:
        raise ParameterError(
            "lr_schedule needs epochs >= 1 and steps_per_epoch >= 1, got "
            f"{epochs}, {steps_per_epoch}"
        )
    if not 0 <= warmup_epochs < epochs:
        raise ParameterError(
            f"warmup_epochs must be in [0, epochs={epochs}), got {warmup_epochs!r}")
    if not 0 <= min_lr_ratio <= 1:
        raise ParameterError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio!r}")
    total = epochs * steps_per_epoch
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if name == "one_cycle":
        peaks = [g["lr"] for g in optimizer.param_groups]
        share = warmup / total if warmup else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=peaks, total_steps=total, pct_start=min(max(share, 1e-3), 0.99),
            anneal_strategy="cos", cycle_momentum=_has_momentum(optimizer))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if name == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _has_momentum(optimizer: torch.optim.Optimizer) -> bool:
    group = optimizer.param_groups[0]
    return "betas" in group or group.get("momentum", 0) > 0


# --------------------------------------------------------------------------- early stopping
class EarlyStopping:
    """Tracks a validation metric; says when it stopped improving for `patience` epochs.

    Parameters
    ----------
    patience : int or None
        Epochs without improvement before `should_stop` becomes True; None: only track
        the best epoch, never stop.
    monitor : str
        Key of the epoch record to watch, e.g. ``"valid_macro_f1"`` or ``"valid_loss"``.
    mode : {"max", "min"}, optional
        Whether larger is better; default: "min" for names containing "loss", else "max".
    min_delta : float
        Smallest change that counts as an improvement.
    """

    def __init__(self, patience: int, monitor: str = "valid_macro_f1", mode: str | None = None,
                 min_delta: float = 0.0):
        if patience is not None and int(patience) < 1:
            raise ParameterError(f"early stopping patience must be >= 1 epoch, got {patience!r}")
        mode = mode or ("min" if "loss" in monitor else "max")
        if mode not in ("max", "min"):
            raise ParameterError(f"mode must be 'max' or 'min', got {mode!r}")
        if min_delta < 0:
            raise ParameterError(f"min_delta must be >= 0, got {min_delta!r}")
        self.patience = None if patience is None else int(patience)
        self.monitor, self.mode = monitor, mode
        self.min_delta = float(min_delta)
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_loss: float | None = None
        self.bad_epochs = 0

    def score(self, record: dict) -> float:
        """The monitored value of `record` (NaN or missing counts as the worst value)."""
        if self.monitor not in record:
            raise ParameterError(
                f"early stopping monitors {self.monitor!r}, but the epoch record has only "
                f"{sorted(k for k in record if not k.startswith('_'))}"
            )
        value = record[self.monitor]
        value = float(value) if value is not None else float("nan")
        if not math.isfinite(value):
            return -math.inf if self.mode == "max" else math.inf
        return value

    def update(self, record: dict) -> bool:
        """Record one epoch (needs key ``"epoch"``); True when it is the best so far.

        A tie on the monitored value goes to the later epoch when its validation loss
        (``valid_loss``, if recorded and not the monitored value) is no higher.
        """
        value = self.score(record)
        sign = 1.0 if self.mode == "max" else -1.0
        loss = record.get("valid_loss") if self.monitor != "valid_loss" else None
        loss = float(loss) if loss is not None and math.isfinite(float(loss)) else None
        tie = (self.best_score is not None and value == self.best_score and loss is not None
               and (self.best_loss is None or loss <= self.best_loss))
        improved = (self.best_score is None
                    or sign * (value - self.best_score) > self.min_delta or tie)
        if improved:
            self.best_score, self.best_epoch, self.bad_epochs = value, record.get("epoch"), 0
            self.best_loss = loss
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs in a row brought no improvement."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        """State for checkpoints."""
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "best_loss": self.best_loss}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` output."""
        self.best_score, self.best_epoch = state["best_score"], state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])
        self.best_loss = state.get("best_loss")


# --------------------------------------------------------------------------- class balance
def dataset_labels(dataset: Any) -> np.ndarray:
    """Labels of a soundscape dataset: (n,) class indices or (n, classes) 0/1 matrix."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        raise ParameterError(
            f"{type(dataset).__name__} has no labels: class balancing needs a dataset made with "
            "label_column= (single-target) or label columns (multi-target)"
        )
    return np.asarray(labels)


def class_counts(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Clips per class: of (n,) class indices, or positives per column of an (n, k) matrix."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels > 0.5).sum(axis=0).astype(np.int64)
    labels = labels.reshape(-1).astype(np.int64)
    k = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ParameterError(
            f"labels must be class indices in [0, {k}), got {labels.min()}..{labels.max()}")
    return np.bincount(labels, minlength=k)


def class_weights(labels: np.ndarray, num_classes: int | None = None, power: float = 1.0
                  ) -> torch.Tensor:
    """Loss weights that even out class frequencies.

    Single-target: ``weight[c] = (n / (k * count[c])) ** power`` (mean 1 over clips), for
    ``CrossEntropyLoss(weight=...)``. Multi-target: ``negatives / positives`` per class
    (to the `power`), for ``BCEWithLogitsLoss(pos_weight=...)``. Classes without clips
    get weight 0 (single-target) or 1 (multi-target).
    """
    labels = np.asarray(labels)
    counts = class_counts(labels, num_classes).astype(np.float64)
    if labels.ndim == 2:
        negatives = len(labels) - counts
        weights = np.where(counts > 0, negatives / np.maximum(counts, 1), 1.0) ** power
    else:
        k, n = len(counts), counts.sum()
        weights = np.where(counts > 0, n / (k * np.maximum(counts, 1)), 0.0) ** power
    return torch.tensor(weights, dtype=torch.float32)


def sample_weights(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Per-clip drawing weights that make every class equally likely.

    A multi-target clip gets the largest weight of its positive classes (rare species
    win); clips with no positive class count as one more class, "none".
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        positive = labels > 0.5
        counts = positive.sum(axis=0)
        none = ~positive.any(axis=1)
        per_class = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        weights = (positive * per_class).max(axis=1)
        if none.any():
            weights[none] = 1.0 / none.sum()
        return weights
    counts = class_counts(labels, num_classes)
    return 1.0 / counts[labels.reshape(-1).astype(np.int64)]


def balanced_sampler(labels: np.ndarray, num_samples: int | None = None,
                     generator: torch.Generator | None = None
                     ) -> torch.utils.data.WeightedRandomSampler:
    """A sampler drawing classes evenly (with replacement), `num_samples` per epoch.

    Default `num_samples`: the number of clips, so an epoch keeps its length.
    """
    weights = sample_weights(labels)
    n = len(weights) if num_samples is None else int(num_samples)
    if n < 1:
        raise ParameterError(f"num_samples must be >= 1, got {num_samples!r}")
    return torch.utils.data.WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double),
                                                  n, replacement=True, generator=generator)


# --------------------------------------------------------------------------- targets and losses
def _one_hot(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(y.view(-1).long(), num_classes).float()


def smooth_targets(y: torch.Tensor, smoothing: float, num_classes: int | None = None
                   ) -> torch.Tensor:
    """Smoothed targets: class indices or soft (n, k) rows become ``(1 - s) * y + s / k``.

    For multi-target 0/1 targets pass ``num_classes=2`` semantics implicitly: each column
    is its own two-class problem, so 1 -> ``1 - s/2`` and 0 -> ``s/2``
    (give ``num_classes=None`` and float targets of shape (n, k)).
    """
    if not 0 <= smoothing < 1:
        raise ParameterError(f"label smoothing must be in [0, 1), got {smoothing!r}")
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        if num_classes is None:
            raise ParameterError("smooth_targets needs num_classes for class-index targets")
        return _one_hot(y, num_classes) * (1 - smoothing) + smoothing / num_classes
    if num_classes is None:  # independent 0/1 columns
        return y.float() * (1 - smoothing) + smoothing / 2
    return y.float() * (1 - smoothing) + smoothing / num_classes


class SmoothedLoss(torch.nn.Module):
    """Wraps a loss so its targets are label-smoothed before it sees them.

    Single-target: the wrapped loss receives soft (n, k) targets (``CrossEntropyLoss``
    accepts them). Multi-target: 0/1 targets become ``s/2`` and ``1 - s/2``
    (``BCEWithLogitsLoss`` accepts them).
    """

    def __init__(self, loss_fn: Callable, smoothing: float, multi_target: bool):
        super().__init__()
        smooth_targets(torch.zeros(1), smoothing)  # validates
        self.loss_fn, self.smoothing, self.multi_target = loss_fn, float(smoothing), multi_target

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.multi_target:
            return self.loss_fn(logits, smooth_targets(y, self.smoothing))
        k = logits.shape[1]
        if y.ndim == 1 or y.shape[-1] != k:
            return self.loss_fn(logits, smooth_targets(y.view(-1).long(), self.smoothing, k))
        return self.loss_fn(logits, smooth_targets(y, self.smoothing, k))


def mixup_weights(n: int, alpha: float, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, float]:
    """(partner permutation, lam) of one mixup batch of `n` items; see `mixup`."""
    if not alpha > 0:
        raise ParameterError(f"mixup alpha must be > 0, got {alpha!r}")
    seed = int(torch.randint(0, 2**62, (), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    return torch.randperm(int(n), generator=generator), max(lam, 1.0 - lam)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Blend each input with another of the batch: ``lam * x + (1 - lam) * x[perm]``.

    `x` may be a dict of input tensors (a model with several inputs): every float tensor
    is blended with the same partners and weight; integer (category) inputs are kept.

    Returns ``(mixed inputs, targets, partner targets, lam)``; train on
    `mixed_loss` (or soft targets from `mix_targets`). ``lam ~ Beta(alpha, alpha)``,
    folded to ``max(lam, 1 - lam)`` so each mixed input keeps its own label dominant.
    """
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    if n != len(y):
        raise ParameterError(f"mixup: {n} inputs but {len(y)} targets")
    perm, lam = mixup_weights(n, alpha, generator)

    def blend(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():  # category codes cannot be blended: each row keeps its own
            return t
        return t.mul(lam).add_(t[perm.to(t.device)], alpha=1.0 - lam)

    mixed = {k: blend(v) for k, v in x.items()} if isinstance(x, dict) else blend(x)
    return mixed, y, y[perm.to(y.device)], lam


def mix_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
                num_classes: int | None = None) -> torch.Tensor:
    """Soft targets ``lam * y_a + (1 - lam) * y_b`` (class indices are one-hot first)."""
    if y_a.dtype in (torch.int64, torch.int32) or num_classes is not None and y_a.ndim == 1:
        if num_classes is None:
            raise ParameterError("mix_targets needs num_classes for class-index targets")
        y_a, y_b = _one_hot(y_a, num_classes), _one_hot(y_b, num_classes)
    return lam * y_a.float() + (1.0 - lam) * y_b.float()


def mixed_loss(loss_fn: Callable, logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor,
               lam: float) -> torch.Tensor:
    """``lam * loss(logits, y_a) + (1 - lam) * loss(logits, y_b)``: mixup's loss, for any loss."""
    return lam * loss_fn(logits, y_a) + (1.0 - lam) * loss_fn(logits, y_b)


# --------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class Recipe:
    """The recipe options of `soundscape.torch.train.train`, validated; all off by default.

    Parameters
    ----------
    lr_schedule : {"constant", "cosine", "one_cycle"}, optional
        Per-batch schedule peaking at the optimizer's learning rate (`lr_schedule`).
    warmup_epochs : float
        Linear warm-up at the start of the schedule.
    label_smoothing : float
        Training targets smoothed by this much (`SmoothedLoss`); 0: off.
    mixup_alpha : float
        Mixup of training batches with ``Beta(alpha, alpha)`` weights (`mixup`); 0: off.
    class_balance : {None, "sampler", "loss"}
        "sampler": `balanced_sampler`; "loss": `class_weights` in the loss.
    early_stopping : int, optional
        Stop after this many epochs without a better `monitor` value (`EarlyStopping`).
    monitor : str
        Epoch-record key deciding the best model, e.g. "valid_macro_f1" or "valid_loss".
    restore_best : bool, optional
        Load the best weights into the model at the end; default: with early stopping.
    """

    lr_schedule: str | None = None
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    class_balance: str | None = None
    early_stopping: int | None = None
    monitor: str = "valid_macro_f1"
    restore_best: bool | None = None

    def __post_init__(self):
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise ParameterError(f"lr_schedule must be one of {LR_SCHEDULES} or None, "
                                 f"got {self.lr_schedule!r}")
        if self.warmup_epochs and self.lr_schedule is None:
            raise ParameterError("warmup_epochs needs lr_schedule= ('constant', 'cosine' or "
                                 "'one_cycle')")
        if not 0 <= self.warmup_epochs:
            raise ParameterError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if not 0 <= self.label_smoothing < 1:
            raise ParameterError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if not self.mixup_alpha >= 0:
            raise ParameterError(f"mixup_alpha must be >= 0 (0: off), got {self.mixup_alpha!r}")
        if self.class_balance not in CLASS_BALANCE:
            raise ParameterError(f"class_balance must be one of {CLASS_BALANCE}, "
                                 f"got {self.class_balance!r}")
        EarlyStopping(self.early_stopping, self.monitor)  # validates

    @property
    def restores_best(self) -> bool:
        """Whether training ends with the best epoch's weights loaded."""
        return bool(self.early_stopping) if self.restore_best is None else bool(self.restore_best)

    def to_dict(self) -> dict:
        """The options as a plain dict (for logs and benchmark reports)."""
        return dataclasses.asdict(self)

    def tracker(self) -> EarlyStopping:
        """An `EarlyStopping` for `monitor` (never stopping without `early_stopping`)."""
        return EarlyStopping(self.early_stopping, self.monitor)

    def scheduler(self, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
        """The per-batch LR schedule, or None."""
        if self.lr_schedule is None:
            return None
        return lr_schedule(optimizer, self.lr_schedule, epochs, steps_per_epoch, self.warmup_epochs)

    def sampler(self, labels: Callable[[], np.ndarray], generator: torch.Generator | None = None):
        """A `balanced_sampler` for class_balance="sampler", else None (`labels` called then)."""
        if self.class_balance != "sampler":
            return None
        return balanced_sampler(labels(), generator=generator)

    def training_loss(self, loss_fn: Callable, labels: Callable[[], np.ndarray],
                      num_classes: int, multi_target: bool) -> Callable:
        """`loss_fn` with class weights and label smoothing as the recipe says.

        `labels` is called only for class_balance="loss". Returns `loss_fn` itself when
        neither option is on.
        """
        fn = loss_fn
        if self.class_balance == "loss":
            weights = class_weights(labels(), num_classes)
            if isinstance(fn, torch.nn.CrossEntropyLoss):
                fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=fn.ignore_index,
                                               reduction=fn.reduction,
                                               label_smoothing=fn.label_smoothing)
            elif isinstance(fn, torch.nn.BCEWithLogitsLoss):
                fn = torch.nn.BCEWithLogitsLoss(weight=fn.weight, reduction=fn.reduction,
                                                pos_weight=weights)
            else:
                raise ParameterError(
                    f"class_balance='loss' needs CrossEntropyLoss or BCEWithLogitsLoss, got "
                    f"{type(fn).__name__}; use class_balance='sampler' with other losses"
                )
        if self.label_smoothing > 0:
            fn = SmoothedLoss(fn, self.label_smoothing, multi_target)
        return fn
