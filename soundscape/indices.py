"""Acoustic indices of soundscape ecology over the windows of long recordings.

`acoustic_indices` returns one row per window with the index of a score table
(``file, start_time, end_time``) and one column per index:

- ``ACI`` acoustic complexity (Pieretti et al. 2011): per frequency bin, the summed
  absolute change of amplitude between frames over the bin's total, summed over bins;
- ``Hf`` spectral entropy of the mean power spectrum, ``Ht`` temporal entropy of the
  squared envelope (frame maxima of ``|x|`` over 512 samples), ``H = Hf * Ht``
  (Sueur et al. 2008);
- ``NDSI`` normalised difference soundscape index (Kasten et al. 2012), ``BI``
  bioacoustic index (Boelman et al. 2007), ``ADI`` acoustic diversity and ``AEI``
  acoustic evenness (Villanueva-Rivera et al. 2011).

ACI, Hf, Ht and H are computed here, vectorised, with the definitions of scikit-maad
(tests check them against it); NDSI, BI, ADI and AEI are computed by scikit-maad
(optional extra ``indices``: ``pip install soundscape[indices]``), in its soundecology-
compatible forms, on the same spectrogram. The spectrogram comes from
`soundscape.dsp.stft_power` (amplitude = its square root). Each window is read on its
own, so memory does not grow with the recording's length.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import dsp
from .audio import Audio, clip_times
from .audio_files import audio_info, find_audio_files
from .errors import ParameterError

__all__ = ["acoustic_indices", "INDICES", "OWN_INDICES", "entropy", "aci", "temporal_entropy"]

OWN_INDICES = ("ACI", "Hf", "Ht", "H")
MAAD_INDICES = ("NDSI", "BI", "ADI", "AEI")
INDICES = OWN_INDICES + MAAD_INDICES
_TINY = 2.220446049250313e-16  # maad's floor inside the logarithms


def entropy(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy of `x` normalised to a probability mass along `axis`, divided by log(n)."""
    x = np.asarray(x, dtype=np.float64)
    pmf = x / x.sum(axis=axis, keepdims=True)
    pmf = np.where(pmf == 0, _TINY, pmf)
    return -(pmf * np.log(pmf)).sum(axis=axis) / np.log(x.shape[axis])


def aci(amplitude: np.ndarray) -> np.ndarray:
    """ACI of (..., frequencies, frames) amplitude spectrograms (maad's ``ACI_sum``)."""
    change = np.abs(np.diff(amplitude, axis=-1)).sum(axis=-1)
    return (change / amplitude.sum(axis=-1)).sum(axis=-1)


