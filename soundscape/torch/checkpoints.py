"""Checkpoints of the training loop: saving, the best model, metrics files, resuming.

`train` writes ``epoch-N.tar`` (every state needed to continue, plus an embedded model
file), ``best.model`` (the best epoch by the recipe's monitor), ``metrics.csv`` and
``metrics.json``, all atomically; `latest_checkpoint` and `_resume` continue a run.
Checkpoints load without running code from them unless the caller trusts them.

Each run has a run id and a configuration hash (architecture, classes, preprocessing,
optimizer class and hyperparameters, loss, recipe: `run_identity`), saved in every
checkpoint and in ``training_run.json``, the record of the run that last started in the
folder (its id, hash, checkpoints and status). Resuming a folder continues that run only;
resuming with another configuration is refused, naming what differs. Checkpoints also
hold the random states (torch, CUDA, numpy, Python, the shuffling/sampling generator and
the mixup generator), so a resumed seeded run gives the weights of an uninterrupted one.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import random
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from ..errors import ModelFileError, ParameterError
from ..helpers import atomic_path
from ..io import write_json
from ..metrics import array_record, flat_record, plain_record, to_json
from ..model_file import _torch_load, atomic_torch_save, to_plain

if TYPE_CHECKING:
    from .run_setup import _Run

logger = logging.getLogger("soundscape.train")

BEST_MODEL = "best.model"
#: the record of the run that last started in a save_dir (see the module docstring)
RUN_FILE = "training_run.json"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.tar$")
#: files a training run writes into its save_dir
_RUN_OUTPUTS = (BEST_MODEL, "metrics.csv", "metrics.json", RUN_FILE)
#: optimizer settings that change how, not what, it computes (left out of the hash)
_IMPLEMENTATION_FLAGS = {"params", "initial_lr", "foreach", "fused", "capturable", "differentiable"}
_TRAIN_TRUST_HINT = "pass trusted=True to train() (as to load_model(path, trusted=True))"


def _metadata(run: _Run, record: dict) -> dict:
    return {"label_dict": run.label_dict, "epoch": record["epoch"], "metrics": to_json(record),
            "trained_by": "soundscape.torch.train", "precision": run.precision.name}


# --------------------------------------------------------------------------- run identity
def _plain_json(value: Any) -> Any:
    """`value` as the JSON values it is stored as (tuples become lists, odd objects text)."""
    return json.loads(json.dumps(to_plain(value), sort_keys=True, default=str))


def _class_name(obj: Any) -> str:
    """``module.Class`` of an object (a function or class: its own name)."""
    kind = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', type(obj).__name__)}"


def _architecture_identity(run: _Run) -> Any:
    """What identifies the network: its constructor arguments, or class and layout."""
    kwargs = dict(run.architecture_kwargs)
    module = kwargs.pop("module", None)
    kwargs.pop("weights", None)
    if module is not None:  # a network of the user's own classes
        kwargs["class"] = _class_name(module)
        kwargs["layout"] = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    config = kwargs.get("config")
    if isinstance(config, dict) and "trainer" in config:
        # the config door's network carries the whole config; its trainer section (epochs,
        # optimizer, recipe) is not the network's (optimizer and recipe are hashed apart)
        kwargs["config"] = {k: v for k, v in config.items() if k != "trainer"}
    return kwargs


def run_identity(run: _Run, optimizer: torch.optim.Optimizer, loss_fn: Any, recipe: Any) -> dict:
    """The settings that make a training run what it is (hashed into its config hash).

    Architecture and its arguments, classes, preprocessing, the optimizer's class and
    hyperparameters as given (before any LR schedule changes them), the loss and the
    recipe. The number of epochs is not part of it: a run may be resumed to train longer.
    """
    groups = [{k: v for k, v in g.items() if k not in _IMPLEMENTATION_FLAGS}
              for g in optimizer.param_groups]
    for g in groups:
        g.update({k: float(v) for k, v in g.items() if isinstance(v, torch.Tensor) and v.numel() == 1})
    return _plain_json({
        "architecture": run.architecture,
        "architecture_kwargs": _architecture_identity(run),
        "classes": list(run.classes),
        "multi_target": bool(run.multi_target),
        "preprocessing": run.preprocessing.to_dict(),
        "optimizer": {"class": _class_name(optimizer), "param_groups": groups},
        "loss": _class_name(loss_fn),
        "recipe": dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else str(recipe),
    })


def config_hash(identity: dict) -> str:
    """16 hex digits of the SHA-1 of a `run_identity`."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def new_run_id() -> str:
    """A fresh run id: UTC start time and 8 random hex digits."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _differences(old: Any, new: Any, key: str = "", out: list | None = None) -> list[str]:
    """``key: old -> new`` for every leaf that differs between two identities."""
    out = [] if out is None else out
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            _differences(old.get(k), new.get(k), f"{key}.{k}" if key else str(k), out)
    elif (isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
          and any(isinstance(v, (dict, list)) for v in old + new)):
        for i, (a, b) in enumerate(zip(old, new)):
            _differences(a, b, f"{key}[{i}]", out)
    elif old != new:
        short = lambda v: (r if len(r := repr(v)) <= 60 else r[:57] + "...")  # noqa: E731
        out.append(f"{key}: {short(old)} -> {short(new)}")
    return out


# --------------------------------------------------------------------------- random states
def _rng_state(run: _Run) -> dict:
    """Every random state the next epochs draw from (see `_restore_rng`)."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return {
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "numpy": {"name": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
        "loader": run.generator.get_state() if run.generator is not None else None,
        "mixup": run.mix_generator.get_state() if run.mix_generator is not None else None,
    }


