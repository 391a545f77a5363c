"""Benchmark: soundscape `predict_recordings` against OpenSoundscape 0.13.2 `CNN.predict`.

Same model (a ResNet18 with random weights and two classes, 224 x 224 x 3 inputs: set on
OpenSoundscape's preprocessor too, whose default in 0.13.2 is the spectrogram's own size,
257 x 624 x 1 for these windows), same
recording (a 20-minute 32 kHz WAV, 5-s windows, no overlap), batch size 32. Each run is
its own subprocess, and the runs are interleaved (OpenSoundscape, ours at ``auto``
precision, ours at fp32, OpenSoundscape, ...), so that a change of load on the machine
hits every side alike. OpenSoundscape runs at each ``num_workers`` in `--opso-workers`
and its best setting is the reference.

OpenSoundscape lives in its own virtual environment (it pins other versions of some of
our dependencies); point `--opso-python` at that interpreter, e.g.::

    python3 -m venv /tmp/opsovenv
    /tmp/opsovenv/bin/pip install torch==2.14.1 torchvision==0.29.1 opensoundscape==0.13.2
    .venv/bin/python benchmarks/opensoundscape_compare.py --opso-python /tmp/opsovenv/bin/python

``--training`` compares training instead: ResNet18 (random init, 10 classes) on ESC-10 folds
1-4 (320 clips, 5-s 44.1 kHz OGG) with 16 validation clips of fold 5, batch 32, SGD, two
epochs each side: OpenSoundscape's `CNN.train` (20 steps = 2 epochs, bf16 autocast on CPU
as it always does, its default augmentations on, no validation set: its validation of
ESC-10's partly silent clips fails in 0.13.2) against our `train()` at ``precision="auto"``, whose second epoch reads
the cache the first one filled.

Writes ``benchmarks/opensoundscape_compare.json``: for every run its clips per second and
wall seconds, the median per side, the ratios ours / OpenSoundscape (best setting), and
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from predict_long import CLIP_SECONDS, make_recording  # noqa: E402

OPSO_CHILD = r"""
import json, sys, time
import torch
from opensoundscape import CNN
path, workers = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = CNN("resnet18", classes=["absent", "present"], sample_duration=5.0, sample_rate=32000,
            arch_weights=None, height=224, width=224, channels=3)
model.network.eval()
started = time.perf_counter()
scores = model.predict([path], batch_size=32, num_workers=workers, progress_bar=False)
seconds = time.perf_counter() - started
print(json.dumps({"clips": len(scores), "seconds": seconds}))
"""

OURS_CHILD = r"""
import json, sys, time
import torch
from soundscape.model_file import Detector
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build
from soundscape.torch.predict import predict_recordings
path, precision, calibration = sys.argv[1], sys.argv[2], sys.argv[3]
torch.manual_seed(0)
prep = Preprocessing(sample_rate=32000, clip_duration=5.0)
model = Detector(build("resnet18", 2), "resnet18", ["absent", "present"], False, prep).eval()
started = time.perf_counter()
scores = predict_recordings(model, [path], precision=precision, progress=False,
                            calibration=[calibration] if precision == "int8" else None)
seconds = time.perf_counter() - started
summary = scores.attrs.get("summary", {})
print(json.dumps({"clips": len(scores), "seconds": seconds,
                  "precision": summary.get("precision"), "threads": summary.get("threads")}))
"""


OPSO_TRAIN_CHILD = r"""
import json, sys, time, tempfile
import pandas as pd, torch
from opensoundscape import CNN
root, workers = sys.argv[1], int(sys.argv[2])
df = pd.read_csv(f"{root}/labels.csv")
df["file"] = [f"{root}/{f}" for f in df["filename"]]
classes = sorted(df["label"].unique())
onehot = pd.get_dummies(df.set_index("file")["label"]).astype(float)[classes]
train_df = onehot[(df["fold"] <= 4).to_numpy()]
torch.manual_seed(0)
model = CNN("resnet18", classes=classes, sample_duration=5.0, sample_rate=22050,
            single_target=True, arch_weights=None, height=224, width=224, channels=3)
