"""The quick-start job: ``python -m soundscape.demo`` (what ``make demo`` runs).

Trains a woodcock song detector on the clips in ``sample_data/woodcock_labeled_data``:
calls count as absences, a stratified 80/20 split, a ResNet18 from scratch, a few
epochs. Prints each epoch's metrics and where the model was saved.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from .data_selection import binary_train_valid_split
from .datasets import SingleTargetAudioDataset
from .models import resnet18
from .torch.train import train

LABEL_DICT = {0: "scolopax-minor-absent", 1: "scolopax-minor-present"}


def _labels(data: Path) -> pd.DataFrame:
    csv = data / "woodcock_labels.csv"
    if not csv.exists():
        if data == Path("sample_data/woodcock_labeled_data"):
            from .sample_data import generate

            print(f"{csv} not found: writing the sample data first "
                  "(python -m soundscape.sample_data)")
            generate("sample_data")
        else:
            raise FileNotFoundError(f"{csv} not found; write the sample data with "
                                    "`python -m soundscape.sample_data` or pass --data")
    labels = pd.read_csv(csv)
    labels["filename"] = str(data) + os.path.sep + labels["filename"].astype(str)
    return labels


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m soundscape.demo",
                                     description="Train the woodcock detector on the sample data.")
    parser.add_argument("--data", default="sample_data/woodcock_labeled_data",
                        help="folder with the clips and woodcock_labels.csv (default: %(default)s)")
    parser.add_argument("--out", default="model_train_results",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=8,
                        help="training epochs (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")

    labels = _labels(Path(args.data))
    counts = labels["sound_type"].value_counts()
    # a detector for the song ("peent"): clips with only a call count as absent
    train_df, valid_df = binary_train_valid_split(labels, "song", label_column="sound_type",
                                                  random_state=args.seed)
    kw = dict(label_dict=LABEL_DICT, filename_column="filename", label_column="NumericLabels")
    train_dataset = SingleTargetAudioDataset(train_df, **kw)
    valid_dataset = SingleTargetAudioDataset(valid_df, **kw)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"soundscape demo: training a woodcock song detector on {args.data}")
    print(f"  {len(labels)} clips: {counts.get('song', 0)} songs, {counts.get('call', 0)} calls "
          f"(counted as absent), {counts.get('na', 0)} absences")
    print(f"  {len(train_dataset)} training / {len(valid_dataset)} validation clips; ResNet18 from "
          f"scratch, {args.epochs} epochs, batch size {args.batch_size}, on {device}\n", flush=True)

    torch.manual_seed(args.seed)
    model = resnet18(2, weights=None)
    started = time.perf_counter()
    history = train(
        save_dir=args.out,
        model=model,
        train_dataset=train_dataset,
        valid_dataset=valid_dataset,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        loss_fn=torch.nn.CrossEntropyLoss(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        log_every=args.epochs,
        seed=args.seed,
    )
    table = pd.DataFrame({
        "epoch": history["epoch"],
        "train_loss": history["train_loss"].round(3),
        "valid_loss": history["valid_loss"].round(3),
        "valid_accuracy": history["valid_accuracy"].round(3),
        "valid_f1_present": [round(float(f[1]), 3) for f in history["valid_f1"]],
    })
    best = Path(args.out) / "best.model"
    print(f"\nSummary ({time.perf_counter() - started:.0f} s):")
    print(table.to_string(index=False))
    print(f"\nBest model (epoch {history.attrs['best_epoch']}) saved to {best}")
    print(f"Metrics per epoch: {Path(args.out) / 'metrics.csv'}")
    print(f"Use it: soundscape.model_file.load_model({str(best)!r})")
    return 0


def _cli() -> int:
    """Run `main`, turning data mistakes into a one-line error (exit status 1)."""
    try:
        return main()
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(_cli())
