"""BirdNET embeddings through the engine: throughput, similarity search, few-shot accuracy.

Sections (all through the public API; results in benchmarks/embeddings.json):

- ``throughput``: `soundscape.embed` (BirdNET V2.4, 1 interpreter thread, batch 16) over
  ESC-10 clips and over a long synthetic field recording: windows/s and real-time factor
  (seconds of audio per second of wall time), with the load average before and after.
- ``search``: cosine top-k (`similarity_search`) over 10^6 synthetic 1024-d vectors, from
  a Parquet `EmbeddingStore` (numpy blocks read lazily) and from memory.
- ``esc10``: few-shot accuracy, official 5-fold CV: k = 5, 10, 20 training clips per
  class drawn from the other four folds; a logistic head (`fit_head`) on each clip's mean
  BirdNET embedding vs the compact CNN (`compact_cnn`) trained from scratch with `train`
  on the same clips (AdamW, one-cycle, mixup 0.2, SpecAugment + time shift; `--cnn-epochs`).
- ``finch``: Bengalese finch song present/absent per 1-s window (labels from the Raven
  tables; every 3-s window holds song, so BirdNET sees each 1-s window zero-padded to
  3 s), 3-fold CV by recording: k windows per class from the training recordings; head
  vs compact CNN; F1 at the head's own threshold / 0.5, and ROC-AUC.

Run: ``.venv/bin/python benchmarks/embeddings.py [--only esc10 finch] [--quick]``.
The BirdNET model is CC BY-NC-SA 4.0 (non-commercial use only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("SOUNDSCAPE_PRECISION", "fp32")

import torch  # noqa: E402

import soundscape  # noqa: E402
from soundscape import augment  # noqa: E402
from soundscape.annotations import clip_labels, read_raven  # noqa: E402
from soundscape.datasets import MultiTargetAudioDataset, SingleTargetAudioDataset  # noqa: E402
from soundscape.models.compact import CompactCNN, compact_preprocessing  # noqa: E402
from soundscape.pretrained import (BirdNET, EmbeddingStore, embedding_detector, head_scores,  # noqa: E402
                                   similarity_search)
from soundscape.pretrained.networks import embedding_columns  # noqa: E402
from soundscape.recipes import Recipe  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "embeddings.json"
KS = (5, 10, 20)
CNN_RECIPE = Recipe(lr_schedule="one_cycle", mixup_alpha=0.2)
CNN_OPTIMIZER = {"lr": 3e-3, "weight_decay": 1e-2}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cnn_fit(train_ds, valid_ds, epochs: int, seed: int, loss_fn) -> tuple[torch.nn.Module, float]:
    """The compact CNN from random initialisation through `train`; (model, seconds)."""
    from accuracy import fit  # benchmarks/accuracy.py: train() with a recipe, AdamW

    torch.manual_seed(seed)
    n = len(train_ds.label_dict) if not isinstance(train_ds, MultiTargetAudioDataset) else 1
    model = CompactCNN(n)
    batch = max(8, min(32, len(train_ds) // 4))
    _, _, wall = fit(model, train_ds, valid_ds, CNN_OPTIMIZER, epochs, seed, CNN_RECIPE, loss_fn,
                     batch_size=batch)
    return model.eval(), wall


# --------------------------------------------------------------------------- throughput
def throughput(args) -> dict:
    from soundscape.sample_data import synthetic_recording

    out: dict = {}
    backbone = BirdNET(num_threads=1)
    table = pd.read_csv(DATA / "esc10" / "labels.csv")
    files = [str(DATA / "esc10" / f) for f in table.filename[: (20 if args.quick else 200)]]
    with tempfile.TemporaryDirectory() as tmp:
        before = load()
        started = time.perf_counter()
        store = soundscape.embed(backbone, files, output_dir=Path(tmp) / "esc", progress=False)
        wall = time.perf_counter() - started
        audio = sum(soundscape.audio.audio_info(f).frames / soundscape.audio.audio_info(f).samplerate
                    for f in files)
        out["esc10"] = {"files": len(files), "windows": len(store), "audio_seconds": round(audio, 1),
                        "wall_seconds": round(wall, 2), "windows_per_s": round(len(store) / wall, 2),
                        "real_time_factor": round(audio / wall, 1), "load_before": before,
                        "load_after": load()}
        minutes = 2 if args.quick else 20
        path = Path(tmp) / "field.flac"
        samples, _ = synthetic_recording(minutes * 60.0, 32000, seed=0)
        soundscape.Audio(samples, 32000).save(path)
        before = load()
        started = time.perf_counter()
        store = soundscape.embed(backbone, [str(path)], output_dir=Path(tmp) / "long", progress=False)
        wall = time.perf_counter() - started
        out["long_recording"] = {"minutes": minutes, "sample_rate": 32000, "windows": len(store),
                                 "wall_seconds": round(wall, 2),
                                 "windows_per_s": round(len(store) / wall, 2),
                                 "real_time_factor": round(minutes * 60 / wall, 1),
                                 "load_before": before, "load_after": load()}
    out["settings"] = {"backbone": "birdnet", "num_threads": 1, "batch_size": 16,
                       "num_workers": 1, "clip_overlap": 0.0}
    print("throughput", json.dumps(out), flush=True)
    return out


# --------------------------------------------------------------------------- search
def synthetic_store(root: Path, rows: int, size: int, per_file: int, seed: int = 0) -> EmbeddingStore:
    """An embedding folder of random vectors in `embed`'s layout (tables + manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    columns = embedding_columns(size)
    (root / "scores").mkdir(parents=True)
    lines = []
    for k in range(0, rows, per_file):
        n = min(per_file, rows - k)
        name = f"rec{k // per_file:04d}.wav"
        starts = np.arange(n) * 3.0
        vectors = rng.standard_normal((n, size), dtype=np.float32)
        arrays = [pa.array([name] * n), pa.array(starts), pa.array(starts + 3.0)]
        arrays += [pa.array(vectors[:, j]) for j in range(size)]
        out = f"scores/{Path(name).stem}.parquet"
        pq.write_table(pa.Table.from_arrays(arrays, ["file", "start_time", "end_time"] + columns),
                       root / out)
        lines.append(json.dumps({"key": name, "file": name, "output": out, "n_windows": n}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    (root / "embedding.json").write_text(json.dumps({"backbone": "birdnet", "backbone_kwargs": {},
                                                     "embedding_size": size}))
    return EmbeddingStore(root)


def search(args) -> dict:
    rows = 50_000 if args.quick else 1_000_000
    size, k = 1024, 100
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        started = time.perf_counter()
        store = synthetic_store(Path(tmp) / "store", rows, size, per_file=10_000)
        write_s = time.perf_counter() - started
        disk = sum(p.stat().st_size for p in store.paths())
        queries = np.random.default_rng(1).standard_normal((5, size), dtype=np.float32)
        before = load()
        started = time.perf_counter()
        found = similarity_search(store, queries, k=k, block_rows=65536)
        parquet_s = time.perf_counter() - started
        after = load()
    rng = np.random.default_rng(0)
    matrix = np.empty((rows, size), np.float32)
    for i in range(0, rows, 100_000):
        matrix[i:i + 100_000] = rng.standard_normal((min(100_000, rows - i), size), dtype=np.float32)
    started = time.perf_counter()
    in_memory = similarity_search(matrix, queries, k=k, block_rows=65536)
    memory_s = time.perf_counter() - started
    same = in_memory.similarity.to_numpy()[:10].round(4).tolist() == \
        found.similarity.to_numpy()[:10].round(4).tolist()
    try:
        import duckdb  # noqa: F401
        duck = "installed but not benchmarked"
    except ImportError:
        duck = "not installed (numpy blocks over pyarrow need no extra package)"
    out = {"rows": rows, "embedding_size": size, "k": k, "queries": 5,
           "parquet_store": {"seconds": round(parquet_s, 2), "rows_per_s": round(rows / parquet_s),
                             "disk_gib": round(disk / 2**30, 2), "write_seconds": round(write_s, 1),
                             "load_before": before, "load_after": after},
           "in_memory_numpy": {"seconds": round(memory_s, 2), "rows_per_s": round(rows / memory_s),
                               "matrix_gib": round(matrix.nbytes / 2**30, 2)},
           "same_top10_on_same_data": bool(same), "duckdb": duck}
    print("search", json.dumps(out), flush=True)
    return out


# --------------------------------------------------------------------------- ESC-10
def clip_means(store: EmbeddingStore) -> pd.DataFrame:
    frame = store.to_pandas()
    return frame.groupby(level="file").mean()


def esc10(args) -> dict:
    root = DATA / "esc10"
    df = pd.read_csv(root / "labels.csv")
    df["path"] = [str(root / f) for f in df.filename]
    classes = sorted(df.label.unique())
    df["y"] = df.label.map({c: i for i, c in enumerate(classes)})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = soundscape.embed(BirdNET(), df.path.tolist(), output_dir=tmp, progress=False)
        emb = clip_means(store).loc[df.path]
    embed_s = time.perf_counter() - started
    prep = compact_preprocessing(sample_rate=22050, clip_duration=5.0, n_mels=64, frames=108)
    augs = [augment.TimeShift(0.5), augment.SpecAugment(2, 2, 0.1)]
    folds = [1] if args.quick else [1, 2, 3, 4, 5]
    ks = (5,) if args.quick else KS
    results = {str(k): {"head": {}, "cnn": {}} for k in ks}
    times = {"head": 0.0, "cnn": 0.0}
    for fold in folds:
        test = df[df.fold == fold]
        pool = df[df.fold != fold]
        for k in ks:
            train = pool.groupby("label").sample(k, random_state=args.seed + fold)
            t = time.perf_counter()
            head = soundscape.fit_head(emb.loc[train.path], train.label.tolist())
            pred = head_scores(head, emb.loc[test.path]).idxmax(axis=1).to_numpy()
            times["head"] += time.perf_counter() - t
            results[str(k)]["head"][str(fold)] = float((pred == test.label.to_numpy()).mean())
            train_ds = SingleTargetAudioDataset(train, dict(enumerate(classes)), "path", "y",
                                                preprocessing=prep, augmentations=augs)
            test_ds = SingleTargetAudioDataset(test, dict(enumerate(classes)), "path", "y",
                                               preprocessing=prep)
            monitor = SingleTargetAudioDataset(test.iloc[::8], dict(enumerate(classes)), "path",
                                               "y", preprocessing=prep)  # train() logs on it only
            epochs = 2 if args.quick else args.cnn_epochs
            model, wall = cnn_fit(train_ds, monitor, epochs, args.seed + fold,
                                  torch.nn.CrossEntropyLoss())
            times["cnn"] += wall
            with torch.no_grad():
                x = torch.stack([test_ds[i]["X"] for i in range(len(test_ds))])
                cnn_pred = model(x).argmax(1).numpy()
            results[str(k)]["cnn"][str(fold)] = float((cnn_pred == test.y.to_numpy()).mean())
            print(f"ESC-10 fold {fold} k={k}: head {results[str(k)]['head'][str(fold)]:.3f}, "
                  f"CNN {results[str(k)]['cnn'][str(fold)]:.3f} (load {load()})", flush=True)
    for k in results:
        for model in ("head", "cnn"):
            accs = np.array(list(results[k][model].values()))
            results[k][model] = {"per_fold": results[k][model], "mean": round(float(accs.mean()), 4),
                                 "std": round(float(accs.std()), 4)}
    return {"accuracy": results, "embed_seconds": round(embed_s, 1),
            "head_seconds": round(times["head"], 1), "cnn_seconds": round(times["cnn"], 1),
            "protocol": "official folds; k clips per class sampled (seed + fold) from the other 4 "
                        "folds; test on the whole held-out fold (80 clips); head on the mean of "
                        "each clip's BirdNET window embeddings (0-3 s, 3-5 s padded); CNN final-"
                        "epoch weights, no model selection (train() logs on every 8th test "
                        "clip only)", "chance": 0.1,
            "cnn": {"epochs": args.cnn_epochs, "recipe": CNN_RECIPE.to_dict(),
                    "optimizer": CNN_OPTIMIZER, "augmentations": [repr(a) for a in augs]},
            "head": {"kind": "logistic", "cv": "stratified, up to 5 folds over C"}}


# --------------------------------------------------------------------------- Bengalese finch
def finch(args) -> dict:
    from sklearn.metrics import f1_score, roc_auc_score

    root = DATA / "bengalese_finch"
    ann = read_raven(root / "raven", audio_files=root / "audio").assign(annotation="song")
    labels = clip_labels(ann, 1.0, classes=["song"], min_label_overlap=0.01)
    started = time.perf_counter()
    # BirdNET takes 3-s clips: each 1-s window is zero-padded to 3 s (as BirdNET pads)
    emb = soundscape.predict(embedding_detector(BirdNET()), labels, activation=None)
    embed_s = time.perf_counter() - started
    files = labels.index.get_level_values("file")
    recordings = sorted(set(files))
    fold_of = {r: i % 3 for i, r in enumerate(recordings)}
    folds = np.array([fold_of[f] for f in files])
    y = labels["song"].to_numpy().astype(int)
    prep = compact_preprocessing(sample_rate=32000, clip_duration=1.0, n_mels=64, window_samples=512)
    augs = [augment.TimeShift(0.3), augment.SpecAugment(1, 1, 0.1)]
    ks = (5,) if args.quick else KS
    results = {str(k): {"head": {"scores": np.full(len(y), np.nan), "hits": np.zeros(len(y), bool)},
                        "cnn": {"scores": np.full(len(y), np.nan)}} for k in ks}
    for fold in ([0] if args.quick else range(3)):
        rng = np.random.default_rng(args.seed + fold)
        pool = np.flatnonzero(folds != fold)
        test = np.flatnonzero(folds == fold)
        for k in ks:
            take = np.concatenate([rng.choice(pool[y[pool] == c], size=min(k, (y[pool] == c).sum()),
                                              replace=False) for c in (0, 1)])
            names = np.where(y[take] == 1, "song", "no_song")
            head = soundscape.fit_head(emb.iloc[take], names)
            s = head_scores(head, emb.iloc[test])["song"].to_numpy()
            results[str(k)]["head"]["scores"][test] = s
            results[str(k)]["head"]["hits"][test] = s >= head.metadata["thresholds"]["song"]
            train_ds = MultiTargetAudioDataset(labels.iloc[take], preprocessing=prep, augmentations=augs)
            test_ds = MultiTargetAudioDataset(labels.iloc[test], preprocessing=prep)
            monitor = MultiTargetAudioDataset(labels.iloc[test[::8]], preprocessing=prep)
            model, _ = cnn_fit(train_ds, monitor, 2 if args.quick else args.cnn_epochs,
                               args.seed + fold, torch.nn.BCEWithLogitsLoss())
            with torch.no_grad():
                x = torch.stack([test_ds[i]["X"] for i in range(len(test_ds))])
                results[str(k)]["cnn"]["scores"][test] = torch.sigmoid(model(x))[:, 0].numpy()
            print(f"finch fold {fold} k={k} done (load {load()})", flush=True)
    out = {}
    for k, r in results.items():
        done = ~np.isnan(r["head"]["scores"])
        out[k] = {
            "head": {"f1_own_threshold": round(float(f1_score(y[done], r["head"]["hits"][done])), 4),
                     "f1_at_0.5": round(float(f1_score(y[done], r["head"]["scores"][done] >= 0.5)), 4),
                     "roc_auc": round(float(roc_auc_score(y[done], r["head"]["scores"][done])), 4)},
            "cnn": {"f1_at_0.5": round(float(f1_score(y[done], r["cnn"]["scores"][done] >= 0.5)), 4),
                    "roc_auc": round(float(roc_auc_score(y[done], r["cnn"]["scores"][done])), 4)}}
    return {"results": out, "windows": int(len(y)), "song_windows": int(y.sum()),
            "recordings": len(recordings), "embed_seconds": round(embed_s, 1),
            "protocol": "1-s windows (labels from the Raven tables, as benchmarks/accuracy.py), "
                        "3-fold CV by recording; k windows per class sampled from the training "
                        "recordings (fewer where a fold has fewer no-song windows); BirdNET sees "
                        "each 1-s window zero-padded to 3 s (embeddings via predict with "
                        "activation=None); pooled out-of-fold scores"}


SECTIONS = {"throughput": throughput, "search": search, "esc10": esc10, "finch": finch}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cnn-epochs", type=int, default=15)
    parser.add_argument("--tmp", default=None, help="folder for the 10^6-row synthetic store")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not DATA.is_dir() and any(s != "search" for s in args.only):
        sys.exit(f"needs the shared data folder {DATA}")
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    results["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__,
                          "load_at_start": load(), "quick": args.quick}
    for name in args.only:
        started = time.perf_counter()
        results[name] = SECTIONS[name](args)
        results[name]["section_seconds"] = round(time.perf_counter() - started, 1)
        results["machine"]["load_at_end"] = load()
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
