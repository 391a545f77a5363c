"""Scoring the windows of recordings with one model: the part every engine runs.

`WindowScorer` holds a model ready to run (its `Runner`, activation, thread count) and
turns `WindowPlan`s into score tables, one per recording. The local engine of
`predict_recordings` gives it every planned recording at once (batches may then hold the
windows of several recordings); the Ray engine (`soundscape.torch.ray_engine`) runs one
scorer per actor and gives it one recording per call. Either way the windows of a
recording go through the same producer (`_produce`: chunked reading, spectrogram, inputs
written into batches) and the same model calls, so the scores are the same.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch

from ..model_file import Detector
from ..preprocessing import Preprocessing
from ..runtime import ThreadTuner, thread_candidates, torch_threads
from .outputs import INDEX
from .runners import make_runner
from .windows import WindowPlan, background_items, frame_geometry, window_frames

#: frame bytes of the windows finished at a time: groups this size keep the temporaries
#: of `Preprocessing.finish` small (the model still gets full batches)
GROUP_BYTES = 4 * 2**20


@functools.lru_cache(maxsize=1)
def _openmp_backend() -> bool:
    """True when torch's intra-op threads come from OpenMP (thread counts are per thread)."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _produce(plans: list, prep: Preprocessing, chunk_duration: float, group: int, batch_size: int,
             memory_format: torch.memory_format, stats: dict, stop: threading.Event,
             error_record: Callable, background: bool = False,
             stft_dtype: torch.dtype = torch.float64) -> Iterator[tuple]:
    """Model batches of the windows of `plans`, assembled here, off the model's thread.

    Items: ``("batch", [(k, window indices), ...], inputs)``: a full batch (the last one
    of the plans may be short), its windows possibly from several recordings, the inputs
    written straight into the batch in the model's memory format (no copies left for the
    model's thread); ``("done", k, None)`` once every window of recording k is in a batch
    handed out or in the one being filled; ``("error", k, record)`` when recording k
    fails (its windows in the batch being filled are dropped; `error_record(path, exc)`
    makes the record).

    In a background thread, torch ops here use one intra-op thread (a per-thread setting
    with OpenMP), leaving the other cores to the model instead of oversubscribing them.
    """
    if background and _openmp_backend():
        torch.set_num_threads(1)
    shape = prep.input_shape
    fmt = memory_format if len(shape) == 3 else torch.contiguous_format
    buf, fill, meta = None, 0, []
    for k, plan in plans:
        try:
            for idx, finished, data in window_frames(plan, prep, chunk_duration, group, stats,
                                                     stft_dtype):
                if stop.is_set():
                    return
                pos = 0
                while pos < len(idx):
                    if buf is None:
                        buf, fill, meta = torch.empty((batch_size, *shape), memory_format=fmt), 0, []
                    n = min(len(idx) - pos, batch_size - fill)
                    target = buf[fill:fill + n]
                    if finished:
                        target.copy_(data[pos:pos + n])
                    else:
                        prep.finish_stream(data[pos:pos + n], out=target)
                    meta.append((k, idx[pos:pos + n]))
                    fill, pos = fill + n, pos + n
                    if fill == batch_size:
                        yield "batch", meta, buf
                        buf, fill, meta = None, 0, []
            yield "done", k, None
        except Exception as exc:  # a bad file must not stop the run
            while meta and meta[-1][0] == k:  # its windows are the last ones of the open batch
                fill -= len(meta.pop()[1])
            yield "error", k, error_record(plan.path, exc)
    if fill:
        yield "batch", meta, buf[:fill]


def _single_threaded(items: Iterator) -> Iterator:
    """`items` produced with one torch thread, consumed with the caller's (serial mode).

    Small preprocessing ops gain nothing from a second thread and lose much when another
    process holds the other core (each op waits for both threads).
    """
    try:
        while True:
            with torch_threads(1):
                item = next(items, None)
            if item is None:
                return
            yield item
    finally:
        items.close()  # an early stop closes the files the producer holds open


