"""Benchmark: `predict_recordings` over hour-long recordings.

Writes (or takes with ``--file``) a long 32 kHz mono WAV recording, then, for each
length, in a fresh subprocess (so each run's peak memory is its own):

* scores it with `predict_recordings` using a ResNet18 (random weights) and the default
  `Preprocessing` (224 x 224 x 3 images, 512-sample STFT windows with 256 overlap) with
  5-s windows at 32 kHz, no overlap;
* measures the bare model on random batches of the same shape, before and after;
* reports windows (clips) per second, the real-time factor (seconds of audio per second
  of wall time), the pipeline's throughput as a share of the bare model's, and resident
  memory: the process's peak (``ru_maxrss``), the peak during prediction alone, the
  peak while the bare model runs, and what the process holds once torch, torchvision,
  soundscape and the model are loaded (before any audio is touched).

Usage::

    python benchmarks/predict_long.py                 # a 1-hour file
    python benchmarks/predict_long.py --hours 1 2     # also a 2-hour file
    python benchmarks/predict_long.py --file my.wav   # your own recording

Results go to ``benchmarks/predict_long.json``; recordings are cached in
``benchmarks/_work/`` (git-ignored).

``--compare`` times, for each way of running the model (fp32, bf16, bf16 + torch.compile,
int8, ONNX Runtime fp32), our pipeline and the bare model at that precision in one process,
interleaved (bare, pipeline, bare, pipeline, bare), and writes the ``compare`` section of
``benchmarks/results.json`` (schema: ``COMPARE_SCHEMA`` below and benchmarks/README.md)::

    python benchmarks/predict_long.py --compare --minutes 20
    python benchmarks/predict_long.py --compare --cases fp32 bf16 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
RATE = 32000
CLIP_SECONDS = 5.0
BLOCK_SECONDS = 600.0


def make_recording(path: Path, hours: float, rate: int = RATE, seed: int = 0) -> Path:
    """A field-like recording of `hours`, written in 10-minute blocks (cached)."""
    frames = int(round(hours * 3600 * rate))
    if path.exists() and sf.info(str(path)).frames == frames:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.wav")
    try:
        from soundscape.sample_data import synthetic_recording
    except ImportError:
        synthetic_recording = None
    with sf.SoundFile(str(tmp), "w", samplerate=rate, channels=1, subtype="PCM_16") as fh:
        written, block = 0, 0
        while written < frames:
            n = min(int(BLOCK_SECONDS * rate), frames - written)
            if synthetic_recording is not None:
                samples, _ = synthetic_recording(n / rate, rate, seed=seed + block)
            else:  # noise plus tone bursts
                rng = np.random.default_rng(seed + block)
                t = np.arange(n) / rate
                samples = 0.05 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * 2500 * t) * (
                    np.sin(2 * np.pi * 0.05 * t) > 0.8)
            fh.write(np.asarray(samples[:n], dtype=np.float32))
            written += n
            block += 1
    os.replace(tmp, path)
    return path


class _RssPeak:
    """Peak resident memory (MiB) over a `with` block, sampled every 10 ms from /proc."""

    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()

    @staticmethod
    def now() -> float:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:  # not Linux: fall back to the process-lifetime peak
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(0.01)

    def __enter__(self) -> "_RssPeak":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def _bare_clips_per_second(model, batch_size: int, n_batches: int, shape) -> float:
    import torch

    x = torch.randn(batch_size, *shape)
    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(n_batches):
            model(x)
    return batch_size * n_batches / (time.perf_counter() - start)


def child(args) -> dict:
    """One measured run (in its own process)."""
    import torch

    from soundscape.model_file import Detector
    from soundscape.preprocessing import Preprocessing
    from soundscape.torch.models import build
    from soundscape.torch.predict import predict_recordings

    torch.manual_seed(0)
    prep = Preprocessing(sample_rate=RATE, clip_duration=CLIP_SECONDS)
    model = Detector(build("resnet18", 2), "resnet18", ["absent", "present"], False, prep).eval()
    shape = (prep.channels, prep.height, prep.width)
    rss_setup = _RssPeak.now()  # torch, torchvision, soundscape and the model loaded
    with _RssPeak() as bare_memory:
        bare_before = _bare_clips_per_second(model, args.batch_size, args.bare_batches, shape)
    info = sf.info(args.file)
    with _RssPeak() as pipeline_memory:
        start = time.perf_counter()
        scores = predict_recordings(model, [args.file], batch_size=args.batch_size,
                                    num_workers=args.num_workers, progress=False)
        seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    bare_after = _bare_clips_per_second(model, args.batch_size, args.bare_batches, shape)
    bare = (bare_before + bare_after) / 2
    clips = len(scores)
    return {
        "file": str(args.file), "audio_hours": round(info.frames / info.samplerate / 3600, 3),
        "file_sample_rate": info.samplerate, "windows": clips, "seconds": round(seconds, 2),
        "clips_per_second": round(clips / seconds, 2),
        "real_time_factor": round(info.frames / info.samplerate / seconds, 1),
        "bare_model_clips_per_second": round(bare, 2),
        "bare_model_before_after": [round(bare_before, 2), round(bare_after, 2)],
        "pipeline_share_of_bare": round(clips / seconds / bare, 3),
        "peak_rss_mb": round(peak_rss, 1),
        "prediction_peak_rss_mb": round(pipeline_memory.peak, 1),
        "bare_model_peak_rss_mb": round(bare_memory.peak, 1),
        "rss_after_setup_mb": round(rss_setup, 1),
        "max_chunk_samples": scores.attrs["summary"]["max_chunk_samples"],
        "failed": scores.attrs["summary"]["n_failed"],
    }


# --------------------------------------------------------------------------- --compare
#: what each case runs: (precision, compile, backend)
CASES = {
    "fp32": ("fp32", False, "torch"),
    "bf16": ("bf16", False, "torch"),
    "bf16+compile": ("bf16", True, "torch"),
    "int8": ("int8", False, "torch"),
    "onnxruntime": ("fp32", False, "onnxruntime"),
}

COMPARE_SCHEMA = {
    "cases[].case": "fp32 | bf16 | bf16+compile | int8 | onnxruntime (fp32)",
    "cases[].precision": "the precision the run reported (attrs['summary']['precision'])",
    "cases[].clips_per_s": "predict_recordings windows per second (median over rounds), from the "
                           "call to its return, less the one-off runner setup (int8 calibration, "
                           "ONNX export; compiling is in the first batch of the first round only)",
    "cases[].bare_clips_per_s": "the bare model at the same precision on random batches of the same "
                                "shape, best thread count, median of the measurements around the runs",
    "cases[].ratio": "clips_per_s / bare_clips_per_s (target >= 0.9)",
    "cases[].ratios_per_round": "each round's pipeline rate over the mean of the bare rates just "
                                "before and after it",
    "cases[].bare_by_threads": "bare clips/s per torch thread count (median)",
    "cases[].cpu_ratio": "bare CPU seconds per clip / pipeline CPU seconds per clip (work, not wall "
                         "time: less sensitive to other processes)",
    "cases[].max_abs_score_diff_vs_fp32": "largest difference of the scores (softmax) from the fp32 "
                                          "case's on the same recording",
    "cases[].peak_rss_mib": "peak resident memory of the case's process (ru_maxrss)",
    "cases[].prediction_peak_rss_mib": "peak RSS sampled during the pipeline runs only",
    "cases[].rss_after_setup_mib": "RSS once torch, soundscape and the model are loaded",
    "cases[].threads / threads_clips_per_s": "the model's thread count the predictor chose and what "
                                             "it measured for each",
    "cases[].setup_s": "seconds to build the runner before the first timed batch (compile, "
                       "int8 calibration, ONNX export)",
    "cases[].int8_max_abs_score_diff_vs_fp32": "int8 only: the agreement measured on the "
                                               "calibration clips, as the predictor reports it",
}


def _bare_rate(runner, batch_size: int, n_batches: int, shape, threads: int) -> tuple[float, float]:
    """(clips/s, CPU seconds per clip) of `runner` on random batches (already warm)."""
    import torch

    x = runner.precision.input(torch.randn(batch_size, *shape))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            runner(x)  # settle after a thread change
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(n_batches):
                runner(x)
            wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        torch.set_num_threads(before)
    clips = batch_size * n_batches
    return clips / wall, cpu / clips


def compare_child(args) -> dict:
    """One case in its own process: interleaved bare / pipeline rounds."""
    import torch

    from soundscape.model_file import Detector
    from soundscape.preprocessing import Preprocessing
    from soundscape.runtime import thread_candidates
    from soundscape.torch.models import build
    from soundscape.torch.predict import predict_recordings
    from soundscape.torch.runners import make_runner

    precision, compiled, backend = CASES[args.case]
    torch.manual_seed(0)
    prep = Preprocessing(sample_rate=RATE, clip_duration=CLIP_SECONDS)
    model = Detector(build("resnet18", 2), "resnet18", ["absent", "present"], False, prep).eval()
    shape = (prep.channels, prep.height, prep.width)
    rss_setup = _RssPeak.now()
    calibration = [args.calibration] if precision == "int8" else None
    kw = dict(precision=precision, compile=compiled, backend=backend, calibration=calibration)
    start = time.perf_counter()
    runner = make_runner(model, torch.device("cpu"), batch_size=args.batch_size, **kw)
    with torch.inference_mode():  # first call: compiles
        runner(runner.precision.input(torch.randn(args.batch_size, *shape)))
    setup_s = time.perf_counter() - start
    candidates = thread_candidates()
    bare: dict[int, list] = {t: [] for t in candidates}
    bare_cpu: list[float] = []
    rounds, pipeline_memory = [], _RssPeak()

    def measure_bare():
        rates = {}
        for t in candidates:
            rate, cpu = _bare_rate(runner, args.batch_size, args.bare_batches, shape, t)
            bare[t].append(rate)
            bare_cpu.append(cpu)
            rates[t] = rate
        return max(rates.values())

    last_bare = measure_bare()
    scores = None
    for _ in range(args.rounds):
        with pipeline_memory:
            start, cpu = time.perf_counter(), time.process_time()
            scores = predict_recordings(model, [args.file], batch_size=args.batch_size,
                                        num_workers=args.num_workers, progress=False, **kw)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        after = measure_bare()
        # steady throughput: without building the runner (int8 calibration, ONNX export), which
        # a run pays once whatever the recording's length (it is in setup_s)
        rate = len(scores) / (seconds - scores.attrs["summary"].get("runner_setup_seconds", 0.0))
        rounds.append({"clips_per_s": rate, "cpu_s_per_clip": cpu / len(scores),
                       "ratio": rate / ((last_bare + after) / 2),
                       "threads": scores.attrs["summary"].get("threads"),
                       "threads_clips_per_s": scores.attrs["summary"].get("threads_clips_per_s")})
        last_bare = after
    summary = scores.attrs["summary"]
    probs = scores.to_numpy(np.float32)
    out_scores = Path(args.scores_dir) / f"{args.case}.npy"
    np.save(out_scores, probs)
    diff = None
    ref_path = Path(args.scores_dir) / "fp32.npy"
    if ref_path.exists():
        ref = np.load(ref_path)
        diff = float(np.abs(ref - probs).max()) if ref.shape == probs.shape else None
    med = lambda v: float(np.median(v))  # noqa: E731
    bare_by_threads = {str(t): round(med(v), 2) for t, v in bare.items()}
    best_bare = max(med(v) for v in bare.values())
    clips_per_s = med([r["clips_per_s"] for r in rounds])
    result = {
        "case": args.case, "precision": summary["precision"], "compile": bool(summary.get("compile")),
        "backend": summary.get("backend"),
        "clips_per_s": round(clips_per_s, 2), "bare_clips_per_s": round(best_bare, 2),
        "ratio": round(clips_per_s / best_bare, 3),
        "ratios_per_round": [round(r["ratio"], 3) for r in rounds],
        "clips_per_s_per_round": [round(r["clips_per_s"], 2) for r in rounds],
        "bare_by_threads": bare_by_threads,
        "cpu_ratio": round(med(bare_cpu) / med([r["cpu_s_per_clip"] for r in rounds]), 3),
        "max_abs_score_diff_vs_fp32": None if diff is None else round(diff, 5),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "prediction_peak_rss_mib": round(pipeline_memory.peak, 1),
        "rss_after_setup_mib": round(rss_setup, 1),
        "threads": rounds[-1]["threads"], "threads_clips_per_s": rounds[-1]["threads_clips_per_s"],
        "setup_s": round(setup_s, 1), "windows": len(scores), "rounds": args.rounds,
        "stft_dtype": summary.get("stft_dtype"),
    }
    if "int8_max_abs_score_diff_vs_fp32" in summary:
        result["int8_max_abs_score_diff_vs_fp32"] = summary["int8_max_abs_score_diff_vs_fp32"]
        result["calibration_clips"] = summary["calibration_clips"]
    return result


def compare(args) -> dict:
    """Every case in its own subprocess, fp32 first (the reference scores); merges into results.json."""
    from soundscape.runtime import machine_info

    minutes = args.minutes[0] if args.minutes else 20.0
    file = Path(args.file) if args.file else make_recording(
        Path(args.work_dir) / f"synthetic_{minutes:g}min_{RATE}.wav", minutes / 60)
    calibration = make_recording(Path(args.work_dir) / f"calibration_2min_{RATE}.wav", 2 / 60, seed=7)
    scores_dir = Path(args.work_dir) / "compare_scores"
    scores_dir.mkdir(parents=True, exist_ok=True)
    for old in scores_dir.glob("*.npy"):
        old.unlink()
    cases = args.cases or list(CASES)
    if "fp32" in cases:
        cases = ["fp32"] + [c for c in cases if c != "fp32"]
    load_before = [round(v, 2) for v in os.getloadavg()]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    results = []
    for case in cases:
        cmd = [sys.executable, __file__, "--compare-child", "--case", case, "--file", str(file),
               "--calibration", str(calibration), "--scores-dir", str(scores_dir),
               "--batch-size", str(args.batch_size), "--num-workers", str(args.num_workers),
               "--bare-batches", str(args.bare_batches), "--rounds", str(args.rounds)]
        load = round(os.getloadavg()[0], 2)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            row = {"case": case, "error": (proc.stdout + proc.stderr)[-1500:]}
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["load_average_at_start"] = load
        results.append(row)
        if "error" in row:
            print(f"{case}: failed\n{row['error']}", flush=True)
        else:
            print(f"{case:>13}: pipeline {row['clips_per_s']:6.1f} clips/s, bare {row['bare_clips_per_s']:6.1f} "
                  f"-> {100 * row['ratio']:4.0f} % (rounds {row['ratios_per_round']}, CPU-time ratio "
                  f"{row['cpu_ratio']:.2f}); max |score - fp32| {row['max_abs_score_diff_vs_fp32']}; peak RSS "
                  f"{row['peak_rss_mib']:.0f} MiB; threads {row['threads']} {row['threads_clips_per_s']}; "
                  f"load {load}", flush=True)
    info = sf.info(str(file))
    section = {
        "benchmark": "predict_recordings vs the bare model, per precision (interleaved, one process per case)",
        "schema": COMPARE_SCHEMA,
        "model": "resnet18, random weights, 2 classes, softmax scores",
        "preprocessing": f"default Preprocessing, sample_rate={RATE}, clip_duration={CLIP_SECONDS}, 224x224x3",
        "recording": {"file": str(file), "minutes": round(info.frames / info.samplerate / 60, 2),
                      "sample_rate": info.samplerate, "windows": int(info.frames // (RATE * CLIP_SECONDS))},
        "batch_size": args.batch_size, "num_workers": args.num_workers, "rounds": args.rounds,
        "bare_batches": args.bare_batches, "machine": machine_info(),
        "started": started, "load_average_before": load_before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cases": results,
    }
    out = Path(args.results)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["compare"] = section
    out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"load average before/after: {section['load_average_before']} / {section['load_average_after']}")
    print(f"wrote the compare section of {out}")
    return section


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[1.0],
                        help="lengths of synthetic recordings to run (default: 1)")
    parser.add_argument("--file", help="score this recording instead of synthetic ones")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=1,
                        help="background preprocessing threads (0: none)")
    parser.add_argument("--bare-batches", type=int, default=8,
                        help="batches timed for the bare model, before and after the run")
    parser.add_argument("--work-dir", default=str(HERE / "_work"))
    parser.add_argument("--output", default=str(HERE / "predict_long.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", action="store_true",
                        help="time our pipeline against the bare model at every precision (see above)")
    parser.add_argument("--minutes", type=float, nargs="+",
                        help="recording length(s) in minutes instead of --hours (--compare: default 20)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="--compare: which cases (default all)")
    parser.add_argument("--rounds", type=int, default=2, help="--compare: pipeline runs per case")
    parser.add_argument("--results", default=str(HERE / "results.json"),
                        help="--compare: the JSON whose 'compare' section is written")
    parser.add_argument("--compare-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--calibration", help=argparse.SUPPRESS)
    parser.add_argument("--scores-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.compare_child:
        print(json.dumps(compare_child(args)))
        return 0
    if args.compare:
        if args.bare_batches == 8:
            args.bare_batches = 4
        compare(args)
        return 0

    hours = [m / 60 for m in args.minutes] if args.minutes else args.hours
    files = [Path(args.file)] if args.file else [
        make_recording(Path(args.work_dir) / f"synthetic_{h * 60:g}min_{RATE}.wav", h) for h in hours]
    import torch

    runs = []
    for f in files:
        cmd = [sys.executable, __file__, "--child", "--file", str(f), "--batch-size", str(args.batch_size),
               "--num-workers", str(args.num_workers), "--bare-batches", str(args.bare_batches)]
        load = os.getloadavg()[0]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        run = json.loads(out.stdout.strip().splitlines()[-1])
        run["load_average_at_start"] = round(load, 2)
        runs.append(run)
        print(f"{run['audio_hours']:g} h ({run['windows']} windows of {CLIP_SECONDS:g} s): "
              f"{run['clips_per_second']:.1f} clips/s, real-time x{run['real_time_factor']:.0f}; bare model "
              f"{run['bare_model_clips_per_second']:.1f} clips/s -> pipeline at "
              f"{100 * run['pipeline_share_of_bare']:.0f} % of the bare model; peak RSS "
              f"{run['prediction_peak_rss_mb']:.0f} MiB during prediction (bare model alone "
              f"{run['bare_model_peak_rss_mb']:.0f}, after imports and model "
              f"{run['rss_after_setup_mb']:.0f})",
              flush=True)
    result = {
        "benchmark": "predict_recordings over long recordings",
        "model": "resnet18, random weights, 2 classes",
        "preprocessing": f"default Preprocessing, sample_rate={RATE}, clip_duration={CLIP_SECONDS}, 224x224x3",
        "batch_size": args.batch_size, "num_workers": args.num_workers,
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "runs": runs,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