def _restore_rng(run: _Run, state: dict | None, path: Path) -> None:
    """Put the random states of a checkpoint back (torch, CUDA, numpy, Python, generators)."""
    if not state:
        logger.warning("resume_from: %s holds no random states (written by an older soundscape): "
                       "the resumed run continues, but not exactly as an uninterrupted run would", path)
        return
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], np.asarray(n["key"], dtype=np.int64).astype(np.uint32),
                         int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if run.generator is not None and state.get("loader") is not None:
        run.generator.set_state(state["loader"])
    if run.mix_generator is not None and state.get("mixup") is not None:
        run.mix_generator.set_state(state["mixup"])


# --------------------------------------------------------------------------- the run record
def _read_run_file(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("run_id") else None


def write_run_file(run: _Run, status: str = "running") -> Path:
    """Write ``training_run.json``: run id, config hash, checkpoints written, status."""
    return write_json({
        "format": "soundscape-training-run", "run_id": run.run_id, "config_hash": run.config_hash,
        "status": status, "started": run.started, "updated": datetime.now(timezone.utc).isoformat(
            timespec="seconds"), "epochs": run.epochs, "checkpoints": list(run.checkpoints),
        "best_epoch": run.best_epoch, "config": run.identity,
    }, run.save_dir / RUN_FILE, indent=1, what="training run record")


def warn_about_other_runs(run: _Run) -> None:
    """Warn when a new run starts in a save_dir holding another run's files."""
    folder = run.save_dir
    try:
        names = sorted(p.name for p in folder.iterdir()
                       if _CHECKPOINT.match(p.name) or p.name in _RUN_OUTPUTS)
    except OSError:
        return
    if not names:
        return
    previous = _read_run_file(folder)
    which = (f"run {previous['run_id']} ({previous.get('status', 'unknown status')})"
             if previous else "an earlier run")
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    logger.warning(
        "%s already holds files of %s (%s); this new run (%s) replaces them as it goes, and "
        "resume_from=%s will resume only the new run. To keep them, stop and use an empty "
        "save_dir; to continue that run, pass resume_from=%s", folder, which, shown, run.run_id,
        folder, folder)


def _save_checkpoint(run: _Run, epoch: int) -> Path:
    """Write ``epoch-N.tar``: states to resume from plus an embedded model file."""
    record = run.history[-1]
    checkpoint = {
        "format": "soundscape-checkpoint",
        "run_id": run.run_id,
        "config_hash": run.config_hash,
        "config": run.identity,
        "rng": _rng_state(run),
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
    path = atomic_torch_save(checkpoint, run.save_dir / f"epoch-{epoch}.tar",
                             what="training checkpoint")
    run.checkpoints = [c for c in run.checkpoints if c != path.name] + [path.name]
    write_run_file(run)
    return path


def _write_metrics(run: _Run) -> None:
    """Rewrite metrics.csv (per-class values in ``name[class]`` columns) and metrics.json."""
    frame = pd.DataFrame([flat_record(r, run.classes) for r in run.history])
    with atomic_path(run.save_dir / "metrics.csv", what="training metrics") as tmp:
        frame.to_csv(tmp, index=False)
    doc = {"classes": run.classes, "label_dict": run.label_dict, "multi_target": run.multi_target,
           "best_epoch": run.best_epoch, "skipped_files": list(run.skipped), "epochs": run.history}
    write_json(to_json(doc), run.save_dir / "metrics.json", indent=1, what="training metrics")


def _update_best(run: _Run, record: dict) -> None:
    """Save ``best.model`` when `record` is the best epoch by ``recipe.monitor``."""
    if run.tracker.update(record):
        run.best_score, run.best_epoch = run.tracker.best_score, record["epoch"]
        atomic_torch_save(run.payload(_metadata(run, record)), run.save_dir / BEST_MODEL,
                          what="best model")
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
    """`path` if it is a file, else the latest checkpoint of the run in folder `path`.

    That is the ``epoch-N.tar`` with the largest N among those the run that last started
    there wrote (``training_run.json`` lists them); in a folder without that record
    (older soundscape versions), the largest N of all. Checkpoints another run left there
    are never picked: a folder whose latest run wrote none raises FileNotFoundError
    naming them.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from: no checkpoint file or folder at {path}")
    found = [(int(m.group(1)), p) for p in path.iterdir() if (m := _CHECKPOINT.match(p.name))]
    record = _read_run_file(path)
    if record is not None and isinstance(record.get("checkpoints"), list):
        own = set(map(str, record["checkpoints"]))
        mine = [(n, p) for n, p in found if p.name in own]
        if not mine:
            others = ", ".join(p.name for _, p in sorted(found)[-3:])
            raise FileNotFoundError(
                f"resume_from: the latest run in {path} (run {record['run_id']}, started "
                f"{record.get('started', '?')}) wrote no checkpoint yet"
                + (f"; {others} there belong to an earlier run: pass one of them as "
                   f"resume_from={path / sorted(found)[-1][1].name} to continue that run"
                   if found else ""))
        return max(mine)[1]
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
    if ckpt.get("config_hash") is None:
        logger.warning("resume_from: %s was written by an older soundscape without a "
                       "configuration hash: the settings of this run cannot be checked against it", path)
    elif ckpt["config_hash"] != run.config_hash:
        changes = _differences(ckpt.get("config") or {}, run.identity) or ["(details not recorded)"]
        shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
        raise ParameterError(
            f"resume_from: {path} belongs to a training run (run {ckpt.get('run_id')}) with "
            f"another configuration, so this is not a continuation of it. Differences (checkpoint "
            f"-> now): {shown}. Resume with that run's settings, or start a new run in another "
            "save_dir")
    run.run_id = str(ckpt.get("run_id") or run.run_id)
    record = _read_run_file(run.save_dir)
    if record is not None and record.get("run_id") == run.run_id:
        run.checkpoints = [str(c) for c in record.get("checkpoints") or []]
        run.started = str(record.get("started") or run.started)
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
    _restore_rng(run, ckpt.get("rng"), path)
    logger.info("resuming run %s from %s at epoch %d", run.run_id, path, run.start_epoch)


