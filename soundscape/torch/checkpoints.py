"""Checkpoints of the training loop: saving, the best model, metrics files, resuming.

`train` writes ``epoch-N.tar`` (every state needed to continue, plus an embedded model
file), ``best.model`` (the best epoch by the recipe's monitor), ``metrics.csv`` and
``metrics.json``, all atomically; `latest_checkpoint` and `_resume` continue a run.
Checkpoints load without running code from them unless the caller trusts them.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ..errors import ModelFileError, ParameterError
from ..helpers import atomic_path
from ..metrics import array_record, flat_record, plain_record, to_json
from ..model_file import _torch_load, atomic_torch_save

if TYPE_CHECKING:
    from .train import _Run

logger = logging.getLogger("soundscape.train")

BEST_MODEL = "best.model"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.tar$")
_TRAIN_TRUST_HINT = "pass trusted=True to train() (as to load_model(path, trusted=True))"


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


