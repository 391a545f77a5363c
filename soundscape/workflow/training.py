"""`train`: config + table -> a run folder with the model, statistics and description.

The table is split as ``split:`` says, the training split's statistics and the whole table's
output vocabulary become the training-set metadata, every split's audio is loaded and
featurised once, and the network is trained for ``trainer.epochs`` (stopping after
``trainer.early_stop`` epochs without a lower validation loss, keeping the best weights).
The recipe keys ``trainer.lr_schedule`` / ``warmup_epochs`` / ``label_smoothing`` /
``mixup_alpha`` / ``class_balance`` switch on the pieces of `soundscape.recipes`.
The test split is evaluated with the best weights at the end.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..config import Config, load_config
from ..errors import AnnotationError, TrainingError
from ..model_file import Detector
from ..recipes import Recipe, lr_schedule, mixup_weights, sample_weights
from .batches import Prepared, batches, loss_and_probabilities, prepare, run
from .data import SPLITS, Table, check_columns, read_table, required_columns, split_table
from .encoding import build_metadata, class_names
from .evaluation import compute_statistics, epoch_metrics
from .model import ConfigModel, make_detector, save_model_dir
from .runs import run_directory, versions, write_json

__all__ = ["TrainResults", "train", "resolve_device"]

log = logging.getLogger("soundscape.workflow")
_EPOCH_METRICS = ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1")


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


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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
        return table, split_table(table, config["split"], config["trainer"]["seed"])
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

    Returns
    -------
    TrainResults
    """
    started = time.time()
    cfg = load_config(config)
    conf = cfg.to_dict()
    trainer = conf["trainer"]
    device = resolve_device(device)
    table, parts = _tables(dataset, training_set, validation_set, test_set, conf, base_dir, data_root)
    full = pd.concat([parts[s] for s in SPLITS])
    metadata = build_metadata(conf, full, parts["training"], table.source)
    torch.manual_seed(trainer["seed"])
    network = ConfigModel(conf, metadata, len(class_names(metadata, conf)))
    for name, fe in network.frontend_by_name.items():
        metadata[name] = {"type": "audio", "preprocessing": fe.config(),
                          "feature_shape": list(fe.output_shape), "num_samples": fe.num_samples}
    prepared: dict[str, Prepared] = {}
    for split in SPLITS:
        if len(parts[split]):
            prepared[split] = prepare(network, table, parts[split], device=device,
                                      progress=progress, desc=f"{split} audio")
    if "training" not in prepared or not len(prepared["training"]):
        raise AnnotationError(f"{table.source}: no training rows with readable audio")
    network.to(device)
    stats, best = _fit(network, prepared, trainer, device, progress)
    network.load_state_dict(best["state"])
    network.eval()
    out_name = conf["output_features"][0]["name"]
    test_stats = None
    if "test" in prepared and len(prepared["test"]):
        loss, probs = run(network, prepared["test"], trainer["batch_size"], device)
        test_stats = {out_name: compute_statistics(metadata[out_name], prepared["test"].targets.numpy(),
                                                   probs, loss), "combined": {"loss": loss}}
    network.cpu()
    summary = {"epochs_run": best["epochs_run"], "best_epoch": best["epoch"],
               "stopped_early": best["stopped_early"], "seconds": round(time.time() - started, 2)}
    stats["summary"] = summary
    detector = make_detector(network, {"training": summary})
    run_dir = model_dir = None
    if output_directory is not None:
        run_dir = run_directory(output_directory, experiment_name)
        model_dir = save_model_dir(detector, run_dir / "model")
        write_json(stats, run_dir / "training_statistics.json")
        if test_stats is not None:
            write_json(test_stats, run_dir / "test_statistics.json")
        _metrics_csv(stats, out_name).to_csv(run_dir / "metrics.csv", index=False)
        write_json({
            "experiment_name": experiment_name,
            "run_directory": run_dir.resolve(),
            "dataset": table.source,
            "config": conf,
            "versions": versions(),
            "device": str(device),
            "data_set_size": {
                "rows": int(len(full)),
                **{s: int(len(prepared[s])) if s in prepared else 0 for s in SPLITS},
                "skipped_unreadable_audio": {s: prepared[s].skipped for s in prepared},
            },
            "training": summary,
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        }, run_dir / "description.json")
        log.info("saved the run to %s", run_dir)
    return TrainResults(run_dir, model_dir, stats, test_stats, detector, metadata)


def _label_matrix(out_type: str, targets: torch.Tensor) -> np.ndarray:
    """Targets as class indices (category) or a 0/1 matrix (binary, set), for balancing."""
    y = targets.numpy()
    return y.astype(np.int64) if out_type == "category" else y.reshape(len(y), -1)


def _recipe_loss(out_type: str, trainer: dict, targets: torch.Tensor, n_outputs: int, device):
    """loss(logits, y) of the training batches with class weights and label smoothing."""
    recipe = Recipe(label_smoothing=trainer["label_smoothing"],
                    class_balance=trainer["class_balance"])
    base = torch.nn.CrossEntropyLoss() if out_type == "category" else torch.nn.BCEWithLogitsLoss()
    fn = recipe.training_loss(base, lambda: _label_matrix(out_type, targets), n_outputs,
                              multi_target=out_type != "category")
    if isinstance(fn, torch.nn.Module):
        fn.to(device)

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out_type == "category":
            return fn(logits, y.long())
        return fn(logits[:, 0] if out_type == "binary" else logits, y.float())

    return loss


