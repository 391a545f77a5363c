"""Real inputs for the review tests: scores of the sample field recording from a simple model.

The recording is the first 3 minutes of ``sample_data/field_recording/field_recording.flac``
(woodcock peents among wind, insects and other birds). The "model" scores each 2-s window
(every 1 s) by how far a frequency band rises above its own running median (the background
of the last seconds): 2-8 kHz for ``woodcock`` (the peent), 0.8-1.3 kHz for ``intro`` (the
soft intro note), squashed to 0-1. Peents score high, most background low, and loud
distractors in between, so a review finds both right and wrong detections. The tables come
out as from `predict_recordings` and `detections`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
FIELD = REPO / "sample_data" / "field_recording"
BANDS = {"woodcock": (2000.0, 8000.0), "intro": (800.0, 1300.0)}
SECONDS = 180.0


def band_scores(recording: Path, window: float = 2.0, step: float = 1.0) -> pd.DataFrame:
    """Score table, index (file, start_time, end_time), one column per class of `BANDS`."""
    from scipy.ndimage import median_filter

    from soundscape.audio import Audio
    from soundscape.spectrogram import Spectrogram

    audio = Audio.from_file(recording)
    spec = Spectrogram.from_audio(audio, window_samples=512, overlap_samples=0)
    frames_per_s = 1 / (spec.times[1] - spec.times[0])
    excess = spec.spectrogram - median_filter(spec.spectrogram, size=(1, int(4 * frames_per_s)),
                                              mode="nearest")
    duration = len(audio.samples) / audio.sample_rate
    starts = np.arange(0.0, duration - window + 1e-9, step)
    first = np.searchsorted(spec.times, starts)
    last = np.searchsorted(spec.times, starts + window)
    columns = {}
    for name, (lo, hi) in BANDS.items():
        rows = (spec.frequencies >= lo) & (spec.frequencies <= hi)
        level = excess[rows].mean(axis=0)
        peak = np.array([level[a:b].max() for a, b in zip(first, last)])
        columns[name] = (1 / (1 + np.exp(-(peak - 15.0) / 3.0))).astype("float32")
    index = pd.MultiIndex.from_arrays(
        [np.full(len(starts), str(recording)), starts, starts + window],
        names=["file", "start_time", "end_time"])
    return pd.DataFrame(columns, index=index)


def make_inputs(folder: Path) -> dict:
    """`folder/audio/field_recording.flac` (3 min) and its scores.csv and detections.csv.

    Returns the paths and tables: ``audio`` (the audio root), ``recording``, ``scores``,
    ``scores_path``, ``events``, ``events_path``.
    """
    from soundscape.audio import Audio
    from soundscape.detections import LongEventWarning, detections

    audio = folder / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    recording = audio / "field_recording.flac"
    if not recording.exists():
        Audio.from_file(FIELD / "field_recording.flac", duration=SECONDS).save(recording)
    recording = recording.resolve()
    scores = band_scores(recording)
    scores_path = folder / "scores.csv"
    scores.reset_index().to_csv(scores_path, index=False)
    with warnings.catch_warnings():  # the intro band's scores are high for long stretches
        warnings.simplefilter("ignore", LongEventWarning)
        events = detections(scores, threshold={"woodcock": 0.2, "intro": 0.5}, span="shared",
                            band=(2000.0, 8000.0))
    intro = events["annotation"] == "intro"
    events.loc[intro, "low_f"], events.loc[intro, "high_f"] = BANDS["intro"]
    events_path = folder / "detections.csv"
    events.to_csv(events_path, index=False)
    return {"audio": audio, "recording": recording, "scores": scores, "scores_path": scores_path,
            "events": events, "events_path": events_path}
