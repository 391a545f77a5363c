"""Run folders and the JSON / CSV files written into them.

``soundscape train`` writes ``<output_directory>/<experiment_name>_run`` (then ``_run_1``,
``_run_2``, ... when that exists)::

    experiment_run/
        model/model.pt                    the model file (load with soundscape.model_file.load_model)
        model/training_set_metadata.json  class vocabularies, normalisation statistics
        model/model_hyperparameters.json  the full config, defaults filled in
        training_statistics.json          per-epoch metrics per split
        test_statistics.json              the test split, evaluated with the best weights
        metrics.csv                       one row per epoch
        errors.csv                        rows whose audio could not be read, clips skipped
        description.json                  config, versions, data set sizes, timings, status
        INCOMPLETE                        only while (or if) the run has not finished
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParameterError
from .. import io
from ..metrics import to_json

__all__ = ["run_directory", "write_json", "read_json", "versions"]


def run_directory(output_directory: str | os.PathLike, experiment_name: str = "experiment") -> Path:
    """Create and return the next free ``<output_directory>/<experiment_name>_run[_N]``."""
    root = Path(output_directory)
    root.mkdir(parents=True, exist_ok=True)
    base = f"{experiment_name}_run"
    n = 0
    while True:
        candidate = root / (base if n == 0 else f"{base}_{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically (numpy values converted, NaN written as null)."""
    return io.write_json(to_json(obj), path)


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file; FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def versions() -> dict:
    """Versions of soundscape, Python and the main libraries."""
    import pandas
    import torch

    from .. import __version__

    return {
        "soundscape": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "platform": platform.platform(),
    }