steps_per_epoch = -(-len(train_df) // 32)
with tempfile.TemporaryDirectory() as out:
    started = time.perf_counter()
    model.train(train_df, None, steps=2 * steps_per_epoch, batch_size=32, num_workers=workers,
                save_path=out, log_interval=steps_per_epoch, validation_interval=steps_per_epoch,
                progress_bar=False, invalid_samples_log=f"{out}/invalid.log")
    seconds = time.perf_counter() - started
print(json.dumps({"clips": 2 * len(train_df), "seconds": seconds, "epoch_s": seconds / 2}))
"""

OURS_TRAIN_CHILD = r"""
import json, sys, time, tempfile
import pandas as pd, torch
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.preprocessing import Preprocessing
from soundscape.runtime import default_loader_settings
from soundscape.torch.models import resnet18
from soundscape.torch.train import train
root = sys.argv[1]
df = pd.read_csv(f"{root}/labels.csv")
df["file"] = [f"{root}/{f}" for f in df["filename"]]
classes = sorted(df["label"].unique())
df["y"] = df["label"].map({c: k for k, c in enumerate(classes)})
prep = Preprocessing(clip_duration=5.0)
make = lambda d: SingleTargetAudioDataset(d, dict(enumerate(classes)), filename_column="file",
                                          label_column="y", preprocessing=prep)
torch.manual_seed(0)
model = resnet18(len(classes))
with tempfile.TemporaryDirectory() as out:
    from soundscape.cache import ClipCache, set_default_cache
    set_default_cache(ClipCache(f"{out}/cache"))  # empty: epoch 1 decodes, epoch 2 reads it
    started = time.perf_counter()
    history = train(f"{out}/run", model, make(df[df.fold <= 4]), make(df[df.fold == 5].head(16)),
                    torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
                    torch.nn.CrossEntropyLoss(), epochs=2, batch_size=32,
                    num_workers=default_loader_settings("cpu")["num_workers"], device="cpu",
                    progress_bar=False, print_logging=False, precision="auto")
    seconds = time.perf_counter() - started
print(json.dumps({"clips": 2 * int((df.fold <= 4).sum()), "seconds": seconds,
                  "epoch_1_s": float(history["seconds"].iloc[0]),
                  "epoch_s": float(history["seconds"].iloc[1]),
                  "precision": history.attrs.get("precision")}))
"""


def _run(cmd: list[str], env: dict | None = None) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["clips_per_s"] = result["clips"] / result["seconds"]
    return result


def _interleave(sides: list[tuple[str, list[str]]], rounds: int, describe) -> dict[str, list[dict]]:
    """Each side's command once per round, in turn; our runs without a forced precision."""
    ours_env = {k: v for k, v in os.environ.items() if k != "SOUNDSCAPE_PRECISION"}
    runs: dict[str, list[dict]] = {}
    for r in range(rounds):
        for key, cmd in sides:
            env = ours_env if cmd[0] == sys.executable else None
            runs.setdefault(key, []).append(_run(cmd, env=env))
            print(f"round {r + 1} {key}: {describe(runs[key][-1])}", flush=True)
    return runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opso-python", default=os.environ.get("OPSO_PYTHON", "/tmp/opsovenv/bin/python"),
                        help="python of a venv with opensoundscape==0.13.2")
    parser.add_argument("--minutes", type=float, default=20.0, help="recording length")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side")
    parser.add_argument("--opso-workers", type=int, nargs="+", default=[0, 2],
                        help="OpenSoundscape num_workers settings to try")
    parser.add_argument("--precisions", nargs="+", default=["auto", "fp32", "int8"],
                        help="our precisions to run (int8 calibrates on a separate 2-min recording)")
    parser.add_argument("--training", action="store_true",
                        help="compare training epochs on ESC-10 instead of prediction")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "esc10"),
                        help="--training: the ESC-10 folder")
    parser.add_argument("--out", default=str(HERE / "opensoundscape_compare.json"))
    args = parser.parse_args(argv)
    if not Path(args.opso_python).exists():
        print(f"no OpenSoundscape interpreter at {args.opso_python}; see this script's docstring")
        return 2
    if args.training:
        return training(args)
    work = HERE / "_work"
    work.mkdir(exist_ok=True)
    path = make_recording(work / f"synthetic_{args.minutes:g}min_32000.wav", args.minutes / 60)
    # int8 calibrates on a different recording (as predict_long.py --compare does)
    calibration = make_recording(work / "calibration_2min_32000.wav", 2 / 60, seed=7)
    sides = [(f"opensoundscape num_workers={w}", [args.opso_python, "-c", OPSO_CHILD, str(path), str(w)])
             for w in args.opso_workers]
    sides += [(f"soundscape precision={p}",
               [sys.executable, "-c", OURS_CHILD, str(path), p, str(calibration)])
              for p in args.precisions]
    load_before = os.getloadavg()
    runs = _interleave(sides, args.rounds,
                       lambda x: f"{x['clips_per_s']:.1f} clips/s ({x.get('precision', 'opso')})")
    load_after = os.getloadavg()
    median = {k: statistics.median(x["clips_per_s"] for x in v) for k, v in runs.items()}
    opso_best = max(v for k, v in median.items() if k.startswith("opensoundscape"))
    doc = {
        "recording": {"minutes": args.minutes, "sample_rate": 32000, "clip_duration": CLIP_SECONDS},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_average_before": load_before, "load_average_after": load_after,
        "runs": runs, "median_clips_per_s": median,
        "opensoundscape_best_clips_per_s": opso_best,
        "ratio_vs_opensoundscape": {k: v / opso_best for k, v in median.items()
                                    if k.startswith("soundscape")},
        "real_time_factor": {k: v * CLIP_SECONDS for k, v in median.items()},
    }
    _write(args.out, "prediction", doc)
    for k, v in median.items():
        print(f"{k:38s} {v:7.1f} clips/s  {v * CLIP_SECONDS:6.0f}x real time"
              + (f"  {v / opso_best:.2f}x OpenSoundscape" if k.startswith("soundscape") else ""))
    print(f"load average before/after: {load_before} / {load_after}; wrote {args.out}")
    return 0


