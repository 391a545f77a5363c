"""Runtime choices that depend on the machine: device, CPU count, DataLoader settings.

One place decides where models run (`resolve_device`), how many CPUs a process may use
(`cpu_count`) and which DataLoader settings keep a model busy (`default_loader_settings`,
`worker_init`); training, prediction and the CLI all ask here.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import ParameterError

__all__ = ["resolve_device", "cpu_count", "default_loader_settings", "worker_init", "resolve_precision",
           "Precision", "native_bf16_cpu", "PRECISIONS", "thread_candidates", "ThreadTuner",
           "torch_threads", "machine_info"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` / ``"auto"``: CUDA when available, else CPU; otherwise `device` itself.

    Raises ParameterError naming the device when it does not exist on this machine.
    """
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(f"device {device!r} is not a torch device name (use auto, cpu, cuda, "
                             f"cuda:0, mps)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device {device!r}: no CUDA GPU is available on this machine "
                             "(use --device cpu or auto)")
    return dev


def cpu_count() -> int:
    """CPUs this process may use (respects affinity masks and container limits)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:  # cgroup v2 CPU quota, as set by docker --cpus
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def worker_init(worker_id: int) -> None:
    """`worker_init_fn` for DataLoaders: one torch thread per worker, distinct numpy/random seeds.

    Module-level, so it pickles for the spawn start method (notebooks on macOS/Windows).
    """
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32  # torch gives each worker its own seed
    np.random.seed(seed)
    random.seed(seed)


def default_loader_settings(device: str | torch.device | None = None, n_cpus: int | None = None) -> dict:
    """DataLoader keyword arguments that keep the model busy on this machine.

    Parameters
    ----------
    device : optional
        Where the model runs (default: CUDA when available, else CPU).
    n_cpus : int, optional
        CPUs to plan for (default: `cpu_count()`).

    Returns
    -------
    dict
        ``batch_size``, ``num_workers``, ``persistent_workers``, ``pin_memory``,
        ``prefetch_factor`` (only with workers), ``worker_init_fn`` and
        ``multiprocessing_context``; pass them on as ``DataLoader(dataset, **settings)``.

    Notes
    -----
    On a GPU the CPUs only prepare data, so all but one load clips; on a CPU the model
    needs the cores too, so half of them (at least one) load clips while the main
    process trains. Workers are kept between epochs (a worker start costs seconds under
    spawn). The start method is fork where it is safe (Linux, CUDA not yet started)
    and spawn elsewhere; both work in scripts and notebooks with soundscape's datasets.
    """
    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    n = cpu_count() if n_cpus is None else int(n_cpus)
    if n < 1:
        raise ParameterError(f"n_cpus must be >= 1, got {n_cpus!r}")
    gpu = device.type != "cpu"
    workers = min(8, n - 1) if gpu else min(4, n // 2)
    workers = max(1, workers)
    settings = {
        "batch_size": 64 if gpu else 32,
        "num_workers": workers,
        "persistent_workers": True,
        "pin_memory": device.type == "cuda",
        "prefetch_factor": 4 if gpu else 2,
        "worker_init_fn": worker_init,
        "multiprocessing_context": _start_method(),
    }
    return settings


def _start_method() -> str:
    """fork on Linux unless CUDA is initialised in this process (children cannot use it), else spawn."""
    if sys.platform.startswith("linux") and not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return "fork"
    return "spawn"



# --------------------------------------------------------------------------- precision policy
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: what training accepts (int8 is a prediction-only format: a calibrated, quantized copy)
TRAIN_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16_cpu() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512_BF16 or AMX), so bf16 is fast."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if (probe is not None and probe()) or (amx is not None and amx()):
            return True
    except RuntimeError:
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


class Precision:
    """How a model runs: number format (autocast) and memory format.

    Build it with `resolve_precision`. ``with precision.autocast(): model(precision.input(x))``.
    """

    def __init__(self, name: str, device: torch.device, channels_last: bool):
        self.name, self.device, self.channels_last = name, device, channels_last

    def autocast(self):
        """The autocast context of this precision (a no-op for fp32 and int8)."""
        if self.name in ("fp32", "int8"):
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.name])

    def input(self, x):
        """`x` in the memory format the model runs fastest with (images only)."""
        if isinstance(x, dict):
            return {k: self.input(v) for k, v in x.items()}
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def prepare(self, network: torch.nn.Module) -> torch.nn.Module:
        """Put the network's weights in the memory format of this precision (in place)."""
        if self.channels_last:
            network.to(memory_format=torch.channels_last)
        return network

    def to_dict(self) -> dict:
        return {"precision": self.name, "channels_last": self.channels_last, "device": str(self.device)}

    def __repr__(self) -> str:
        return f"<Precision {self.name} on {self.device}{' channels_last' if self.channels_last else ''}>"


