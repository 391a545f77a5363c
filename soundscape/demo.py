"""The quick-start job: `python -m soundscape.demo` (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .audio import Audio
from .spectrogram import Spectrogram


def main() -> int:
    root = Path("sample_data/woodcock_labeled_data")
    labels = pd.read_csv(root / "woodcock_labels.csv")
    first_song = labels[labels["sound_type"] == "song"].iloc[0]["filename"]
    spec = Spectrogram.from_audio(Audio.from_file(root / first_song))
    out = Path("model_train_results") / "woodcock_spectrogram.png"
    out.parent.mkdir(exist_ok=True)
    spec.plot(fname=out, title=f"woodcock peent: {first_song}")
    print(f"saved spectrogram of {first_song} to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
