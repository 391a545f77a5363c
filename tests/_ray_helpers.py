"""Helpers of tests/test_ray_engine.py, importable by the Ray workers (``tests/`` is on
their PYTHONPATH) and run as the killable driver of the driver-restart test::

    python tests/_ray_helpers.py ADDRESS MODEL_FILE OUTPUT_DIR FILE...

which scores FILEs on the Ray cluster at ADDRESS with one actor (the model file holds a
`SlowNet`, loaded with trusted=True); the test kills it with SIGKILL part-way.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch


class SlowNet(torch.nn.Module):
    """A network that sleeps `delay` seconds per batch and touches ``pid_dir/<pid>`` first
    (so a test can find and kill the worker process running it)."""

    def __init__(self, inner: torch.nn.Module, delay: float, pid_dir: str):
        super().__init__()
        self.inner = inner
        self.delay = float(delay)
        self.pid_dir = str(pid_dir)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        Path(self.pid_dir, str(os.getpid())).touch()
        time.sleep(self.delay)
        return self.inner(x)


def main(argv: list[str]) -> None:
    address, model_file, output_dir, *files = argv
    from soundscape import load_model, predict_recordings

    model = load_model(model_file, trusted=True)
    predict_recordings(model, files, engine="ray", address=address, num_actors=1, trusted=True,
                       output_dir=output_dir, progress=False, batch_size=8, return_scores=False)


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's soundscape
    main(sys.argv[1:])