_LOGGED: set = set()


def resolve_precision(precision: str = "auto", device: str | torch.device | None = None) -> Precision:
    """The precision to run at on `device`.

    ``"auto"``: bf16 autocast + channels-last on CPUs with native bf16 (AVX512_BF16 / AMX),
    bf16 (or fp16 where bf16 is missing) on CUDA, fp32 elsewhere (where bf16 would be
    emulated and slow). ``"fp32"``, ``"bf16"``, ``"fp16"`` force a format. ``"int8"`` (CPU
    prediction only, never chosen by "auto") runs a quantized copy of the network that the
    predictor calibrates on clips the user gives (see `soundscape.torch.runners`). The
    environment variable ``SOUNDSCAPE_PRECISION`` (e.g. ``fp32``) replaces "auto"
    everywhere (int8 excepted: it needs calibration clips). The choice is logged once per
    process and setting.
    """
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    name = precision
    forced = os.environ.get("SOUNDSCAPE_PRECISION", "auto")
    if precision == "auto" and forced != "auto":
        if forced not in TRAIN_PRECISIONS:
            raise ParameterError(f"SOUNDSCAPE_PRECISION must be one of {TRAIN_PRECISIONS}, got {forced!r}")
        name = precision = forced
    if precision == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and native_bf16_cpu():
            name = "bf16"
        else:
            name = "fp32"
    if name == "fp16" and device.type == "cpu":
        raise ParameterError("precision 'fp16' needs a GPU; on a CPU use 'bf16' or 'fp32'")
    if name == "int8" and device.type != "cpu":
        raise ParameterError(f"precision 'int8' runs on the CPU only (x86 quantized kernels); on "
                             f"{device} use 'bf16', 'fp16' or 'fp32'")
    # int8: the quantized kernels took contiguous inputs fastest here (channels-last ~25 % slower)
    result = Precision(name, device, channels_last=device.type in ("cpu", "cuda") and name != "int8")
    key = (precision, str(device))
    if key not in _LOGGED:
        _LOGGED.add(key)
        import logging

        logging.getLogger("soundscape.runtime").info("precision %r on %s: %s", precision, device, result)
    return result


# --------------------------------------------------------------------------- threads
def torch_threads(n: int):
    """Context manager: `n` torch intra-op threads in this thread, restored on exit.

    With torch's OpenMP backend the setting belongs to the calling thread, so a producer
    thread can use one thread while the model uses the others.
    """
    import contextlib

    @contextlib.contextmanager
    def _ctx():
        before = torch.get_num_threads()
        if n != before:
            torch.set_num_threads(int(n))
        try:
            yield
        finally:
            if n != before:
                torch.set_num_threads(before)

    return _ctx()


