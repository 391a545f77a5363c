"""RIBBIT: scores for periodically pulsed calls (Lapp et al. 2021, Conservation Biology).

Many frogs and toads (and some insects and birds) call with pulses at a steady rate.
RIBBIT needs no training: per spectrogram frame it takes the mean dB level in the call's
frequency band (minus the mean level of optional noise bands), and per clip it computes
the power spectral density of that amplitude signal; the clip's score is the highest PSD
value at a pulse rate inside the species' range (``pulse_rate`` is where it lies).

`ribbit` returns a score table with the index of `soundscape.predict_recordings`
(``file, start_time, end_time``) and a column ``score``, so `soundscape.detections`,
Raven export and `soundscape.activity` work on it. Files are read in chunks: memory
depends on `chunk_duration`, not on the recording's length (the amplitude signal of a
whole night is a few MB). The spectrogram comes from `soundscape.dsp.stft_power`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import soundfile
import torch

from . import dsp
from .audio import Audio, clip_times
from .audio_files import audio_info, find_audio_files
from .errors import AudioFileError, ParameterError
from .spectrogram import Spectrogram

__all__ = ["ribbit", "pulse_scores", "band_amplitude"]

Band = tuple[float, float]


def _check_band(band, name: str, nyquist: float | None) -> Band:
    try:
        lo, hi = (float(v) for v in band)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be (low, high) in Hz, got {band!r}") from None
    if not (0 <= lo < hi) or (nyquist is not None and lo >= nyquist):
        raise ParameterError(f"{name} must satisfy 0 <= low < high (low below Nyquist "
                             f"{nyquist} Hz), got {band!r}")
    return lo, hi


def band_amplitude(db: np.ndarray, frequencies: np.ndarray, signal_band: Band,
                   noise_bands: Sequence[Band] | None = None) -> np.ndarray:
    """Per frame, mean dB in `signal_band` minus the mean dB of each noise band.

    `db` is (frequencies, frames); rows are chosen by their centre frequency.
    """
    def mean(band: Band) -> np.ndarray:
        rows = (frequencies >= band[0]) & (frequencies <= band[1])
        if not rows.any():
            raise ParameterError(f"no spectrogram row lies in the band {band} Hz")
        return db[rows].mean(axis=0)

    out = mean(signal_band).astype(np.float64)
    for band in noise_bands or []:
        out -= mean(band)
    return out


def pulse_scores(amplitude: np.ndarray, frame_rate: float, pulse_rate_range: Band,
                 nfft: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Score and best pulse rate of each row of `amplitude` (clips x frames).

    The PSD (Hann window, one-sided density) of each clip's amplitude minus its mean;
    the score is its maximum between the pulse-rate limits (Hz).
    """
    amplitude = np.atleast_2d(np.asarray(amplitude, dtype=np.float64))
    n = amplitude.shape[1]
    if n < 4:
        raise ParameterError(f"a clip needs at least 4 spectrogram frames, got {n}")
    nfft = max(1024, 1 << int(np.ceil(np.log2(n)))) if nfft is None else int(nfft)
    lo, hi = pulse_rate_range
    if hi > frame_rate / 2:
        raise ParameterError(f"pulse_rate_range upper limit {hi} Hz is above half the frame "
                             f"rate ({frame_rate / 2:.1f} Hz); use a shorter hop")
    window = np.hanning(n + 2)[1:-1]
    x = (amplitude - amplitude.mean(axis=1, keepdims=True)) * window
    psd = np.abs(np.fft.rfft(x, n=nfft, axis=1)) ** 2 / (frame_rate * (window ** 2).sum())
    psd[:, 1:] *= 2.0
    rates = np.fft.rfftfreq(nfft, 1.0 / frame_rate)
    keep = np.flatnonzero((rates >= lo) & (rates <= hi))
    if not len(keep):
        raise ParameterError(f"no pulse rate resolved in {pulse_rate_range} Hz")
    band = psd[:, keep]
    best = band.argmax(axis=1)
    return band[np.arange(len(band)), best], rates[keep][best]


def _db_frames(samples: np.ndarray, sample_rate: int, window_samples: int,
               overlap_samples: int) -> np.ndarray:
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    power = dsp.stft_power(wave, sample_rate, "hann", window_samples, overlap_samples)[0]
    return dsp.power_to_db(power, None, inplace=True).numpy()


