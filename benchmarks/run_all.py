"""soundscape's speed benchmarks: preprocessing, training, prediction. One table, one JSON.

Usage::

    .venv/bin/python benchmarks/run_all.py            # full run (minutes on 2 CPU cores)
    .venv/bin/python benchmarks/run_all.py --quick    # a few clips, to check it works

Prints a table and writes ``benchmarks/results.json``. Uses ESC-10 from
``../shared/data/esc10`` (beside the checkout) or, when that is absent, synthetic 5-s
44.1 kHz clips written to ``benchmarks/_work/``. See ``benchmarks/README.md`` for what
every number means. These are measurements, not tests: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
ESC10 = ROOT.parent / "shared" / "data" / "esc10"
os.environ.setdefault("SOUNDSCAPE_CACHE_DIR", str(WORK / "cache"))  # never the user's cache

from soundscape import cache as cache_module  # noqa: E402
from soundscape.cache import ClipCache  # noqa: E402
from soundscape.loading import ClipLoader, cpu_count, default_loader_settings  # noqa: E402
from soundscape.preprocessing import Preprocessing, stack_waveforms  # noqa: E402

#: 5-s clips -> 3 x 224 x 224 images, the library's default spectrogram (22.05 kHz)
PRE = Preprocessing(clip_duration=5.0)
BATCH = 32


# --------------------------------------------------------------------------- data
def clip_table(quick: bool, folder: Path = ESC10) -> tuple[pd.DataFrame, str]:
    """ESC-10 (filename, label, fold) with absolute paths, or synthetic clips like it."""
    if (folder / "labels.csv").exists():
        df = pd.read_csv(folder / "labels.csv")
        df["filename"] = [str(folder / f) for f in df["filename"]]
        source = f"ESC-10 ({folder})"
    else:
        df = _synthetic(quick)
        source = "synthetic 5-s 44.1 kHz OGG clips (ESC-10 absent)"
    if quick:  # one clip of each class per fold: 40 training and 10 validation clips
        df = df.groupby(["fold", "label"]).head(1)
    return df.reset_index(drop=True), source


def _synthetic(quick: bool) -> pd.DataFrame:
    folder = WORK / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(5 * 44100) / 44100
    rows = []
    for i in range(50 if quick else 400):
        label = (i // 5) % 10
        path = folder / f"{i:03d}.ogg"
        if not path.exists():
            f0 = 200 * (label + 1)
            x = 0.3 * np.sin(2 * np.pi * (f0 + 50 * label * t) * t) * (1 + np.sin(2 * np.pi * (label + 1) * t))
            x += 0.02 * rng.standard_normal(len(t))
            sf.write(path, x.astype(np.float32), 44100)
        rows.append({"filename": str(path), "label": f"class{label}", "fold": 1 + i % 5})
    return pd.DataFrame(rows)


def _fresh_cache(name: str, **kw) -> ClipCache:
    folder = WORK / "cache" / name
    shutil.rmtree(folder, ignore_errors=True)
    return ClipCache(folder, **kw)


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# --------------------------------------------------------------------------- preprocessing
def bench_preprocessing(paths: list[str]) -> dict:
    """Clips per second of each way of turning files into (3, 224, 224) model inputs."""
    n = len(paths)
    chunks = [paths[i:i + BATCH] for i in range(0, n, BATCH)]
    out = {"clips": n, "batch_size": BATCH, "preprocessing": PRE.to_dict()}

    def reference():  # today's tools: one clip at a time, numpy spectrogram, every epoch again
        return [PRE.image_reference(PRE.load_audio(p)) for p in paths]

    out["reference_s"], ref_images = _timed(reference)

    loader = ClipLoader(PRE, _fresh_cache("preprocessing", write_through=True))
    out["first_epoch_s"], first = _timed(lambda: [loader.features(c) for c in chunks])
    out["cached_epoch_s"], cached = _timed(lambda: [loader.features(c) for c in chunks])
    from_disk = ClipLoader(PRE, ClipCache(loader.cache.directory, memory_bytes=0))
    out["disk_cached_epoch_s"], _ = _timed(lambda: [from_disk.features(c) for c in chunks])
    out["per_item_cached_s"], _ = _timed(lambda: [loader.feature(p) for p in paths])  # what a worker does

    # the compute alone, on waveforms already in memory
    audios = [PRE.load_audio(p) for p in paths]
    waves = [stack_waveforms(audios[i:i + BATCH]) for i in range(0, n, BATCH)]
    out["engine_reference_s"], _ = _timed(lambda: [PRE.image_reference(a) for a in audios])
    out["engine_batched_s"], _ = _timed(lambda: [PRE.images(w) for w in waves])

    batched = torch.cat(first)
    out["max_abs_diff_vs_reference"] = float((batched - torch.stack(ref_images)).abs().max())
    out["cached_equals_first"] = bool(torch.equal(torch.cat(cached), batched))
    for key in [k for k in out if k.endswith("_s")]:
        out[key.replace("_s", "_clips_per_s")] = n / out[key]
    out["speedup_cached_vs_reference"] = out["reference_s"] / out["cached_epoch_s"]
    out["speedup_first_vs_reference"] = out["reference_s"] / out["first_epoch_s"]
    out["speedup_engine_only"] = out["engine_reference_s"] / out["engine_batched_s"]
    return out


# --------------------------------------------------------------------------- training
def _bare_steps(model, n_clips: int, n_valid: int, n_classes: int, channels_last: bool = False) -> float:
    """Seconds of forward+backward+SGD on random batches shaped like the epoch's, plus validation forwards."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def batches(total):
        sizes = [BATCH] * (total // BATCH) + ([total % BATCH] if total % BATCH else [])
        return [(torch.randn(b, 3, PRE.height, PRE.width).to(memory_format=fmt),
                 torch.randint(0, n_classes, (b,))) for b in sizes]

    train_batches, valid_batches = batches(n_clips), batches(n_valid)
    model.train()
    x, y = train_batches[0]
    loss_fn(model(x), y).backward()  # warm-up (allocations, oneDNN kernels)
    opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for x, y in train_batches:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for x, _ in valid_batches:
            model(x)
    return time.perf_counter() - start


def bench_training(df: pd.DataFrame, quick: bool) -> dict:
    """train() epoch times on ESC-10 folds 1-4 next to the bare model's compute time."""
    from soundscape.datasets import SingleTargetAudioDataset
    from soundscape.torch.models import resnet18

    labels = sorted(df["label"].unique())
    label_dict = dict(enumerate(labels))
    df = df.assign(y=df["label"].map({v: k for k, v in label_dict.items()}))
    train_df = df[df.fold <= 4]
    valid_df = df[df.fold == 5].head(16)  # a small validation set: the epoch is mostly training
    make = lambda d: SingleTargetAudioDataset(d, label_dict, filename_column="filename",  # noqa: E731
                                              label_column="y", preprocessing=PRE)
    settings = default_loader_settings("cpu")
    out = {"train_clips": len(train_df), "valid_clips": len(valid_df), "model": "resnet18",
           "batch_size": BATCH, "num_workers": settings["num_workers"]}
    cache_module.set_default_cache(_fresh_cache("training"))
    torch.manual_seed(0)
    model = resnet18(len(labels))
    try:
        from soundscape.torch.train import train
    except ImportError as exc:
        out["error"] = f"soundscape.torch.train.train unavailable ({exc})"
        return out
    save_dir = WORK / "train_run"
    shutil.rmtree(save_dir, ignore_errors=True)
    sizes = (len(train_df), len(valid_df), len(labels))
    before = _bare_steps(resnet18(len(labels)), *sizes, channels_last=False)  # train()'s format today
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    history = train(save_dir, model, make(train_df), make(valid_df), optimizer, torch.nn.CrossEntropyLoss(),
                    epochs=2, batch_size=BATCH, num_workers=settings["num_workers"], log_every=100,
                    device="cpu", seed=0, progress_bar=False, print_logging=False)
    out["epoch_1_s"], out["epoch_2_s"] = (float(s) for s in history["seconds"][:2])
    uses_cl = bool(model.conv1.weight.is_contiguous(memory_format=torch.channels_last))
    out["train_uses_channels_last"] = uses_cl
    # the bare model, same shapes, in the memory format train() used, right before and after
    after = _bare_steps(resnet18(len(labels)), *sizes, channels_last=uses_cl)
    out["bare_before_after_s"] = [before if not uses_cl else None, after]
    out["bare_s"] = after if uses_cl else (before + after) / 2
    if not quick:  # the other memory format, for comparison
        other = _bare_steps(resnet18(len(labels)), *sizes, channels_last=not uses_cl)
        out["bare_channels_last_s" if not uses_cl else "bare_contiguous_s"] = other
    out["bare_channels_last_s" if uses_cl else "bare_contiguous_s"] = out["bare_s"]
    out["epoch_1_ratio"] = out["epoch_1_s"] / out["bare_s"]
    out["epoch_2_ratio"] = out["epoch_2_s"] / out["bare_s"]
    return out


def _bare_steps_at(precision: str, n_clips: int, n_valid: int, n_classes: int) -> float:
    """`_bare_steps` of a fresh ResNet18 at a precision (autocast + memory format of train())."""
    from soundscape.runtime import resolve_precision
    from soundscape.torch.models import resnet18

    prec = resolve_precision(precision, "cpu")
    model = prec.prepare(resnet18(n_classes))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    sizes = lambda total: [BATCH] * (total // BATCH) + ([total % BATCH] if total % BATCH else [])  # noqa: E731
    make = lambda b: (prec.input(torch.randn(b, 3, PRE.height, PRE.width)),  # noqa: E731
                      torch.randint(0, n_classes, (b,)))
    train_batches, valid_batches = [make(b) for b in sizes(n_clips)], [make(b) for b in sizes(n_valid)]
    model.train()
    with prec.autocast():
        loss_fn(model(train_batches[0][0]), train_batches[0][1]).backward()  # warm-up
    opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for x, y in train_batches:
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            loss = loss_fn(model(x).float(), y)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad(), prec.autocast():
        for x, _ in valid_batches:
            model(x)
    return time.perf_counter() - start


def bench_training_compare(df: pd.DataFrame, quick: bool) -> dict:
    """train() epochs with the cache warm, fp32 vs bf16, each next to the bare model at its precision.

    Order: bare fp32, epoch fp32, bare bf16, epoch bf16 (interleaved, one process; the bare
    model at every thread count train() may choose, the fastest kept). The cache
    is filled before (every clip's spectrogram computed once), so an epoch is what a second
    epoch of a real run costs.
    """
    from soundscape.datasets import SingleTargetAudioDataset
    from soundscape.torch.models import resnet18
    from soundscape.torch.train import train

    labels = sorted(df["label"].unique())
    label_dict = dict(enumerate(labels))
    df = df.assign(y=df["label"].map({v: k for k, v in label_dict.items()}))
    train_df, valid_df = df[df.fold <= 4], df[df.fold == 5].head(16)
    make = lambda d: SingleTargetAudioDataset(d, label_dict, filename_column="filename",  # noqa: E731
                                              label_column="y", preprocessing=PRE)
    cache_module.set_default_cache(_fresh_cache("training_compare"))
    loader = ClipLoader(PRE)
    paths = list(train_df["filename"]) + list(valid_df["filename"])
    warm_s, _ = _timed(lambda: [loader.frames_batch(paths[i:i + BATCH]) for i in range(0, len(paths), BATCH)])
    settings = default_loader_settings("cpu")
    sizes = (len(train_df), len(valid_df), len(labels))
    out = {"train_clips": len(train_df), "valid_clips": len(valid_df), "model": "resnet18", "batch_size": BATCH,
           "num_workers": settings["num_workers"], "cache_warm_s": round(warm_s, 2),
           "order": "bare fp32 (each thread count), epoch fp32, bare bf16 (each), epoch bf16; bare_s "
                    "is the fastest thread count",
           "opensoundscape_0_13_2_epoch_s_reported": [18, 19],
           "opensoundscape_note": "OpenSoundscape is not installed here; 18-19 s is the figure the "
                                  "issue reports for this data on this machine earlier, when the bare "
                                  "bf16 epoch took ~5.8 s; compare ratios, not seconds"}
    from soundscape.runtime import thread_candidates

    for precision in ("fp32", "bf16"):
        bare_by_threads = {}
        for t in thread_candidates():  # the bare model at every count train() may pick
            with _threads(t):
                bare_by_threads[t] = _bare_steps_at(precision, *sizes)
        bare = min(bare_by_threads.values())
        torch.manual_seed(0)
        model = resnet18(len(labels))
        save_dir = WORK / f"train_compare_{precision}"
        shutil.rmtree(save_dir, ignore_errors=True)
        history = train(save_dir, model, make(train_df), make(valid_df),
                        torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), torch.nn.CrossEntropyLoss(),
                        epochs=1, batch_size=BATCH, num_workers=settings["num_workers"], log_every=100,
                        device="cpu", seed=0, progress_bar=False, print_logging=False, precision=precision)
        epoch = float(history["seconds"].iloc[0])
        out[precision] = {"epoch_s": round(epoch, 2), "bare_s": round(bare, 2), "ratio": round(epoch / bare, 3),
                          "bare_s_by_threads": {str(t): round(v, 2) for t, v in bare_by_threads.items()},
                          "train_threads": history.attrs.get("threads"),
                          "train_threads_clips_per_s": history.attrs.get("threads_clips_per_s"),
                          "load_average": [round(v, 2) for v in os.getloadavg()]}
        print(f"training {precision}: epoch {epoch:.1f} s (cache warm), bare {bare:.1f} s -> "
              f"{epoch / bare:.2f} x bare", file=sys.stderr, flush=True)
    out["bf16_epoch_speedup_vs_fp32"] = round(out["fp32"]["epoch_s"] / out["bf16"]["epoch_s"], 2)
    out["bf16_bare_speedup_vs_fp32"] = round(out["fp32"]["bare_s"] / out["bf16"]["bare_s"], 2)
    return out


def bench_prediction_compare(quick: bool, out_json: Path) -> dict:
    """`predict_long.py --compare` (every precision, interleaved with the bare model) into `out_json`."""
    script = ROOT / "benchmarks" / "predict_long.py"
    cmd = [sys.executable, str(script), "--compare", "--results", str(out_json)]
    cmd += ["--minutes", "2", "--rounds", "1", "--cases", "fp32", "bf16"] if quick else ["--minutes", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    print(proc.stdout, file=sys.stderr, flush=True)
    if proc.returncode != 0:
        return {"command": " ".join(cmd[1:]), "error": (proc.stdout + proc.stderr)[-2000:]}
    return json.loads(out_json.read_text())["compare"]


def bench_inference_formats(quick: bool) -> dict:
    """Forward-only images/s of ResNet18 in inference mode: contiguous vs channels-last (vs bf16)."""
    from soundscape.torch.models import resnet18

    model = resnet18(10).eval()
    x = torch.randn(BATCH, 3, PRE.height, PRE.width)
    out = {}
    variants = [("contiguous", False, False), ("channels_last", True, False)]
    if not quick:
        variants.append(("channels_last_bf16_autocast", True, True))
    for name, cl, bf16 in variants:
        m = model.to(memory_format=torch.channels_last if cl else torch.contiguous_format)
        xi = x.to(memory_format=torch.channels_last) if cl else x
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            m(xi)
            seconds, _ = _timed(lambda: [m(xi) for _ in range(1 if quick else 3)])
        out[f"{name}_images_per_s"] = (1 if quick else 3) * BATCH / seconds
    return out


# --------------------------------------------------------------------------- prediction
def bench_prediction(quick: bool) -> dict:
    """Run the detection benchmark (benchmarks/predict_long.py: a 1-hour recording) when it exists."""
    script = ROOT / "benchmarks" / "predict_long.py"
    if not script.exists():
        return {"skipped": "benchmarks/predict_long.py does not exist (written by the prediction work)"}
    out_json = WORK / "predict_long.json"
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--output", str(out_json)]
    if quick:  # 3 minutes of audio instead of an hour
        cmd += ["--hours", "0.05", "--bare-batches", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    result = {"command": " ".join(cmd[1:]), "returncode": proc.returncode}
    if proc.returncode == 0 and out_json.exists():
        doc = json.loads(out_json.read_text())
        result.update({k: doc[k] for k in ("batch_size", "num_workers") if k in doc})
        result.update(doc["runs"][0])
    else:
        result["error"] = (proc.stdout + proc.stderr)[-2000:]
    return result


# --------------------------------------------------------------------------- report
def machine() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus_usable": cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def _row(name, value, unit, note=""):
    return f"| {name:<52} | {value:>10} {unit:<8} | {note}"


def table(results: dict) -> str:
    p, t, pr, inf = (results.get(k, {}) for k in ("preprocessing", "training", "prediction", "inference"))
    f = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"| {'measurement':<52} | {'value':>10} {'unit':<8} | note", "|" + "-" * 54 + "|" + "-" * 21 + "|------"]
    if p:
        lines += [
            _row("preprocessing: per-clip reference path", f(p["reference_clips_per_s"]), "clips/s",
                 "decode+resample+numpy STFT+image, one clip at a time"),
            _row("preprocessing: batched engine, first epoch", f(p["first_epoch_clips_per_s"]), "clips/s",
                 f"{f(p['speedup_first_vs_reference'])} x reference (decoding bound)"),
            _row("preprocessing: batched engine, cached epoch", f(p["cached_epoch_clips_per_s"]), "clips/s",
                 f"{f(p['speedup_cached_vs_reference'])} x reference (target >= 10 x)"),
            _row("preprocessing: cached epoch, from the disk cache", f(p["disk_cached_epoch_clips_per_s"]),
                 "clips/s", "new process / loader"),
            _row("preprocessing: cached, one clip at a time", f(p["per_item_cached_clips_per_s"]), "clips/s",
                 "what a DataLoader worker does"),
            _row("preprocessing: compute only, reference vs batched",
                 f(p["speedup_engine_only"]), "x",
                 f"{f(p['engine_reference_clips_per_s'])} vs {f(p['engine_batched_clips_per_s'])} clips/s"),
        ]
    if t and "epoch_1_s" in t:
        lines += [
            _row(f"training: bare ResNet18 fwd+bwd ({t['train_clips']}+{t['valid_clips']} clips)",
                 f(t["bare_s"]), "s", "random batches, same shapes; mean of before and after"),
            _row("training: train() epoch 1 (cold cache)", f(t["epoch_1_s"]), "s",
                 f"{f(t['epoch_1_ratio'], 2)} x bare"),
            _row("training: train() epoch 2 (cached)", f(t["epoch_2_s"]), "s",
                 f"{f(t['epoch_2_ratio'], 2)} x bare (target <= 1.15 x)"),
        ]
    elif t:
        lines.append(_row("training", "-", "", t.get("error", "not run")))
    if inf:
        for k, v in inf.items():
            lines.append(_row(f"inference: ResNet18 {k.replace('_images_per_s', '')}", f(v), "images/s",
                              "torch.inference_mode, batch 32"))
    if pr.get("skipped") or pr.get("error"):
        lines.append(_row("prediction: 1-hour recording", "-", "", pr.get("skipped") or "failed, see results.json"))
    elif pr:
        hours = pr.get("audio_hours", 1)
        lines += [
            _row(f"prediction: {hours:g}-h recording, bare ResNet18", f(pr["bare_model_clips_per_second"]),
                 "clips/s", "random batches, inference mode"),
            _row(f"prediction: {hours:g}-h recording, predict_recordings", f(pr["clips_per_second"]), "clips/s",
                 f"{f(100 * pr['pipeline_share_of_bare'], 0)} % of bare (target >= 90 %), "
                 f"real time x{f(pr['real_time_factor'], 0)}, peak RSS {f(pr['peak_rss_mb'], 0)} MB"),
        ]
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few clips only (about a minute)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"), help="where to write the JSON")
    ap.add_argument("--skip", nargs="*", default=[], choices=["preprocessing", "training", "inference",
                                                               "prediction"], help="sections to leave out")
    ap.add_argument("--data", default=str(ESC10),
                    help="the ESC-10 folder (default ../shared/data/esc10); 'synthetic' forces synthetic clips")
    ap.add_argument("--preprocessing-threads", type=int, default=1,
                    help="torch threads for the preprocessing rows (default 1, as in a DataLoader worker)")
    ap.add_argument("--compare", action="store_true",
                    help="only the precision comparison: predict_long.py --compare (fp32, bf16, "
                         "bf16+compile, int8, ONNX Runtime vs the bare model) and train() epochs fp32 "
                         "vs bf16 next to the bare model; kept in results.json beside the other sections")
    args = ap.parse_args(argv)
    if args.compare:
        return compare_main(args)
    WORK.mkdir(parents=True, exist_ok=True)
    df, source = clip_table(args.quick, Path(args.data))
    results = {"quick": args.quick, "data": source, "machine": machine(),
               "load_average_before": os.getloadavg(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "preprocessing" not in args.skip:
        print("preprocessing ...", file=sys.stderr, flush=True)
        with _threads(args.preprocessing_threads):
            results["preprocessing"] = bench_preprocessing(list(df["filename"]))
        results["preprocessing"]["torch_threads"] = args.preprocessing_threads
    if "training" not in args.skip:
        print("training ...", file=sys.stderr, flush=True)
        results["training"] = bench_training(df, args.quick)
    if "inference" not in args.skip:
        print("inference ...", file=sys.stderr, flush=True)
        results["inference"] = bench_inference_formats(args.quick)
    if "prediction" not in args.skip:
        print("prediction ...", file=sys.stderr, flush=True)
        results["prediction"] = bench_prediction(args.quick)
    results["load_average_after"] = os.getloadavg()
    text = table(results)
    results["table"] = text
    print(f"soundscape benchmarks ({'quick' if args.quick else 'full'}) on {results['machine'].get('Model name', '?')}, "
          f"{results['machine']['cpus_usable']} CPUs; data: {source}")
    print(text)
    print(f"load average before/after: {results['load_average_before']} / {results['load_average_after']}")
    previous = _read(Path(args.out))
    for key in ("compare", "training_compare"):  # written by --compare runs: kept
        if key in previous:
            results[key] = previous[key]
    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")
    return results


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def compare_main(args) -> dict:
    """--compare: the prediction and training comparisons, merged into the existing results.json."""
    WORK.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    load_before = [round(v, 2) for v in os.getloadavg()]
    compare = None if "prediction" in args.skip else bench_prediction_compare(args.quick, out)
    training = None
    if "training" not in args.skip:
        df, source = clip_table(args.quick, Path(args.data))
        training = bench_training_compare(df, args.quick)
        training.update(data=source, machine=machine(), load_average_before=load_before,
                        load_average_after=[round(v, 2) for v in os.getloadavg()])
    results = _read(out)
    if compare is not None:
        results["compare"] = compare
    if training is not None:
        results["training_compare"] = training
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote the compare and training_compare sections of {out}")
    return results


if __name__ == "__main__":
    main()
