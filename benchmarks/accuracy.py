"""Accuracy of soundscape's default recipe on real recordings by other people.

Not a test: it trains detectors and writes ``benchmarks/accuracy.json``.

- ESC-10, official 5-fold cross-validation (train on 4 folds, test on the 5th), from
  random initialisation. Published: Piczak's 2015 CNN 81.0 %, human listeners 95.7 %.
- FSDD, official split (test = recordings 0-4 of each speaker and digit).
- Bengalese finch song present/absent per 1-s window (labels rebuilt from the Raven
  tables with `soundscape.annotations.clip_labels`), cross-validated by recording.

Everything goes through the public API: `compact_preprocessing` + the dataset classes
with `soundscape.augment` steps, `CompactCNN`, and `soundscape.torch.train.train` with
recipe options. Spectrograms are computed once with the batched engine
(`ClipLoader.spectrogram_batch`) into an in-memory `ClipCache`, so every epoch reads them
from memory. Scores are those of the final epoch's weights on the held-out data: no model
is selected on test data.

Usage::

    .venv/bin/python benchmarks/accuracy.py            # full run: ~18 min on 1 CPU thread
    .venv/bin/python benchmarks/accuracy.py --ablation # + ESC-10 without the recipe: ~30 min
    .venv/bin/python benchmarks/accuracy.py --quick    # one fold, few epochs: ~1 min smoke run
    .venv/bin/python benchmarks/accuracy.py --only fsdd finch --seed 1
    .venv/bin/python benchmarks/accuracy.py --only esc10_precision --folds 1 2 --merge
        # ESC-10 trained in fp32 and in bf16, same folds and seeds (into accuracy.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundscape import augment  # noqa: E402
from soundscape.annotations import clip_labels, read_raven  # noqa: E402
from soundscape.cache import ClipCache, set_default_cache  # noqa: E402
from soundscape.datasets import MultiTargetAudioDataset, SingleTargetAudioDataset  # noqa: E402
from soundscape.loading import ClipLoader  # noqa: E402
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score  # noqa: E402
from soundscape.recipes import Recipe  # noqa: E402
from soundscape.torch.compact import CompactCNN, compact_preprocessing  # noqa: E402
from soundscape.torch.models import imagenet_weights_path, resnet18  # noqa: E402
from soundscape.torch.train import train  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "accuracy.json"
REFERENCES = {
    "esc10": {"Piczak 2015 CNN": 0.810, "human listeners": 0.957, "target (issue 6)": 0.85},
    "fsdd": {"small CNNs on MFCCs (published range)": "0.97-0.98", "target (issue 6)": 0.98},
}


# --------------------------------------------------------------------------- shared pieces
def warm_cache(preprocessing, items: list, batch: int = 64) -> float:
    """Compute every clip's spectrogram once with the batched engine; returns seconds."""
    started = time.perf_counter()
    loader = ClipLoader(preprocessing)
    for i in range(0, len(items), batch):
        loader.frames_batch(items[i:i + batch])
    return time.perf_counter() - started


#: number format of every training run here (--precision); "auto" is bf16 on CPUs with native bf16
PRECISION = {"value": "auto"}


def fit(model, train_ds, valid_ds, optimizer_kw: dict, epochs: int, seed: int, recipe: Recipe,
        loss_fn, batch_size: int = 32) -> tuple[pd.DataFrame, float, float]:
    """`train()` with the recipe; returns (history, CPU seconds, wall seconds)."""
    optimizer = torch.optim.AdamW(model.parameters(), **optimizer_kw)
    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        history = train(tmp, model, train_ds, valid_ds, optimizer, loss_fn, epochs=epochs,
                        batch_size=batch_size, num_workers=0, log_every=epochs, seed=seed,
                        progress_bar=False, print_logging=False, device="cpu",
                        precision=PRECISION["value"], **recipe.to_dict())
    return history, time.process_time() - cpu, time.perf_counter() - wall


def describe(recipe: Recipe, optimizer_kw: dict, epochs: int, augmentations: list, model,
             preprocessing) -> dict:
    return {"recipe": recipe.to_dict(), "optimizer": {"name": "AdamW", **optimizer_kw},
            "epochs": epochs, "batch_size": 32,
            "augmentations": [repr(a) for a in augmentations],
            "model": {"architecture": "compact_cnn", **model.init_kwargs,
                      "parameters": int(sum(p.numel() for p in model.parameters()))},
            "preprocessing": preprocessing.to_dict()}


# --------------------------------------------------------------------------- ESC-10
ESC_RECIPE = Recipe(lr_schedule="one_cycle", mixup_alpha=0.2)
ESC_OPTIMIZER = {"lr": 3e-3, "weight_decay": 1e-2}


