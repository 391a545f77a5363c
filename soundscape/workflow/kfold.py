"""k-fold cross-validation through the config workflow's one `train`.

With a few dozen clips, one train/validation/test split says little: a different split gives
different numbers. ``soundscape train --k_fold 5`` (or :func:`kfold_cross_validate`) cuts the
table into 5 folds, trains 5 models with `soundscape.workflow.train` (each tested on the fold it
did not see, with its validation rows taken from the other folds) and reports the mean and the
spread of the test metrics over the folds::

    results/experiment_kfold_run/
        fold_1_run/ ... fold_5_run/   one ordinary run folder per fold (model, statistics)
        kfold_statistics.json         per-fold test metrics, their mean and standard deviation
        kfold_summary.csv             one row per fold
        folds.csv                     the fold each row of the table was tested in
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, load_config
from ..errors import AnnotationError, ConfigError
from .data import check_columns, read_table, required_columns
from .runs import run_directory, write_json
from .training import TrainResults, train

__all__ = ["KFoldResults", "kfold_cross_validate", "KFOLD_METRICS"]

log = logging.getLogger("soundscape.workflow")
#: test metrics summarised over the folds
KFOLD_METRICS = ("loss", "accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")


@dataclass
class KFoldResults:
    """What :func:`kfold_cross_validate` produced."""

    run_directory: Path | None
    folds: list[TrainResults]
    fold_statistics: pd.DataFrame  # one row per fold: sizes and test metrics
    summary: dict  # metric -> {"mean", "std", "min", "max"}
    row_folds: np.ndarray  # the fold (1..N) whose model was tested on each row of the table

    def describe(self, metrics=("accuracy", "macro_f1", "roc_auc")) -> str:
        """One line: ``accuracy 0.84 ± 0.07, macro F1 ...`` (mean ± standard deviation)."""
        names = {"macro_f1": "macro F1", "roc_auc": "ROC-AUC", "macro_precision": "macro precision",
                 "macro_recall": "macro recall"}
        parts = []
        for m in metrics:
            s = self.summary.get(m)
            if s is None or s["mean"] is None:
                continue
            parts.append(f"{names.get(m, m)} {s['mean']:.3f} ± {s['std']:.3f}")
        return ", ".join(parts)


def _fold_ids(frame: pd.DataFrame, conf: dict, k: int, seed: int, source: str) -> np.ndarray:
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    split = conf["split"]
    if split["type"] == "fixed":
        raise ConfigError("split.type: k-fold cross-validation makes its own folds; use split "
                          "type 'random' (stratified by the output when possible) or 'group'")
    ids = np.zeros(len(frame), dtype=int)
    if split["type"] == "group":
        groups = frame[split["column"]].astype(str).to_numpy()
        if len(np.unique(groups)) < k:
            raise AnnotationError(f"{source}: {len(np.unique(groups))} groups in column "
                                  f"{split['column']!r} cannot make {k} folds")
        order = np.random.default_rng(seed).permutation(len(frame))  # GroupKFold is not random
        for f, (_, test) in enumerate(GroupKFold(k).split(frame.iloc[order], groups=groups[order])):
            ids[order[test]] = f
        return ids
    out = conf["output_features"][0]
    y = frame[out["name"]].astype(str).to_numpy() if out["type"] in ("category", "binary") else None
    if y is not None and pd.Series(y).value_counts().min() >= k:
        folds = StratifiedKFold(k, shuffle=True, random_state=seed).split(frame, y)
    else:
        folds = KFold(k, shuffle=True, random_state=seed).split(frame)
    for f, (_, test) in enumerate(folds):
        ids[test] = f
    return ids


def _validation_rows(rest: pd.DataFrame, conf: dict, seed: int) -> np.ndarray:
    """Boolean mask of the rows of `rest` (the other folds) used for validation."""
    p_train, p_valid, _ = conf["split"]["probabilities"]
    share = p_valid / (p_train + p_valid) if p_train + p_valid > 0 else 0.0
    n_valid = int(round(share * len(rest)))
    mask = np.zeros(len(rest), dtype=bool)
    if n_valid < 1 or n_valid >= len(rest):
        return mask
    if conf["split"]["type"] == "group":
        from ..data_selection import train_valid_split

        work = rest[[conf["split"]["column"]]].copy()
        work["_pos"] = np.arange(len(rest))
        _, valid = train_valid_split(work, train_size=1 - share, random_state=seed,
                                     group_column=conf["split"]["column"])
        mask[valid["_pos"].to_numpy()] = True
        return mask
    from sklearn.model_selection import train_test_split

    out = conf["output_features"][0]
    y = rest[out["name"]].astype(str) if out["type"] in ("category", "binary") else None
    stratify = y if y is not None and y.value_counts().min() >= 2 and n_valid >= y.nunique() else None
    _, valid = train_test_split(np.arange(len(rest)), test_size=n_valid, random_state=seed,
                                stratify=stratify)
    mask[valid] = True
    return mask


def _metric(stats: dict, name: str):
    v = stats.get(name)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def kfold_cross_validate(
    num_folds: int,
    config: str | os.PathLike | dict | Config,
    dataset,
    *,
    output_directory: str | os.PathLike | None = "results",
    experiment_name: str = "experiment",
    base_dir: str | os.PathLike | None = None,
    data_root: str | os.PathLike | None = None,
    device=None,
    progress: bool = True,
) -> KFoldResults:
    """Train and test `num_folds` models, each tested on one fold, and summarise the folds.

    Parameters
    ----------
    num_folds : int
        Number of folds (at least 2). Folds are stratified by a category or binary output
        when every class has at least `num_folds` rows, and keep groups together with
        ``split: {type: group, column: ...}``.
    config, dataset, base_dir, data_root, device, progress
        As for :func:`soundscape.workflow.train`. In each fold the other folds are split
        into training and validation rows in the proportions of ``split.probabilities``
        (default 0.7 : 0.1, so 1/8 of them validate).
    output_directory, experiment_name
        The folds' run folders go into ``<output_directory>/<experiment_name>_kfold_run``;
        None writes nothing.

    Returns
    -------
    KFoldResults
        The folds' `TrainResults`, a table of per-fold test metrics and their summary
        (mean, sample standard deviation, min and max over the folds).
    """
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ConfigError(f"k_fold must be an integer >= 2, got {num_folds!r}")
    cfg = load_config(config)
    conf = cfg.to_dict()
    seed = int(conf["trainer"]["seed"])
    table = read_table(dataset, base_dir=base_dir, data_root=data_root)
    check_columns(table, required_columns(conf))
    frame = table.frame
    if len(frame) < 2 * num_folds:
        raise AnnotationError(f"{table.source}: {len(frame)} rows are too few for {num_folds} folds "
                              f"(need at least {2 * num_folds})")
    ids = _fold_ids(frame, conf, int(num_folds), seed, table.source)
    root = None
    if output_directory is not None:
        root = run_directory(output_directory, f"{experiment_name}_kfold")
    folds, rows = [], []
    for f in range(int(num_folds)):
        test = frame[ids == f]
        rest = frame[ids != f]
        valid_mask = _validation_rows(rest, conf, seed + f)
        log.info("fold %d/%d: %d training, %d validation, %d test rows", f + 1, num_folds,
                 int((~valid_mask).sum()), int(valid_mask.sum()), len(test))
        result = train(
            conf, training_set=rest[~valid_mask], validation_set=rest[valid_mask] if valid_mask.any()
            else None, test_set=test, output_directory=root, experiment_name=f"fold_{f + 1}",
            base_dir=table.base_dir, data_root=data_root, device=device, progress=progress,
            small_data_warning=False)
        folds.append(result)
        out_name = next(k for k in result.test_statistics if k != "combined")
        stats = result.test_statistics[out_name]
        row = {"fold": f + 1, "training_rows": int((~valid_mask).sum()),
               "validation_rows": int(valid_mask.sum()), "test_rows": int(len(test)),
               "num_examples": int(stats.get("num_examples", len(test)))}
        row.update({m: _metric(stats, m) for m in KFOLD_METRICS})
        row["run_directory"] = str(result.run_directory) if result.run_directory else None
        rows.append(row)
    table_out = pd.DataFrame(rows)
    summary = {}
    for m in KFOLD_METRICS:
        values = pd.to_numeric(table_out[m], errors="coerce").dropna().to_numpy(float)
        summary[m] = ({"mean": float(values.mean()),
                       "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                       "min": float(values.min()), "max": float(values.max()), "folds": int(len(values))}
                      if len(values) else {"mean": None, "std": None, "min": None, "max": None, "folds": 0})
    if root is not None:
        write_json({"num_folds": int(num_folds), "dataset": table.source, "folds": rows,
                    "summary": summary, "config": conf}, root / "kfold_statistics.json")
        table_out.to_csv(root / "kfold_summary.csv", index=False)
    if root is not None:
        pd.DataFrame({"row": np.arange(len(frame)), "fold": ids + 1}).to_csv(root / "folds.csv",
                                                                              index=False)
    return KFoldResults(root, folds, table_out, summary, ids + 1)