def _file_amplitude(path: str, signal_band, noise_bands, window_samples, overlap_samples,
                    chunk_duration: float) -> tuple[np.ndarray, int, float]:
    """Band amplitude of every frame of a file (frames from sample 0), read in chunks."""
    info = audio_info(path)
    rate, total = int(info.samplerate), int(info.frames)
    hop = window_samples - overlap_samples
    n_total = dsp.n_frames(total, window_samples, overlap_samples)
    if n_total == 0:
        raise AudioFileError(f"{path}: shorter than one spectrogram window")
    freqs = np.fft.rfftfreq(window_samples, 1 / rate)
    per_chunk = max(1, int(chunk_duration * rate) // hop)
    out = np.empty(n_total, dtype=np.float64)
    try:
        with soundfile.SoundFile(path) as handle:
            for f0 in range(0, n_total, per_chunk):
                f1 = min(n_total, f0 + per_chunk)
                handle.seek(f0 * hop)
                data = handle.read((f1 - f0 - 1) * hop + window_samples, dtype="float32",
                                   always_2d=True)
                samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if len(samples) < window_samples:
                    out = out[:f0]
                    break
                db = _db_frames(samples, rate, window_samples, overlap_samples)
                amp = band_amplitude(db, freqs, signal_band, noise_bands)
                out[f0:f0 + len(amp)] = amp
                if len(amp) < f1 - f0:  # data ended early (truncated file)
                    out = out[:f0 + len(amp)]
                    break
    except (soundfile.LibsndfileError, RuntimeError) as exc:
        raise AudioFileError(f"{path}: could not decode audio ({exc})") from exc
    return out, rate, total / rate


def _scores(name, amplitude, frame_rate, hop_s, window_s, duration, clip_duration,
            clip_overlap, pulse_rate_range, final_clip, return_rate) -> pd.DataFrame:
    starts, ends = clip_times(duration, clip_duration, clip_overlap, final_clip)
    n_clip = max(4, int(round((clip_duration - window_s) / hop_s)) + 1)
    first = np.floor(starts / hop_s + 0.5).astype(np.int64)
    padded = np.pad(amplitude, (0, max(0, int(first.max()) + n_clip - len(amplitude))),
                    mode="edge")
    rows = padded[first[:, None] + np.arange(n_clip)[None, :]]
    score, rate = pulse_scores(rows, frame_rate, pulse_rate_range)
    index = pd.MultiIndex.from_arrays([[name] * len(starts), starts, ends],
                                      names=["file", "start_time", "end_time"])
    out = pd.DataFrame({"score": score}, index=index)
    if return_rate:
        out["pulse_rate"] = rate
    return out


def ribbit(audio_or_spectrogram, signal_band: Band, pulse_rate_range: Band,
           clip_duration: float, clip_overlap: float = 0.0,
           noise_bands: Sequence[Band] | None = None, window_samples: int = 512,
           overlap_samples: int = 256, final_clip: str | None = None,
           chunk_duration: float = 60.0, return_rate: bool = False) -> pd.DataFrame:
    """RIBBIT pulse-rate scores of every clip.

    Parameters
    ----------
    audio_or_spectrogram : Audio, Spectrogram, path, folder or list of paths
        What to score; files (folders searched recursively) are read in chunks at their
        own sample rate.
    signal_band : (low, high)
        Frequency band of the call, Hz.
    pulse_rate_range : (low, high)
        Pulse rates of the species, pulses per second.
    clip_duration, clip_overlap : float
        Clip length and overlap of consecutive clips, seconds.
    noise_bands : list of (low, high), optional
        Bands whose level is subtracted (wind, other species).
    window_samples, overlap_samples : int
        STFT window and overlap (the frame rate, ``sample_rate / hop``, must exceed twice
        the highest pulse rate).
    final_clip : {None, "remainder", "full", "extend"}
        As in `Audio.split`.
    chunk_duration : float
        Seconds of audio read at a time from files.
    return_rate : bool
        Add a column ``pulse_rate`` (the rate of the best PSD value).

    Returns
    -------
    DataFrame
        Index ``(file, start_time, end_time)``, column ``score``.
    """
    pulse_rate_range = _check_band(pulse_rate_range, "pulse_rate_range", None)
    noise = [_check_band(b, "noise band", None) for b in (noise_bands or [])]
    signal_band = _check_band(signal_band, "signal_band", None)
    window_samples, overlap_samples = int(window_samples), int(overlap_samples)
    if not 0 <= overlap_samples < window_samples:
        raise ParameterError(f"overlap_samples ({overlap_samples}) must be >= 0 and smaller "
                             f"than window_samples ({window_samples})")
    args = (clip_duration, clip_overlap, pulse_rate_range, final_clip, return_rate)
    if isinstance(audio_or_spectrogram, Spectrogram):
        spec = audio_or_spectrogram
        if len(spec.times) < 2:
            raise ParameterError("the spectrogram needs at least 2 frames")
        hop_s = float(np.median(np.diff(spec.times)))
        window_s = (spec.window_samples / spec.sample_rate
                    if spec.window_samples and spec.sample_rate else hop_s)
        amp = band_amplitude(spec.spectrogram, spec.frequencies, signal_band, noise)
        duration = float(spec.times[-1] + window_s / 2)
        return _scores("spectrogram", amp, 1 / hop_s, hop_s, window_s, duration, *args)
    if isinstance(audio_or_spectrogram, Audio):
        audio = audio_or_spectrogram
        rate = audio.sample_rate
        _check_band(signal_band, "signal_band", rate / 2)
        db = _db_frames(audio.samples, rate, window_samples, overlap_samples)
        amp = band_amplitude(db, np.fft.rfftfreq(window_samples, 1 / rate), signal_band, noise)
        hop_s = (window_samples - overlap_samples) / rate
        name = str(audio.metadata.get("path", "audio"))
        return _scores(name, amp, 1 / hop_s, hop_s, window_samples / rate, audio.duration, *args)
    files = find_audio_files(audio_or_spectrogram)
    if not files:
        raise ParameterError(f"no audio files in {audio_or_spectrogram!r}")
    parts = []
    for path in files:
        amp, rate, duration = _file_amplitude(str(path), signal_band, noise, window_samples,
                                              overlap_samples, float(chunk_duration))
        hop_s = (window_samples - overlap_samples) / rate
        parts.append(_scores(str(path), amp, 1 / hop_s, hop_s, window_samples / rate,
                             duration, *args))
    return pd.concat(parts)
