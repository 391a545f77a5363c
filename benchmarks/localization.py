"""Benchmark: `soundscape.localization.localize` throughput and accuracy on a simulated array.

Simulates a 3 x 3 grid of recorders 25 m apart (50 x 50 m), sources at random positions
inside it calling every 0.5 s (an ESC-10 dog bark band-limited to 500-4000 Hz when
``../shared/data`` is there, else a synthetic 1.5-4.5 kHz chirp), white noise at each SNR
and a 50-microsecond clock jitter per recorder, written as 22.05 kHz WAV files. Then:

* localizations per second with the batched GCC (default ``batch_size``) and with one
  detection per FFT (``batch_size=1``), best of ``--repeats`` runs (files already read
  once, so the timing is GCC + solving, not disk);
* position error (median, 95th percentile) over the estimates flagged ``ok``, and the
  share flagged ``ok``, at each SNR.

The machine is shared: the load average (``uptime``) before and after is recorded.

Usage::

    python benchmarks/localization.py              # 200 calls at 20, 0 and -15 dB
    python benchmarks/localization.py --calls 50   # a quick check

Results go to ``benchmarks/localization.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from soundscape import Audio  # noqa: E402
from soundscape.io import write_json  # noqa: E402
from soundscape.localization import (
    RecorderArray,
    chirp,
    grid_positions,
    localize,
    simulate_array,
    simulated_detections,
)  # noqa: E402

RATE = 22050
CLIP = REPO.parent / "shared" / "data" / "esc10" / "audio" / "1-100032-A.ogg"


def _call() -> tuple[np.ndarray, str, tuple[float, float]]:
    if CLIP.exists():
        x = Audio.from_file(CLIP, sample_rate=RATE).bandpass(500, 4000).samples.astype(float)
        n = int(0.3 * RATE)
        i = int(np.argmax(np.convolve(x**2, np.ones(n), "valid")))
        return (
            x[i : i + n] * np.hanning(n),
            f"ESC-10 {CLIP.name} (500-4000 Hz, 0.3 s)",
            (500.0, 4000.0),
        )
    return chirp(RATE), "synthetic chirp 1.5-4.5 kHz, 0.3 s", (1200.0, 5000.0)


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def run_snr(call, band, snr: float, n_calls: int, repeats: int, folder: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    grid = grid_positions(3, 25.0)
    sources = rng.uniform(2.0, 48.0, (n_calls, 2))
    emit = 0.3 + 0.5 * np.arange(n_calls)
    table, truth = simulate_array(
        call,
        RATE,
        grid,
        sources,
        emit,
        folder,
        duration=emit[-1] + 1.0,
        snr_db=snr,
        clock_jitter=5e-5,
        seed=seed,
    )
    det = simulated_detections(table, truth, grid, band)
    array = RecorderArray(table)
    localize(det.head(2), array)  # reads the files once (kept in memory)
    timings = {}
    for label, batch in (("batched", 32), ("one_per_fft", 1)):
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = localize(det, array, batch_size=batch)
            best = min(best, time.perf_counter() - t0)
        timings[label] = best
    err = np.hypot(out["x"] - truth["x"], out["y"] - truth["y"]).to_numpy()
    ok = (out["quality"] == "ok").to_numpy()
    return {
        "snr_db": snr,
        "calls": n_calls,
        "localizations_per_s_batched": round(n_calls / timings["batched"], 1),
        "localizations_per_s_one_per_fft": round(n_calls / timings["one_per_fft"], 1),
        "share_ok": round(float(ok.mean()), 3),
        "median_error_m_ok": round(float(np.median(err[ok])), 4) if ok.any() else None,
        "p95_error_m_ok": round(float(np.percentile(err[ok], 95)), 4) if ok.any() else None,
        "max_error_m_ok": round(float(err[ok].max()), 4) if ok.any() else None,
        "median_error_m_all": round(float(np.nanmedian(err)), 4),
        "median_residual_ms": round(float(np.nanmedian(out["residual_ms"])), 4),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--snr", type=float, nargs="+", default=[20.0, 0.0, -15.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "localization.json"))
    args = parser.parse_args(argv)
    call, call_name, band = _call()
    before = _uptime()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, snr in enumerate(args.snr):
            r = run_snr(call, band, snr, args.calls, args.repeats, Path(tmp) / f"snr{k}", seed=k)
            print(r, flush=True)
            results.append(r)
    report = {
        "what": "localize() on a simulated 3x3 grid, 25 m spacing, 9 recorders, 22.05 kHz, "
        "0.4-s detections",
        "call": call_name,
        "clock_jitter_s": 5e-5,
        "results": results,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "uptime_before": before,
            "uptime_after": _uptime(),
        },
    }
    write_json(report, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
