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

__all__ = ["resolve_device", "cpu_count", "default_loader_settings", "worker_init"]


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