def thread_candidates(n_cpus: int | None = None) -> list[int]:
    """Intra-op thread counts worth trying for a model on this machine (most first).

    All CPUs, one fewer (a core left to the threads preparing inputs, and to other
    processes on a shared machine), and half of them.
    """
    n = cpu_count() if n_cpus is None else int(n_cpus)
    return sorted({n, max(1, n - 1), max(1, n // 2)}, reverse=True)


class ThreadTuner:
    """Chooses the model's intra-op thread count from the throughput measured while it runs.

    Which count is fastest depends on the machine and on what else runs on it: on a quiet
    2-core machine a CNN is fastest on both cores, but when other processes keep the cores
    busy (or the producer of its inputs does) one thread can be twice as fast, because every
    operator waits for its slowest thread. So the predictor tries each candidate for a few
    batches (`trial`), keeps the fastest for `period` batches, and measures again (less
    often, up to every 8 periods, while the same count keeps winning).

    ``threads()`` is the count for the next batch; ``record(n, seconds)`` reports a batch
    of `n` inputs that took `seconds` (wall time since the previous one, waiting included).
    The first batch is not counted (warm-up, compilation). A trial costs little on long
    runs, but a slow candidate's batch can take twice as long, so the first candidate is the
    previous winner in this process, or (first run) all CPUs on a quiet machine and the
    fewest on one whose load average already exceeds its CPUs.
    """

    #: the count that won last in this process: the next run starts with it
    last_choice: dict = {}

    def __init__(self, candidates: list[int], trial: int = 1, period: int = 40):
        candidates = list(dict.fromkeys(int(c) for c in candidates))
        key = tuple(sorted(candidates))
        first = self.last_choice.get(key)
        if first is None and len(candidates) > 1:
            try:  # a machine already busier than its CPUs: fewer threads first
                busy = os.getloadavg()[0] >= max(candidates)
            except OSError:
                busy = False
            first = min(candidates) if busy else max(candidates)
        if first in candidates:
            candidates.remove(first)
            candidates.insert(0, first)
        self._key = key
        self.candidates = candidates
        self.trial, self.period = int(trial), int(period)
        self.rates: dict[int, float] = {}
        self.batches: dict[int, int] = {}
        self._warm = False
        self._start_trials()

    def _start_trials(self) -> None:
        self._queue = list(self.candidates[1:])
        self._current, self._left, self._trying = self.candidates[0], self.trial, len(self.candidates) > 1
        self._acc = [0, 0.0]

    def threads(self) -> int:
        return self._current

    def record(self, n: int, seconds: float) -> None:
        if not self._warm:  # warm-up batch (first call, compilation)
            self._warm = True
            return
        self.batches[self._current] = self.batches.get(self._current, 0) + 1
        if len(self.candidates) == 1:
            return
        self._acc[0] += int(n)
        self._acc[1] += float(seconds)
        self._left -= 1
        if self._left > 0:
            return
        if self._acc[1] > 0:
            self.rates[self._current] = self._acc[0] / self._acc[1]
        self._acc = [0, 0.0]
        if self._trying and self._queue:  # next candidate
            self._current, self._left = self._queue.pop(0), self.trial
        elif self._trying:  # trials done: keep the fastest for a while
            best = max(self.rates, key=self.rates.get)
            # the same choice again: measure less often (up to 8 periods); a change: as often as at first
            self._span = min(8, getattr(self, "_span", 1) * 2) if best == getattr(self, "_best", None) else 1
            self._best = self._current = best
            self.last_choice[self._key] = best
            self._left, self._trying = self.period * self._span, False
        else:  # the period is over: measure again
            self._start_trials()

    @property
    def most_used(self) -> int:
        return max(self.batches, key=self.batches.get) if self.batches else self._current

    def summary(self) -> dict:
        return {"threads": self.most_used,
                "threads_clips_per_s": {str(k): round(v, 2) for k, v in sorted(self.rates.items())}}


def machine_info() -> dict:
    """CPU model, count, instruction-set flags that matter for speed, and versions (for benchmarks)."""
    import platform

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus_usable": cpu_count(),
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": native_bf16_cpu()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and "cpu_model" not in info:
            info["cpu_model"] = value.strip()
        if key.strip() == "flags" and "cpu_flags" not in info:
            wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_bf16",
                      "amx_int8", "amx_tile", "avx_vnni", "fma")
            have = set(value.split())
            info["cpu_flags"] = [f for f in wanted if f in have]
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    info["amx"] = bool(amx()) if amx is not None else None
    info["cuda_build"] = torch.version.cuda
    return info
