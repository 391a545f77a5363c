"""ONNX export of a `Detector`: the network alone, or waveform -> logits with the front end.

``detector.export_onnx("model.onnx")`` writes the network: input ``features`` (the model
inputs `Preprocessing.features` makes, batch axis free), output ``logits``. With
``frontend=True`` the graph starts from audio instead: input ``waveform``, ``(batch,
clip_samples)`` float32 samples at the preprocessing's sample rate, already cut or padded to
the clip length (decoding, resampling and cutting stay outside the graph).

torch's FFT (``torch.fft.rfft``) and the antialiased resize have no ONNX operators in the
TorchScript exporter, so the front end is written for export with plain linear algebra:
`ExportFrontEnd` computes each frame's windowed DFT as a strided 1-D convolution whose
kernels are the DFT basis times the window (the frame-mean removal of the image feature
folded into the kernels), and the image resize as two matrix products with the
interpolation matrices of torch's own antialiased bilinear resize. It computes in float32
(the torch front end computes the STFT in float64): images agree to about 1e-3 of their
[-1, 1] range, see tests/test_export.py. Features "image" (plain, mel or band-limited),
"fbank", "stft", "group_delay" and "waveform" export; "stft_phase" does not (ONNX has no
atan2).

The file's metadata (``metadata_props``) holds the class names, whether the model is
multi-target, the preprocessing (JSON) and which input the graph takes.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__, dsp
from ..errors import ParameterError
from ..preprocessing import Preprocessing

__all__ = ["export_onnx", "ExportFrontEnd", "network_onnx_bytes", "OPSET"]

OPSET = 17


class ExportFrontEnd(torch.nn.Module):
    """`Preprocessing.features` in operators every ONNX runtime has (float32).

    Input ``(batch, clip_samples)`` fitted waveforms; output the model inputs.
    """

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        p = preprocessing
        if p.clip_samples is None:
            raise ParameterError("exporting the front end needs a preprocessing with a "
                                 "clip_duration")
        if p.feature == "stft_phase":
            raise ParameterError("feature 'stft_phase' cannot be exported (ONNX has no atan2); "
                                 "export the network alone with frontend=False")
        self.p = p
        self.feature = p.feature
        if p.feature == "waveform":
            return
        win_len, hop = p.frame_grid
        self.hop, self.win_len = hop, win_len
        n_fft = p.window_samples if p.feature == "image" else p.fft_size
        window = dsp._window_cached(dsp.check_window(p.window_type), win_len, "cpu", torch.float64)
        w = window.numpy()
        n = np.arange(win_len)
        k = np.arange(n_fft // 2 + 1)
        angle = 2 * np.pi * np.outer(k, n) / n_fft
        cos, sin = np.cos(angle) * w, -np.sin(angle) * w
        if p.feature == "image":  # remove each frame's mean: X_k = sum_n x_n (w_n e_kn - W_k / N)
            cos = cos - cos.sum(axis=1, keepdims=True) / win_len
            sin = sin - sin.sum(axis=1, keepdims=True) / win_len
        kernels = [cos, sin]
        if p.feature == "group_delay":  # the spectrum of n * x[n] too
            kernels += [cos * n, sin * n]
        weight = np.concatenate(kernels)[:, None, :]
        self.register_buffer("dft", torch.from_numpy(weight.astype(np.float32)), persistent=False)
        self.bins = n_fft // 2 + 1
        self.n_fft = n_fft
        if p.feature == "image":
            weights = dsp._bin_weights(dsp.check_window(p.window_type), win_len, p.sample_rate,
                                       p.scaling, "cpu", torch.float64)
            self.register_buffer("bin_weights", weights.float()[:, None], persistent=False)
            rows = None
            if p.n_mels:
                fb = dsp.mel_filterbank(p.n_mels, win_len, p.sample_rate, p.min_frequency or 0.0,
                                        p.max_frequency)
                self.register_buffer("mel", torch.from_numpy(fb), persistent=False)
                height_in = p.n_mels
            else:
                if p.min_frequency is not None or p.max_frequency is not None:
                    rows = dsp.band_rows(win_len, p.sample_rate, p.min_frequency, p.max_frequency)
                height_in = self.bins if rows is None else rows.stop - rows.start
            self.rows = rows
            width_in = p.n_frames
            self.register_buffer("resize_h", _resize_matrix(height_in, p.height), persistent=False)
            self.register_buffer("resize_w", _resize_matrix(width_in, p.width).t().contiguous(),
                                 persistent=False)
        elif p.feature == "fbank":
            mel = dsp.mel_filterbank(p.n_mels, n_fft, p.sample_rate, p.min_frequency or 0.0,
                                     p.max_frequency)
            self.register_buffer("mel", torch.from_numpy(mel).t().contiguous(), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p = self.p
        if self.feature == "waveform":
            return waveform
        spec = F.conv1d(waveform[:, None, :], self.dft, stride=self.hop)  # (batch, kernels, frames)
        re, im = spec[:, :self.bins], spec[:, self.bins:2 * self.bins]
        power = re * re + im * im
        if self.feature == "image":
            power = power * self.bin_weights
            if p.n_mels:
                power = torch.matmul(self.mel, power)
            elif self.rows is not None:
                power = power[:, self.rows.start:self.rows.stop]
            db = torch.log(torch.clamp(power, min=dsp.POWER_FLOOR)) * (10.0 / math.log(10.0))
            lo, hi = p.decibel_limits
            db = torch.clamp(db, lo, hi)
            unit = torch.flip(db, dims=[1]) * (-1.0 / (hi - lo)) + hi / (hi - lo)
            unit = torch.clamp(unit, 0.0, 1.0)
            unit = torch.matmul(torch.matmul(self.resize_h, unit), self.resize_w)
            unit = torch.clamp(unit, 0.0, 1.0) * 2.0 - 1.0
            return unit[:, None].expand(-1, p.channels, -1, -1)
        if self.feature == "group_delay":
            yr, yi = spec[:, 2 * self.bins:3 * self.bins], spec[:, 3 * self.bins:]
            floor = 1e-6 * power.mean(dim=1, keepdim=True) + 1e-20
            out = (re * yr + im * yi) / (power + floor)
            out = torch.clamp(out, -float(self.n_fft), float(self.n_fft))
        elif self.feature == "fbank":
            bands = torch.matmul(power.transpose(1, 2), self.mel)
            out = torch.log(bands + dsp.LOG_FLOOR).transpose(1, 2)
        else:  # stft: log magnitude
            out = torch.log(torch.sqrt(power) + dsp.LOG_FLOOR)
        out = out.transpose(1, 2)  # (batch, frames, bins)
        if p.norm == "per_file":
            mean = out.mean(dim=1, keepdim=True)
            std = torch.sqrt(((out - mean) ** 2).mean(dim=1, keepdim=True))
            out = (out - mean) / (std + 1e-5)
        return out


def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) matrix of torch's antialiased bilinear resize along one axis."""
    eye = torch.eye(n_in, dtype=torch.float32)[None, None]  # resize the rows of the identity
    m = F.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False, antialias=True)
    return m[0, 0].contiguous()