def score_frame(plan: WindowPlan, scores: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The score table of one recording: index ``(file, start_time, end_time)``."""
    index = pd.MultiIndex.from_arrays(
        [np.full(len(plan), str(plan.path), dtype=object), plan.starts, plan.ends], names=INDEX)
    return pd.DataFrame(scores, index=index, columns=classes)


class WindowScorer:
    """A model ready to score the windows of recordings (see the module docstring).

    Parameters
    ----------
    model : Detector
    prep : Preprocessing
        The model's preprocessing with the window length of the run.
    activation : callable
        Logits -> scores (see `soundscape.torch.predict._activation`).
    device : torch.device
    batch_size : int
    chunk_duration : float
        Seconds of audio read and transformed at a time.
    error_record : callable
        ``(path, exception) -> {"file", "error"}`` record of a recording that failed.
    precision, compile, backend, calibration
        As in `predict_recordings`.
    threads : int, optional
        Intra-op threads of the model; None: measured while running on a CPU
        (`ThreadTuner`), starting from `soundscape.runtime.thread_candidates`.
    """

    def __init__(self, model: Detector, prep: Preprocessing, activation: Callable,
                 device: torch.device, batch_size: int, chunk_duration: float,
                 error_record: Callable, precision: str = "auto", compile: bool = False,
                 backend: str = "torch", calibration=None, threads: int | None = None):
        self.model, self.prep, self.act, self.device = model, prep, activation, device
        self.batch_size, self.chunk_duration = batch_size, chunk_duration
        self.error_record = error_record
        self.classes = list(model.classes)
        self.tuner = None
        if threads is None:
            candidates = thread_candidates()
            if backend == "torch" and device.type == "cpu":
                self.tuner = ThreadTuner(candidates)  # measured while running
            threads = candidates[0]
        self.threads = int(threads)
        t0 = time.perf_counter()
        with torch_threads(self.threads):
            self.runner = make_runner(model, device, precision, compile, backend, calibration,
                                      batch_size, threads=self.threads)
        self.runner_setup = time.perf_counter() - t0
        # the STFT in float32 when the model runs below fp32: within ~0.01 dB of float64, far
        # below bf16's own rounding of the inputs (~0.1 dB); fp32 models get the float64 STFT
        self.stft_dtype = torch.float64 if self.runner.info["precision"] == "fp32" else torch.float32
        self.stats: dict = {"max_chunk_samples": 0}
        self.timing = {"wait": 0.0, "model": 0.0}

    @property
    def run_info(self) -> dict:
        """How the model runs: precision, backend, compile, threads (+ int8 figures)."""
        info = dict(self.runner.info)
        return {"precision": info.pop("precision"), **info}

    def summary(self) -> dict:
        """The scorer's part of ``attrs["summary"]`` (run info, timing, thread tuning)."""
        return {
            "max_chunk_samples": int(self.stats["max_chunk_samples"]), **self.run_info,
            **(self.tuner.summary() if self.tuner is not None else {}),
            "stft_dtype": str(self.stft_dtype).replace("torch.", ""),
            "runner_setup_seconds": round(self.runner_setup, 3),  # int8 calibration, ONNX export
            # where the model's thread spent the run: scoring batches, or waiting for the next one
            "model_seconds": round(self.timing["model"], 3),
            "input_wait_seconds": round(self.timing["wait"], 3),
        }

    def _items(self, plans: list, num_workers: int, stop: threading.Event) -> Iterator:
        prep, batch_size = self.prep, self.batch_size
        group = max(1, min(batch_size, GROUP_BYTES // (4 * prep.n_bins * frame_geometry(prep)[2])))
        fmt = torch.channels_last if self.runner.precision.channels_last else torch.contiguous_format
        args = (prep, self.chunk_duration, group, batch_size, fmt, self.stats, stop, self.error_record)
        if num_workers == 0:
            return _single_threaded(_produce(plans, *args, stft_dtype=self.stft_dtype))
        shards = [plans[s::num_workers] for s in range(num_workers)]
        return background_items(
            lambda s: _produce(shards[s], *args, background=True, stft_dtype=self.stft_dtype),
            num_workers, stop, max_items=num_workers + 1)

    def score(self, plans: list[tuple[int, WindowPlan]], num_workers: int = 1,
              on_windows: Callable[[int], None] | None = None) -> Iterator[tuple[str, int, object]]:
        """Score the windows of ``(k, plan)`` pairs, recording by recording as they finish.

        Yields ``("scores", k, table)`` (see `score_frame`) or ``("error", k, record)``,
        once per recording. `num_workers` background threads read and preprocess (0: the
        calling thread); `on_windows(n)` is called after each batch of n windows.
        """
        model, classes = self.model, self.classes
        state = {k: {"plan": p, "scores": np.empty((len(p), len(classes)), np.float32),
                     "filled": 0, "produced": False} for k, p in plans}
        stop = threading.Event()
        items = self._items(plans, num_workers, stop)
        was_training = model.training
        tuner, timing = self.tuner, self.timing

        def complete(k: int) -> bool:
            st = state.get(k)
            return st is not None and st["produced"] and st["filled"] == len(st["plan"])

        def finished(k: int) -> tuple:
            st = state.pop(k)
            return "scores", k, score_frame(st["plan"], st["scores"], classes)

        try:
            with torch.inference_mode(), torch_threads(self.threads):
                last = time.perf_counter()
                for kind, k, payload in items:
                    if kind == "batch":
                        if tuner is not None:
                            torch.set_num_threads(tuner.threads())
                        got = time.perf_counter()
                        y = self.act(self.runner(payload.to(self.device))).cpu().numpy()
                        now = time.perf_counter()
                        timing["wait"] += got - last  # waiting for the producer (and bookkeeping)
                        timing["model"] += now - got
                        if tuner is not None:
                            tuner.record(len(payload), now - last)
                        pos = 0
                        for j, idx in k:
                            st = state.get(j)
                            if st is not None:  # not failed meanwhile
                                st["scores"][idx] = y[pos:pos + len(idx)]
                                st["filled"] += len(idx)
                            pos += len(idx)
                        if on_windows is not None:
                            on_windows(len(y))
                        for j in [j for j in dict.fromkeys(j for j, _ in k) if complete(j)]:
                            yield finished(j)
                        last = time.perf_counter()
                    elif kind == "done":
                        state[k]["produced"] = True
                        if complete(k):
                            yield finished(k)
                    else:  # error: its windows already scored are dropped with its state
                        state.pop(k, None)
                        yield "error", k, payload
        finally:
            stop.set()
            items.close()  # joins the background threads
            model.train(was_training)
