"""Data augmentation for training: waveform steps and image-tensor steps.

Waveform steps (`random_trim`, `overlay`) work on 1-D float32 numpy arrays before the
spectrogram is made; image steps (`affine_jitter`, `colour_noise`, `time_mask`,
`frequency_mask`) work on (channels, H, W) tensors in [-1, 1] as made by
`Preprocessing.image`, where -1 is loud (dark) and +1 is quiet (white), and keep the
channels identical. Every function takes a numpy `Generator` so runs can be repeated.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ParameterError

#: value of a silent pixel in a model image (loud = -1, quiet = +1)
QUIET = 1.0


def generator(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A numpy Generator; without a seed it is drawn from torch's RNG.

    Drawing from torch makes augmentation follow ``torch.manual_seed`` and differ between
    DataLoader workers (torch seeds each worker differently).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, ()).item())
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- waveform steps
def random_trim(samples: np.ndarray, n_samples: int, rng: np.random.Generator,
                extend_short: bool = False, source: str = "clip") -> np.ndarray:
    """A random window of `n_samples` samples.

    Longer clips are cut at a random start; shorter ones are looped (``extend_short``)
    or zero-padded at the end. An empty clip raises ParameterError naming `source`.
    """
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ParameterError(f"random trim length must be at least one sample, got {n_samples}")
    n = len(samples)
    if n == 0:
        raise ParameterError(f"{source}: clip is empty, cannot trim it")
    if n > n_samples:
        start = int(rng.integers(0, n - n_samples + 1))
        return samples[start:start + n_samples]
    if n == n_samples:
        return samples
    if extend_short:
        return np.tile(samples, math.ceil(n_samples / n))[:n_samples]
    out = np.zeros(n_samples, dtype=np.float32)
    out[:n] = samples
    return out


def overlay_weight(weight: float | str, rng: np.random.Generator) -> float:
    """The mixing weight of one overlay: a fixed float in (0, 1), or "random" (0.3 to 0.7)."""
    if isinstance(weight, str):
        if weight != "random":
            raise ParameterError(
                f"overlay_weight must be a float in (0, 1) or 'random', got {weight!r}"
            )
        return float(rng.uniform(0.3, 0.7))
    if not 0 < weight < 1:
        raise ParameterError(f"overlay_weight must be in (0, 1), got {weight!r}")
    return float(weight)


def overlay(samples: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """Mix `other` into `samples`: ``(1 - weight) * samples + weight * other``.

    `other` is looped or cut to the length of `samples`.
    """
    n = len(samples)
    if len(other) == 0:
        return samples
    if len(other) != n:
        other = np.tile(other, math.ceil(n / len(other)))[:n]
    return ((1.0 - weight) * samples + weight * other).astype(np.float32)


# --------------------------------------------------------------------------- image steps
def _check_image(image: torch.Tensor) -> None:
    if image.ndim != 3:
        raise ParameterError(f"image must be (channels, H, W), got shape {tuple(image.shape)}")


def affine_jitter(image: torch.Tensor, rng: np.random.Generator,
                  max_shift: tuple[float, float] = (0.2, 0.03),
                  max_zoom: float = 0.05) -> torch.Tensor:
    """Shift (fraction of width, fraction of height) and zoom an image at random.

    Pixels shifted in from outside are quiet (white). Time shifts are larger than
    frequency shifts by default because a sound's pitch carries identity.
    """
    _check_image(image)
    tx = rng.uniform(-max_shift[0], max_shift[0]) * 2  # affine_grid works in [-1, 1]
    ty = rng.uniform(-max_shift[1], max_shift[1]) * 2
    zoom = 1.0 + rng.uniform(-max_zoom, max_zoom)
    theta = torch.tensor([[1 / zoom, 0.0, tx], [0.0, 1 / zoom, ty]], dtype=image.dtype)[None]
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    # shift relative to "quiet" so padding with zeros means padding with silence
    moved = F.grid_sample(image[None] - QUIET, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)[0]
    return (moved + QUIET).clamp(-1.0, 1.0)


def colour_noise(image: torch.Tensor, rng: np.random.Generator, brightness: float = 0.3,
                 contrast: float = 0.3, noise_std: float = 0.05) -> torch.Tensor:
    """Random brightness and contrast changes plus Gaussian pixel noise, clipped to [-1, 1].

    The same change applies to every channel, so channels stay identical.
    """
    _check_image(image)
    unit = (image[:1] + 1.0) / 2.0
    unit = unit * (1.0 + rng.uniform(-brightness, brightness))
    mean = unit.mean()
    unit = (unit - mean) * (1.0 + rng.uniform(-contrast, contrast)) + mean
    if noise_std > 0:
        noise = rng.normal(0.0, noise_std, size=tuple(unit.shape)).astype(np.float32)
        unit = unit + torch.from_numpy(noise).to(unit.dtype)
    out = (unit.clamp(0.0, 1.0) - 0.5) / 0.5
    return out.expand_as(image).contiguous()


def _mask(image: torch.Tensor, rng: np.random.Generator, n_masks: int, max_fraction: float,
          dim: int) -> torch.Tensor:
    _check_image(image)
    if n_masks < 0 or not 0 < max_fraction <= 1:
        raise ParameterError(
            f"masks need n_masks >= 0 and 0 < max_fraction <= 1, got {n_masks}, {max_fraction}"
        )
    out = image.clone()
    size = image.shape[dim]
    fill = image.mean()
    for _ in range(int(n_masks)):
        width = int(rng.integers(0, max(1, int(size * max_fraction)) + 1))
        if width == 0:
            continue
        start = int(rng.integers(0, size - width + 1))
        out.narrow(dim, start, width).fill_(fill)
    return out


def time_mask(image: torch.Tensor, rng: np.random.Generator, n_masks: int = 1,
              max_fraction: float = 0.1) -> torch.Tensor:
    """Fill `n_masks` random time bands (each up to `max_fraction` of the width).

    Masked pixels get the image mean (SpecAugment-style).
    """
    return _mask(image, rng, n_masks, max_fraction, dim=2)


def frequency_mask(image: torch.Tensor, rng: np.random.Generator, n_masks: int = 1,
                   max_fraction: float = 0.1) -> torch.Tensor:
    """Fill `n_masks` random frequency bands (each up to `max_fraction` of the height)."""
    return _mask(image, rng, n_masks, max_fraction, dim=1)
