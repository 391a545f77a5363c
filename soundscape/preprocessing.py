"""`Preprocessing`: the one description of how audio becomes model input, and its front end.

The same object drives the training datasets and prediction, and is saved inside every
model file, so a model always sees its inputs prepared the way it was trained, whichever
door (classic API or config/CLI) made it.

Steps: decode -> mono -> resample -> cut/pad to `clip_duration` -> **frames** (a
``(batch, bins, frames)`` tensor of per-frame values, each STFT frame independent of the
others) -> **finish** (the model input). The `feature` decides what the two stages are:

============  ======================================================  ============================
feature       frames (stage 1)                                        model input (stage 2)
============  ======================================================  ============================
image         power spectrogram (frame means removed), optional mel   ``(channels, height, width)``
              or frequency band, dB clipped to `decibel_limits`       image in [-1, 1], loud = dark
fbank         natural-log mel filterbank energies (`n_mels` bands)    ``(frames, n_mels)``
stft          log STFT magnitude                                      ``(frames, n_fft // 2 + 1)``
stft_phase    log magnitude then phase (radians)                      ``(frames, n_fft + 2)``
group_delay   group delay of each frame (samples)                     ``(frames, n_fft // 2 + 1)``
waveform      the samples themselves (one "frame" per sample)         ``(samples,)``
============  ======================================================  ============================

Frame features are normalised per clip when ``norm="per_file"``. Because frames are
independent, the predictor computes the frames of a whole chunk of a long recording once
and cuts every window's input from them (`soundscape.torch.windows`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import dsp
from .audio import Audio
from .errors import ParameterError
from .spectrogram import MelSpectrogram, Spectrogram

SHORT_CLIP_POLICIES = ("pad", "extend", "error")
FEATURES = ("image", "fbank", "stft", "stft_phase", "group_delay", "waveform")
NORMS = (None, "per_file")
FRAME_FEATURES = ("fbank", "stft", "stft_phase", "group_delay")
logger = logging.getLogger("soundscape.preprocessing")
_warned_stretch: set = set()
_warned_stretch_lock = threading.Lock()

_AUDIO_FIELDS = ("sample_rate", "clip_duration", "short_clip")
_FINISH_FIELDS = ("height", "width", "channels", "norm")


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
    feature : {"image", "fbank", "stft", "stft_phase", "group_delay", "waveform"}
        What the model sees (see the module docstring).
    window_type, window_samples, overlap_samples
        STFT window (any scipy window name), its length and the overlap of consecutive
        windows, in samples.
    n_fft : int or None
        FFT length of the frame features (windows are zero-padded to it); None: the
        window length. The image feature uses the window length.
    decibel_limits, scaling
        dB range and power scaling of the image feature, as in `Spectrogram.from_audio`.
    n_mels : int or None
        Mel filters: a mel image (feature "image"), or the bands of "fbank" (required).
    min_frequency, max_frequency : float or None
        Frequency band (Hz): rows of the image, or the range of the mel filters.
    height, width, channels : int
        Size of the image the model sees (feature "image").
    norm : {None, "per_file"}
        Zero mean and unit variance per bin over each clip's frames (frame features).
    """

    sample_rate: int = 22050
    clip_duration: float | None = None
    short_clip: str = "pad"
    feature: str = "image"
    window_type: str = "hann"
    window_samples: int = 512
    overlap_samples: int = 256
    n_fft: int | None = None
    decibel_limits: tuple[float, float] = (-100.0, -20.0)
    scaling: str = "spectrum"
    n_mels: int | None = None
    min_frequency: float | None = None
    max_frequency: float | None = None
    height: int = 224
    width: int = 224
    channels: int = 3
    norm: str | None = None

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
        for name in ("window_samples", "overlap_samples", "height", "width", "channels"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.feature not in FEATURES:
            raise ParameterError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if self.clip_duration is not None and not (self.clip_duration > 0):
            raise ParameterError(f"clip_duration must be > 0 seconds or None, got {self.clip_duration!r}")
        if self.short_clip not in SHORT_CLIP_POLICIES:
            raise ParameterError(f"short_clip must be one of {SHORT_CLIP_POLICIES}, got {self.short_clip!r}")
        dsp.check_window(self.window_type)
        if not (0 <= self.overlap_samples < self.window_samples):
            raise ParameterError(
                f"overlap_samples ({self.overlap_samples}) must be >= 0 and smaller than "
                f"window_samples ({self.window_samples})"
            )
        if self.n_fft is not None:
            if self.feature == "image" and self.n_fft != self.window_samples:
                raise ParameterError("n_fft applies to frame features; the image feature uses "
                                     f"window_samples ({self.window_samples}), got n_fft={self.n_fft}")
            if int(self.n_fft) < self.window_samples:
                raise ParameterError(f"n_fft ({self.n_fft}) must be >= window_samples "
                                     f"({self.window_samples})")
            object.__setattr__(self, "n_fft", int(self.n_fft))
        lo, hi = self.decibel_limits
        if not lo < hi:
            raise ParameterError(f"decibel_limits must be (low, high) with low < high, got {self.decibel_limits}")
        for name in ("height", "width", "channels"):
            if getattr(self, name) < 1:
                raise ParameterError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.n_mels is not None and self.n_mels < 1:
            raise ParameterError(f"n_mels must be >= 1 or None, got {self.n_mels!r}")
        if self.feature == "fbank" and self.n_mels is None:
            raise ParameterError("feature 'fbank' needs n_mels (the number of filter bands)")
        if self.norm not in NORMS:
            raise ParameterError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.norm is not None and self.feature not in FRAME_FEATURES:
            raise ParameterError(f"norm={self.norm!r} applies to the frame features {FRAME_FEATURES}, "
                                 f"not to feature {self.feature!r}")
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
        n = self.clip_samples
        if n is not None and self.feature != "waveform" and n < self.window_samples:
            raise ParameterError(
                f"clip_duration {self.clip_duration} s ({n} samples) is shorter than one window "
                f"({self.window_samples} samples)"
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

    def frames_cache_key(self) -> str:
        """Hash of the parameters that decide the frames (all but the finishing step's)."""
        d = self.to_dict()
        for k in _FINISH_FIELDS:
            d.pop(k)
        return self._hash(d)

    @staticmethod
    def _hash(d: dict) -> str:
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ shapes
    @property
    def clip_samples(self) -> int | None:
        """Samples per clip at `sample_rate`, or None without a fixed clip duration."""
        return None if self.clip_duration is None else int(round(self.clip_duration * self.sample_rate))

    @property
    def fft_size(self) -> int:
        """FFT length: `n_fft`, or the window length."""
        return self.n_fft or self.window_samples

    @property
    def frame_grid(self) -> tuple[int, int]:
        """(samples per frame, hop in samples) of the frames; (1, 1) for the waveform feature."""
        if self.feature == "waveform":
            return 1, 1
        return self.window_samples, self.window_samples - self.overlap_samples

    def frames_of(self, n_samples: int) -> int:
        """Number of frames of `n_samples` samples (the one frame-count formula, `dsp.n_frames`)."""
        win, hop = self.frame_grid
        return dsp.n_frames(int(n_samples), win, win - hop)

    @property
    def n_frames(self) -> int | None:
        """Frames per clip, or None without a fixed clip duration."""
        n = self.clip_samples
        return None if n is None else self.frames_of(n)

    @property
    def n_bins(self) -> int:
        """Rows of the frames tensor (frequency bins, bands, or 1 for the waveform)."""
        bins = self.fft_size // 2 + 1
        if self.feature == "waveform":
            return 1
        if self.feature == "fbank" or (self.feature == "image" and self.n_mels):
            return int(self.n_mels)
        if self.feature == "image" and (self.min_frequency is not None or self.max_frequency is not None):
            rows = dsp.band_rows(self.window_samples, self.sample_rate, self.min_frequency,
                                 self.max_frequency)
            return rows.stop - rows.start
        return 2 * bins if self.feature == "stft_phase" else bins

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Shape of one clip's model input, or None when it depends on the clip's length."""
        if self.feature == "image":
            return (self.channels, self.height, self.width)
        if self.clip_samples is None:
            return None
        if self.feature == "waveform":
            return (self.clip_samples,)
        return (self.n_frames, self.n_bins)

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
    def _require_image(self, what: str) -> None:
        if self.feature != "image":
            raise ParameterError(f"{what} is for the image feature; this preprocessing's feature is "
                                 f"{self.feature!r}")

    def spectrogram(self, audio: Audio) -> Spectrogram:
        """The per-clip spectrogram object (feature "image") of an already fitted clip."""
        self._require_image("Preprocessing.spectrogram")
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
        """(channels, H, W) input of one clip through the per-clip `Spectrogram` objects."""
        audio = self.fit_audio(audio)
        db = torch.from_numpy(self.spectrogram(audio).spectrogram)[None]
        return self.finish(db)[0]

    # ------------------------------------------------------------------ the batched engine
    def _window(self, device) -> torch.Tensor:
        return dsp.window_tensor(self.window_type, self.window_samples, device, torch.float32)

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Stage 1: ``(batch, n_bins, frames)`` float32 of fitted waveforms ``(batch, samples)``.

        Runs on the waveforms' device. Frames are independent of each other, so the frames
        of a long chunk can be cut into the frames of its windows.
        """
        if waveforms.ndim != 2:
            raise ParameterError(f"waveforms must be (batch, samples), got shape {tuple(waveforms.shape)}")
        kind = self.feature
        if kind == "waveform":
            return waveforms.float()[:, None, :]
        if kind == "image":
            power = dsp.stft_power(waveforms, self.sample_rate, self.window_type, self.window_samples,
                                   self.overlap_samples, self.scaling)
            if self.n_mels:
                fb = dsp.mel_matrix(self.n_mels, self.window_samples, self.sample_rate,
                                    self.min_frequency or 0.0, self.max_frequency, power.device)
                power = torch.matmul(fb, power)
            elif self.min_frequency is not None or self.max_frequency is not None:
                rows = dsp.band_rows(self.window_samples, self.sample_rate, self.min_frequency,
                                     self.max_frequency)
                power = power[:, rows.start:rows.stop]
            return dsp.power_to_db(power, self.decibel_limits, inplace=True)
        win, hop = self.frame_grid
        window = self._window(waveforms.device)
        if kind == "group_delay":
            out = dsp.group_delay(waveforms, window, hop, self.fft_size)
        else:
            spec = dsp.frame_spectrum(waveforms, window, hop, self.fft_size)
            if kind == "fbank":
                mel = dsp.mel_matrix(self.n_mels, self.fft_size, self.sample_rate,
                                     self.min_frequency or 0.0, self.max_frequency, waveforms.device)
                out = dsp.log_fbank(spec, mel)
            elif kind == "stft":
                out = dsp.stft_magnitude(spec)
            else:
                out = dsp.stft_phase(spec)
        return out.transpose(1, 2)

    def finish(self, frames: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Stage 2: model inputs ``(batch, *input_shape)`` from frames ``(batch, n_bins, frames)``.

        With `out` (a tensor of that shape, e.g. a slice of a batch the predictor fills, in
        any memory format) the inputs are written there and `out` is returned.
        """
        if self.feature == "image":
            if self.clip_duration is None:
                self._warn_stretch(frames.shape[-1])
            return dsp.db_to_image(frames, self.decibel_limits, self.height, self.width, self.channels,
                                   out=out)
        if self.feature == "waveform":
            result = frames[:, 0, :]
        else:
            result = frames.transpose(1, 2)
            if self.norm == "per_file":
                result = dsp.per_file_norm(result)
        if out is not None:
            return out.copy_(result)
        return result if self.feature == "waveform" or self.norm == "per_file" else result.contiguous()

    # ------------------------------------------------------------------ streaming (long recordings)
    def stream_frames(self, samples: torch.Tensor, stft_dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Per-frame values ``(rows, frames)`` of one long waveform, for cutting windows from.

        `finish_stream` of the frames of a window equals `finish` of `frames` of its clip
        (to float rounding). For the image feature these are already the pointwise part of
        the image (`dsp.spectrogram_units`: dB scaled to [0, 1], rows flipped), computed
        block by block in one pass, so the windows only need resizing; for the other
        features they are `frames`. `stft_dtype` float32 (image feature only) runs the
        STFT in float32: faster, within ~0.01 dB of the float64 STFT.
        """
        if samples.ndim != 1:
            raise ParameterError(f"samples must be one waveform (samples,), got {tuple(samples.shape)}")
        if self.feature != "image":
            return self.frames(samples[None])[0]
        mel = rows = None
        if self.n_mels:
            mel = dsp.mel_matrix(self.n_mels, self.window_samples, self.sample_rate,
                                 self.min_frequency or 0.0, self.max_frequency, samples.device)
        elif self.min_frequency is not None or self.max_frequency is not None:
            rows = dsp.band_rows(self.window_samples, self.sample_rate, self.min_frequency,
                                 self.max_frequency)
        return dsp.spectrogram_units(samples, self.sample_rate, self.window_type, self.window_samples,
                                     self.overlap_samples, self.scaling, self.decibel_limits, mel, rows,
                                     dtype=stft_dtype)

    def finish_stream(self, frames: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Model inputs ``(batch, *input_shape)`` of windows cut from `stream_frames`."""
        if self.feature == "image":
            return dsp.unit_to_image(frames, self.height, self.width, self.channels, out=out)
        return self.finish(frames, out=out)

    def _warn_stretch(self, n_frames: int) -> None:
        """Warn (once per process and preprocessing) that clips of any length become one image size.

        Without a clip duration each clip's spectrogram is resized to `width` columns,
        so the time axis is stretched or squeezed by a factor that differs per file.
        """
        key = self.cache_key()
        with _warned_stretch_lock:
            if key in _warned_stretch:
                return
            _warned_stretch.add(key)
        win, hop = self.frame_grid
        seconds = ((max(n_frames, 1) - 1) * hop + win) / self.sample_rate
        factor = self.width / max(n_frames, 1)
        logger.warning(
            "clip_duration is None: every clip's spectrogram is resized to %d x %d whatever the "
            "clip's length, so its time axis is stretched by width / frames, a factor that differs "
            "between clips of different lengths (this clip: %d frames, about %.2f s -> %d columns, "
            "x%.3g); set clip_duration (Preprocessing(clip_duration=...) or the dataset's "
            "clip_duration=) to keep one time scale", self.height, self.width, n_frames, seconds,
            self.width, factor)

    def features(self, waveforms: torch.Tensor, device: str | torch.device | None = None) -> torch.Tensor:
        """Model inputs ``(batch, *input_shape)`` of fitted waveforms ``(batch, samples)``.

        Parameters
        ----------
        waveforms : (batch, samples) tensor
        device : optional
            Compute there (e.g. "cuda"); default: where `waveforms` are.
        """
        if device is not None:
            waveforms = waveforms.to(device, non_blocking=True)
        return self.finish(self.frames(waveforms))

    #: the classic name of `features` for image models
    images = features

    def feature_of(self, audio: Audio) -> torch.Tensor:
        """The model input of one clip (fitted first) through the batched engine."""
        audio = self.fit_audio(audio)
        return self.features(torch.from_numpy(np.asarray(audio.samples, dtype=np.float32))[None])[0]

    #: the classic name of `feature_of`
    image = feature_of

    def frontend(self) -> "FrontEnd":
        """The torch module computing `features` (for models that take waveforms)."""
        return FrontEnd(self)


class FrontEnd(torch.nn.Module):
    """`Preprocessing.features` as a torch module: fitted waveforms -> model input.

    It holds no parameters or buffers (windows and mel matrices are cached per device by
    `soundscape.dsp`), so model files store nothing for it.
    """

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        if not isinstance(preprocessing, Preprocessing):
            raise ParameterError(f"FrontEnd needs a Preprocessing, got {type(preprocessing).__name__}")
        self.preprocessing = preprocessing

    @property
    def output_shape(self) -> tuple[int, ...] | None:
        return self.preprocessing.input_shape

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Model inputs of fitted waveforms ``(batch, clip_samples)`` (or one ``(clip_samples,)``)."""
        if waveforms.ndim == 1:
            waveforms = waveforms[None]
        n = self.preprocessing.clip_samples
        if n is not None and waveforms.shape[-1] != n:
            p = self.preprocessing
            raise ParameterError(f"expected waveforms of {n} samples ({p.clip_duration} s at "
                                 f"{p.sample_rate} Hz), got {waveforms.shape[-1]}")
        return self.preprocessing.features(waveforms)

    def extra_repr(self) -> str:
        p = self.preprocessing
        return f"feature={p.feature!r}, output_shape={self.output_shape}, sample_rate={p.sample_rate}"


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
