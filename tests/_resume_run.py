"""A small seeded training run on real sample clips, for the kill -9 + resume tests.

Imported by tests/test_resume_runs.py, and run as a script in a subprocess that the test
kills with SIGKILL once a checkpoint is written::

    python tests/_resume_run.py SAVE_DIR READY_MARKER

The run uses every source of randomness the loop has: shuffling by a balanced sampler,
waveform trims and spectrogram augmentations (torch's global RNG through
`soundscape.augment.generator`), dropout, mixup (its own generator) and a per-batch
one-cycle LR schedule, with Adam.
"""

from __future__ import annotations

import io
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "sample_data" / "woodcock_labeled_data"
EPOCHS = 4
#: after this epoch's checkpoint the killable run slows down and says it is ready to be killed
KILL_AFTER_EPOCH = 1


def datasets():
    from soundscape.datasets import SingleTargetAudioDataset
    from soundscape.models.compact import compact_preprocessing

    labels = pd.read_csv(CLIPS / "woodcock_labels.csv").iloc[:10]
    frame = pd.DataFrame({"file": [str(CLIPS / f) for f in labels["filename"]],
                          "label": (labels["woodcock"] == "present").astype(int)})
    prep = compact_preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=16,
                                 window_samples=256, frames=24)
    common = dict(filename_column="file", label_column="label", preprocessing=prep)
    train = SingleTargetAudioDataset(frame.iloc[:8].reset_index(drop=True), {0: "absent", 1: "present"},
                                     random_trim_length=1.0, add_noise=True, time_masks=1, **common)
    valid = SingleTargetAudioDataset(frame.iloc[8:].reset_index(drop=True), {0: "absent", 1: "present"},
                                     **common)
    return train, valid


def run(save_dir: Path, resume: bool = False, epochs: int = EPOCHS, lr: float = 3e-3, **kw):
    """Train (or resume) the run in `save_dir`; returns the history."""
    from soundscape.models.compact import compact_cnn
    from soundscape.torch.train import train

    torch.manual_seed(0)
    model = compact_cnn(2, widths=(4, 8), dropout=0.3)
    train_ds, valid_ds = datasets()
    with redirect_stdout(io.StringIO()):
        return train(save_dir, model, train_ds, valid_ds, torch.optim.Adam(model.parameters(), lr=lr),
                     torch.nn.CrossEntropyLoss(), epochs=epochs, batch_size=4, num_workers=0,
                     log_every=1, device="cpu", seed=3, progress_bar=False, precision="fp32",
                     resume_from=save_dir if resume else None, mixup_alpha=0.4,
                     class_balance="sampler", lr_schedule="one_cycle", **kw)


def final_weights(save_dir: Path, epoch: int = EPOCHS - 1) -> dict:
    return torch.load(save_dir / f"epoch-{epoch}.tar", weights_only=False)["model_state_dict"]


def _killable(save_dir: Path, ready: Path) -> None:
    """Train; after epoch KILL_AFTER_EPOCH's checkpoint, slow every clip down and touch `ready`."""
    import soundscape.torch.train as loop
    from soundscape.datasets import AudioDataset

    save = loop._save_checkpoint
    original_getitem = AudioDataset.__getitem__

    def save_then_signal(run, epoch):
        path = save(run, epoch)
        if epoch == KILL_AFTER_EPOCH:
            AudioDataset.__getitem__ = slow_getitem  # the next epoch is under way when killed
            ready.write_text(str(path))
        return path

    def slow_getitem(self, i):
        time.sleep(0.5)
        return original_getitem(self, i)

    loop._save_checkpoint = save_then_signal
    run(save_dir)


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    _killable(Path(sys.argv[1]), Path(sys.argv[2]))
