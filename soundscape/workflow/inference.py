"""`evaluate` and `predict` from tables or folders, for every soundscape model.

Both go through the one predictor (`soundscape.torch.predict`): tables become datasets
(`soundscape.workflow.tables`) scored by `predict`, folders of recordings are streamed by
`predict_recordings`. A config-trained model brings its config and training-set metadata;
a model from the classic door (``best.model`` of `train()`) is described by a small
implied config: its audio column is the first of ``audio``, ``file``, ``filename``,
``path``, ``Destination`` in the table, and its labels are a ``label`` column of class names
(single-target) or one 0/1 column per class (multi-target).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AnnotationError, AudioFileError, ParameterError
from ..io import atomic_write, check_writable
from ..model_file import Detector
from ..torch.predict import predict_recordings
from .data import check_columns, read_table, required_columns, rows_text, split_table
from .evaluation import predictions_frame, write_predictions
from .model import ARCHITECTURE, load_detector
from .runs import write_json
from .tables import config_dataset, output_info, predict_rows, probabilities, split_statistics
from .training import resolve_device

__all__ = ["evaluate", "predict", "predict_folder", "model_interface"]

log = logging.getLogger("soundscape.workflow")
_SPLIT_NAMES = {"training": "training", "train": "training", "validation": "validation",
                "valid": "validation", "val": "validation", "test": "test", "full": "full"}
SPLIT_CHOICES = tuple(_SPLIT_NAMES)
AUDIO_COLUMNS = ("audio", "file", "filename", "path", "Destination")
_DEFAULT_BATCH = 32


def _detector(model) -> Detector:
    return model if isinstance(model, Detector) else load_detector(model)


def _split_name(split: str) -> str:
    if split not in _SPLIT_NAMES:
        raise ParameterError(f"split must be one of training, validation, test, full; got {split!r}")
    return _SPLIT_NAMES[split]


def model_interface(detector: Detector, table=None) -> tuple[dict, dict]:
    """(config, training-set metadata) describing a model's table columns and output.

    A config model has its own. For other models they are implied (see the module
    docstring); `table` picks the audio column.
    """
    if detector.architecture == ARCHITECTURE:
        return detector.network.config, detector.network.metadata
    audio = "audio"
    if table is not None:
        audio = next((c for c in AUDIO_COLUMNS if c in table.frame.columns), None)
        if audio is None:
            raise AnnotationError(f"{table.source}: no audio column; name it one of {list(AUDIO_COLUMNS)}")
    classes = list(detector.classes)
    name = str(detector.metadata.get("output_feature") or "label")
    if detector.multi_target:
        out = {"name": name, "type": "set", "columns": classes, "delimiter": "|", "threshold": 0.5}
        meta = {"type": "set", "idx2str": classes, "columns": classes, "delimiter": "|", "threshold": 0.5}
    else:
        out = {"name": name, "type": "category"}
        meta = {"type": "category", "idx2str": classes}
    meta.update(str2idx={c: i for i, c in enumerate(classes)}, vocab_size=len(classes))
    config = {"input_features": [{"name": audio, "type": "audio"}], "output_features": [out],
              "split": {"type": "random", "probabilities": [0.7, 0.1, 0.2]},
              "trainer": {"batch_size": _DEFAULT_BATCH, "seed": 42}}
    return config, {name: meta}


def _table_and_interface(detector, dataset, base_dir, data_root):
    table = read_table(dataset, base_dir=base_dir, data_root=data_root)
    conf, meta = model_interface(detector, table)
    return table, conf, meta


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
    precision: str = "auto",
    compile: bool = False,
) -> tuple[dict, pd.DataFrame | None, Path | None]:
    """Evaluate a model on a labelled table.

    Parameters
    ----------
    model : path or Detector
        A model folder (``results/experiment_run/model``), model file, or loaded model,
        from either door.
    dataset : path, URI or DataFrame
    split : {"full", "training", "validation", "test"}
        ``full`` evaluates every row; the others re-create the training split (same config,
        same seed, same table) and evaluate that part.
    output_directory : path, optional
        Writes ``test_statistics.json``, ``errors.csv`` and, with ``collect_predictions``,
        ``predictions.parquet`` / ``predictions.csv`` (predictions plus the true label).
    precision, compile
        How the model runs (see `soundscape.torch.predict.predict`); recorded in the
        predictions' ``attrs["summary"]``.

    Returns
    -------
    (statistics, predictions or None, output directory or None)
    """
    split = _split_name(split)
    if output_directory is not None:  # before the model and the audio are read
        check_writable(output_directory, "evaluation output directory")
    detector = _detector(model)
    table, conf, meta = _table_and_interface(detector, dataset, base_dir, data_root)
    columns = required_columns(conf)
    if split == "full" and conf["split"]["type"] in ("fixed", "group"):
        columns = columns[:-1]
    check_columns(table, columns)
    frame = table.frame
    if split != "full":
        audio = next(f["name"] for f in conf["input_features"] if f["type"] == "audio")
        frame = split_table(table, conf["split"], conf["trainer"]["seed"], audio_column=audio)[split]
        if frame.empty:
            raise ParameterError(f"{table.source}: the {split} split is empty")
    data = config_dataset(conf, meta, detector.preprocessing, table, frame, desc=f"{split} audio")
    if data.dataset is None:
        raise AudioFileError(f"{table.source}: no row with readable audio")
    out_name, out_meta = output_info(conf, meta)
    batch = batch_size or conf["trainer"]["batch_size"]
    run = {}
    s, probs = split_statistics(detector, data, out_meta, batch, resolve_device(device), precision,
                                compile, summary=run)
    stats = {out_name: s, "combined": {"loss": s["loss"]}}
    preds = None
    if collect_predictions:  # every input row; unreadable ones with empty predictions and an error
        preds = _every_row(frame, conf, out_meta, out_name, data, probs)
        truth = conf["output_features"][0].get("columns") or [out_name]
        for col in truth:
            if col in frame.columns:
                preds[col] = frame[col].to_numpy()
        preds.attrs["summary"] = run
    out_dir = None
    if output_directory is not None:
        out_dir = Path(output_directory)
        write_json(stats, out_dir / "test_statistics.json")
        _write_errors(data.failures, out_dir)
        if preds is not None:
            write_predictions(preds, out_dir)
    return stats, preds, out_dir


def _write_errors(failures: list, out_dir: Path, columns=("row", "file", "error")) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(failures, columns=list(columns))
    atomic_write(out_dir / "errors.csv", lambda tmp: frame.to_csv(tmp, index=False), what="error list")


def _every_row(frame: pd.DataFrame, conf: dict, out_meta: dict, out_name: str, data,
               probs: np.ndarray) -> pd.DataFrame:
    """One prediction row per input row of `frame`, in its order.

    Rows whose audio could not be read (by the header check or when scored) have empty
    predictions and the reason in an ``error`` column (present when any row failed).
    """
    n = len(frame)
    probs = np.asarray(probs, dtype=float)
    full = np.full((n,) + probs.shape[1:], np.nan)
    kept = np.flatnonzero(data.keep)
    if len(kept):
        full[kept] = probs
    preds = predictions_frame(out_meta, out_name, full)
    bad = ~np.isfinite(full.reshape(n, -1)).all(axis=1) if n else np.zeros(0, bool)
    if bad.any():
        preds[f"{out_name}_predictions"] = preds[f"{out_name}_predictions"].astype(object)
        preds.loc[bad, f"{out_name}_predictions"] = np.nan
    preds = _with_inputs(frame, conf, preds)
    if data.failures:
        error = np.full(n, np.nan, dtype=object)
        for row, (_, _, reason) in zip(data.failed_rows, data.failures):
            error[row] = reason
        preds["error"] = error
    return preds


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
    precision: str = "auto",
    compile: bool = False,
    **engine,
) -> tuple[pd.DataFrame, Path | None]:
    """Predict a table of audio files, or every recording in a folder.

    A table needs the model's input columns (no output column); every row gets a
    prediction row, rows whose audio cannot be read have empty scores and an ``error``.
    A folder is searched recursively for audio files; each recording is cut into windows of
    the model's clip length (``clip_overlap`` seconds overlapping; the last window
    zero-padded) and every window is predicted (see :func:`predict_folder`).

    ``precision`` and ``compile`` say how the model runs (see
    `soundscape.torch.predict.predict`); the choice is in the predictions'
    ``attrs["summary"]``. For a folder, ``engine``, ``address``, ``num_actors`` ...
    (keyword arguments) are those of `predict_recordings` (e.g. ``engine="ray"``).

    Returns
    -------
    (predictions, output directory or None)
        With ``output_directory``, ``predictions.parquet``, ``predictions.csv`` and
        ``errors.csv`` (the rows, or recordings, that could not be read) are written.
    """
    device = resolve_device(device)
    if output_directory is not None:  # before the model and the audio are read
        check_writable(output_directory, "prediction output directory")
    detector = _detector(model)
    if not isinstance(dataset, pd.DataFrame) and Path(str(dataset)).is_dir():
        preds = predict_folder(detector, dataset, clip_overlap, device, batch_size, progress,
                               output_directory=output_directory, precision=precision,
                               compile=compile, **engine)
        failures = None
    else:
        if engine.get("engine", "local") != "local":
            raise ParameterError("engine= other than 'local' is for folders of recordings; a table "
                                 "of clips is predicted here")
        table, conf, meta = _table_and_interface(detector, dataset, base_dir, data_root)
        n_inputs = len(conf["input_features"])
        check_columns(table, required_columns(conf, with_outputs=False)[:n_inputs], "the model's config")
        data = config_dataset(conf, meta, detector.preprocessing, table, table.frame,
                              with_targets=False, desc="audio", tolerate_most=True)
        out_name, out_meta = output_info(conf, meta)
        batch = batch_size or conf["trainer"]["batch_size"]
        logits = np.zeros((0, len(detector.classes)), np.float32)
        run = {}
        if data.dataset is not None:  # NaN rows: failed when scored
            logits, _ = predict_rows(detector, data, batch, device, summary=run, precision=precision,
                                     compile=compile)
        # one row per input: unreadable ones with empty scores and the reason
        preds = _every_row(table.frame, conf, out_meta, out_name, data,
                           probabilities(out_meta, logits))
        failures = data.failures
        if len(failures) == len(table.frame):  # some passed the header check, none could be read
            if output_directory is not None:
                _write_errors(failures, Path(output_directory))
            _, _, reason = failures[0]
            first = rows_text([table.frame.index[data.failed_rows[0]]], table.source)
            raise AudioFileError(f"{table.source}: {len(failures)} of {len(failures)} audio file(s) "
                                 f"could not be read; first ({first}): {reason}")
        preds.attrs["summary"] = run
    out_dir = None
    if output_directory is not None:
        out_dir = Path(output_directory)
        write_predictions(preds, out_dir)
        if failures is not None:
            _write_errors(failures, out_dir)
    return preds, out_dir


def predict_folder(
    model, folder, clip_overlap: float = 0.0, device=None, batch_size: int | None = None,
    progress: bool = True, output_directory: str | os.PathLike | None = None,
    precision: str = "auto", compile: bool = False, **engine,
) -> pd.DataFrame:
    """Predict every window of every recording under ``folder`` with `predict_recordings`.

    Windows are the model's clip length; the last one is zero-padded. Only models whose
    sole input is audio can do this. Returns ``file, start_time, end_time`` and the
    prediction columns; with `output_directory`, the per-recording score tables, manifest
    and ``errors.csv`` of `predict_recordings` go to ``<output_directory>/scores`` (a
    re-run resumes). ``engine``, ``address``, ``num_actors`` ... (keyword arguments) go to
    `predict_recordings` (e.g. ``engine="ray"``).
    """
    detector = _detector(model)
    conf, meta = model_interface(detector)
    if len(conf["input_features"]) != 1:
        raise ParameterError(
            "predicting a folder of recordings needs a model whose only input is one audio "
            f"feature; this model has {[f['name'] for f in conf['input_features']]}; give a table "
            "with those columns instead"
        )
    folder = Path(folder)
    out_name, out_meta = output_info(conf, meta)
    scores = predict_recordings(
        detector, folder, clip_overlap=clip_overlap, final_clip="extend",
        batch_size=batch_size or conf["trainer"]["batch_size"], device=device, num_workers=0,
        activation=None, progress="always" if progress else False,
        output_dir=None if output_directory is None else Path(output_directory) / "scores",
        precision=precision, compile=compile, **engine)
    errors = scores.attrs.get("errors") or []
    if output_directory is not None:  # the failed recordings, beside the predictions
        _write_errors([(e["file"], e["error"]) for e in errors], Path(output_directory),
                      columns=("file", "error"))
    if errors and len(scores) == 0:
        raise AudioFileError(f"none of the recordings could be read; first: {errors[0]['file']}: "
                             f"{errors[0]['error']}")
    if errors:
        log.warning("skipped %d recordings that could not be read; first: %s: %s", len(errors),
                    errors[0]["file"], errors[0]["error"])
    frame = predictions_frame(out_meta, out_name, probabilities(out_meta, scores.to_numpy(np.float32)))
    index = scores.index.to_frame(index=False)
    result = pd.concat([index[["file", "start_time", "end_time"]], frame], axis=1)
    result.attrs["summary"] = scores.attrs.get("summary", {})
    return result


__all__ += ["SPLIT_CHOICES"]
