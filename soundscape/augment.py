"""Data augmentation for training: waveform steps and image-tensor steps.

Waveform steps (`random_trim`, `overlay`, `random_gain`, `noise_at_snr`, `mix_at_snr`,
`time_shift`, `speed_change`) work on 1-D float32 numpy arrays before the spectrogram is
made; image steps (`affine_jitter`, `colour_noise`, `time_mask`, `frequency_mask`,
`image_time_shift`, `time_stretch`, `frequency_shift`) work on (channels, H, W) tensors in
[-1, 1] as made by `Preprocessing.image`, where -1 is loud (dark) and +1 is quiet (white),
and keep the channels identical. Every function takes a numpy `Generator` so runs can be
repeated. None of them changes a clip's label.

The classes at the end (`RandomGain`, `AddNoise`, `BackgroundNoise`, `TimeShift`,
`SpeedChange`, `SpecAugment`, `TimeStretch`, `FrequencyShift`) wrap these steps with their
settings, for a dataset's ``augmentations=[...]`` list; see `Augmentation`.
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


# --------------------------------------------------------------------------- more waveform steps
def _draw(value: float | tuple[float, float], rng: np.random.Generator, name: str) -> float:
    """A fixed value, or uniform in a (low, high) range."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or not value[0] <= value[1]:
            raise ParameterError(f"{name} must be a number or a (low, high) range, got {value!r}")
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def random_gain(samples: np.ndarray, rng: np.random.Generator, max_db: float = 6.0) -> np.ndarray:
    """Scale the clip by a random gain, uniform in [-max_db, +max_db] dB.

    Helps when recorders, gain settings or distances to the animal vary.
    """
    if max_db < 0:
        raise ParameterError(f"max_db must be >= 0, got {max_db!r}")
    gain = 10.0 ** (rng.uniform(-max_db, max_db) / 20.0)
    return (samples * gain).astype(np.float32)


def _noise(n: int, rng: np.random.Generator, color: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if color == "white":
        return white
    if color != "pink":
        raise ParameterError(f"noise color must be 'white' or 'pink', got {color!r}")
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)  # power falls as 1/f


