"""Scores from a `Detector`: on clips (`predict`) and over long recordings (`predict_recordings`).

Both return a pandas DataFrame with one score column per class. Files that cannot be
read do not stop a run: they are logged and listed in ``result.attrs["errors"]`` (a
list of ``{"file", "error"}`` records; ``pd.DataFrame(result.attrs["errors"])`` makes a
table of it), and ``result.attrs["summary"]`` counts what was done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..audio import clip_times
from ..audio_files import find_audio_files
from ..errors import ParameterError
from ..io import check_writable
from ..loading import ClipLoader
from ..model_file import Detector, load_model, to_plain
from ..preprocessing import Preprocessing
from ..runtime import resolve_device
from .outputs import INDEX, check_format, read_scores
from .recording_job import RecordingJob
from .runners import make_runner
from .scoring import GROUP_BYTES, WindowScorer  # noqa: F401 (GROUP_BYTES: classic path)
from .windows import frame_geometry

__all__ = ["predict", "predict_recordings", "find_audio_files", "read_scores"]

logger = logging.getLogger("soundscape.predict")

ACTIVATIONS = ("auto", "softmax", "sigmoid", None)
#: where `predict_recordings` scores the windows (see its `engine` argument)
ENGINES = ("local", "ray")


# ---------------------------------------------------------------------------- shared parts
def _as_detector(model) -> Detector:
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    if isinstance(model, Detector):
        return model
    info = getattr(model, "_soundscape_detector", None)
    if isinstance(model, torch.nn.Module) and info is not None:  # a network train() trained
        return Detector(model, *info)
    raise ParameterError(
        f"model must be a soundscape Detector, a model file path, or a network trained by "
        f"soundscape's train(); got {type(model).__name__}. Load the saved model with "
        "soundscape.load_model('<save_dir>/best.model')"
    )


def _activation(model: Detector, activation):
    if activation not in ACTIVATIONS:
        raise ParameterError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if activation == "auto":
        activation = model.default_activation
    if activation == "softmax":
        return activation, lambda x: torch.softmax(x, dim=1)
    if activation == "sigmoid":
        return activation, torch.sigmoid
    return activation, lambda x: x


def _device(model: Detector, device) -> torch.device:
    if device is None:
        param = next(model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")
    return resolve_device(device)


def _check_positive(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_windows(clip_duration: float, clip_overlap, final_clip) -> None:
    """ParameterError for window settings no recording could use (checked up front)."""
    clip_times(float(clip_duration), float(clip_duration), clip_overlap, final_clip)


def _error_record(file, exc: BaseException) -> dict:
    reason = str(exc) if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {exc}"
    if str(file) in reason:
        logger.warning("skipped: %s", reason)
    else:
        logger.warning("skipped %s: %s", file, reason)
    return {"file": str(file), "error": reason}


def _progress_disabled(progress) -> bool | None:
    """tqdm's `disable`: True off, None off when stderr is not a terminal, False forced."""
    if progress == "always":
        return False
    return None if progress else True


def _empty_scores(classes: list[str]) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays(
        [pd.Series([], dtype=object), pd.Series([], dtype=float), pd.Series([], dtype=float)],
        names=INDEX)
    return pd.DataFrame(np.zeros((0, len(classes)), dtype=np.float32), index=index, columns=classes)


def _run_info(runner) -> dict:
    """How the model ran, for ``attrs["summary"]``: precision, backend, compile, threads (+ int8 figures)."""
    info = dict(runner.info)
    return {"precision": info.pop("precision"), **info}


# ---------------------------------------------------------------------------- clips
class _ClipSet(torch.utils.data.Dataset):
    """Model inputs of clips given as (file, start_time or None, end_time or None) rows."""

    def __init__(self, rows: list[tuple], preprocessing: Preprocessing):
        self.rows = rows
        self.preprocessing = preprocessing
        self.loader = ClipLoader(preprocessing)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        path, start, end = self.rows[i]
        try:
            duration = None if start is None or end is None else float(end) - float(start)
            wave = self.loader.load(path, offset=float(start or 0.0), duration=duration)
            image = self.preprocessing.features(torch.from_numpy(np.asarray(wave, dtype=np.float32))[None])[0]
            return i, image, None
        except Exception as exc:  # a bad file must not stop the run
            return i, None, _error_record(path, exc)


