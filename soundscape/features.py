"""Batched torch front ends: waveforms (batch, samples) -> spectrograms and images.

These functions compute, for a whole batch at once (on CPU or GPU), exactly what the
per-clip reference in `soundscape.spectrogram` computes for one clip; tests check
that the two agree to float tolerance.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ParameterError
from .spectrogram import POWER_FLOOR, mel_filterbank

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "boxcar": lambda n, **kw: torch.ones(n, **kw),
}


def window_tensor(window_type: str, n: int, device=None) -> torch.Tensor:
    """Periodic window of length n (float64), as scipy.signal.get_window(fftbins=True)."""
    if window_type not in _WINDOWS:
        raise ParameterError(f"window_type must be one of {sorted(_WINDOWS)}, got {window_type!r}")
    if window_type == "boxcar":
        return torch.ones(n, dtype=torch.float64, device=device)
    return _WINDOWS[window_type](n, periodic=True, dtype=torch.float64, device=device)


def stft_power(
    waveforms: torch.Tensor,
    sample_rate: int,
    window_type: str = "hann",
    window_samples: int = 512,
    overlap_samples: int = 256,
    scaling: str = "spectrum",
) -> torch.Tensor:
    """One-sided power spectrogram of each waveform, frame means removed.

    Parameters
    ----------
    waveforms : (batch, samples) tensor

    Returns
    -------
    (batch, window_samples // 2 + 1, n_frames) float32 tensor
    """
    if waveforms.ndim != 2:
        raise ParameterError(f"waveforms must be (batch, samples), got shape {tuple(waveforms.shape)}")
    if not (0 <= overlap_samples < window_samples):
        raise ParameterError(
            f"overlap_samples ({overlap_samples}) must be >= 0 and smaller than window_samples ({window_samples})"
        )
    if waveforms.shape[1] < window_samples:
        raise ParameterError(
            f"the window ({window_samples} samples) is longer than the audio ({waveforms.shape[1]} samples)"
        )
    hop = window_samples - overlap_samples
    win = window_tensor(window_type, window_samples, waveforms.device)
    if scaling == "spectrum":
        scale = 1.0 / float(win.sum()) ** 2
    elif scaling == "density":
        scale = 1.0 / (sample_rate * float((win**2).sum()))
    else:
        raise ParameterError(f"scaling must be 'spectrum' or 'density', got {scaling!r}")
    # float64 framing keeps agreement with the numpy reference to ~1e-6 dB
    frames = waveforms.to(torch.float64).unfold(1, window_samples, hop)  # (B, T, W)
    frames = (frames - frames.mean(dim=2, keepdim=True)) * win
    spec = torch.fft.rfft(frames, dim=2).abs().pow(2) * scale
    n_freqs = window_samples // 2 + 1
    weights = torch.full((n_freqs,), 2.0, dtype=spec.dtype, device=spec.device)
    weights[0] = 1.0
    if window_samples % 2 == 0:
        weights[-1] = 1.0
    return (spec * weights).transpose(1, 2).to(torch.float32)


def power_to_db(power: torch.Tensor, decibel_limits: tuple[float, float] | None) -> torch.Tensor:
    """10*log10(power) floored like the reference, clipped to `decibel_limits` if given."""
    db = 10 * torch.log10(power.clamp_min(POWER_FLOOR))
    if decibel_limits is not None:
        db = db.clamp(decibel_limits[0], decibel_limits[1])
    return db


def mel_matrix(n_mels: int, n_fft: int, sample_rate: int, min_f=0.0, max_f=None, device=None) -> torch.Tensor:
    """The reference mel filterbank as a tensor (n_mels, n_fft // 2 + 1)."""
    return torch.from_numpy(mel_filterbank(n_mels, n_fft, sample_rate, min_f, max_f)).to(device)


def frequency_mask(n_fft: int, sample_rate: int, min_f: float | None, max_f: float | None) -> np.ndarray:
    """Boolean mask of rfft bins with min_f <= f <= max_f (None = no limit)."""
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    keep = np.ones_like(freqs, dtype=bool)
    if min_f is not None:
        keep &= freqs >= min_f
    if max_f is not None:
        keep &= freqs <= max_f
    if not keep.any():
        raise ParameterError(f"no frequency bin lies in [{min_f}, {max_f}] Hz at {sample_rate} Hz")
    return keep


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with antialiasing of (batch, channels, H, W) images."""
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def resize_unit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one 2-D float image with the same kernel `resize_images` uses."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return resize_images(t, height, width)[0, 0].numpy()


def db_to_image(
    db: torch.Tensor,
    decibel_limits: tuple[float, float],
    height: int,
    width: int,
    channels: int = 3,
) -> torch.Tensor:
    """dB spectrograms (batch, freqs, frames) -> normalised images (batch, channels, H, W).

    Loud = dark (as `Spectrogram.to_image`), low frequencies at the bottom, values in
    [-1, 1] ((x - 0.5) / 0.5 of the [0, 1] image), channels identical.
    """
    lo, hi = decibel_limits
    unit = 1.0 - ((db - lo) / (hi - lo)).clamp(0.0, 1.0)
    unit = torch.flip(unit, dims=[1])[:, None]
    unit = resize_images(unit, height, width).clamp(0.0, 1.0)
    return ((unit - 0.5) / 0.5).expand(-1, channels, -1, -1).contiguous()