def esc10(args, recipe: Recipe = ESC_RECIPE, augmented: bool = True) -> dict:
    root = DATA / "esc10"
    df = pd.read_csv(root / "labels.csv")
    df["path"] = [str(root / f) for f in df["filename"]]
    classes = sorted(df["label"].unique())
    df["y"] = df["label"].map({c: i for i, c in enumerate(classes)})
    label_dict = dict(enumerate(classes))
    prep = compact_preprocessing(sample_rate=22050, clip_duration=5.0, n_mels=64, frames=108)
    cache_s = warm_cache(prep, list(df["path"]))
    augs = [augment.TimeShift(0.5), augment.SpecAugment(2, 2, 0.1)] if augmented else []
    epochs = 3 if args.quick else args.esc_epochs
    folds = [1] if args.quick else (args.folds or [1, 2, 3, 4, 5])
    per_fold, cpu_total, wall_total = {}, 0.0, 0.0
    model = None
    for fold in folds:
        train_ds = SingleTargetAudioDataset(df[df["fold"] != fold], label_dict, "path", "y",
                                            preprocessing=prep, augmentations=augs)
        test_ds = SingleTargetAudioDataset(df[df["fold"] == fold], label_dict, "path", "y",
                                           preprocessing=prep)
        torch.manual_seed(args.seed + fold)
        model = CompactCNN(len(classes))
        history, cpu, wall = fit(model, train_ds, test_ds, ESC_OPTIMIZER, epochs,
                                 args.seed + fold, recipe, torch.nn.CrossEntropyLoss())
        acc = float(history["valid_accuracy"].iloc[-1])
        per_fold[str(fold)] = acc
        cpu_total += cpu
        wall_total += wall
        name = "ESC-10" if augmented else "ESC-10 (plain)"
        print(f"{name} fold {fold}: accuracy {acc:.4f} ({cpu:.0f} CPU s, {wall:.0f} s)",
              flush=True)
    accs = np.array(list(per_fold.values()))
    return {"accuracy_per_fold": per_fold, "accuracy_mean": float(accs.mean()),
            "accuracy_std": float(accs.std()), "precision": PRECISION["value"], "cpu_seconds": cpu_total,
            "wall_seconds": wall_total, "spectrogram_seconds": cache_s,
            "protocol": "official folds; train on the other 4, test on this one; final-epoch "
                        "weights from random initialisation",
            "references": REFERENCES["esc10"],
            **describe(recipe, ESC_OPTIMIZER, epochs, augs, model, prep)}


def esc10_plain(args) -> dict:
    """Ablation: the same model and epochs without augmentation, mixup or LR schedule."""
    out = esc10(args, Recipe(), augmented=False)
    out["protocol"] += "; ablation: no augmentation, no mixup, constant learning rate"
    return out


def esc10_precision(args) -> dict:
    """ESC-10 trained in fp32 and in bf16 (autocast + channels-last), same folds, seeds and recipe."""
    before = PRECISION["value"]
    runs = {}
    try:
        for precision in ("fp32", "bf16"):
            PRECISION["value"] = precision
            runs[precision] = esc10(args)
    finally:
        PRECISION["value"] = before
    diffs = [runs["bf16"]["accuracy_per_fold"][f] - runs["fp32"]["accuracy_per_fold"][f]
             for f in runs["fp32"]["accuracy_per_fold"]]
    n_test = 80  # clips per ESC-10 fold
    return {"runs": {p: {k: r[k] for k in ("accuracy_per_fold", "accuracy_mean", "accuracy_std",
                                            "precision", "cpu_seconds", "wall_seconds")}
                     for p, r in runs.items()},
            "bf16_minus_fp32_per_fold": diffs, "bf16_minus_fp32_mean": float(np.mean(diffs)),
            "noise": f"one fold's test set is {n_test} clips: one clip is {1 / n_test:.4f} of accuracy; "
                     "the fp32 runs' fold-to-fold spread is accuracy_std",
            "wall_speedup_bf16": runs["fp32"]["wall_seconds"] / runs["bf16"]["wall_seconds"],
            "protocol": "as esc10; only the number format of training differs",
            "recipe": runs["fp32"]["recipe"], "epochs": runs["fp32"]["epochs"]}


# --------------------------------------------------------------------------- FSDD
FSDD_RECIPE = Recipe(lr_schedule="one_cycle", label_smoothing=0.1)
FSDD_OPTIMIZER = {"lr": 3e-3, "weight_decay": 1e-2}


