"""How the network of a `Detector` runs during prediction.

`make_runner` turns a detector and the caller's choices into a `Runner`: a callable from a
batch of model inputs to float32 logits. The predictor (`soundscape.torch.predict`) only
calls it, so every way of running shares one pipeline:

* **torch** at a `soundscape.runtime.Precision` (fp32, or bf16 / fp16 autocast, channels-last);
* **torch.compile** of the network on top (``compile=True``); the first batch compiles it
  (about a minute for a ResNet18 on a small CPU), short batches are zero-padded to the batch
  size so it compiles once; when compiling fails the network runs as it is, with a logged
  warning;
* **int8** (CPU only, opt-in): a copy of the network quantized with torch's x86 FX
  quantization (``torch.ao.quantization``, per-channel int8 weights, int8 activations),
  calibrated on clips the user gives (``calibration=``: audio files, a folder, or a
  dataset). Its agreement with fp32 on those clips (the largest score difference) is
  measured, logged and returned in ``info``;
* **ONNX Runtime** (``backend="onnxruntime"``, needs the ``onnx`` extra): the network is
  exported to ONNX in memory (`soundscape.torch.export`) and run by an ONNX Runtime session
  in fp32.
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import torch

from ..errors import ParameterError
from ..runtime import Precision, resolve_precision

__all__ = ["Runner", "make_runner", "quantize_int8", "calibration_batches", "BACKENDS",
           "CALIBRATION_CLIPS"]

logger = logging.getLogger("soundscape.predict")

BACKENDS = ("torch", "onnxruntime")
#: clips used to calibrate an int8 network (spread evenly over the calibration files)
CALIBRATION_CLIPS = 128


class Runner:
    """A network ready to score batches: ``runner(x)`` -> float32 logits ``(batch, classes)``.

    Attributes
    ----------
    precision : Precision
        Number and memory format the inputs should come in (`Precision.input`).
    info : dict
        What actually runs: ``precision``, ``backend``, ``compile`` (True only when the
        compiled network ran), ``threads`` and, for int8, ``calibration_clips`` and
        ``int8_max_abs_score_diff_vs_fp32``.
    """

    def __init__(self, fn, precision: Precision, info: dict, pad_to: int | None = None,
                 fallback=None):
        self._fn = fn
        self.precision = precision
        self.info = info
        self._pad_to = pad_to
        self._fallback = fallback  # eager network while a compiled one has not yet run

    def __call__(self, x) -> torch.Tensor:
        n = _batch_len(x)
        if self._pad_to is not None and n < self._pad_to:
            x = _pad(x, self._pad_to)
        prec = self.precision
        if self._fallback is None:
            with prec.autocast():
                out = self._fn(prec.input(x))
        else:
            try:
                with prec.autocast():
                    out = self._fn(prec.input(x))
                self._fallback = None  # compiled and ran: errors from now on are the model's
            except Exception as exc:  # compiling failed: run the network as it is
                logger.warning("torch.compile failed (%s: %s); running the network without it",
                               type(exc).__name__, str(exc).strip().splitlines()[0][:300]
                               if str(exc).strip() else "")
                self._fn, self._fallback, self._pad_to = self._fallback, None, None
                self.info["compile"] = False
                x = _unpad(x, n)
                with prec.autocast():
                    out = self._fn(prec.input(x))
        return out[:n].float()


def _batch_len(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _pad(x, size: int):
    if isinstance(x, dict):
        return {k: _pad(v, size) for k, v in x.items()}
    pad = x.new_zeros((size - len(x), *x.shape[1:]))
    return torch.cat([x, pad])


def _unpad(x, n: int):
    if isinstance(x, dict):
        return {k: v[:n] for k, v in x.items()}
    return x[:n]


def make_runner(
    model,
    device: torch.device,
    precision: str = "auto",
    compile: bool = False,
    backend: str = "torch",
    calibration=None,
    batch_size: int = 32,
    activation=None,
    threads: int | None = None,
) -> Runner:
    """The `Runner` of `model` (a Detector, moved to `device` and put in eval mode).

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16", "fp16", "int8"}
        See `soundscape.runtime.resolve_precision`; "int8" needs `calibration`.
    compile : bool
        torch.compile the network (torch backend; not with int8).
    backend : {"torch", "onnxruntime"}
    calibration : list of audio files, a folder, or a torch Dataset
        Clips like the ones to score, for int8 (at most `CALIBRATION_CLIPS` are used).
    batch_size : int
        Batches are padded to this size when compiled (one compilation).
    activation : callable, optional
        Logits -> scores, for the int8 agreement figure (default: the model's own).
    threads : int, optional
        Intra-op threads of the ONNX Runtime session (torch uses the caller's setting).
    """
    if backend not in BACKENDS:
        raise ParameterError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(compile, bool):
        raise ParameterError(f"compile must be True or False, got {compile!r}")
    model.to(device).eval()
    if activation is None:
        activation = (torch.sigmoid if model.default_activation == "sigmoid"
                      else (lambda t: torch.softmax(t, dim=1)))
    info = {"backend": backend, "compile": False,
            "threads": int(threads or torch.get_num_threads())}
    if backend == "onnxruntime":
        return _onnx_runner(model, device, precision, compile, info, threads)
    prec = resolve_precision(precision, device)
    info["precision"] = prec.name
    if prec.name == "int8":
        if compile:
            raise ParameterError("compile=True does not apply to precision 'int8' (the quantized "
                                 "network runs torch's int8 kernels as it is)")
        key = ("int8", _weights_key(model), _calibration_key(calibration), int(batch_size))
        cache = model.__dict__.setdefault("_soundscape_runners", {})
        if key not in cache:  # calibrating takes seconds: done once per network and clips
            batches = calibration_batches(model, calibration, batch_size)
            qnet, diff = quantize_int8(model.network, batches, activation)
            cache.clear()
            cache[key] = (qnet, int(sum(len(b) for b in batches)), float(diff))
        qnet, n_clips, diff = cache[key]
        diff = round(diff, 6)  # one value for the summary and the log (no second rounding)
        info.update(calibration_clips=n_clips, int8_max_abs_score_diff_vs_fp32=diff)
        logger.info("int8: calibrated on %d clips; largest score difference from fp32 on them: "
                    "%.4f", n_clips, diff)
        return Runner(qnet, prec, info)
    if calibration is not None:
        raise ParameterError(f"calibration= is for precision 'int8' (this run: {prec.name!r})")
    prec.prepare(model.network)
    if not compile:
        return Runner(model, prec, info)
    try:
        compiled = torch.compile(model.network)
    except Exception as exc:  # torch.compile itself refused (e.g. an unsupported Python)
        logger.warning("torch.compile is unavailable (%s: %s); running the network without it",
                       type(exc).__name__, exc)
        return Runner(model, prec, info)
    info["compile"] = True
    return Runner(compiled, prec, info, pad_to=int(batch_size), fallback=model.network)


def _weights_key(model) -> tuple:
    """Identity of the network's current weights (a cached int8 copy is valid while it holds)."""
    return (id(model.network),) + tuple((k, v.data_ptr(), v._version) for k, v in
                                        model.network.state_dict().items())


def _calibration_key(calibration) -> tuple:
    if isinstance(calibration, torch.utils.data.Dataset):
        return ("dataset", id(calibration), len(calibration))
    from pathlib import Path

    single = isinstance(calibration, (str, bytes)) or not hasattr(calibration, "__iter__")
    items = [calibration] if single else list(calibration)
    key = []
    for item in items:
        p = Path(str(item))
        try:
            st = p.stat()
            key.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            key.append((str(p), None, None))
    return tuple(key)


# --------------------------------------------------------------------------- int8
def calibration_batches(model, calibration, batch_size: int = 32,
                        max_clips: int = CALIBRATION_CLIPS) -> list[torch.Tensor]:
    """Model inputs of calibration clips, in batches (contiguous float32, on the CPU).

    `calibration` is a list of audio files, a folder, a glob, or a torch Dataset (as
    `soundscape.torch.predict.predict` takes). Long recordings give windows of the model's
    clip length spread evenly over them; at most `max_clips` clips in all. Unreadable
    files are skipped with a warning.
    """
    if calibration is None:
        raise ParameterError(
            "precision 'int8' needs calibration=: a few dozen of your own clips or recordings "
            "(a list of audio files, a folder, or a dataset) like the ones you score; the "
            "quantization ranges are measured on them")
    from ..audio import audio_info
    from .predict import _DatasetInputs
    from .windows import WindowPlan, find_audio_files, plan_windows, window_inputs

    inputs: list[torch.Tensor] = []
    if isinstance(calibration, torch.utils.data.Dataset):
        ds = _DatasetInputs(calibration)
        take = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), max_clips)).round().astype(int))
        for i in take:
            _, x, err = ds[int(i)]
            if x is not None:
                inputs.append(x[None] if not isinstance(x, dict) else x)
    else:
        paths = find_audio_files(calibration)
        prep = model.preprocessing
        if prep.clip_duration is None:
            raise ParameterError("int8 calibration from audio files needs a model with a clip "
                                 "duration")
        per_file = max(1, -(-max_clips // len(paths)))
        for path in paths:
            if sum(len(x) for x in inputs) >= max_clips:
                break
            try:
                audio_info(path)
                plan = plan_windows(path, prep, 0.0, "extend")
                spread = np.linspace(0, len(plan) - 1, min(len(plan), per_file))
                keep = np.unique(spread.round().astype(int))
                sub = WindowPlan(plan.path, plan.starts[keep], plan.ends[keep],
                                 plan.first_frame[keep], plan.inside[keep], plan.file_rate,
                                 plan.file_frames, plan.n_samples)
                for _, x in window_inputs(sub, prep, group_size=batch_size):
                    inputs.append(x)
            except Exception as exc:  # a bad calibration file must not stop the run
                logger.warning("int8 calibration: skipped %s (%s)", path, exc)
    if any(isinstance(x, dict) for x in inputs):
        raise ParameterError("int8 supports networks with one input tensor; this model takes "
                             "several")
    if not inputs:
        raise ParameterError("int8 calibration: none of the calibration clips could be read")
    flat = torch.cat(inputs)[:max_clips].float().contiguous()
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def quantize_int8(network: torch.nn.Module, batches: list[torch.Tensor], activation=None
                  ) -> tuple[torch.nn.Module, float]:
    """(int8 copy of `network`, largest score difference from fp32 on `batches`).

    torch's FX graph-mode post-training quantization with the x86 backend's default
    settings (``get_default_qconfig_mapping("x86")``: per-channel symmetric int8 weights,
    histogram-calibrated uint8 activations): the network is traced, observed on the
    calibration batches, and converted. The original network is not changed.
    Raises ParameterError when the network cannot be traced or quantized.
    """
    try:
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    except ImportError as exc:  # a torch without the FX quantization API
        raise ParameterError(f"int8 needs torch.ao.quantization's FX API, missing in torch "
                             f"{torch.__version__} ({exc}); use precision 'bf16' or "
                             "'fp32'") from exc
    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    float_net = copy.deepcopy(network).cpu().eval().to(memory_format=torch.contiguous_format)
    example = (batches[0][:1],)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mapping = get_default_qconfig_mapping("x86")
            prepared = prepare_fx(copy.deepcopy(float_net), mapping, example)
            with torch.no_grad():
                for b in batches:
                    prepared(b)
            qnet = convert_fx(prepared)
    except Exception as exc:  # tracing / quantizing the network failed
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        raise ParameterError(f"int8: this network could not be quantized with torch's FX "
                             f"quantization ({type(exc).__name__}: {first}); use precision "
                             "'bf16' or 'fp32'") from exc
    act = activation or (lambda t: t)
    diff = 0.0
    with torch.inference_mode():
        for b in batches:
            diff = max(diff, float((act(float_net(b).float()) - act(qnet(b).float())).abs().max()))
    return qnet, diff


# --------------------------------------------------------------------------- ONNX Runtime
def _onnx_runner(model, device, precision: str, compile: bool, info: dict, threads) -> Runner:
    if compile:
        raise ParameterError("compile=True is for the torch backend; ONNX Runtime optimises its "
                             "graph itself")
    prec = resolve_precision("fp32" if precision == "auto" else precision, device)
    if prec.name != "fp32":
        raise ParameterError(f"backend 'onnxruntime' runs fp32 models; precision {prec.name!r} "
                             "is for the torch backend (use precision='auto' or 'fp32')")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ParameterError("backend 'onnxruntime' needs ONNX Runtime: pip install "
                             "'soundscape[onnx]' (onnxruntime and onnx)") from exc
    from .export import network_onnx_bytes

    key = ("onnx", _weights_key(model))
    cache = model.__dict__.setdefault("_soundscape_runners", {})
    if key not in cache:  # exporting takes seconds: once per network and weights
        cache.clear()
        cache[key] = network_onnx_bytes(model)
    data = cache[key]
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(data, options, providers=providers)
    name = session.get_inputs()[0].name
    info["precision"] = "fp32"
    info["onnxruntime"] = ort.__version__

    def run(x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, dict):
            raise ParameterError("backend 'onnxruntime' supports networks with one input tensor")
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(session.run(None, {name: arr})[0])

    # inputs stay contiguous: ONNX Runtime takes plain row-major arrays
    return Runner(run, Precision("fp32", torch.device("cpu"), channels_last=False), info)