def _write(out: str, section: str, doc: dict) -> None:
    path = Path(out)
    whole = json.loads(path.read_text()) if path.exists() else {}
    if "runs" in whole:  # the layout before sections
        whole = {"prediction": whole}
    whole[section] = doc
    path.write_text(json.dumps(whole, indent=2) + "\n")


def training(args) -> int:
    """Interleaved training runs: OpenSoundscape (each num_workers), ours; per epoch seconds."""
    root = Path(args.data)
    if not (root / "labels.csv").exists():
        print(f"no ESC-10 at {root} (labels.csv); pass --data")
        return 2
    sides = [(f"opensoundscape num_workers={w}",
               [args.opso_python, "-c", OPSO_TRAIN_CHILD, str(root), str(w)]) for w in args.opso_workers]
    sides.append(("soundscape precision=auto", [sys.executable, "-c", OURS_TRAIN_CHILD, str(root)]))
    load_before = os.getloadavg()
    runs = _interleave(sides, args.rounds, lambda x: (
        f"{x['epoch_s']:.1f} s per epoch" if "epoch_1_s" not in x else
        f"epoch 1 {x['epoch_1_s']:.1f} s, epoch 2 (cache warm) {x['epoch_s']:.1f} s ({x['precision']})"))
    load_after = os.getloadavg()
    median = {k: statistics.median(x["epoch_s"] for x in v) for k, v in runs.items()}
    opso_best = min(v for k, v in median.items() if k.startswith("opensoundscape"))
    ours = median["soundscape precision=auto"]
    ours_first = statistics.median(x["epoch_1_s"] for x in runs["soundscape precision=auto"])
    doc = {"data": "ESC-10 folds 1-4 (320 clips) + 16 validation clips, ResNet18, batch 32",
           "load_average_before": load_before, "load_average_after": load_after,
           "runs": runs, "median_epoch_s": median, "opensoundscape_best_epoch_s": opso_best,
           "soundscape_epoch_1_s": ours_first,
           "speedup_vs_opensoundscape_cache_warm": opso_best / ours,
           "speedup_vs_opensoundscape_epoch_1": opso_best / ours_first}
    _write(args.out, "training", doc)
    for k, v in median.items():
        print(f"{k:38s} {v:7.1f} s per epoch")
    print(f"ours vs OpenSoundscape's best: {opso_best / ours:.2f}x faster with the cache warm, "
          f"{opso_best / ours_first:.2f}x in the first epoch")
    print(f"load average before/after: {load_before} / {load_after}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
