"""Batched torch audio front ends for the config-driven workflow.

A front end turns fitted waveforms ``(batch, samples)`` into the features an encoder sees,
for a whole batch at once on CPU or GPU:

- ``fbank``: log mel filterbank energies, ``(batch, frames, num_filter_bands)``;
- ``stft``: log STFT magnitude, ``(batch, frames, n_fft // 2 + 1)``;
- ``stft_phase``: log magnitude and phase (radians) side by side, ``(batch, frames, 2 * bins)``;
- ``group_delay``: the group delay of every frame (in samples), ``(batch, frames, bins)``;
- ``spectrogram_image``: the classic images of :class:`soundscape.preprocessing.Preprocessing`,
  ``(batch, channels, height, width)`` (for ``resnet18``).

``norm: per_file`` normalises each feature bin of each file to zero mean and unit variance
over its frames (not applied to images, which are already scaled to [-1, 1]).

Examples
--------
>>> import torch
>>> fe = FrontEnd.from_config({"type": "fbank", "sample_rate": 8000,
...                            "audio_file_length_limit_in_s": 1.0, "num_filter_bands": 40})
>>> fe(torch.randn(2, fe.num_samples)).shape
torch.Size([2, 98, 40])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from . import features
from .errors import ParameterError
from .preprocessing import Preprocessing

__all__ = [
    "FEATURE_TYPES",
    "FrontEnd",
    "frame_spectrum",
    "log_fbank",
    "stft_magnitude",
    "stft_phase",
    "group_delay",
    "per_file_norm",
]

FEATURE_TYPES = ("fbank", "stft", "stft_phase", "group_delay", "spectrogram_image")
_LOG_FLOOR = 1e-10
_WINDOW_NAMES = {"rectangular": "boxcar"}


def _window(window_type: str, n: int, device=None) -> torch.Tensor:
    return features.window_tensor(_WINDOW_NAMES.get(window_type, window_type), n, device).float()


def frame_spectrum(
    waveforms: torch.Tensor, window: torch.Tensor, hop: int, n_fft: int
) -> torch.Tensor:
    """Complex one-sided spectrum of every frame: ``(batch, frames, n_fft // 2 + 1)``.

    Frames of ``len(window)`` samples every ``hop`` samples (no centring, so the first frame
    starts at sample 0), multiplied by ``window`` and zero-padded to ``n_fft``.
    """
    if waveforms.ndim != 2:
        raise ParameterError(f"waveforms must be (batch, samples), got {tuple(waveforms.shape)}")
    n_win = window.shape[0]
    if waveforms.shape[1] < n_win:
        raise ParameterError(
            f"the window ({n_win} samples) is longer than the audio ({waveforms.shape[1]} samples)"
        )
    frames = waveforms.float().unfold(1, n_win, hop) * window.to(waveforms.device)
    return torch.fft.rfft(frames, n=n_fft, dim=2)


def log_fbank(spectrum: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Log mel filterbank energies from a complex spectrum and a (bands, bins) mel matrix."""
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.log(torch.matmul(power, mel.t()) + _LOG_FLOOR)


def stft_magnitude(spectrum: torch.Tensor) -> torch.Tensor:
    """Log magnitude ``log(|X| + 1e-10)`` of a complex spectrum."""
    return torch.log(spectrum.abs() + _LOG_FLOOR)


def stft_phase(spectrum: torch.Tensor) -> torch.Tensor:
    """Log magnitude followed by the phase in radians, concatenated on the last axis."""
    return torch.cat([stft_magnitude(spectrum), torch.angle(spectrum)], dim=-1)


def group_delay(
    waveforms: torch.Tensor, window: torch.Tensor, hop: int, n_fft: int
) -> torch.Tensor:
    """Group delay (samples) of every frame: ``Re(X conj(Y)) / |X|^2`` with ``Y = FFT(n x[n])``.

    This is the negative derivative of the phase over frequency without phase unwrapping.
    Bins where the power is tiny (below 1e-6 of the frame's mean power) are damped towards
    zero, and the result is clipped to ``[-n_fft, n_fft]``.
    """
    x = frame_spectrum(waveforms, window, hop, n_fft)
    ramp = torch.arange(window.shape[0], dtype=torch.float32, device=waveforms.device)
    y = frame_spectrum(waveforms, window * ramp.to(window.device), hop, n_fft)
    power = x.real.square() + x.imag.square()
    floor = 1e-6 * power.mean(dim=-1, keepdim=True) + 1e-20
    gd = (x.real * y.real + x.imag * y.imag) / (power + floor)
    return gd.clamp(-float(n_fft), float(n_fft))


def per_file_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean and unit variance of every feature bin over the frames of each file.

    ``x`` is ``(batch, frames, features)``; a bin that never changes becomes all zeros.
    """
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


@dataclass(frozen=True)
class _Settings:
    type: str = "fbank"
    sample_rate: int = 16000
    audio_file_length_limit_in_s: float = 5.0
    norm: str | None = "per_file"
    window_length_in_s: float = 0.025
    window_shift_in_s: float = 0.010
    num_fft_points: int | None = None
    window_type: str = "hamming"
    num_filter_bands: int = 80
    height: int = 224
    width: int = 224
    channels: int = 3
    min_frequency_hz: float = 0.0
    max_frequency_hz: float | None = None
    decibel_limits: tuple = (-100.0, -20.0)


class FrontEnd(torch.nn.Module):
    """One audio feature's front end: fitted waveforms -> encoder input.

    Build it with :meth:`from_config` from the ``preprocessing`` mapping of an audio input
    feature (see :mod:`soundscape.config_schema`). It holds no trainable parameters; its
    window and mel matrix are non-persistent buffers, so ``.to(device)`` moves them and model
    files do not store them.
    """

    def __init__(self, **settings: Any):
        super().__init__()
        names = {f.name for f in dataclasses.fields(_Settings)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ParameterError(f"unknown front-end settings {unknown}; valid: {sorted(names)}")
        s = _Settings(**settings)
        if s.type not in FEATURE_TYPES:
            raise ParameterError(f"feature type must be one of {FEATURE_TYPES}, got {s.type!r}")
        self.settings = s
        self.window_samples = max(2, int(round(s.window_length_in_s * s.sample_rate)))
        self.hop_samples = max(1, int(round(s.window_shift_in_s * s.sample_rate)))
        self.n_fft = int(s.num_fft_points or 1 << (self.window_samples - 1).bit_length())
        if self.n_fft < self.window_samples:
            raise ParameterError(
                f"num_fft_points ({self.n_fft}) must be >= the window length "
                f"({self.window_samples} samples = window_length_in_s * sample_rate)"
            )
        if self.num_samples < self.window_samples:
            raise ParameterError(
                f"audio_file_length_limit_in_s ({s.audio_file_length_limit_in_s} s) is shorter "
                f"than one window ({s.window_length_in_s} s)"
            )
        if s.type == "spectrogram_image":
            self._preprocessing = self._image_preprocessing()
            return
        self.register_buffer("window", _window(s.window_type, self.window_samples), False)
        if s.type == "fbank":
            mel = features.mel_matrix(s.num_filter_bands, self.n_fft, s.sample_rate)
            self.register_buffer("mel", mel.float(), False)
        self._preprocessing = Preprocessing(
            sample_rate=s.sample_rate,
            clip_duration=s.audio_file_length_limit_in_s,
            short_clip="pad",
            window_type=_WINDOW_NAMES.get(s.window_type, s.window_type),
            window_samples=self.window_samples,
            overlap_samples=self.window_samples - min(self.hop_samples, self.window_samples),
            n_mels=s.num_filter_bands if s.type == "fbank" else None,
            extra={"audio_feature": self.config()},
        )

    @classmethod
    def from_config(cls, preprocessing: Mapping[str, Any]) -> "FrontEnd":
        """Front end for an audio feature's (validated) ``preprocessing`` mapping."""
        known = {f.name for f in dataclasses.fields(_Settings)}
        return cls(**{k: v for k, v in dict(preprocessing).items() if k in known})

    def config(self) -> dict:
        """The settings as a plain dict (what :meth:`from_config` takes)."""
        d = dataclasses.asdict(self.settings)
        d["decibel_limits"] = list(d["decibel_limits"])
        return d

    def _image_preprocessing(self) -> Preprocessing:
        s = self.settings
        hop = min(self.hop_samples, self.window_samples - 1)
        return Preprocessing(
            sample_rate=s.sample_rate,
            clip_duration=s.audio_file_length_limit_in_s,
            short_clip="pad",
            window_type="hann",
            window_samples=self.window_samples,
            overlap_samples=self.window_samples - hop,
            decibel_limits=tuple(s.decibel_limits),
            min_frequency=s.min_frequency_hz or None,
            max_frequency=s.max_frequency_hz,
            height=s.height,
            width=s.width,
            channels=s.channels,
            extra={"audio_feature": self.config()},
        )

    # ------------------------------------------------------------------ shapes
    @property
    def type(self) -> str:
        return self.settings.type

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    @property
    def num_samples(self) -> int:
        """Samples of every fitted clip (the length limit at the sample rate)."""
        return int(round(self.settings.audio_file_length_limit_in_s * self.settings.sample_rate))

    @property
    def preprocessing(self) -> Preprocessing:
        """The `Preprocessing` that loads (resamples, clips or pads) audio for this front end."""
        return self._preprocessing

    @property
    def num_frames(self) -> int:
        return 1 + (self.num_samples - self.window_samples) // self.hop_samples

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one clip's features: ``(frames, features)`` or ``(channels, H, W)``."""
        s = self.settings
        bins = self.n_fft // 2 + 1
        if s.type == "spectrogram_image":
            return (s.channels, s.height, s.width)
        width = {"fbank": s.num_filter_bands, "stft_phase": 2 * bins}.get(s.type, bins)
        return (self.num_frames, width)

    # ------------------------------------------------------------------ compute
    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Features of fitted waveforms ``(batch, num_samples)``."""
        if waveforms.ndim == 1:
            waveforms = waveforms[None]
        if waveforms.shape[-1] != self.num_samples:
            raise ParameterError(
                f"expected waveforms of {self.num_samples} samples "
                f"({self.settings.audio_file_length_limit_in_s} s at {self.sample_rate} Hz), "
                f"got {waveforms.shape[-1]}"
            )
        kind = self.settings.type
        if kind == "spectrogram_image":
            return self._preprocessing.images(waveforms.float())
        if kind == "group_delay":
            out = group_delay(waveforms, self.window, self.hop_samples, self.n_fft)
        else:
            spec = frame_spectrum(waveforms, self.window, self.hop_samples, self.n_fft)
            if kind == "fbank":
                out = log_fbank(spec, self.mel)
            elif kind == "stft":
                out = stft_magnitude(spec)
            else:
                out = stft_phase(spec)
        return per_file_norm(out) if self.settings.norm == "per_file" else out

    def extra_repr(self) -> str:
        return f"type={self.type!r}, output_shape={self.output_shape}, sample_rate={self.sample_rate}"
