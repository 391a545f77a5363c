"""The one DSP module: batched torch signal processing, waveforms (batch, samples) -> features.

Everything that turns samples into spectral features lives here, for whole batches on CPU
or GPU: windows, the frame-count formula, the classic power spectrogram (frame means
removed, scaled as ``scipy.signal.spectrogram``), mel filterbanks, dB, images, and the
frame features of the config workflow (log filterbank energies, log STFT magnitude,
phase, group delay, per-file normalisation). `soundscape.spectrogram` (per-clip objects)
and `soundscape.preprocessing` (the model front end) both compute through it; tests check
it against scipy/numpy references to float tolerance.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ParameterError

#: power floor before taking dB, so silence maps to a finite value (then clipped)
POWER_FLOOR = 1e-20
#: floor inside the natural logs of the frame features (log |X| + floor)
LOG_FLOOR = 1e-10
#: other names of windows (the config's Ludwig spelling)
WINDOW_ALIASES = {"rectangular": "boxcar"}


def check_window(window_type: str) -> str:
    """The scipy name of `window_type`; ParameterError when scipy does not know it."""
    name = WINDOW_ALIASES.get(window_type, window_type)
    try:
        _window_cached(name, 8, "cpu", torch.float64)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"unknown window_type {window_type!r}: {exc}") from None
    return name


def window_tensor(window_type: str, n: int, device=None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Periodic window of length n, as scipy.signal.get_window(fftbins=True)."""
    name = check_window(window_type)
    return _window_cached(name, int(n), str(torch.device(device or "cpu")), dtype).clone()


@functools.lru_cache(maxsize=32)
def _window_cached(window_type: str, n: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    from scipy.signal import get_window

    win = torch.from_numpy(get_window(window_type, n, fftbins=True).astype(np.float64))
    return win.to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=32)
