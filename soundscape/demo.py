"""The quick-start job: ``python -m soundscape.demo`` (what ``make demo`` runs).

The whole job on the sample data, from labelled clips to calls found in a field recording:

1. train a woodcock song detector (the compact CNN on a 1.5-8 kHz mel spectrogram) on the
   29 clips of ``sample_data/woodcock_labeled_data`` (calls count as absences; a stratified
   80/20 split picks the best epoch);
2. choose the decision threshold on held-out clips: 5-fold cross-validation trains the same
   recipe 5 times, so every clip is scored by a model that never trained on it, and the
   threshold with the best F1 on those scores is kept (the field recording plays no part);
3. score every 2-s window (every 0.5 s) of ``sample_data/field_recording`` with
   `predict_recordings`, turn the scores into detections and write them as a Raven table;
4. compare the detections with the recording's truth table (event precision, recall, F1)
   and draw scores over the spectrogram with detections and truth marked.

The last line printed reads ``field recording: precision P recall R F1 F``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .annotations import read_raven, write_raven
from .data_selection import binary_train_valid_split
from .datasets import SingleTargetAudioDataset
from .detections import detections, match_events
from .models.compact import compact_cnn, compact_preprocessing
from .thresholds import SmallDataWarning, choose_threshold
from .torch.predict import predict, predict_recordings
from .torch.train import plot_history, train

LABEL_DICT = {0: "scolopax-minor-absent", 1: "scolopax-minor-present"}
PRESENT = LABEL_DICT[1]
#: the class name of the recording's truth table
TRUTH_NAME = "woodcock"
CLIP_DURATION = 2.0
#: the band the model sees (peents: 2-3.5 kHz and harmonics; leaves out wind and the ~1 kHz note)
BAND_HZ = (1500.0, 8000.0)
#: windows every 0.5 s
CLIP_OVERLAP = 1.5
DEFAULT_DATA = Path("sample_data/woodcock_labeled_data")
DEFAULT_RECORDING = Path("sample_data/field_recording")


def _sample_data(data: Path, recording: Path) -> None:
    """Write the sample data when the default folders are asked for and missing."""
    if data == DEFAULT_DATA and recording == DEFAULT_RECORDING and (
            not (data / "woodcock_labels.csv").exists() or not recording.is_dir()):
        from .sample_data import generate

        print("sample_data/ not found: writing it first (python -m soundscape.sample_data)")
        generate("sample_data")


def _labels(data: Path) -> pd.DataFrame:
    csv = data / "woodcock_labels.csv"
    if not csv.exists():
        raise FileNotFoundError(f"{csv} not found; write the sample data with "
                                "`python -m soundscape.sample_data` or pass --data")
    labels = pd.read_csv(csv)
    labels["filename"] = str(data) + os.path.sep + labels["filename"].astype(str)
    # a detector for the song ("peent"): clips with only a call count as absent
    labels["song"] = (labels["sound_type"] == "song").astype(int)
    return labels


def _recording(folder: Path) -> tuple[Path, Path]:
    """The recording folder's Raven truth table and its audio file."""
    if not folder.is_dir():
        raise FileNotFoundError(f"recording folder {folder} not found; pass --recording")
    tables = sorted(folder.glob("*.selections.txt"))
    if not tables:
        raise FileNotFoundError(f"{folder} holds no Raven selection table (*.selections.txt)")
    return tables[0], folder


