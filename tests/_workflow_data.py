"""Small real audio data sets for the config-driven workflow tests (written to tmp folders).

Three classes that survive per-file normalisation: gated low tones, gated high tones and
upward chirps; files at mixed sample rates (8, 11.025 and 16 kHz) so resampling is exercised.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

RATES = (8000, 11025, 16000)
LABELS = ("low", "high", "chirp")


def clip(label: str, i: int, sample_rate: int, seconds: float = 0.5) -> np.ndarray:
    """One synthetic clip of class ``label`` (variant ``i``)."""
    rng = np.random.default_rng(1000 + i)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    gate = (np.sin(2 * np.pi * 6 * t + i) > 0).astype(float)
    if label == "low":
        x = 0.5 * np.sin(2 * np.pi * (500 + 7 * i) * t) * gate
    elif label == "high":
        x = 0.5 * np.sin(2 * np.pi * (2600 + 7 * i) * t) * gate
    else:
        x = 0.5 * np.sin(2 * np.pi * (300 + 2500 * t) * t)
    return (x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def make_dataset(folder: Path, n: int = 18, seconds: float = 0.5) -> Path:
    """Write ``n`` clips under ``folder/audio`` and ``folder/data.csv``; return the CSV path.

    Columns: ``audio`` (relative path), ``label`` (low/high/chirp), ``site`` (4 groups),
    ``age`` (number), ``gender`` (m/f), ``present`` (yes/no: tone or chirp), ``tags``
    (``a``, ``b`` or ``a|b``), ``split`` (train/validation/test), ``tag_a`` / ``tag_b`` (0/1).
    """
    folder = Path(folder)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        rate = RATES[(i // 3) % 3]
        name = f"audio/clip{i:02d}.wav"
        sf.write(folder / name, clip(label, i, rate, seconds), rate)
        tags = {"low": "a", "high": "b", "chirp": "a|b"}[label]
        rows.append({
            "audio": name, "label": label, "site": f"site{i % 4}", "age": 20 + (i * 7) % 30,
            "gender": "mf"[i % 2], "present": "no" if label == "chirp" else "yes", "tags": tags,
            "split": ["train", "train", "train", "train", "validation", "test"][i % 6],
            "tag_a": int("a" in tags), "tag_b": int("b" in tags),
        })
    path = folder / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tiny_config(epochs: int = 2, **trainer) -> dict:
    """A fast config: 8 kHz, 0.5-s clips, 20 mel bands, a two-layer 8-filter stacked CNN."""
    return {
        "input_features": [{
            "name": "audio", "type": "audio",
            "encoder": {"type": "stacked_cnn", "num_filters": 8, "num_layers": 2, "output_size": 16},
            "preprocessing": {"sample_rate": 8000, "audio_file_length_limit_in_s": 0.5,
                              "num_filter_bands": 20},
        }],
        "output_features": [{"name": "label", "type": "category"}],
        "trainer": {"epochs": epochs, "batch_size": 8, "learning_rate": 0.003, **trainer},
    }
