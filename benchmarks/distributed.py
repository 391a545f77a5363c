"""Benchmark: `predict_recordings` on the local engine vs the Ray engine on this machine.

Writes a few synthetic field recordings (cached in ``benchmarks/_work/distributed``),
then scores them with a compact CNN (random weights, its default 22.05 kHz / 5-s / 64-mel
preprocessing, fp32) three ways:

* ``local``: the local engine (default threads, one reading thread);
* ``ray_1``: the Ray engine, one actor with all the CPUs (``num_cpus`` = CPU count);
* ``ray_2``: the Ray engine, two actors with half the CPUs each.

Every Ray run includes starting its actors (a worker process that imports torch and
soundscape, loads the model); the Ray instance itself is started once beforehand and
its start-up time is reported apart (``ray_init_seconds``). ``fixed_overhead_seconds``
is the wall time of a Ray run on one 5-s file (actor start-up and round trips). The
overhead ratio of a case is its wall time over the local engine's (> 1: slower).

Usage::

    python benchmarks/distributed.py                  # 8 recordings x 3 min
    python benchmarks/distributed.py --files 4 --minutes 1

Results go to ``benchmarks/distributed.json`` with the load average before and after and
the number of other pytest processes seen on the machine (timings are only comparable on
an otherwise idle machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's soundscape, here and in the Ray workers
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))
os.environ.setdefault("SOUNDSCAPE_PRECISION", "fp32")
RATE = 22050


def recordings(n: int, minutes: float) -> list[str]:
    from soundscape.sample_data import synthetic_recording

    folder = HERE / "_work" / "distributed" / f"{n}x{minutes:g}min"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"rec{i:02d}.wav"
        if not path.exists():
            samples, _ = synthetic_recording(minutes * 60, RATE, seed=i)
            sf.write(path, samples, RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def other_pytest_processes() -> int:
    """pytest processes on this machine other than this one (another engineer's tests)."""
    count = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"pytest" in cmd:
            count += 1
    return count


def timed(model, files, out: Path, **kw) -> dict:
    from soundscape.torch.predict import predict_recordings

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    table = predict_recordings(model, files, output_dir=out, progress=False, return_scores=False, **kw)
    wall = time.perf_counter() - t0
    s = table.attrs["summary"]
    audio = sum(sf.info(f).duration for f in files)
    return {"wall_seconds": round(wall, 2), "n_windows": s["n_windows"], "audio_seconds": round(audio, 1),
            "windows_per_second": round(s["n_windows"] / wall, 1),
            "realtime_factor": round(audio / wall, 1), "model_seconds": s["model_seconds"],
            "threads": s.get("threads"), "num_actors": s.get("num_actors")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()

    import ray
    import torch

    from soundscape.model_file import Detector
    from soundscape.models.compact import compact_cnn, compact_preprocessing

    load_before = os.getloadavg()
    others = other_pytest_processes()
    cpus = os.cpu_count() or 1
    files = recordings(args.files, args.minutes)
    torch.manual_seed(0)
    model = Detector(compact_cnn(2), "compact_cnn", ["absent", "present"], False,
                     compact_preprocessing()).eval()
    work = Path(tempfile.mkdtemp(prefix="soundscape-bench-distributed-"))
    results: dict = {}
    try:
        results["local"] = timed(model, files, work / "local")
        t0 = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=300 * 2**20,
                 _node_ip_address="127.0.0.1", logging_level="warning")
        ray_init = time.perf_counter() - t0
        one = recordings(1, 5 / 60)
        fixed = timed(model, one, work / "fixed", engine="ray", num_actors=1, num_cpus=cpus)
        results["ray_1"] = timed(model, files, work / "ray1", engine="ray", num_actors=1, num_cpus=cpus)
        results["ray_2"] = timed(model, files, work / "ray2", engine="ray", num_actors=2,
                                 num_cpus=max(1, cpus // 2))
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local = results["local"]["wall_seconds"]
    for case in ("ray_1", "ray_2"):
        r = results[case]
        r["overhead_ratio"] = round(r["wall_seconds"] / local, 2)
        r["overhead_ratio_without_fixed"] = round((r["wall_seconds"] - fixed["wall_seconds"]) / local, 2)
    report = {
        "what": f"{args.files} synthetic recordings x {args.minutes:g} min, 22.05 kHz; compact CNN "
                "(random weights), 5-s windows, fp32",
        "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "ray": ray.__version__},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "other_pytest_processes": others,
        "ray_init_seconds": round(ray_init, 2),
        "fixed_overhead_seconds": fixed["wall_seconds"],
        "cases": results,
    }
    (HERE / "distributed.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