def fsdd(args) -> dict:
    root = DATA / "fsdd"
    df = pd.read_csv(root / "labels.csv")
    df["path"] = [str(root / f) for f in df["filename"]]
    label_dict = {i: str(i) for i in range(10)}
    prep = compact_preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=40,
                                 window_samples=256)
    train_df, test_df = df[df["split"] == "train"], df[df["split"] == "test"]
    if args.quick:
        train_df = train_df.groupby("label").head(60)
    cache_s = warm_cache(prep, list(train_df["path"]) + list(test_df["path"]))
    augs = [augment.TimeShift(0.2, wrap=False), augment.SpecAugment(1, 1, 0.1)]
    train_ds = SingleTargetAudioDataset(train_df, label_dict, "path", "label", preprocessing=prep,
                                        augmentations=augs)
    test_ds = SingleTargetAudioDataset(test_df, label_dict, "path", "label", preprocessing=prep)
    epochs = 2 if args.quick else args.fsdd_epochs
    torch.manual_seed(args.seed)
    model = CompactCNN(10)
    history, cpu, wall = fit(model, train_ds, test_ds, FSDD_OPTIMIZER, epochs, args.seed,
                             FSDD_RECIPE, torch.nn.CrossEntropyLoss())
    acc = float(history["valid_accuracy"].iloc[-1])
    print(f"FSDD: accuracy {acc:.4f} ({cpu:.0f} CPU s, {wall:.0f} s)", flush=True)
    return {"accuracy": acc, "train_clips": len(train_ds), "test_clips": len(test_ds),
            "cpu_seconds": cpu, "wall_seconds": wall, "spectrogram_seconds": cache_s,
            "protocol": "official split (test = index 0-4); final-epoch weights from random "
                        "initialisation",
            "references": REFERENCES["fsdd"],
            **describe(FSDD_RECIPE, FSDD_OPTIMIZER, epochs, augs, model, prep)}


# --------------------------------------------------------------------------- Bengalese finch
FINCH_RECIPE = Recipe(lr_schedule="cosine", warmup_epochs=1)
FINCH_OPTIMIZER = {"lr": 2e-3, "weight_decay": 1e-2}


def finch_labels(root: Path) -> tuple[pd.DataFrame, float]:
    """1-s song present/absent windows from the Raven tables, and agreement with the CSV."""
    ann = read_raven(root / "raven", audio_files=root / "audio").assign(annotation="song")
    labels = clip_labels(ann, 1.0, classes=["song"], min_label_overlap=0.01)
    table = labels.reset_index()
    table["filename"] = ["audio/" + Path(f).name for f in table["file"]]
    shipped = pd.read_csv(root / "clip_labels_1s.csv")
    both = shipped.merge(table, on=["filename", "start_time", "end_time"])
    agreement = float((both["song"] == both["song_present"]).sum() / len(shipped))
    return labels, agreement


def finch(args) -> dict:
    root = DATA / "bengalese_finch"
    labels, agreement = finch_labels(root)
    files = labels.index.get_level_values("file")
    recordings = sorted(set(files))
    n_folds = 3
    fold_of = {r: i % n_folds for i, r in enumerate(recordings)}  # interleaved over both birds
    folds = np.array([fold_of[f] for f in files])
    prep = compact_preprocessing(sample_rate=32000, clip_duration=1.0, n_mels=64,
                                 window_samples=512)
    items = [(f, s, e - s) for f, s, e in labels.index]
    cache_s = warm_cache(prep, items)
    augs = [augment.TimeShift(0.3), augment.SpecAugment(1, 1, 0.1)]
    epochs = 2 if args.quick else args.finch_epochs
    scores = np.full(len(labels), np.nan)
    cpu_total = wall_total = 0.0
    model = None
    for k in ([0] if args.quick else range(n_folds)):
        train_ds = MultiTargetAudioDataset(labels[folds != k], preprocessing=prep,
                                           augmentations=augs)
        test_ds = MultiTargetAudioDataset(labels[folds == k], preprocessing=prep)
        torch.manual_seed(args.seed + k)
        model = CompactCNN(1)
        _, cpu, wall = fit(model, train_ds, test_ds, FINCH_OPTIMIZER, epochs, args.seed + k,
                           FINCH_RECIPE, torch.nn.BCEWithLogitsLoss())
        model.eval()
        with torch.no_grad():
            x = torch.stack([test_ds[i]["X"] for i in range(len(test_ds))])
            scores[folds == k] = torch.sigmoid(model(x))[:, 0].numpy()
        cpu_total += cpu
        wall_total += wall
    done = ~np.isnan(scores)
    y = labels["song"].to_numpy()[done]
    detected = scores[done] >= 0.5
    f1 = float(f1_score(y, detected, zero_division=0))
    auc = float(roc_auc_score(y, scores[done]))
    print(f"Bengalese finch: F1 {f1:.4f}, ROC-AUC {auc:.4f} ({cpu_total:.0f} CPU s)", flush=True)
    return {"f1": f1, "roc_auc": auc,
            "precision": float(precision_score(y, detected, zero_division=0)),
            "recall": float(recall_score(y, detected)), "threshold": 0.5,
            "windows": int(done.sum()), "song_windows": int(y.sum()),
            "recordings": len(recordings), "folds": n_folds,
            "labels_agree_with_clip_labels_1s_csv": agreement,
            "cpu_seconds": cpu_total, "wall_seconds": wall_total, "spectrogram_seconds": cache_s,
            "protocol": f"{n_folds}-fold cross-validation by recording (no recording in both "
                        "train and test); pooled out-of-fold scores of final-epoch weights",
            **describe(FINCH_RECIPE, FINCH_OPTIMIZER, epochs, augs, model, prep)}


