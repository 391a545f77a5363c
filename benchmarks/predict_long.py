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


def make_recording(path: Path, hours: float, rate: int = RATE) -> Path:
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
                samples, _ = synthetic_recording(n / rate, rate, seed=block)
            else:  # noise plus tone bursts
                rng = np.random.default_rng(block)
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
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    files = [Path(args.file)] if args.file else [
        make_recording(Path(args.work_dir) / f"synthetic_{h:g}h_{RATE}.wav", h) for h in args.hours]
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