def _logging() -> None:
    """Warnings of the library as one ``warning: ...`` line each on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logger = logging.getLogger("soundscape")
    logger.handlers = [handler]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


class _Recipe:
    """The one training recipe of the demo, used for the detector and every fold."""

    def __init__(self, epochs: int, batch_size: int, seed: int, device: str):
        self.epochs, self.batch_size, self.seed, self.device = epochs, batch_size, seed, device
        self.preprocessing = compact_preprocessing(clip_duration=CLIP_DURATION,
                                                   min_frequency=BAND_HZ[0], max_frequency=BAND_HZ[1])

    def dataset(self, frame: pd.DataFrame) -> SingleTargetAudioDataset:
        return SingleTargetAudioDataset(frame, LABEL_DICT, filename_column="filename",
                                        label_column="song", preprocessing=self.preprocessing)

    def fit(self, save_dir: Path, train_df: pd.DataFrame, valid_df: pd.DataFrame, seed: int,
            **kwargs) -> tuple[torch.nn.Module, pd.DataFrame]:
        torch.manual_seed(seed)
        model = compact_cnn(2)
        history = train(save_dir, model, self.dataset(train_df), self.dataset(valid_df),
                        optimizer=torch.optim.AdamW(model.parameters(), lr=3e-3),
                        loss_fn=torch.nn.CrossEntropyLoss(), epochs=self.epochs,
                        batch_size=self.batch_size, num_workers=0, log_every=self.epochs,
                        seed=seed, device=self.device, print_logging=False, progress_bar=False,
                        **kwargs)
        return model, history


def _cross_validated_scores(recipe: _Recipe, labels: pd.DataFrame, folds: int, out: Path
                            ) -> pd.DataFrame:
    """Scores of every clip from the fold model that did not train on it."""
    from sklearn.model_selection import StratifiedKFold

    scores = []
    split = StratifiedKFold(folds, shuffle=True, random_state=recipe.seed)
    for k, (train_idx, test_idx) in enumerate(split.split(labels, labels["song"])):
        train_df, test_df = labels.iloc[train_idx], labels.iloc[test_idx]
        model, _ = recipe.fit(out / f"fold_{k + 1}", train_df, test_df, recipe.seed + 1 + k,
                              small_data_warning=False)
        fold = predict(model, recipe.dataset(test_df))
        found = fold[PRESENT].to_numpy() >= 0.5
        truth = test_df["song"].to_numpy() == 1
        print(f"  fold {k + 1}: trained on {len(train_df)} clips, scored the other {len(test_df)}: "
              f"{int((found == truth).sum())} of {len(test_df)} right at 0.5", flush=True)
        scores.append(fold)
    return pd.concat(scores).loc[labels["filename"]]


def _busiest_minute(truth: pd.DataFrame, events: pd.DataFrame, duration: float) -> float:
    """Start of the 60-s stretch (on a 30-s grid) with the most annotated and detected calls."""
    starts = np.arange(0.0, max(duration - 60.0, 0.0) + 1e-9, 30.0)
    times = np.r_[truth["start_time"].to_numpy(float), events["start_time"].to_numpy(float)]
    counts = [((times >= s) & (times < s + 60.0)).sum() for s in starts]
    return float(starts[int(np.argmax(counts))]) if len(starts) else 0.0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m soundscape.demo",
        description="Train the woodcock detector on the sample clips, choose its threshold on "
                    "held-out clips, detect peents in the field recording and score them.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder with the clips and woodcock_labels.csv (default: %(default)s)")
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING,
                        help="folder with the recording(s) and their Raven truth table "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("model_train_results"),
                        help="output folder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds for the threshold (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="clips per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be at least 1")
    if args.folds < 2:
        parser.error("--folds must be at least 2")
    started, cpu_started = time.perf_counter(), time.process_time()
    _logging()
    _sample_data(args.data, args.recording)
    labels = _labels(args.data)
    truth_table, recording = _recording(args.recording)
    counts = labels["sound_type"].value_counts()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    recipe = _Recipe(args.epochs, args.batch_size, args.seed, device)
    out = args.out

    print("soundscape demo: find woodcock peents in a field recording, starting from labelled clips\n")
    train_df, valid_df = binary_train_valid_split(labels, 1, label_column="song",
                                                  random_state=args.seed)
    print(f"1. Train the detector on {args.data}")
    print(f"  {len(labels)} clips: {counts.get('song', 0)} songs, {counts.get('call', 0)} calls "
          f"(counted as absent), {counts.get('na', 0)} absences")
    print(f"  {len(train_df)} training / {len(valid_df)} validation clips; compact CNN on a "
          f"{BAND_HZ[0] / 1000:g}-{BAND_HZ[1] / 1000:g} kHz mel spectrogram of {CLIP_DURATION:g}-s "
          f"clips, {args.epochs} epochs, batch size {args.batch_size}, on {device}", flush=True)
    model, history = recipe.fit(out, train_df, valid_df, args.seed, restore_best=True)
    table = pd.DataFrame({
        "epoch": history["epoch"],
        "train_loss": history["train_loss"].round(3),
        "valid_loss": history["valid_loss"].round(3),
        "valid_accuracy": history["valid_accuracy"].round(3),
        "valid_f1_present": [round(float(f[1]), 3) for f in history["valid_f1"]],
    })
    print(table.to_string(index=False))
    best = out / "best.model"
    curves = out / "learning_curves.png"
    fig, _ = plot_history(history, ["train_loss", "valid_loss"], fname=curves,
                          title="woodcock detector: loss per epoch")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"  best model (epoch {history.attrs['best_epoch']}; ties go to the later epoch when its "
          f"validation loss is no higher) saved to {best}")
    print(f"  learning curves: {curves}\n")

    print(f"2. Choose the threshold on held-out clips ({args.folds}-fold cross-validation: every "
          "clip is scored by a model that never trained on it; the field recording plays no part)",
          flush=True)
    oof = _cross_validated_scores(recipe, labels, args.folds, out / "cross_validation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallDataWarning)  # said below, with the counts
        choice = choose_threshold(oof, labels["song"].to_numpy(), classes=[PRESENT])
    c = choice.loc[PRESENT]
    from .visualize import plot_precision_recall

    pr = out / "precision_recall.png"
    plot_precision_recall(oof, labels["song"].to_numpy(), threshold=choice, fname=pr,
                          title=f"out-of-fold scores of the {len(labels)} labelled clips")
    print(f"  threshold {c['threshold']:.3f} (best F1): on these {int(c['n_clips'])} held-out clips "
          f"it gave precision {c['precision']:.2f}, recall {c['recall']:.2f} "
          f"({int(c['n_positive'])} songs); with so few clips expect less on new recordings")
    print(f"  precision-recall curve: {pr}\n")

    print(f"3. Detect in {recording}", flush=True)
    scores = predict_recordings(best, recording, clip_overlap=CLIP_OVERLAP,
                                output_dir=out / "scores", overwrite=True, progress=False)
    summary = scores.attrs["summary"]
    events = detections(scores, threshold=choice, span="shared")
    tables = write_raven(events, out / "detections")
    files = scores.index.get_level_values("file").unique()
    print(f"  {summary['n_windows']} windows of {CLIP_DURATION:g} s every "
          f"{CLIP_DURATION - CLIP_OVERLAP:g} s in {len(files)} recording(s), "
          f"{summary['seconds']:.0f} s")
    written = sorted((out / "scores" / "scores").glob("*.csv"))
    print(f"  score table: {', '.join(str(p) for p in written) or out / 'scores'}")
    print(f"  {len(events)} detections, Raven table: {', '.join(str(t) for t in tables) or '-'}")

    truth = read_raven(truth_table, audio_files=recording)
    result = match_events(events, truth, class_map={PRESENT: TRUTH_NAME})
    file = str(files[0])
    part = scores.loc[file]
    duration = float(part.index.get_level_values("end_time").max())
    t0 = _busiest_minute(truth[truth["file"] == file], events[events["file"] == file], duration)
    picture = out / "detections.png"
    from .visualize import plot_detections

    plot_detections(scores, file=file, start_time=t0, end_time=min(t0 + 60.0, duration),
                    threshold=choice, events=events, truth=truth, fname=picture,
                    title=f"{Path(file).name}: woodcock score, detections (red) and annotated "
                          "peents (orange)")
    print(f"  picture of scores over the spectrogram ({t0:g}-{min(t0 + 60.0, duration):g} s): "
          f"{picture}\n")

    print(f"4. Compare with the truth table {truth_table}")
    print(f"  {result['n_detected']} detections, {result['n_truth']} annotated peents: "
          f"{result['tp']} found, {result['fp']} false detections, {result['fn']} missed")
    print(f"  (took {time.perf_counter() - started:.0f} s, {time.process_time() - cpu_started:.0f} "
          "CPU s in this process)")
    print(f"field recording: precision {result['precision']:.3f} recall {result['recall']:.3f} "
          f"F1 {result['f1']:.3f}")
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