# --------------------------------------------------------------------------- ImageNet weights
def imagenet(args) -> dict:
    """ResNet18 with and without ImageNet weights on ESC-10 fold 1 (only if the file is here)."""
    path = imagenet_weights_path()
    if not path.exists():
        return {"skipped": f"ImageNet ResNet18 weights not found at {path}"}
    root = DATA / "esc10"
    df = pd.read_csv(root / "labels.csv")
    df["path"] = [str(root / f) for f in df["filename"]]
    classes = sorted(df["label"].unique())
    df["y"] = df["label"].map({c: i for i, c in enumerate(classes)})
    prep = compact_preprocessing(sample_rate=22050, clip_duration=5.0, n_mels=64,
                                 frames=108).replace(height=112, width=112, channels=3)
    warm_cache(prep, list(df["path"]))
    augs = [augment.TimeShift(0.5), augment.SpecAugment(2, 2, 0.1)]
    out = {}
    for weights in (None, "imagenet"):
        train_ds = SingleTargetAudioDataset(df[df["fold"] != 1], dict(enumerate(classes)), "path",
                                            "y", preprocessing=prep, augmentations=augs)
        test_ds = SingleTargetAudioDataset(df[df["fold"] == 1], dict(enumerate(classes)), "path",
                                           "y", preprocessing=prep)
        torch.manual_seed(args.seed)
        model = resnet18(len(classes), weights=weights)
        history, cpu, wall = fit(model, train_ds, test_ds, {"lr": 1e-3, "weight_decay": 1e-2},
                                 2 if args.quick else 10, args.seed, ESC_RECIPE,
                                 torch.nn.CrossEntropyLoss())
        out[str(weights)] = {"accuracy_fold1": float(history["valid_accuracy"].iloc[-1]),
                             "cpu_seconds": cpu, "wall_seconds": wall}
    return out


# --------------------------------------------------------------------------- main
SECTIONS = {"esc10": esc10, "fsdd": fsdd, "finch": finch, "imagenet": imagenet,
            "esc10_plain": esc10_plain, "esc10_precision": esc10_precision}
DEFAULT_SECTIONS = ["esc10", "fsdd", "finch", "imagenet"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one fold, few epochs (smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a busy 2-core machine)")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), default=None)
    parser.add_argument("--ablation", action="store_true",
                        help="also ESC-10 without augmentation, mixup or schedule (+~15 min)")
    parser.add_argument("--esc-epochs", type=int, default=40)
    parser.add_argument("--fsdd-epochs", type=int, default=15)
    parser.add_argument("--finch-epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="number format of training (default auto: bf16 on CPUs with native bf16)")
    parser.add_argument("--folds", type=int, nargs="+", help="ESC-10 folds to run (default all 5)")
    parser.add_argument("--merge", action="store_true",
                        help="update the sections run in an existing --out file instead of replacing it")
    args = parser.parse_args(argv)
    PRECISION["value"] = args.precision
    if not DATA.is_dir():
        sys.exit(f"real recordings not found: {DATA} (the shared/data folder beside the checkout)")
    torch.set_num_threads(args.threads)
    set_default_cache(ClipCache(None, memory_bytes=2 * 2**30))  # memory only, nothing on disk
    load_before = os.getloadavg()
    started_cpu, started = time.process_time(), time.perf_counter()
    results = {"seed": args.seed, "quick": args.quick, "threads": args.threads,
               "precision": args.precision}
    for name in args.only or DEFAULT_SECTIONS + (["esc10_plain"] if args.ablation else []):
        results[name] = SECTIONS[name](args)
    results.update({
        "total_cpu_seconds": time.process_time() - started_cpu,
        "total_wall_seconds": time.perf_counter() - started,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "load_average_before": load_before,
                    "load_average_after": os.getloadavg()},
    })
    if args.merge and args.out.exists():
        merged = json.loads(args.out.read_text(encoding="utf-8"))
        ran = [k for k in results if k in SECTIONS]
        merged.update({k: results[k] for k in ran})
        merged.setdefault("runs_merged", []).append({"sections": ran, **{k: results[k] for k in (
            "seed", "quick", "threads", "precision", "total_wall_seconds", "machine")}})
        results = merged
    args.out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
