"""Small helpers used across the package: shell commands, sigmoid, atomic writes, fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

# the package's one atomic-write implementation lives in soundscape.io (re-exported here)
from .io import atomic_path, atomic_write  # noqa: F401


class CommandError(subprocess.CalledProcessError):
    """A command run with ``run_command(..., check=True)`` exited with a non-zero status."""

    def __str__(self) -> str:
        tail = (self.stderr or "").strip()[-2000:]
        base = f"command {self.cmd!r} exited with status {self.returncode}"
        return f"{base}; stderr:\n{tail}" if tail else f"{base} (no stderr output)"


def run_command(cmd: str | Sequence[str], check: bool = False) -> tuple[str, str]:
    """Run a command and return its output.

    Parameters
    ----------
    cmd : str or sequence of str
        A string is run through the shell (pipes, ``&&``, globbing work); a list is run directly.
    check : bool
        If True, a non-zero exit status raises :class:`CommandError` (a
        ``subprocess.CalledProcessError``) whose message holds the command and its stderr.
        If False (the classic behaviour) the outputs are returned whatever the exit status.

    Returns
    -------
    (stdout, stderr) : tuple of str
        Decoded as UTF-8 (undecodable bytes replaced).
    """
    proc = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True)
    out = proc.stdout.decode("utf-8", errors="replace")
    err = proc.stderr.decode("utf-8", errors="replace")
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, cmd, output=out, stderr=err)
    return out, err


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")  # never import torch just to check
    return torch is not None and isinstance(x, torch.Tensor)


def sigmoid(x: Any) -> Any:
    """Numerically stable logistic function ``1 / (1 + exp(-x))``.

    Works on scalars, numpy arrays, pandas objects (index kept) and torch tensors (stays a
    tensor on its device); large magnitudes give 0 or 1 without overflow warnings.
    """
    if _is_tensor(x):
        return x.sigmoid() if x.is_floating_point() else x.float().sigmoid()
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return expit(x)
    result = expit(np.asarray(x, dtype=float))
    return float(result) if result.ndim == 0 else result


def binarize(x: Any, threshold: float) -> Any:
    """Return 1 where ``x > threshold`` and 0 elsewhere.

    Keeps the container: DataFrame/Series (index and columns kept), torch tensor (int64),
    anything else becomes an integer numpy array.
    """
    if _is_tensor(x):
        return (x > threshold).long()
    if isinstance(x, (pd.DataFrame, pd.Series)):
        return (x > threshold).astype(int)
    return (np.asarray(x) > threshold).astype(int)


def file_fingerprint(path: str | os.PathLike) -> tuple[str, int, int]:
    """Return ``(resolved path, size in bytes, mtime in ns)``: a cheap cache key for a file.

    Raises FileNotFoundError naming the file when it does not exist.
    """
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {p}") from None
    return str(p.resolve()), int(st.st_size), int(st.st_mtime_ns)