class _DatasetInputs(torch.utils.data.Dataset):
    """The un-augmented inputs of another Dataset, with load errors caught per item."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        ds = self.dataset
        try:
            if callable(getattr(ds, "feature", None)):  # soundscape datasets: no augmentation
                return i, ds.feature(i), None
            item = ds[i]
            if isinstance(item, dict):
                item = item["X"]
            elif isinstance(item, (list, tuple)):
                item = item[0]
            return i, torch.as_tensor(item), None
        except Exception as exc:
            where = ds.clip_path(i) if callable(getattr(ds, "clip_path", None)) else f"item {i}"
            return i, None, _error_record(where, exc)


def _with_model_preprocessing(dataset, model: Detector):
    """A soundscape dataset built without preprocessing arguments, as the model prepares clips
    (a copy; the caller's dataset is left as it is), like train() does for its datasets."""
    if getattr(dataset, "preprocessing_given", True) or not callable(getattr(dataset, "use_preprocessing", None)):
        return dataset
    if getattr(dataset, "preprocessing", None) == model.preprocessing:
        return dataset
    import copy

    dataset = copy.copy(dataset)
    dataset.use_preprocessing(model.preprocessing)
    return dataset


def _dataset_index(dataset) -> pd.Index:
    paths = getattr(dataset, "paths", None)
    offsets, durations = getattr(dataset, "offsets", None), getattr(dataset, "durations", None)
    if paths is not None and len(paths) == len(dataset):
        paths = [str(p) for p in paths]
        if durations is not None and not np.all(np.isnan(np.asarray(durations, dtype=float))):
            start = np.asarray(offsets, dtype=float)
            return pd.MultiIndex.from_arrays([paths, start, start + np.asarray(durations, dtype=float)],
                                             names=INDEX)
        return pd.Index(paths, name="file")
    for name in ("label_df", "df"):
        index = getattr(getattr(dataset, name, None), "index", None)
        if index is not None and len(index) == len(dataset):
            return index
    return pd.RangeIndex(len(dataset))


def _collate(items):
    ok = [(i, x) for i, x, _ in items if x is not None]
    errors = [e for _, _, e in items if e is not None]
    idx = torch.tensor([i for i, _ in ok], dtype=torch.long)
    images = torch.utils.data.default_collate([x for _, x in ok]) if ok else None
    return idx, images, errors


def _clip_rows(samples) -> tuple[list[tuple], pd.Index]:
    if isinstance(samples, (str, os.PathLike)):
        samples = [samples]
    if isinstance(samples, pd.Series):
        samples = samples.tolist()
    if isinstance(samples, pd.DataFrame):
        frame = samples
        if list(frame.index.names) != INDEX and all(c in frame.columns for c in INDEX):
            frame = frame.set_index(INDEX)
        if list(frame.index.names) == INDEX:
            rows = [(str(f), float(s), float(e)) for f, s, e in frame.index]
            return rows, frame.index
        rows = [(str(f), None, None) for f in frame.index]
        return rows, pd.Index([str(f) for f in frame.index], name="file")
    if isinstance(samples, (list, tuple)):
        rows = [(str(f), None, None) for f in samples]
        return rows, pd.Index([str(f) for f in samples], name="file")
    raise ParameterError(
        "samples must be a list of audio files, a DataFrame indexed by file or by "
        f"(file, start_time, end_time), or a torch Dataset; got {type(samples).__name__}"
    )


def predict(
    model: Detector | str | os.PathLike,
    samples,
    batch_size: int = 32,
    num_workers: int = 0,
    activation: str | None = "auto",
    device: str | torch.device | None = None,
    progress: bool | str = False,
    precision: str = "auto",
    compile: bool = False,
    calibration=None,
    backend: str = "torch",
) -> pd.DataFrame:
    """Scores of clips: one row per clip, one column per class.

    Parameters
    ----------
    model : Detector or path of a model file
    samples : list of paths, DataFrame, or torch Dataset
        A list of audio files (each scored as one clip: its first `clip_duration`
        seconds, padded as the preprocessing says); a DataFrame indexed (or with columns)
        ``(file, start_time, end_time)``, one clip per row; a DataFrame indexed by file
        (e.g. a label table); or a Dataset: a soundscape dataset (its un-augmented
        `image(i)` is used; one built without preprocessing arguments prepares clips the
        model's way, as in `train`) or one whose items are an input tensor (channels, H, W), a
        tuple starting with one, or a dict with key ``"X"``.
    batch_size, num_workers : int
        DataLoader settings; workers load and preprocess clips in parallel.
    activation : {"auto", "softmax", "sigmoid", None}
        Applied to the logits; "auto" is sigmoid for a multi-target model and softmax
        otherwise; None returns logits.
    device : str or torch.device, optional
        Where the model runs (the model is moved there); default: where it is.
    progress : bool or "always"
        tqdm progress bar on stderr (True: only when stderr is a terminal).
    precision : {"auto", "fp32", "bf16", "fp16", "int8"}
        Number format of the model (see `soundscape.runtime.resolve_precision`): "auto" is
        bf16 autocast + channels-last on CPUs with native bf16 and on GPUs, fp32 elsewhere.
        "int8" (CPU, opt-in) runs a quantized copy calibrated on `calibration`.
    compile : bool
        torch.compile the network first (off by default: compiling takes about a minute on a
        small CPU, worth it for long runs); falls back to the plain network with a logged
        warning when compiling fails. See `soundscape.torch.runners`.
    calibration : list of audio files, folder, or Dataset
        Clips like the ones scored, to calibrate precision "int8" (required by it).
    backend : {"torch", "onnxruntime"}
        "onnxruntime" exports the network to ONNX and runs it with ONNX Runtime (fp32;
        needs the ``onnx`` extra).

    Returns
    -------
    DataFrame
        Index: the file paths, or ``(file, start_time, end_time)`` for a clip table (for
        a soundscape dataset likewise, from its clip table; for another Dataset its
        ``label_df`` index or positions). Clips that failed to load are left out and
        listed in ``attrs["errors"]``.
    """
    model = _as_detector(model)
    batch_size = _check_positive("batch_size", batch_size, 1)
    num_workers = _check_positive("num_workers", num_workers, 0)
    _, act = _activation(model, activation)
    device = _device(model, device)
    if isinstance(samples, torch.utils.data.Dataset):
        samples = _with_model_preprocessing(samples, model)
        dataset, index = _DatasetInputs(samples), _dataset_index(samples)
    else:
        rows, index = _clip_rows(samples)
        dataset = _ClipSet(rows, model.preprocessing)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate, shuffle=False)
    scores = np.full((len(dataset), len(model.classes)), np.nan, dtype=np.float32)
    ok = np.zeros(len(dataset), dtype=bool)
    errors: list[dict] = []
    was_training = model.training
    runner = make_runner(model, device, precision, compile, backend, calibration, batch_size)
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, disable=_progress_disabled(progress), file=sys.stderr,
                              desc="clips", unit="batch"):
                idx, x, errs = batch
                errors.extend(errs)
                if x is None:
                    continue
                x = {k: v.to(device) for k, v in x.items()} if isinstance(x, dict) else x.to(device)
                out = act(runner(x)).cpu().numpy()
                scores[idx.numpy()] = out
                ok[idx.numpy()] = True
    finally:
        model.train(was_training)
    result = pd.DataFrame(scores[ok], index=index[ok], columns=model.classes)
    result.attrs["errors"] = errors
    result.attrs["summary"] = {"n_clips": int(len(dataset)), "n_scored": int(ok.sum()),
                               "n_failed": int(len(dataset) - ok.sum()), **_run_info(runner)}
    if errors:
        logger.warning("predict: %d of %d clips failed (see result.attrs['errors'])",
                       len(dataset) - int(ok.sum()), len(dataset))
    return result