class _WithFrontEnd(torch.nn.Module):
    def __init__(self, frontend: torch.nn.Module, network: torch.nn.Module):
        super().__init__()
        self.frontend, self.network = frontend, network

    def forward(self, waveform):
        return self.network(self.frontend(waveform))


def _module_and_input(detector, frontend: bool):
    network = copy_for_export(detector.network)
    p = detector.preprocessing
    if frontend:
        module = _WithFrontEnd(ExportFrontEnd(p), network).eval()
        example = torch.zeros(2, p.clip_samples)
        return module, example, "waveform"
    shape = p.input_shape
    if shape is None:
        raise ParameterError("exporting needs a preprocessing with a clip_duration (a fixed "
                             "input shape)")
    extra = getattr(detector.network, "extra_inputs", None)
    if extra:
        raise ParameterError(f"this model also takes the inputs {extra}; ONNX export supports "
                             "models whose only input is the audio")
    return network, torch.zeros(2, *shape), "features"


def copy_for_export(network: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(network).cpu().eval().to(memory_format=torch.contiguous_format).float()


def _export(detector, target, frontend: bool, opset: int) -> str:
    module, example, name = _module_and_input(detector, frontend)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, (example,), target, dynamo=False, opset_version=opset,
                              input_names=[name], output_names=["logits"],
                              dynamic_axes={name: {0: "batch"}, "logits": {0: "batch"}})
    return name


def network_onnx_bytes(detector, frontend: bool = False, opset: int = OPSET) -> bytes:
    """The ONNX graph of `detector` (see `export_onnx`) as bytes, with its metadata."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise ParameterError("ONNX export needs the onnx package: pip install "
                             "'soundscape[onnx]'") from exc
    buf = io.BytesIO()
    name = _export(detector, buf, frontend, opset)
    return _with_metadata(buf.getvalue(), detector, name)


def _with_metadata(data: bytes, detector, input_name: str) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    meta = {
        "soundscape_version": __version__,
        "architecture": detector.architecture,
        "classes": json.dumps(list(detector.classes)),
        "multi_target": json.dumps(bool(detector.multi_target)),
        "default_activation": detector.default_activation,
        "preprocessing": json.dumps(detector.preprocessing.to_dict()),
        "input": input_name,
    }
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name = "soundscape"
    return proto.SerializeToString()


def export_onnx(detector, path: str | os.PathLike, frontend: bool = False,
                opset: int = OPSET) -> Path:
    """Write `detector` as an ONNX file (atomically); returns the path.

    Parameters
    ----------
    frontend : bool
        False: the graph takes model inputs (``features``). True: it takes fitted
        waveforms (``waveform``, ``(batch, clip_samples)`` at the model's sample rate) and
        computes the features itself (see the module docstring).
    opset : int
        ONNX opset (default 17).
    """
    from ..io import atomic_write

    if not isinstance(frontend, bool):
        raise ParameterError(f"frontend must be True or False, got {frontend!r}")
    data = network_onnx_bytes(detector, frontend, opset)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), make_parents=True)
