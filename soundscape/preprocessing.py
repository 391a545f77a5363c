"""`Preprocessing`: the one description of how audio becomes model input.

The same object drives the training datasets and prediction, and is saved inside
model files, so a model always sees its inputs prepared the way it was trained.

Steps: decode -> mono -> resample -> cut/pad to `clip_duration` -> STFT power ->
(mel) -> dB clipped to `decibel_limits` -> (frequency band) -> image (loud = dark,
low frequencies at the bottom) -> resize -> `channels` copies -> normalise to [-1, 1].
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import features
from .audio import Audio
from .errors import ParameterError
from .spectrogram import MelSpectrogram, Spectrogram

SHORT_CLIP_POLICIES = ("pad", "extend", "error")
_AUDIO_FIELDS = ("sample_rate", "clip_duration", "short_clip")
_IMAGE_FIELDS = ("height", "width", "channels")


@dataclass(frozen=True)
class Preprocessing:
    """Parameters that turn an audio clip into a model input tensor.

    Parameters
    ----------
    sample_rate : int
        Every clip is resampled to this rate (Hz).
    clip_duration : float or None
        Clips are cut or completed to this many seconds; None keeps each clip's length
        (then clips in one batch must be equally long).
    short_clip : {"pad", "extend", "error"}
        What to do with a clip shorter than `clip_duration`: zero-pad, loop, or raise.
    window_type, window_samples, overlap_samples, decibel_limits, scaling
        Spectrogram parameters, as in `Spectrogram.from_audio`.
    n_mels : int or None
        Use a mel spectrogram with this many filters; None keeps linear frequencies.
    min_frequency, max_frequency : float or None
        Keep only this frequency band (Hz) of the spectrogram.
    height, width, channels : int
        Size of the image the model sees.
    """

    sample_rate: int = 22050
    clip_duration: float | None = None
    short_clip: str = "pad"
    window_type: str = "hann"
    window_samples: int = 512
    overlap_samples: int = 256
    decibel_limits: tuple[float, float] = (-100.0, -20.0)
    scaling: str = "spectrum"
    n_mels: int | None = None
    min_frequency: float | None = None
    max_frequency: float | None = None
    height: int = 224
    width: int = 224
    channels: int = 3
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "decibel_limits", tuple(float(x) for x in self.decibel_limits))
        if int(self.sample_rate) != self.sample_rate or self.sample_rate <= 0:
            raise ParameterError(f"sample_rate must be a positive integer, got {self.sample_rate!r}")
        # one spelling per value (5 and 5.0), so equal objects have equal cache keys
        object.__setattr__(self, "sample_rate", int(self.sample_rate))
        for name in ("clip_duration", "min_frequency", "max_frequency"):
            value = getattr(self, name)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                object.__setattr__(self, name, float(value))
        if self.clip_duration is not None and not (self.clip_duration > 0):
            raise ParameterError(f"clip_duration must be > 0 seconds or None, got {self.clip_duration!r}")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise ParameterError(f"short_clip must be one of {SHORT_CLIP_POLICIES}, got {self.short_clip!r}")
        if not (0 <= self.overlap_samples < self.window_samples):
            raise ParameterError(
                f"overlap_samples ({self.overlap_samples}) must be >= 0 and smaller than "
                f"window_samples ({self.window_samples})"
            )
        lo, hi = self.decibel_limits
        if not lo < hi:
            raise ParameterError(f"decibel_limits must be (low, high) with low < high, got {self.decibel_limits}")
        for name in ("height", "width", "channels"):
            if int(getattr(self, name)) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.n_mels is not None and self.n_mels < 1:
            raise ParameterError(f"n_mels must be >= 1 or None, got {self.n_mels!r}")
        nyq = self.sample_rate / 2
        if self.min_frequency is not None and not (0 <= self.min_frequency < nyq):
            raise ParameterError(f"min_frequency must be in [0, {nyq}) Hz, got {self.min_frequency}")
        if self.max_frequency is not None and not (0 < self.max_frequency <= nyq):
            raise ParameterError(f"max_frequency must be in (0, {nyq}] Hz, got {self.max_frequency}")
        if (self.min_frequency is not None and self.max_frequency is not None
                and self.min_frequency >= self.max_frequency):
            raise ParameterError(
                f"min_frequency ({self.min_frequency}) must be below max_frequency ({self.max_frequency})"
            )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; `Preprocessing.from_dict` restores an equal object."""
        d = dataclasses.asdict(self)
        d["decibel_limits"] = list(self.decibel_limits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        """Rebuild from `to_dict` output; unknown keys raise ParameterError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ParameterError(f"unknown preprocessing parameters {unknown}; valid: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes) -> "Preprocessing":
        """A copy with some parameters changed."""
        return dataclasses.replace(self, **changes)

    def cache_key(self) -> str:
        """Short hash of all the parameters (for caches keyed by preprocessing)."""
        return self._hash(self.to_dict())

    def audio_cache_key(self) -> str:
        """Hash of the parameters that decide the fitted waveform (rate, duration, short-clip policy)."""
        return self._hash({k: getattr(self, k) for k in _AUDIO_FIELDS})

    def spectrogram_cache_key(self) -> str:
        """Hash of the parameters that decide the dB spectrogram (all but the image size)."""
        d = self.to_dict()
        for k in _IMAGE_FIELDS:
            d.pop(k)
        return self._hash(d)

    @staticmethod
    def _hash(d: dict) -> str:
        d = dict(d)
        d.pop("extra", None)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def n_frames(self) -> int | None:
        """Spectrogram frames per clip, or None without a fixed clip duration."""
        n = self.clip_samples
        return None if n is None else features.n_frames(n, self.window_samples, self.overlap_samples)

    @property
    def clip_samples(self) -> int | None:
        """Samples per clip at `sample_rate`, or None without a fixed clip duration."""
        return None if self.clip_duration is None else int(round(self.clip_duration * self.sample_rate))

    # ------------------------------------------------------------------ audio step
    def load_audio(self, path: str | Path, offset: float = 0.0, duration: float | None = None) -> Audio:
        """Read a clip from disk and bring it to `sample_rate` and `clip_duration`."""
        duration = self.clip_duration if duration is None else duration
        audio = Audio.from_file(path, sample_rate=self.sample_rate, offset=offset, duration=duration)
        return self.fit_audio(audio, source=str(path))

    def fit_audio(self, audio: Audio, source: str = "audio") -> Audio:
        """Resample `audio` and cut or complete it to `clip_duration`."""
        if audio.sample_rate != self.sample_rate:
            audio = audio.resample(self.sample_rate)
        n = self.clip_samples
        if n is None or len(audio.samples) == n:
            return audio
        if len(audio.samples) > n:
            return Audio(audio.samples[:n], audio.sample_rate, audio.metadata)
        if len(audio.samples) == 0:
            raise ParameterError(f"{source}: clip is empty")
        if self.short_clip == "error":
            raise ParameterError(
                f"{source}: clip is {audio.duration:.3f} s, shorter than clip_duration "
                f"{self.clip_duration} s (set short_clip='pad' or 'extend' to accept it)"
            )
        if self.short_clip == "extend":
            return audio.extend(self.clip_duration)
        return audio.pad(self.clip_duration)

    # ------------------------------------------------------------------ per-clip reference
    def spectrogram(self, audio: Audio) -> Spectrogram:
        """The per-clip (numpy) spectrogram of an already fitted clip."""
        kw = dict(
            window_type=self.window_type, window_samples=self.window_samples,
            overlap_samples=self.overlap_samples, decibel_limits=self.decibel_limits, scaling=self.scaling,
        )
        if self.n_mels:
            lo = self.min_frequency or 0.0
            spec = MelSpectrogram.from_audio(audio, n_mels=self.n_mels, min_f=lo, max_f=self.max_frequency, **kw)
        else:
            spec = Spectrogram.from_audio(audio, **kw)
            if self.min_frequency is not None or self.max_frequency is not None:
                spec = spec.bandpass(self.min_frequency or 0.0, self.max_frequency or audio.sample_rate / 2)
        return spec

    def image_reference(self, audio: Audio) -> torch.Tensor:
        """(channels, H, W) input tensor of one clip via the per-clip numpy path."""
        audio = self.fit_audio(audio)
        spec = self.spectrogram(audio)
        db = torch.from_numpy(spec.spectrogram)[None]
        return features.db_to_image(db, self.decibel_limits, self.height, self.width, self.channels)[0]

    # ------------------------------------------------------------------ batched engine
    def spectrogram_batch(self, waveforms: torch.Tensor) -> torch.Tensor:
        """dB spectrograms (batch, freqs, frames) of fitted waveforms (batch, samples).

        Runs on the waveforms' device; equals `spectrogram` of each clip to float tolerance.
        """
        power = features.stft_power(
            waveforms, self.sample_rate, self.window_type, self.window_samples,
            self.overlap_samples, self.scaling,
        )
        if self.n_mels:
            fb = features.mel_matrix(
                self.n_mels, self.window_samples, self.sample_rate,
                self.min_frequency or 0.0, self.max_frequency, power.device,
            )
            power = torch.matmul(fb, power)
        elif self.min_frequency is not None or self.max_frequency is not None:
            rows = features.band_rows(
                self.window_samples, self.sample_rate, self.min_frequency, self.max_frequency
            )
            power = power[:, rows.start:rows.stop]
        return features.power_to_db(power, self.decibel_limits, inplace=True)

    def spectrogram_images(self, db: torch.Tensor) -> torch.Tensor:
        """Model inputs (batch, channels, H, W) from dB spectrograms (batch, freqs, frames)."""
        return features.db_to_image(db, self.decibel_limits, self.height, self.width, self.channels)

    def images(self, waveforms: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
        """Model inputs (batch, channels, H, W) from fitted waveforms (batch, samples).

        Parameters
        ----------
        waveforms : (batch, samples) tensor
        device : optional
            Compute there (e.g. "cuda"); default: where `waveforms` are.
        """
        if device is not None:
            waveforms = waveforms.to(device, non_blocking=True)
        return self.spectrogram_images(self.spectrogram_batch(waveforms))

    def image(self, audio: Audio) -> torch.Tensor:
        """(channels, H, W) model input of one clip through the batched engine."""
        audio = self.fit_audio(audio)
        return self.images(torch.from_numpy(audio.samples)[None])[0]


def stack_waveforms(clips: list[Audio | np.ndarray]) -> torch.Tensor:
    """Stack equally long clips into a (batch, samples) float32 tensor."""
    arrays = [c.samples if isinstance(c, Audio) else np.asarray(c, dtype=np.float32) for c in clips]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ParameterError(
            f"clips in a batch must be equally long, got lengths {sorted(lengths)}; "
            "set Preprocessing.clip_duration so every clip is cut or padded to one length"
        )
    return torch.from_numpy(np.stack(arrays))