# ---------------------------------------------------------------------------- recordings
def frequency_band(prep: Preprocessing) -> tuple[float, float]:
    """(low, high) Hz the model sees: its `min_frequency`/`max_frequency`, else 0 to Nyquist
    of its sample rate (what `detections` gives events as their box)."""
    low = 0.0 if prep.min_frequency is None else float(prep.min_frequency)
    high = prep.sample_rate / 2 if prep.max_frequency is None else float(prep.max_frequency)
    return low, min(high, prep.sample_rate / 2)


def _weights_digest(model: Detector) -> str:
    h = hashlib.sha1()
    for name, tensor in model.network.state_dict().items():
        h.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        else:  # a module's extra state (e.g. an ONNX backbone's settings)
            h.update(json.dumps(to_plain(tensor), sort_keys=True).encode())
    return h.hexdigest()[:16]


def predict_recordings(
    model: Detector | str | os.PathLike,
    files,
    clip_duration: float | None = None,
    clip_overlap: float = 0.0,
    final_clip: str | None = None,
    batch_size: int = 32,
    num_workers: int = 1,
    output_dir: str | os.PathLike | None = None,
    output_format: str = "csv",
    activation: str | None = "auto",
    device: str | torch.device | None = None,
    progress: bool | str = True,
    chunk_duration: float = 60.0,
    overwrite: bool = False,
    precision: str = "auto",
    return_scores: bool = True,
    compile: bool = False,
    calibration=None,
    backend: str = "torch",
    threads: int | None = None,
    engine: str = "local",
    address: str | None = None,
    num_actors: int | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    trusted: bool = False,
    ray_options: dict | None = None,
) -> pd.DataFrame:
    """Score sliding windows over long recordings, streaming each file in chunks.

    Each recording is read about `chunk_duration` seconds at a time; the spectrogram of
    a chunk is computed once and every window's image is cut from it (see
    `soundscape.torch.windows`: a window start that is not a multiple of the STFT hop is
    rounded to the nearest frame, at most half a hop away). Memory does not grow with
    the length of a recording.

    Parameters
    ----------
    model : Detector or path of a model file
    files : path, folder, glob string, or list of paths
        A folder means every audio file in it, recursively.
    clip_duration : float, optional
        Window length in seconds; default the model's `preprocessing.clip_duration`.
    clip_overlap : float
        Seconds shared by consecutive windows (step = clip_duration - clip_overlap).
    final_clip : {None, "remainder", "full", "extend"}
        The last, incomplete window: dropped (None), kept short and padded
        ("remainder", "extend") or moved back to end at the end of the file ("full").
    batch_size : int
        Windows per model call.
    num_workers : int
        Background threads reading and preprocessing recordings while the model runs
        (each works on whole files, with one torch thread, and hands over whole batches);
        0 does everything in the calling thread (preprocessing with one torch thread).
    output_dir : path, optional
        Write one score table per recording as soon as it is done (atomically), a
        ``manifest.jsonl`` of finished recordings, ``run.json`` and ``errors.csv``. A
        re-run with the same folder skips recordings already done (resume). Jobs run at
        the same time on one folder split the work: a recording another live job is
        scoring is left to it (``attrs["summary"]["n_claimed_by_other_jobs"]``), and
        `read_scores(output_dir)` reads the whole table afterwards.
    output_format : {"csv", "parquet"}
        Format of the per-recording tables; parquet needs pyarrow.
    activation : {"auto", "softmax", "sigmoid", None}
        "auto": sigmoid for a multi-target model, softmax otherwise; None gives logits.
    device : str or torch.device, optional
        Where the model runs (the model is moved there); default: where it is.
    progress : bool or "always"
        tqdm bars over files and windows on stderr, shown only when stderr is a terminal
        unless "always"; False also silences the printed summary.
    chunk_duration : float
        Seconds of audio read and transformed at a time.
    overwrite : bool
        Start over in an `output_dir` holding results of other settings (or to redo all).
    precision : {"auto", "fp32", "bf16", "fp16", "int8"}
        Number format of the model, as in `predict`; recorded in ``attrs["summary"]`` and
        ``run.json``.
    return_scores : bool
        False (needs `output_dir`): the tables are only written, not kept in memory nor
        read back, and an empty table (with ``attrs``) is returned; for runs whose
        results do not fit in memory (e.g. embeddings of many hours). Read them with
        `read_scores` or lazily (`soundscape.pretrained.EmbeddingStore`).
    compile, calibration, backend
        As in `predict`: torch.compile, int8 calibration clips, "torch" or "onnxruntime".
    threads : int, optional
        Intra-op threads of the model (default `soundscape.runtime.inference_threads`:
        every CPU on small machines, all but the producers' on larger ones).
    engine : {"local", "ray"}
        "local" (default): this process. "ray": Ray actors, each with its own copy of the
        model, score one recording at a time and this process writes their tables (needs
        the ``ray`` extra; see `soundscape.torch.ray_engine`); outputs, resume and the
        returned table are those of a local run. `num_workers` then counts each actor's
        reading threads, `threads` and `device` do not apply (see `num_cpus`, `num_gpus`).
    address : str, optional
        With ``engine="ray"``: the cluster, ``"auto"`` (the one this machine belongs
        to, started with ``ray start``), ``"ray://HOST:10001"`` (Ray Client); None: the
        Ray session this process already has, else a new local instance on this machine.
    num_actors : int, optional
        With ``engine="ray"``: models running at once (default: the cluster's CPUs divided
        by `num_cpus`, or its GPUs by `num_gpus`; never more than the recordings to do).
    num_cpus, num_gpus : float
        With ``engine="ray"``: resources of each actor; its model runs on ``num_cpus``
        threads, on a GPU when ``num_gpus > 0``.
    trusted : bool
        With ``engine="ray"``: the actors load the model from its model file as
        `load_model(trusted=trusted)` does (needed for a network stored whole).
    ray_options : dict, optional
        With ``engine="ray"``: further `ray.actor.ActorClass.options` of the actors
        (``runtime_env``, ``resources``, ``scheduling_strategy``...).

    Returns
    -------
    DataFrame
        Index ``(file, start_time, end_time)``, one score column per class, recordings in
        the order given (those skipped on resume are read back from `output_dir`).
        ``attrs["errors"]``: ``{"file", "error"}`` records of recordings that were
        missing, empty or unreadable; ``attrs["summary"]``: counts and timing;
        ``attrs["frequency_band"]``: the model's (low, high) Hz, which `detections` gives
        the events.
    """
    model = _as_detector(model)
    batch_size = _check_positive("batch_size", batch_size, 1)
    num_workers = _check_positive("num_workers", num_workers, 0)
    act_name, act = _activation(model, activation)
    output_format = check_format(output_format)
    if engine not in ENGINES:
        raise ParameterError(f"engine must be one of {ENGINES}, got {engine!r}")
    if not return_scores and output_dir is None:
        raise ParameterError("return_scores=False needs output_dir= (where the tables are written)")
    if not (np.isfinite(chunk_duration) and chunk_duration > 0):
        raise ParameterError(f"chunk_duration must be > 0 seconds, got {chunk_duration!r}")
    prep = model.preprocessing
    clip_duration = prep.clip_duration if clip_duration is None else clip_duration
    if clip_duration is None:
        raise ParameterError("the model's preprocessing has no clip_duration; pass clip_duration=")
    prep = prep.replace(clip_duration=float(clip_duration))
    frame_geometry(prep)
    _check_windows(prep.clip_duration, clip_overlap, final_clip)  # before any file is touched
    if engine == "ray":
        from . import ray_engine

        ray_engine.import_ray()
        address = ray_engine.check_address(address)
        if num_actors is not None:
            num_actors = _check_positive("num_actors", num_actors, 1)
    if threads is not None:
        threads = _check_positive("threads", threads, 1)
    if output_dir is not None:
        _check_output_path(output_dir)
        check_writable(output_dir, "predict_recordings output_dir")
    paths = find_audio_files(files)
    job = RecordingJob(model, prep, paths, output_dir, output_format, overwrite, clip_overlap,
                       final_clip, act_name, return_scores, _weights_digest, _error_record,
                       _empty_scores, progress, _progress_disabled(progress))
    if engine == "ray":
        options = dict(prep=prep, activation=act_name, device=None if device is None else str(device),
                       batch_size=batch_size, chunk_duration=chunk_duration, num_workers=num_workers,
                       precision=precision, compile=compile, backend=backend, calibration=calibration)
        return ray_engine.score_on_ray(job, model, options, address, num_actors, num_cpus, num_gpus,
                                       trusted, ray_options)
    scorer = WindowScorer(model, prep, act, _device(model, device), batch_size, chunk_duration,
                          _error_record, precision, compile, backend, calibration, threads)
    try:
        job.open(scorer.run_info["precision"])
        for kind, k, payload in scorer.score(job.plans, num_workers, job.windows_done):
            if kind == "scores":
                job.scored(k, payload)
            else:
                job.failed(k, payload)
    finally:
        job.close()
    return job.table(scorer.summary())


def _check_output_path(output_dir) -> None:
    """ParameterError for an object-store URL: outputs go to local or mounted (NFS) folders."""
    text = os.fspath(output_dir)
    if isinstance(text, str) and "://" in text:
        raise ParameterError(
            f"output_dir {text!r}: object-store and other URLs are not supported; give a folder "
            "path on a local or shared (NFS-style) file system (mount a bucket with s3fs/gcsfuse, "
            "or write locally and copy the folder)")