def _subset(data: Prepared, order: torch.Tensor) -> Prepared:
    """The rows `order` of a prepared split (for class-balanced epochs)."""
    pick = lambda t: None if t is None else t[order]  # noqa: E731
    return Prepared(data.frame.iloc[order.numpy()], {k: v[order] for k, v in data.features.items()},
                    pick(data.categories), pick(data.scalars), pick(data.targets), data.skipped)


def _mix(inputs: dict, alpha: float, n: int, gen: torch.Generator):
    """Mixup of every float input with one permutation and weight; (inputs, perm, lam)."""
    perm, lam = mixup_weights(n, alpha, gen)
    mixed = {}
    for name, x in inputs.items():
        if x.is_floating_point():
            p = perm.to(x.device)
            mixed[name] = x.mul(lam).add_(x[p], alpha=1.0 - lam)
        else:  # category codes cannot be blended: each row keeps its own
            mixed[name] = x
    return mixed, perm, lam


def _fit(network: ConfigModel, prepared: dict, trainer: dict, device, progress: bool):
    conf, meta = network.config, network.metadata
    out = conf["output_features"][0]
    out_meta, out_type = meta[out["name"]], out["type"]
    opt = _optimizer(trainer["optimizer"], network.parameters(), trainer["learning_rate"],
                     trainer["weight_decay"])
    gen = torch.Generator().manual_seed(trainer["seed"])
    train_data = prepared["training"]
    loss_fn = _recipe_loss(out_type, trainer, train_data.targets, len(out_meta["idx2str"]), device)
    balance = None
    if trainer["class_balance"] == "sampler":
        balance = torch.as_tensor(sample_weights(_label_matrix(out_type, train_data.targets)))
    steps = -(-len(train_data) // trainer["batch_size"])
    sched = (lr_schedule(opt, trainer["lr_schedule"], trainer["epochs"], steps,
                         trainer["warmup_epochs"]) if trainer["lr_schedule"] else None)
    alpha = trainer["mixup_alpha"]
    stats = {s: {out["name"]: {m: [] for m in _EPOCH_METRICS}, "combined": {"loss": []}}
             for s in prepared}
    monitor = "validation" if "validation" in prepared else "training"
    best = {"loss": float("inf"), "epoch": 0, "state": copy.deepcopy(network.state_dict()),
            "stopped_early": False, "epochs_run": 0}
    bar = tqdm(range(1, trainer["epochs"] + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        network.train()
        total, probs, targets = 0.0, [], []
        data, shuffle = train_data, True
        if balance is not None:  # classes drawn evenly, with replacement
            order = torch.multinomial(balance, len(balance), True, generator=gen)
            data = _subset(train_data, order)
            shuffle = False
        for inputs, y in batches(data, trainer["batch_size"], device, shuffle, gen):
            if len(y) < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules()):
                continue  # batch norm cannot train on a single example
            if alpha > 0 and len(y) > 1:
                inputs, perm, lam = _mix(inputs, alpha, len(y), gen)
                logits = network.forward_features(inputs)
                loss = lam * loss_fn(logits, y) + (1 - lam) * loss_fn(logits, y[perm.to(y.device)])
            else:
                logits = network.forward_features(inputs)
                loss = loss_fn(logits, y)
            p = loss_and_probabilities(out_type, logits, None)[1]
            if not torch.isfinite(loss.detach()):
                raise TrainingError(
                    f"the training loss became {float(loss.detach())} at epoch {epoch}; lower "
                    f"trainer.learning_rate (now {trainer['learning_rate']})"
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += float(loss.detach()) * len(y)
            probs.append(p.detach().float().cpu())
            targets.append(y.cpu())
        n = sum(len(t) for t in targets)
        epoch_stats = {"training": epoch_metrics(
            out_meta, torch.cat(targets).numpy(), torch.cat(probs).numpy(), total / max(n, 1))}
        for split in ("validation", "test"):
            if split in prepared:
                loss, p = run(network, prepared[split], trainer["batch_size"], device)
                epoch_stats[split] = epoch_metrics(out_meta, prepared[split].targets.numpy(), p, loss)
        for split, s in epoch_stats.items():
            for m in _EPOCH_METRICS:
                stats[split][out["name"]][m].append(s[m])
            stats[split]["combined"]["loss"].append(s["loss"])
        watched = epoch_stats[monitor]["loss"]
        best["epochs_run"] = epoch
        if watched < best["loss"]:
            best.update(loss=watched, epoch=epoch, state=copy.deepcopy(network.state_dict()))
        line = ", ".join(f"{s} loss {v['loss']:.4f} acc {v['accuracy']:.3f}" for s, v in epoch_stats.items())
        log.info("epoch %d/%d: %s", epoch, trainer["epochs"], line)
        bar.set_postfix(loss=f"{epoch_stats['training']['loss']:.3f}",
                        **{f"{monitor[:3]}_loss": f"{watched:.3f}"})
        patience = trainer["early_stop"]
        if patience is not None and epoch - best["epoch"] >= patience:
            best["stopped_early"] = True
            log.info("early stop: no lower %s loss for %d epochs (best epoch %d)",
                     monitor, patience, best["epoch"])
            break
    bar.close()
    return stats, best


def _metrics_csv(stats: dict, out_name: str) -> pd.DataFrame:
    columns = {}
    for split in SPLITS:
        if split in stats:
            for metric, values in stats[split][out_name].items():
                columns[f"{split}_{metric}"] = values
    frame = pd.DataFrame(columns)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame
