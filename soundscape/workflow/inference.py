"""`evaluate` and `predict` for config-driven models (tables, or folders of long recordings)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..audio import Audio, audio_info, clip_times
from ..errors import AudioFileError, ParameterError, SoundscapeError
from ..model_file import Detector
from .batches import prepare, run
from .data import check_columns, read_table, required_columns, split_table
from .evaluation import compute_statistics, predictions_frame, write_predictions
from .model import load_detector
from .runs import write_json
from .training import resolve_device

__all__ = ["evaluate", "predict", "predict_folder", "AUDIO_SUFFIXES"]

log = logging.getLogger("soundscape.workflow")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au")
_SPLIT_NAMES = {"training": "training", "train": "training", "validation": "validation",
                "valid": "validation", "val": "validation", "test": "test", "full": "full"}


def _detector(model) -> Detector:
    return model if isinstance(model, Detector) else load_detector(model)


def _split_name(split: str) -> str:
    if split not in _SPLIT_NAMES:
        raise ParameterError(f"split must be one of training, validation, test, full; got {split!r}")
    return _SPLIT_NAMES[split]


def evaluate(
    model,
    dataset,
    split: str = "full",
    output_directory: str | os.PathLike | None = None,
    collect_predictions: bool = True,
    base_dir=None,
    data_root=None,
    device=None,
    batch_size: int | None = None,
    progress: bool = True,
) -> tuple[dict, pd.DataFrame | None, Path | None]:
    """Evaluate a model on a labelled table.

    Parameters
    ----------
    model : path or Detector
        A model folder (``results/experiment_run/model``), model file, or loaded model.
    dataset : path, URI or DataFrame
    split : {"full", "training", "validation", "test"}
        ``full`` evaluates every row; the others re-create the training split (same config,
        same seed, same table) and evaluate that part.
    output_directory : path, optional
        Writes ``test_statistics.json`` and, with ``collect_predictions``,
        ``predictions.parquet`` / ``predictions.csv`` (predictions plus the true label).

    Returns
    -------
    (statistics, predictions or None, output directory or None)
    """
    detector = _detector(model)
    network = detector.network
    conf, meta = network.config, network.metadata
    split = _split_name(split)
    table = read_table(dataset, base_dir=base_dir, data_root=data_root)
    columns = required_columns(conf)
    if split == "full" and conf["split"]["type"] in ("fixed", "group"):
        columns = columns[:-1]
    check_columns(table, columns)
    frame = table.frame
    if split != "full":
        frame = split_table(table, conf["split"], conf["trainer"]["seed"])[split]
        if frame.empty:
            raise ParameterError(f"{table.source}: the {split} split is empty")
    device = resolve_device(device)
    data = prepare(network.to(device), table, frame, device=device, progress=progress,
                   desc=f"{split} audio")
    batch = batch_size or conf["trainer"]["batch_size"]
    loss, probs = run(network, data, batch, device)
    network.cpu()
    out_name = conf["output_features"][0]["name"]
    stats = {out_name: compute_statistics(meta[out_name], data.targets.numpy(), probs, loss),
             "combined": {"loss": loss}}
    preds = None
    if collect_predictions:
        preds = _with_inputs(data.frame, conf, predictions_frame(meta[out_name], out_name, probs))
        truth = conf["output_features"][0].get("columns") or [out_name]
        for col in truth:
            if col in data.frame.columns:
                preds[col] = data.frame[col].to_numpy()
    out_dir = None
    if output_directory is not None:
        out_dir = Path(output_directory)
        write_json(stats, out_dir / "test_statistics.json")
        if preds is not None:
            write_predictions(preds, out_dir)
    return stats, preds, out_dir


def _with_inputs(frame: pd.DataFrame, conf: dict, preds: pd.DataFrame) -> pd.DataFrame:
    audio = [f["name"] for f in conf["input_features"] if f["type"] == "audio"]
    left = frame[audio].reset_index(drop=True)
    return pd.concat([left, preds.reset_index(drop=True)], axis=1)


def predict(
    model,
    dataset,
    output_directory: str | os.PathLike | None = None,
    base_dir=None,
    data_root=None,
    device=None,
    batch_size: int | None = None,
    clip_overlap: float = 0.0,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path | None]:
    """Predict a table of audio files, or every recording in a folder.

    A table needs the model's input columns (no output column). A folder is searched
    recursively for audio files; each recording is cut into windows of the model's clip length
    (``clip_overlap`` seconds overlapping; the last window zero-padded) and every window is
    predicted (see :func:`predict_folder`).

    Returns
    -------
    (predictions, output directory or None)
        With ``output_directory``, ``predictions.parquet`` and ``predictions.csv`` are written.
    """
    detector = _detector(model)
    network = detector.network
    conf, meta = network.config, network.metadata
    out_name = conf["output_features"][0]["name"]
    device = resolve_device(device)
    batch = batch_size or conf["trainer"]["batch_size"]
    if not isinstance(dataset, pd.DataFrame) and Path(str(dataset)).is_dir():
        preds = predict_folder(detector, dataset, clip_overlap, device, batch, progress)
    else:
        table = read_table(dataset, base_dir=base_dir, data_root=data_root)
        check_columns(table, required_columns(conf, with_outputs=False)[: len(conf["input_features"])],
                      "the model's config")
        data = prepare(network.to(device), table, table.frame, with_targets=False, device=device,
                       progress=progress, desc="audio")
        _, probs = run(network, data, batch, device)
        network.cpu()
        preds = _with_inputs(data.frame, conf, predictions_frame(meta[out_name], out_name, probs))
    out_dir = None
    if output_directory is not None:
        out_dir = Path(output_directory)
        write_predictions(preds, out_dir)
    return preds, out_dir


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _windows(path: Path, fe, overlap: float, chunk: int = 64):
    """Yield (starts, ends, waveforms) chunks of fitted windows tiling one recording."""
    info = audio_info(path)
    duration = info.frames / info.samplerate
    clip = fe.settings.audio_file_length_limit_in_s
    starts, ends = clip_times(duration, clip, overlap, final_clip="extend")
    n = fe.num_samples
    for i in range(0, len(starts), chunk):
        s, e = starts[i : i + chunk], ends[i : i + chunk]
        span = min(float(e[-1]), duration) - float(s[0])
        audio = Audio.from_file(path, sample_rate=fe.sample_rate, offset=float(s[0]), duration=span)
        x = audio.samples
        need = int(round((s[-1] - s[0]) * fe.sample_rate)) + n
        if len(x) < need:
            x = np.pad(x, (0, need - len(x)))
        offsets = np.round((s - s[0]) * fe.sample_rate).astype(int)
        yield s, e, torch.from_numpy(np.stack([x[o : o + n] for o in offsets]))


def predict_folder(
    model, folder, clip_overlap: float = 0.0, device=None, batch_size: int = 32, progress: bool = True
) -> pd.DataFrame:
    """Predict every window of every recording under ``folder``.

    Windows are ``audio_file_length_limit_in_s`` long; the last one is zero-padded. A model
    with ``spectrogram_image`` features goes through
    :func:`soundscape.torch.predict.predict_recordings` (streamed, images cut from one
    spectrogram per chunk); the other front ends take waveforms, which that image pipeline
    does not make, so their recordings are windowed here with the model's own front end.
    Only models whose sole input is one audio feature can do this. Returns ``file,
    start_time, end_time`` and the prediction columns.
    """
    detector = _detector(model)
    network = detector.network
    conf, meta = network.config, network.metadata
    if len(conf["input_features"]) != 1:
        raise ParameterError(
            "predicting a folder of recordings needs a model whose only input is one audio "
            f"feature; this model has {[f['name'] for f in conf['input_features']]}; give a table "
            "with those columns instead"
        )
    folder = Path(folder)
    files = _audio_files(folder)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in folder {folder}")
    device = resolve_device(device)
    fe = network.frontends[0]
    out = conf["output_features"][0]
    name = out["name"]
    if fe.type == "spectrogram_image":
        return _through_predict_recordings(detector, folder, clip_overlap, device, batch_size, progress)
    network.to(device).eval()
    frames, failed = [], []
    for path in tqdm(files, desc="recordings", unit="file", disable=not progress):
        try:
            for starts, ends, waves in _windows(path, fe, clip_overlap):
                probs = []
                with torch.no_grad():
                    for j in range(0, len(waves), batch_size):
                        logits = network(waves[j : j + batch_size].to(device))
                        p = logits.softmax(1) if out["type"] == "category" else logits.sigmoid()
                        probs.append((p[:, 0] if out["type"] == "binary" else p).cpu())
                part = predictions_frame(meta[name], name, torch.cat(probs).numpy())
                part.insert(0, "end_time", ends)
                part.insert(0, "start_time", starts)
                part.insert(0, "file", str(path))
                frames.append(part)
        except (SoundscapeError, OSError, RuntimeError, ValueError) as exc:
            failed.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    network.cpu()
    if failed:
        if len(failed) == len(files):
            raise AudioFileError(f"none of the {len(files)} recordings could be read; first: {failed[0]}")
        log.warning("skipped %d of %d recordings that could not be read; first: %s",
                    len(failed), len(files), failed[0])
    return pd.concat(frames, ignore_index=True)


SPLIT_CHOICES = tuple(_SPLIT_NAMES)


def _through_predict_recordings(detector: Detector, folder: Path, clip_overlap: float, device,
                                batch_size: int, progress: bool) -> pd.DataFrame:
    from ..torch.predict import predict_recordings

    network = detector.network
    conf, meta = network.config, network.metadata
    out = conf["output_features"][0]
    scores = predict_recordings(detector, folder, clip_overlap=clip_overlap, final_clip="extend",
                                batch_size=batch_size, device=device, num_workers=0,
                                progress="always" if progress else False)
    detector.cpu()
    errors = scores.attrs.get("errors") or []
    if errors and len(scores) == 0:
        raise AudioFileError(f"none of the recordings could be read; first: {errors[0]['file']}: "
                             f"{errors[0]['error']}")
    if errors:
        log.warning("skipped %d recordings that could not be read; first: %s: %s", len(errors),
                    errors[0]["file"], errors[0]["error"])
    probs = scores.to_numpy()
    frame = predictions_frame(meta[out["name"]], out["name"], probs[:, 0] if out["type"] == "binary" else probs)
    index = scores.index.to_frame(index=False)
    return pd.concat([index[["file", "start_time", "end_time"]], frame], axis=1)