def _bin_weights(window_type: str, n: int, sample_rate: int, scaling: str, device: str,
                 dtype: torch.dtype) -> torch.Tensor:
    """Per-bin factor: window normalisation times 2 for the folded (one-sided) bins."""
    win = _window_cached(window_type, n, "cpu", torch.float64)
    if scaling == "spectrum":
        scale = 1.0 / float(win.sum()) ** 2
    elif scaling == "density":
        scale = 1.0 / (sample_rate * float((win**2).sum()))
    else:
        raise ParameterError(f"scaling must be 'spectrum' or 'density', got {scaling!r}")
    weights = torch.full((n // 2 + 1,), 2.0 * scale, dtype=torch.float64)
    weights[0] = scale
    if n % 2 == 0:
        weights[-1] = scale
    return weights.to(device=device, dtype=dtype)


def compute_dtype(device: torch.device | str | None) -> torch.dtype:
    """Float type of the STFT on `device`: float64 (CPU, CUDA), float32 where float64 is missing (MPS)."""
    return torch.float32 if torch.device(device or "cpu").type == "mps" else torch.float64


def n_frames(n_samples: int, window_samples: int, overlap_samples: int) -> int:
    """Number of STFT frames of a clip of `n_samples` samples (no padding at the ends)."""
    if n_samples < window_samples:
        return 0
    return 1 + (n_samples - window_samples) // (window_samples - overlap_samples)


def stft_power(
    waveforms: torch.Tensor,
    sample_rate: int,
    window_type: str = "hann",
    window_samples: int = 512,
    overlap_samples: int = 256,
    scaling: str = "spectrum",
) -> torch.Tensor:
    """One-sided power spectrogram of each waveform, frame means removed.

    Framing, mean removal and the FFT run in float64 on CPU and CUDA (agreement with the
    numpy reference to ~1e-5 dB) and in float32 on MPS; the result is float32. On CPU the
    work goes in cache-sized blocks of frames.

    Parameters
    ----------
    waveforms : (batch, samples) tensor

    Returns
    -------
    (batch, window_samples // 2 + 1, n_frames) float32 tensor
    """
    if waveforms.ndim != 2:
        raise ParameterError(f"waveforms must be (batch, samples), got shape {tuple(waveforms.shape)}")
    if overlap_samples < 0 or overlap_samples >= window_samples:
        raise ParameterError(
            f"overlap_samples ({overlap_samples}) must be smaller than window_samples ({window_samples})"
            + (" and >= 0" if overlap_samples < 0 else "")
        )
    if waveforms.shape[1] < window_samples:
        raise ParameterError(
            f"the window ({window_samples} samples) is longer than the audio ({waveforms.shape[1]} samples)"
        )
    window_type = check_window(window_type)
    hop = window_samples - overlap_samples
    device = waveforms.device
    dtype = compute_dtype(device)
    win = _window_cached(window_type, window_samples, str(device), dtype)
    weights = _bin_weights(window_type, window_samples, int(sample_rate), scaling, str(device), dtype)
    batch, n_freqs = waveforms.shape[0], window_samples // 2 + 1
    total = n_frames(waveforms.shape[1], window_samples, overlap_samples)
    out = torch.empty(batch, n_freqs, total, dtype=torch.float32, device=device)
    # Work in blocks whose float64 frames fit in the CPU cache (several times faster than
    # one pass over a whole batch) and that bound memory on hour-long audio.
    budget = _BLOCK_BYTES_CPU if device.type == "cpu" else _BLOCK_BYTES_GPU
    frames_per_block = max(1, budget // (window_samples * torch.finfo(dtype).bits // 8))
    clips_per_block = max(1, frames_per_block // max(total, 1))
    for c0 in range(0, batch, clips_per_block):
        clips = waveforms[c0:c0 + clips_per_block]
        for f0 in range(0, total, frames_per_block):
            f1 = min(total, f0 + frames_per_block)
            segment = clips[:, f0 * hop:(f1 - 1) * hop + window_samples].to(dtype)
            out[c0:c0 + clips_per_block, :, f0:f1] = _power_block(segment, win, weights, window_samples, hop)
    return out


#: working-set size of one STFT block on CPU (fits a core's L2 cache) and on GPUs
_BLOCK_BYTES_CPU = 2 * 2**20
_BLOCK_BYTES_GPU = 512 * 2**20


def _power_block(segment: torch.Tensor, win: torch.Tensor, weights: torch.Tensor, window_samples: int,
                 hop: int) -> torch.Tensor:
    """(clips, freqs, frames) power of (clips, samples) audio: frame means removed, windowed, scaled."""
    frames = segment.unfold(1, window_samples, hop)  # (clips, frames, window), a view
    frames = frames - frames.mean(dim=2, keepdim=True)
    spec = torch.fft.rfft(frames.mul_(win), dim=2)
    return (spec.real.square() + spec.imag.square()).mul_(weights).transpose(1, 2)


def power_to_db(power: torch.Tensor, decibel_limits: tuple[float, float] | None,
                inplace: bool = False) -> torch.Tensor:
    """10*log10(power) floored like the reference, clipped to `decibel_limits` if given.

    With `inplace=True` the result overwrites `power` (saves memory on big batches).
    """
    db = power.clamp_min_(POWER_FLOOR) if inplace else power.clamp_min(POWER_FLOOR)
    db = db.log10_().mul_(10.0)
    if decibel_limits is not None:
        db = db.clamp_(float(decibel_limits[0]), float(decibel_limits[1]))
    return db


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_edges(n_mels: int, min_f: float, max_f: float) -> np.ndarray:
    """The n_mels + 2 edge frequencies (Hz) of the mel filters; filter i peaks at edge i + 1."""
    return _mel_to_hz(np.linspace(_hz_to_mel(min_f), _hz_to_mel(max_f), n_mels + 2))


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, min_f: float = 0.0, max_f: float | None = None
) -> np.ndarray:
    """Triangular mel filters (HTK mel scale, peak 1), shape (n_mels, n_fft // 2 + 1)."""
    for name, value in (("n_mels", n_mels), ("n_fft", n_fft)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
    max_f = sample_rate / 2 if max_f is None else max_f
    if not (0 <= min_f < max_f <= sample_rate / 2):
        raise ParameterError(
            f"mel band needs 0 <= min_f < max_f <= Nyquist ({sample_rate / 2}); "
            f"got {min_f}, {max_f}"
        )
    edges = mel_edges(int(n_mels), min_f, max_f)
    freqs = np.fft.rfftfreq(int(n_fft), 1 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-12)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-12)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def mel_matrix(n_mels: int, n_fft: int, sample_rate: int, min_f=0.0, max_f=None, device=None) -> torch.Tensor:
    """`mel_filterbank` as a tensor (n_mels, n_fft // 2 + 1), cached per device."""
    return _mel_cached(int(n_mels), int(n_fft), int(sample_rate), float(min_f),
                       None if max_f is None else float(max_f), str(torch.device(device or "cpu")))


@functools.lru_cache(maxsize=16)
def _mel_cached(n_mels, n_fft, sample_rate, min_f, max_f, device) -> torch.Tensor:
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


@functools.lru_cache(maxsize=32)
def band_rows(n_fft: int, sample_rate: int, min_f: float | None, max_f: float | None) -> slice:
    """The contiguous rows (a slice) of rfft bins with min_f <= f <= max_f."""
    keep = np.flatnonzero(frequency_mask(n_fft, sample_rate, min_f, max_f))
    return slice(int(keep[0]), int(keep[-1]) + 1)


def resize_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize with antialiasing of (batch, channels, H, W) images."""
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False, antialias=True)


def resize_unit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one 2-D float image with the same kernel `resize_images` uses."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return resize_images(t, height, width)[0, 0].numpy()


def db_to_unit(db: torch.Tensor, decibel_limits: tuple[float, float]) -> torch.Tensor:
    """dB spectrograms (batch, freqs, frames) -> [0, 1] units, loud = 0, rows flipped (low frequencies last).

    The pointwise first half of `db_to_image` (a new tensor).
    """
    lo, hi = (float(v) for v in decibel_limits)
    # 1 - (db - lo) / (hi - lo) in one pass; in-place steps avoid temporaries
    return torch.flip(db, dims=[1]).mul_(-1.0 / (hi - lo)).add_(hi / (hi - lo)).clamp_(0.0, 1.0)


def unit_to_image(unit: torch.Tensor, height: int, width: int, channels: int = 3,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """[0, 1] units (batch, rows, frames) -> images (batch, channels, H, W) in [-1, 1].

    The second half of `db_to_image`: resize, then the [-1, 1] scaling; written into
    `out` (any memory format) when given.
    """
    unit = resize_images(unit[:, None], height, width).clamp_(0.0, 1.0)
    unit = unit.mul_(2.0).sub_(1.0).expand(-1, channels, -1, -1)
    if out is None:
        return unit.contiguous()
    return out.copy_(unit)


def spectrogram_units(
    samples: torch.Tensor,
    sample_rate: int,
    window_type: str,
    window_samples: int,
    overlap_samples: int,
    scaling: str,
    decibel_limits: tuple[float, float],
    mel: torch.Tensor | None = None,
    rows: slice | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """`db_to_unit` of the image feature's dB frames of one long waveform, in one pass per block.

    Equal (to float rounding) to ``db_to_unit(power_to_db(<mel or rows of> stft_power(x)))``
    but each block of frames goes from samples to units while it is in the CPU cache,
    without the chunk-sized dB temporaries: how the predictor streams long recordings.

    Parameters
    ----------
    samples : (samples,) tensor
    mel : (n_mels, freqs) tensor, optional
        Mel filters applied to the power (mel images).
    rows : slice, optional
        Frequency rows kept (band-limited images).
    dtype : torch dtype
        Float type of the framing and FFT (float64 as `stft_power`; float32 is faster and
        within ~0.01 dB).

    Returns
    -------
    (rows, frames) float32 tensor in [0, 1], rows flipped (the first row is the highest
    frequency), as `db_to_unit` gives.
    """
    window_type = check_window(window_type)
    hop = window_samples - overlap_samples
    device = samples.device
    win = _window_cached(window_type, window_samples, str(device), dtype)
    weights = _bin_weights(window_type, window_samples, int(sample_rate), scaling, str(device), dtype)
    total = n_frames(samples.shape[0], window_samples, overlap_samples)
    n_rows = mel.shape[0] if mel is not None else (
        (rows.stop - rows.start) if rows is not None else window_samples // 2 + 1)
    lo, hi = (float(v) for v in decibel_limits)
    # unit = (hi - 10 log10 p) / (hi - lo), clipped to [0, 1]; p floored as power_to_db does
    scale, offset = -10.0 / (hi - lo), hi / (hi - lo)
    out = torch.empty(n_rows, total, dtype=torch.float32, device=device)
    block = max(1, _BLOCK_BYTES_CPU // (window_samples * torch.finfo(dtype).bits // 8))
    melt = None if mel is None else mel.t().to(dtype)
    for f0 in range(0, total, block):
        f1 = min(total, f0 + block)
        frames = samples[f0 * hop:(f1 - 1) * hop + window_samples].to(dtype).unfold(0, window_samples, hop)
        frames = frames - frames.mean(dim=1, keepdim=True)
        spec = torch.fft.rfft(frames.mul_(win), dim=1)
        power = spec.real.square().addcmul_(spec.imag, spec.imag).mul_(weights)  # (frames, freqs)
        if melt is not None:
            power = torch.matmul(power, melt)
        elif rows is not None:
            power = power[:, rows.start:rows.stop]
        unit = power.clamp_min_(POWER_FLOOR).log10_().mul_(scale).add_(offset).clamp_(0.0, 1.0)
        out[:, f0:f1] = unit.t().flip(0)
    return out


def db_to_image(
    db: torch.Tensor,
    decibel_limits: tuple[float, float],
    height: int,
    width: int,
    channels: int = 3,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """dB spectrograms (batch, freqs, frames) -> normalised images (batch, channels, H, W).

    Loud = dark (as `Spectrogram.to_image`), low frequencies at the bottom, values in
    [-1, 1] ((x - 0.5) / 0.5 of the [0, 1] image), channels identical. With `out` (a
    ``(batch, channels, H, W)`` tensor of any memory format, e.g. a slice of a channels-last
    batch) the images are written there in one pass and `out` is returned.
    """
    return unit_to_image(db_to_unit(db, decibel_limits), height, width, channels, out=out)


# --------------------------------------------------------------------------- frame features
def frame_spectrum(waveforms: torch.Tensor, window: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
    """Complex one-sided spectrum of every frame: ``(batch, frames, n_fft // 2 + 1)``.

    Frames of ``len(window)`` samples every ``hop`` samples (no centring: the first frame
    starts at sample 0, the count is `n_frames`), multiplied by ``window`` and zero-padded
    to ``n_fft``; float32.
    """
    if waveforms.ndim != 2:
        raise ParameterError(f"waveforms must be (batch, samples), got {tuple(waveforms.shape)}")
    n_win = window.shape[0]
    if waveforms.shape[1] < n_win:
        raise ParameterError(
            f"the window ({n_win} samples) is longer than the audio ({waveforms.shape[1]} samples)"
        )
    frames = waveforms.float().unfold(1, n_win, hop) * window.to(waveforms.device, torch.float32)
    return torch.fft.rfft(frames, n=n_fft, dim=2)


def log_fbank(spectrum: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
    """Natural-log mel filterbank energies from a complex spectrum and a (bands, bins) mel matrix."""
    power = spectrum.real.square() + spectrum.imag.square()
    return torch.log(torch.matmul(power, mel.t().to(power.dtype)) + LOG_FLOOR)


def stft_magnitude(spectrum: torch.Tensor) -> torch.Tensor:
    """Log magnitude ``log(|X| + 1e-10)`` of a complex spectrum."""
    return torch.log(spectrum.abs() + LOG_FLOOR)


def stft_phase(spectrum: torch.Tensor) -> torch.Tensor:
    """Log magnitude followed by the phase in radians, concatenated on the last axis."""
    return torch.cat([stft_magnitude(spectrum), torch.angle(spectrum)], dim=-1)


def group_delay(waveforms: torch.Tensor, window: torch.Tensor, hop: int, n_fft: int) -> torch.Tensor:
    """Group delay (samples) of every frame: ``Re(X conj(Y)) / |X|^2`` with ``Y = FFT(n x[n])``.

    The negative derivative of the phase over frequency, without phase unwrapping. Bins
    whose power is below 1e-6 of the frame's mean power are damped towards zero; the result
    is clipped to ``[-n_fft, n_fft]``.
    """
    window = window.to(waveforms.device, torch.float32)
    x = frame_spectrum(waveforms, window, hop, n_fft)
    ramp = torch.arange(window.shape[0], dtype=torch.float32, device=waveforms.device)
    y = frame_spectrum(waveforms, window * ramp, hop, n_fft)
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
