"""The config's audio ``preprocessing`` (Ludwig names) translated to the one `Preprocessing`.

This is the only place that knows the Ludwig spellings (``window_length_in_s``,
``num_filter_bands``, ``audio_file_length_limit_in_s``...); everything after it, front end,
datasets, training, prediction and model files, sees a plain `Preprocessing`.

Examples
--------
>>> prep = preprocessing_from_config({"type": "fbank", "sample_rate": 8000,
...                                   "audio_file_length_limit_in_s": 1.0, "num_filter_bands": 40})
>>> prep.feature, prep.input_shape
('fbank', (98, 40))
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ParameterError
from ..preprocessing import Preprocessing

__all__ = ["CONFIG_FEATURE_TYPES", "preprocessing_from_config"]

#: config ``preprocessing.type`` -> `Preprocessing.feature`
CONFIG_FEATURE_TYPES = {"fbank": "fbank", "stft": "stft", "stft_phase": "stft_phase",
                        "group_delay": "group_delay", "spectrogram_image": "image"}
_DEFAULTS = {"type": "fbank", "sample_rate": 16000, "audio_file_length_limit_in_s": 5.0,
             "norm": "per_file", "window_length_in_s": 0.025, "window_shift_in_s": 0.010,
             "num_fft_points": None, "window_type": "hamming", "num_filter_bands": 80,
             "height": 224, "width": 224, "channels": 3, "min_frequency_hz": 0.0,
             "max_frequency_hz": None, "decibel_limits": (-100.0, -20.0)}


def preprocessing_from_config(settings: Mapping[str, Any]) -> Preprocessing:
    """The `Preprocessing` of an audio input's (validated) ``preprocessing`` mapping.

    Window length and shift become whole samples at the sample rate; the FFT length
    defaults to the next power of two at or above the window. ``spectrogram_image`` is the
    classic image (Hann window, dB limits, frequency band, image size; no ``norm``).
    """
    unknown = sorted(set(settings) - set(_DEFAULTS))
    if unknown:
        raise ParameterError(f"unknown audio preprocessing settings {unknown}; valid: {sorted(_DEFAULTS)}")
    s = {**_DEFAULTS, **dict(settings)}
    kind = s["type"]
    if kind not in CONFIG_FEATURE_TYPES:
        raise ParameterError(f"feature type must be one of {tuple(CONFIG_FEATURE_TYPES)}, got {kind!r}")
    rate = int(s["sample_rate"])
    window = max(2, int(round(s["window_length_in_s"] * rate)))
    hop = max(1, int(round(s["window_shift_in_s"] * rate)))
    clip_samples = int(round(s["audio_file_length_limit_in_s"] * rate))
    if clip_samples < window:
        raise ParameterError(
            f"audio_file_length_limit_in_s ({s['audio_file_length_limit_in_s']} s) is shorter "
            f"than one window ({s['window_length_in_s']} s)"
        )
    common = dict(sample_rate=rate, clip_duration=float(s["audio_file_length_limit_in_s"]),
                  short_clip="pad", window_samples=window)
    if kind == "spectrogram_image":
        return Preprocessing(
            feature="image", window_type="hann", overlap_samples=window - min(hop, window - 1),
            decibel_limits=tuple(s["decibel_limits"]), min_frequency=s["min_frequency_hz"] or None,
            max_frequency=s["max_frequency_hz"], height=s["height"], width=s["width"],
            channels=s["channels"], **common)
    n_fft = int(s["num_fft_points"] or 1 << (window - 1).bit_length())
    if n_fft < window:
        raise ParameterError(
            f"num_fft_points ({n_fft}) must be >= the window length "
            f"({window} samples = window_length_in_s * sample_rate)"
        )
    return Preprocessing(
        feature=kind, window_type=s["window_type"], overlap_samples=window - min(hop, window),
        n_fft=n_fft, n_mels=s["num_filter_bands"] if kind == "fbank" else None,
        norm=s["norm"], **common)