def mix_at_snr(samples: np.ndarray, background: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `background` (looped or cut to length) scaled so the clip is `snr_db` dB above it.

    SNR is the ratio of the clip's RMS to the added background's RMS. A silent clip or a
    silent background is returned unchanged.
    """
    n = len(samples)
    if len(background) == 0 or n == 0:
        return samples
    if len(background) != n:
        background = np.tile(background, math.ceil(n / len(background)))[:n]
    signal, other = _rms(samples), _rms(background)
    if signal == 0 or other == 0:
        return samples
    scale = signal / (other * 10.0 ** (snr_db / 20.0))
    return (samples + scale * background).astype(np.float32)


def noise_at_snr(samples: np.ndarray, rng: np.random.Generator,
                 snr_db: float | tuple[float, float] = (10.0, 30.0),
                 color: str = "white") -> np.ndarray:
    """Add white or pink Gaussian noise at `snr_db` dB below the clip (a value or a range).

    Helps a detector trained on clean clips cope with wind, rain and recorder hiss.
    """
    snr = _draw(snr_db, rng, "snr_db")
    return mix_at_snr(samples, _noise(len(samples), rng, color), snr)


def time_shift(samples: np.ndarray, rng: np.random.Generator, max_fraction: float = 0.5,
               wrap: bool = True) -> np.ndarray:
    """Shift the clip in time by up to `max_fraction` of its length, either way.

    ``wrap=True`` rolls (what leaves one end comes back at the other); ``False`` fills
    the gap with silence. Helps when sounds sit at varying places in the clips.
    """
    if not 0 <= max_fraction <= 1:
        raise ParameterError(f"max_fraction must be in [0, 1], got {max_fraction!r}")
    n = len(samples)
    limit = int(n * max_fraction)
    shift = int(rng.integers(-limit, limit + 1)) if limit else 0
    if wrap:
        return np.roll(samples, shift)
    out = np.zeros_like(samples)
    if shift >= 0:
        out[shift:] = samples[:n - shift]
    else:
        out[:shift] = samples[-shift:]
    return out


def speed_change(samples: np.ndarray, rng: np.random.Generator,
                 max_change: float = 0.05) -> np.ndarray:
    """Play the clip up to `max_change` (e.g. 5 %) faster or slower, keeping its length.

    Like a tape at another speed, pitch and tempo change together. Only small changes
    are sound for species whose calls are identified by pitch; skip it for those.
    """
    if not 0 <= max_change < 0.5:
        raise ParameterError(f"max_change must be in [0, 0.5), got {max_change!r}")
    n = len(samples)
    rate = 1.0 + rng.uniform(-max_change, max_change)
    positions = np.arange(n) * rate  # read the source faster (rate > 1) or slower
    out = np.interp(positions, np.arange(n), samples, right=0.0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- more image steps
def image_time_shift(image: torch.Tensor, rng: np.random.Generator, max_fraction: float = 0.5,
                     wrap: bool = True) -> torch.Tensor:
    """`time_shift` on the image: roll (or shift in silence) along the time axis."""
    _check_image(image)
    if not 0 <= max_fraction <= 1:
        raise ParameterError(f"max_fraction must be in [0, 1], got {max_fraction!r}")
    w = image.shape[2]
    limit = int(w * max_fraction)
    shift = int(rng.integers(-limit, limit + 1)) if limit else 0
    if wrap or shift == 0:
        return torch.roll(image, shift, dims=2)
    out = torch.full_like(image, QUIET)
    if shift > 0:
        out[:, :, shift:] = image[:, :, :w - shift]
    else:
        out[:, :, :shift] = image[:, :, -shift:]
    return out


def time_stretch(image: torch.Tensor, rng: np.random.Generator,
                 max_change: float = 0.1) -> torch.Tensor:
    """Stretch or squeeze the image in time by up to `max_change`, keeping its width.

    Pitch is unchanged (only the time axis is resampled); a squeezed image is completed
    with silence at the end, a stretched one is cut. Helps with calls of varying tempo.
    """
    _check_image(image)
    if not 0 <= max_change < 1:
        raise ParameterError(f"max_change must be in [0, 1), got {max_change!r}")
    c, h, w = image.shape
    new_w = max(1, int(round(w * (1.0 + rng.uniform(-max_change, max_change)))))
    if new_w == w:
        return image.clone()
    resized = F.interpolate(image[None], size=(h, new_w), mode="bilinear",
                            align_corners=False)[0]
    if new_w > w:
        return resized[:, :, :w].contiguous()
    out = torch.full_like(image, QUIET)
    out[:, :, :new_w] = resized
    return out


def frequency_shift(image: torch.Tensor, rng: np.random.Generator,
                    max_fraction: float = 0.05) -> torch.Tensor:
    """Move the image up or down by up to `max_fraction` of its height; quiet rows fill in.

    On a linear spectrogram this is a shift in Hz, on a mel image roughly a pitch shift.
    Only small shifts are sound, and none for species told apart by pitch.
    """
    _check_image(image)
    if not 0 <= max_fraction < 1:
        raise ParameterError(f"max_fraction must be in [0, 1), got {max_fraction!r}")
    h = image.shape[1]
    limit = int(h * max_fraction)
    shift = int(rng.integers(-limit, limit + 1)) if limit else 0
    if shift == 0:
        return image.clone()
    out = torch.full_like(image, QUIET)
    if shift > 0:  # down the image = lower frequencies (low frequencies are at the bottom)
        out[:, shift:] = image[:, :h - shift]
    else:
        out[:, :shift] = image[:, -shift:]
    return out


# --------------------------------------------------------------------------- configured steps
class Augmentation:
    """Base of configured augmentation steps for a dataset's ``augmentations=[...]`` list.

    A step is called as ``step(x, rng)``; `kind` says what x is: ``"waveform"`` (1-D
    float32 numpy samples at the preprocessing's rate, before the spectrogram) or
    ``"image"`` (the (channels, H, W) model input). Waveform steps make the dataset
    recompute the spectrogram of every item; image steps work on the cached image and
    cost almost nothing. Any callable with a `kind` attribute works as a step.
    """

    kind = "image"

    def __call__(self, x, rng: np.random.Generator):
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class RandomGain(Augmentation):
    """`random_gain`: a gain uniform in +-`max_db` dB (waveform)."""

    kind = "waveform"

    def __init__(self, max_db: float = 6.0):
        random_gain(np.zeros(1, np.float32), np.random.default_rng(0), max_db)  # validates
        self.max_db = float(max_db)

    def __call__(self, x, rng):
        return random_gain(x, rng, self.max_db)


class AddNoise(Augmentation):
    """`noise_at_snr`: white or pink noise at `snr_db` (value or range), with probability `p`."""

    kind = "waveform"

    def __init__(self, snr_db: float | tuple[float, float] = (10.0, 30.0), color: str = "white",
                 p: float = 1.0):
        _draw(snr_db, np.random.default_rng(0), "snr_db")
        _noise(2, np.random.default_rng(0), color)
        _check_probability(p)
        self.snr_db, self.color, self.p = snr_db, color, float(p)

    def __call__(self, x, rng):
        return noise_at_snr(x, rng, self.snr_db, self.color) if rng.random() < self.p else x


class BackgroundNoise(Augmentation):
    """Mix a random background recording under the clip at `snr_db` (value or range).

    Parameters
    ----------
    sources : list of paths or 1-D arrays
        Background recordings (rain, wind, other sites without the target sound). Files
        are read once per process at `sample_rate`.
    snr_db : float or (low, high)
    p : float
        Probability of mixing a background into an item.
    sample_rate : int, optional
        The dataset's sample rate; needed when `sources` are files.
    """

    kind = "waveform"

    def __init__(self, sources, snr_db: float | tuple[float, float] = (0.0, 20.0),
                 p: float = 0.5, sample_rate: int | None = None):
        sources = list(sources)
        if not sources:
            raise ParameterError("BackgroundNoise needs at least one background recording")
        if any(not isinstance(s, np.ndarray) for s in sources) and sample_rate is None:
            raise ParameterError("BackgroundNoise: give sample_rate= (the dataset's) to read files")
        _draw(snr_db, np.random.default_rng(0), "snr_db")
        _check_probability(p)
        self.sources, self.snr_db, self.p, self.sample_rate = sources, snr_db, float(p), sample_rate
        self._loaded: dict[int, np.ndarray] = {}

    def _background(self, j: int) -> np.ndarray:
        if j not in self._loaded:
            src = self.sources[j]
            if isinstance(src, np.ndarray):
                self._loaded[j] = np.asarray(src, dtype=np.float32)
            else:
                from .audio import Audio

                self._loaded[j] = Audio.from_file(src, sample_rate=self.sample_rate).samples
        return self._loaded[j]

    def __call__(self, x, rng):
        if rng.random() >= self.p:
            return x
        j = int(rng.integers(len(self.sources)))
        return mix_at_snr(x, self._background(j), _draw(self.snr_db, rng, "snr_db"))


class SpeedChange(Augmentation):
    """`speed_change`: up to +-`max_change` faster/slower, pitch and tempo together (waveform)."""

    kind = "waveform"

    def __init__(self, max_change: float = 0.05):
        speed_change(np.zeros(2, np.float32), np.random.default_rng(0), max_change)
        self.max_change = float(max_change)

    def __call__(self, x, rng):
        return speed_change(x, rng, self.max_change)


class TimeShift(Augmentation):
    """`image_time_shift`: roll (``wrap``) or shift the image by up to `max_fraction` of its width.

    The cheap, image-level form of `time_shift` (no new spectrogram per item).
    """

    def __init__(self, max_fraction: float = 0.5, wrap: bool = True):
        if not 0 <= max_fraction <= 1:
            raise ParameterError(f"max_fraction must be in [0, 1], got {max_fraction!r}")
        self.max_fraction, self.wrap = float(max_fraction), bool(wrap)

    def __call__(self, x, rng):
        return image_time_shift(x, rng, self.max_fraction, self.wrap)


class SpecAugment(Augmentation):
    """`time_mask` and `frequency_mask`: masked bands, each up to `max_fraction` of the image."""

    def __init__(self, time_masks: int = 2, frequency_masks: int = 2, max_fraction: float = 0.1):
        if int(time_masks) < 0 or int(frequency_masks) < 0 or not 0 < max_fraction <= 1:
            raise ParameterError(
                "SpecAugment needs time_masks >= 0, frequency_masks >= 0 and "
                f"0 < max_fraction <= 1, got {time_masks}, {frequency_masks}, {max_fraction}"
            )
        self.time_masks, self.frequency_masks = int(time_masks), int(frequency_masks)
        self.max_fraction = float(max_fraction)

    def __call__(self, x, rng):
        if self.time_masks:
            x = time_mask(x, rng, self.time_masks, self.max_fraction)
        if self.frequency_masks:
            x = frequency_mask(x, rng, self.frequency_masks, self.max_fraction)
        return x


class TimeStretch(Augmentation):
    """`time_stretch`: the image stretched or squeezed in time by up to `max_change`."""

    def __init__(self, max_change: float = 0.1):
        if not 0 <= max_change < 1:
            raise ParameterError(f"max_change must be in [0, 1), got {max_change!r}")
        self.max_change = float(max_change)

    def __call__(self, x, rng):
        return time_stretch(x, rng, self.max_change)


class FrequencyShift(Augmentation):
    """`frequency_shift`: the image moved up or down by up to `max_fraction` of its height."""

    def __init__(self, max_fraction: float = 0.05):
        if not 0 <= max_fraction < 1:
            raise ParameterError(f"max_fraction must be in [0, 1), got {max_fraction!r}")
        self.max_fraction = float(max_fraction)

    def __call__(self, x, rng):
        return frequency_shift(x, rng, self.max_fraction)


def _check_probability(p: float) -> None:
    if not 0 <= p <= 1:
        raise ParameterError(f"probability p must be in [0, 1], got {p!r}")


def check_augmentations(steps) -> list:
    """Validate a dataset's ``augmentations`` list: callables with kind "waveform" or "image"."""
    steps = list(steps or [])
    for i, step in enumerate(steps):
        kind = getattr(step, "kind", None)
        if not callable(step) or kind not in ("waveform", "image"):
            raise ParameterError(
                f"augmentations[{i}] ({step!r}) must be a callable step(x, rng) with .kind "
                "'waveform' or 'image', e.g. soundscape.augment.SpecAugment()"
            )
    return steps
