"""Load the audio of a table and compute its front-end features in batches.

Files are decoded on a few threads (soundfile releases the GIL), fitted (resampled, clipped or
zero-padded) by the front end's `Preprocessing`, and turned into features a batch at a time
with torch. Unreadable files are collected, not raised: the caller decides (training skips a
few and says how many; all or most failing is an error naming the first file).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import AudioFileError, SoundscapeError
from ..frontends import FrontEnd

__all__ = ["LoadedAudio", "load_features", "check_failures"]

log = logging.getLogger("soundscape.workflow")


@dataclass
class LoadedAudio:
    """Features of the rows whose audio could all be read."""

    features: dict[str, torch.Tensor]
    keep: np.ndarray  # bool per input row
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (row, path, reason)

    @property
    def num_rows(self) -> int:
        return int(self.keep.sum())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load(frontend: FrontEnd, path: Path) -> np.ndarray | str:
    try:
        return frontend.preprocessing.load_audio(path).samples
    except (SoundscapeError, OSError, RuntimeError, ValueError) as exc:
        reason = _one_line(exc)
        return reason if str(path) in reason else f"{path}: {reason}"


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def load_features(
    frontends: dict[str, FrontEnd],
    paths: dict[str, list[Path]],
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "audio",
) -> LoadedAudio:
    """Features ``{feature name: (rows kept, *frontend.output_shape)}`` of every audio input.

    Parameters
    ----------
    frontends : dict
        Front end per audio feature name.
    paths : dict
        Audio file per row, per audio feature name (all lists equally long).
    batch_size : int
        Files decoded and featurised together.
    device : str or torch.device
        Where the front end runs; features are returned on the CPU.
    """
    n = len(next(iter(paths.values()))) if paths else 0
    keep = np.ones(n, dtype=bool)
    failures: list[tuple[int, str, str]] = []
    chunks: dict[str, list[torch.Tensor]] = {name: [] for name in frontends}
    bar = tqdm(total=n * len(frontends), desc=f"loading {desc}", unit="file", disable=not progress,
               leave=False)
    with ThreadPoolExecutor(_workers()) as pool:
        for start in range(0, n, batch_size):
            rows = range(start, min(n, start + batch_size))
            loaded = {}
            for name, fe in frontends.items():
                loaded[name] = list(pool.map(lambda p, fe=fe: _load(fe, p), [paths[name][i] for i in rows]))
                bar.update(len(rows))
            ok = np.ones(len(rows), dtype=bool)
            for name, items in loaded.items():
                for j, item in enumerate(items):
                    if isinstance(item, str):
                        ok[j] = False
                        failures.append((rows[j], str(paths[name][rows[j]]), item))
            keep[start : start + len(rows)] = ok
            if not ok.any():
                continue
            for name, fe in frontends.items():
                waves = torch.from_numpy(np.stack([w for w, good in zip(loaded[name], ok) if good]))
                with torch.no_grad():
                    chunks[name].append(fe.to(device)(waves.to(device)).float().cpu())
    bar.close()
    features = {}
    for name, fe in frontends.items():
        features[name] = torch.cat(chunks[name]) if chunks[name] else torch.zeros((0, *fe.output_shape))
    return LoadedAudio(features, keep, sorted(set(failures)))


def check_failures(loaded: LoadedAudio, source: str, strict: bool = False) -> None:
    """Raise AudioFileError when every file (or, with ``strict``, any; otherwise more than half)
    failed; otherwise log how many were skipped."""
    if not loaded.failures:
        return
    total = len(loaded.keep)
    bad = int((~loaded.keep).sum())
    row, _, reason = loaded.failures[0]
    if strict or bad == total or bad > total / 2:
        raise AudioFileError(
            f"{source}: {bad} of {total} audio file(s) could not be read; first (row {row}): {reason}"
        )
    log.warning(
        "skipped %d of %d rows whose audio could not be read; first (row %d): %s",
        bad, total, row, reason,
    )
