"""Clip loading for datasets and prediction: decode + resample + fit, one place.

`ClipLoader` is the single entry point datasets use to get a clip's fitted waveform,
so caching (see the speed work) can live here without datasets knowing about it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .preprocessing import Preprocessing


class ClipLoader:
    """Loads clips as fitted float32 waveforms for one `Preprocessing`.

    Parameters
    ----------
    preprocessing : Preprocessing
    """

    def __init__(self, preprocessing: Preprocessing):
        self.preprocessing = preprocessing

    def load(self, path: str | Path, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
        """Fitted waveform (samples at `preprocessing.sample_rate`) of a clip of `path`."""
        return self.preprocessing.load_audio(path, offset=offset, duration=duration).samples