def temporal_entropy(samples: np.ndarray, frame: int = 512) -> np.ndarray:
    """Ht of (..., samples) waveforms: entropy of the squared maxima of ``|x|`` per frame.

    A last partial frame is dropped, as in maad's ``envelope(mode="fast")``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    k = samples.shape[-1] // frame
    if k < 1:
        raise ParameterError(f"temporal entropy needs at least {frame} samples")
    x = np.abs(samples[..., :k * frame])
    env = x.reshape(*x.shape[:-1], k, frame).max(axis=-1)
    return entropy(env**2, axis=-1)


def _maad_indices(amplitude: np.ndarray, power: np.ndarray, freqs: np.ndarray, names,
                  options: dict) -> dict:
    try:
        from maad import features
    except ImportError:
        raise ParameterError(
            f"the indices {sorted(names)} need scikit-maad: pip install soundscape[indices] "
            f"(or ask only for {list(OWN_INDICES)})") from None
    out = {}
    fmax = options.get("fmax", float(freqs[-1]))
    if "NDSI" in names:
        out["NDSI"] = features.soundscape_index(
            power, freqs, flim_bioPh=options.get("bio_band", (1000, 10000)),
            flim_antroPh=options.get("anthro_band", (0, 1000)))[0]
    if "BI" in names:
        out["BI"] = features.bioacoustics_index(amplitude, freqs,
                                                flim=options.get("bi_band", (2000, 15000)))
    if "ADI" in names:
        out["ADI"] = features.acoustic_diversity_index(
            amplitude, freqs, fmax=fmax, bin_step=options.get("bin_step", 1000),
            dB_threshold=options.get("db_threshold", -50))
    if "AEI" in names:
        out["AEI"] = features.acoustic_eveness_index(
            amplitude, freqs, fmax=fmax, bin_step=options.get("bin_step", 1000),
            dB_threshold=options.get("db_threshold", -50))
    return {k: float(v) for k, v in out.items()}


def _clip_indices(samples: np.ndarray, sample_rate: int, names: Sequence[str],
                  window_samples: int, overlap_samples: int, options: dict) -> dict:
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    power = dsp.stft_power(wave, sample_rate, "hann", window_samples, overlap_samples)[0]
    power = power.numpy().astype(np.float64)
    amplitude = np.sqrt(power)
    freqs = np.fft.rfftfreq(window_samples, 1 / sample_rate)
    row: dict = {}
    if "ACI" in names:
        row["ACI"] = float(aci(amplitude))
    if {"Hf", "H"} & set(names):
        row["Hf"] = float(entropy(power.mean(axis=1)))
    if {"Ht", "H"} & set(names):
        row["Ht"] = float(temporal_entropy(samples))
    if "H" in names:
        row["H"] = row["Hf"] * row["Ht"]
    wanted = [n for n in names if n in MAAD_INDICES]
    if wanted:
        row.update(_maad_indices(amplitude, power, freqs, wanted, options))
    return {n: row[n] for n in names}


def acoustic_indices(audio_or_files, clip_duration: float = 60.0, clip_overlap: float = 0.0,
                     indices: Sequence[str] = INDICES, window_samples: int = 512,
                     overlap_samples: int = 0, final_clip: str | None = None,
                     sample_rate: int | None = None, progress: bool = False,
                     **options) -> pd.DataFrame:
    """Acoustic indices of every window.

    Parameters
    ----------
    audio_or_files : Audio, path, folder or list of paths
    clip_duration, clip_overlap : float
        Window length and overlap, seconds.
    indices : sequence of str
        Names from `INDICES`.
    window_samples, overlap_samples : int
        STFT window and overlap (maad's default spectrogram is 512 / 0).
    final_clip : {None, "remainder", "full", "extend"}
        As in `Audio.split`.
    sample_rate : int, optional
        Resample files to this rate first.
    progress : bool
        Show a progress bar over windows.
    **options
        ``bio_band``, ``anthro_band`` (NDSI), ``bi_band`` (BI), ``bin_step``,
        ``db_threshold``, ``fmax`` (ADI, AEI).

    Returns
    -------
    DataFrame
        Index ``(file, start_time, end_time)``, one column per index.
    """
    names = list(indices)
    unknown = [n for n in names if n not in INDICES]
    if unknown:
        raise ParameterError(f"unknown indices {unknown}; choose from {list(INDICES)}")
    known = {"bio_band", "anthro_band", "bi_band", "bin_step", "db_threshold", "fmax"}
    if set(options) - known:
        raise ParameterError(f"unknown options {sorted(set(options) - known)}; "
                             f"known: {sorted(known)}")
    if isinstance(audio_or_files, Audio):
        jobs = [(str(audio_or_files.metadata.get("path", "audio")), audio_or_files)]
    else:
        files = find_audio_files(audio_or_files)
        if not files:
            raise ParameterError(f"no audio files in {audio_or_files!r}")
        jobs = [(str(f), None) for f in files]
    rows, keys = [], []
    from tqdm import tqdm

    for name, audio in jobs:
        duration = audio.duration if audio is not None else float(audio_info(name).duration)
        starts, ends = clip_times(duration, clip_duration, clip_overlap, final_clip)
        for s, e in tqdm(list(zip(starts, ends)), disable=not progress, desc=name):
            if audio is not None:
                clip = audio.trim(s, min(e, audio.duration))
                if sample_rate is not None:
                    clip = clip.resample(sample_rate)
            else:
                clip = Audio.from_file(name, sample_rate=sample_rate, offset=float(s),
                                       duration=float(e - s))
            if e > duration + 1e-9:
                clip = clip.pad(e - s)
            rows.append(_clip_indices(clip.samples, clip.sample_rate, names, int(window_samples),
                                      int(overlap_samples), options))
            keys.append((name, float(s), float(e)))
    index = pd.MultiIndex.from_tuples(keys, names=["file", "start_time", "end_time"])
    return pd.DataFrame(rows, index=index, columns=names)
