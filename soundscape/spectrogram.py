"""Per-clip spectrograms (the classic API): `Spectrogram` and `MelSpectrogram`.

This is the numpy reference implementation. The batched torch engine in
`soundscape.features` computes the same values for whole batches; tests check that
the two agree to float tolerance.
"""

from __future__ import annotations

from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import dsp
from .audio import Audio
from .dsp import POWER_FLOOR, mel_filterbank  # noqa: F401  (classic import path)
from .errors import ParameterError

def _check_int(value, name: str, minimum: int) -> int:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or int(value) != value or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_limits(limits, name: str = "decibel_limits") -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a pair (low, high), got {limits!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ParameterError(f"{name} must be finite with low < high, got {limits!r}")
    return lo, hi


def _frame_axes(n_frames: int, window_samples: int, overlap_samples: int, sample_rate: int):
    frequencies = np.fft.rfftfreq(window_samples, 1 / sample_rate)
    times = (
        np.arange(n_frames) * (window_samples - overlap_samples) + window_samples / 2
    ) / sample_rate
    return frequencies, times


def _power(samples: np.ndarray, sample_rate: int, window_type: str, window_samples: int,
           overlap_samples: int, scaling: str) -> torch.Tensor:
    """(n_freqs, n_frames) float32 power of one clip through `dsp.stft_power`."""
    window_samples = _check_int(window_samples, "window_samples", 1)
    overlap_samples = _check_int(overlap_samples, "overlap_samples", 0)
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None]
    return dsp.stft_power(wave, sample_rate, window_type, window_samples, overlap_samples, scaling)[0]


def stft_power(
    samples: np.ndarray,
    sample_rate: int,
    window_type: str = "hann",
    window_samples: int = 512,
    overlap_samples: int = 256,
    scaling: str = "spectrum",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-sided power spectrogram, frame means removed (as scipy.signal.spectrogram does).

    Returns
    -------
    power : (n_freqs, n_frames) float32
    frequencies : (n_freqs,) Hz
    times : (n_frames,) window centres in seconds
    """
    power = _power(np.asarray(samples), sample_rate, window_type, window_samples, overlap_samples,
                   scaling).numpy()
    return (power, *_frame_axes(power.shape[1], window_samples, overlap_samples, sample_rate))


def power_to_db(power: np.ndarray, decibel_limits: tuple[float, float] | None) -> np.ndarray:
    """10*log10(power), floored at POWER_FLOOR, clipped to `decibel_limits` if given (float32)."""
    db = dsp.power_to_db(torch.from_numpy(np.array(power, dtype=np.float64)), decibel_limits)
    return db.numpy().astype(np.float32)


def db_to_unit(db: np.ndarray, decibel_limits: tuple[float, float]) -> np.ndarray:
    """Map dB within `decibel_limits` to [0, 1] where 1 is the loudest."""
    lo, hi = decibel_limits
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0)


class Spectrogram:
    """A power spectrogram in dB: ``spectrogram[freq, time]``; `frequencies` (Hz), `times` (s).

    Build one with `Spectrogram.from_audio(audio)`. Every method returns a new object.
    `decibel_limits` is the value range that `to_image` and `plot` map from white
    (low) to black (high); the scaling methods replace it with their output range.
    """

    def __init__(
        self,
        spectrogram: np.ndarray,
        frequencies: np.ndarray,
        times: np.ndarray,
        decibel_limits: tuple[float, float] = (-100, -20),
        window_samples: int | None = None,
        overlap_samples: int | None = None,
        sample_rate: int | None = None,
    ):
        spectrogram = np.asarray(spectrogram, dtype=np.float32)
        frequencies = np.asarray(frequencies, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        if spectrogram.ndim != 2:
            raise ParameterError(
                f"spectrogram must be 2-D (frequencies x times), got shape {spectrogram.shape}"
            )
        if spectrogram.shape != (len(frequencies), len(times)):
            raise ParameterError(
                f"spectrogram shape {spectrogram.shape} does not match "
                f"{len(frequencies)} frequencies x {len(times)} times"
            )
        self.spectrogram = spectrogram
        self.frequencies = frequencies
        self.times = times
        self.decibel_limits = _check_limits(decibel_limits)
        self.window_samples = window_samples
        self.overlap_samples = overlap_samples
        self.sample_rate = sample_rate

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_audio(
        cls,
        audio: Audio,
        window_type: str = "hann",
        window_samples: int = 512,
        overlap_samples: int = 256,
        decibel_limits: tuple[float, float] = (-100, -20),
        scaling: str = "spectrum",
    ) -> "Spectrogram":
        """Power spectrogram in dB of `audio`, clipped to `decibel_limits`.

        Values equal ``10*log10`` of ``scipy.signal.spectrogram`` with the same window,
        ``nperseg``, ``noverlap`` and ``scaling``; `times` are the window centres. At
        22050 Hz a 2-s clip gives 257 frequency bins x 171 frames with the defaults.

        Parameters
        ----------
        audio : Audio
        window_type : str
            Any window scipy.signal.get_window knows ("hann", "hamming", "blackman", ...).
        window_samples, overlap_samples : int
            FFT window length and the overlap of consecutive windows, in samples.
        decibel_limits : (low, high)
            Values are clipped to this range.
        scaling : {"spectrum", "density"}
            Power spectrum (V**2) or power spectral density (V**2/Hz).
        """
        if not isinstance(audio, Audio):
            raise TypeError(
                f"Spectrogram.from_audio expects an Audio object, got {type(audio).__name__}"
            )
        limits = _check_limits(decibel_limits)
        power = _power(audio.samples, audio.sample_rate, window_type, window_samples,
                       overlap_samples, scaling)
        db = dsp.power_to_db(power, limits, inplace=True).numpy()
        freqs, times = _frame_axes(db.shape[1], window_samples, overlap_samples, audio.sample_rate)
        return cls(db, freqs, times, limits, window_samples, overlap_samples, audio.sample_rate)

    #: True once values are rescaled (no longer dB); only changes the colour-bar label
    scaled = False

    def _new(
        self, spectrogram, frequencies=None, times=None, decibel_limits=None, scaled=None
    ) -> "Spectrogram":
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        if scaled is not None:
            out.scaled = scaled
        Spectrogram.__init__(
            out,
            spectrogram,
            self.frequencies if frequencies is None else frequencies,
            self.times if times is None else times,
            self.decibel_limits if decibel_limits is None else decibel_limits,
            self.window_samples,
            self.overlap_samples,
            self.sample_rate,
        )
        return out

    @property
    def shape(self) -> tuple[int, int]:
        """(number of frequencies, number of frames)."""
        return self.spectrogram.shape

    @property
    def duration(self) -> float:
        """Time span covered by the frames (first window start to last window end), seconds."""
        if len(self.times) == 0:
            return 0.0
        half = (
            self.window_samples / self.sample_rate / 2
            if self.window_samples and self.sample_rate
            else 0.0
        )
        return float(self.times[-1] - self.times[0] + 2 * half)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}(shape={self.shape}, frequencies {self.frequencies[0]:.0f}-"
            f"{self.frequencies[-1]:.0f} Hz, times {self.times[0]:.3f}-{self.times[-1]:.3f} s)>"
        )

    # ------------------------------------------------------------------ transforms
    def bandpass(self, min_f: float, max_f: float) -> "Spectrogram":
        """Keep only the rows with ``min_f <= frequency <= max_f`` (Hz)."""
        if not (0 <= min_f < max_f):
            raise ParameterError(
                f"bandpass needs 0 <= min_f < max_f; got min_f={min_f}, max_f={max_f}"
            )
        keep = (self.frequencies >= min_f) & (self.frequencies <= max_f)
        if not keep.any():
            raise ParameterError(
                f"no frequency bin lies in [{min_f}, {max_f}] Hz "
                f"(bins span {self.frequencies[0]:.1f}-{self.frequencies[-1]:.1f} Hz)"
            )
        return self._new(self.spectrogram[keep], frequencies=self.frequencies[keep])

    def trim(self, start_time: float, end_time: float) -> "Spectrogram":
        """Keep only the frames whose centre lies in [start_time, end_time] (seconds)."""
        span = (
            f"frames span {self.times[0]:.3f}-{self.times[-1]:.3f} s"
            if len(self.times)
            else "no frames"
        )
        if not (0 <= start_time < end_time):
            raise ParameterError(
                f"trim needs 0 <= start_time < end_time; got {start_time}, {end_time} ({span})"
            )
        keep = (self.times >= start_time) & (self.times <= end_time)
        if not keep.any():
            raise ParameterError(f"no frame centre lies in [{start_time}, {end_time}] s ({span})")
        return self._new(self.spectrogram[:, keep], times=self.times[keep])

    def limit_db_range(self, min_db: float = -100, max_db: float = -20) -> "Spectrogram":
        """Clip values to [min_db, max_db] (which become the new `decibel_limits`)."""
        limits = _check_limits((min_db, max_db), "(min_db, max_db)")
        return self._new(np.clip(self.spectrogram, *limits), decibel_limits=limits)

    def linear_scale(self, feature_range: tuple[float, float] = (0, 1)) -> "Spectrogram":
        """Map `decibel_limits` linearly onto `feature_range` (values outside are clipped)."""
        lo, hi = _check_limits(feature_range, "feature_range")
        unit = db_to_unit(self.spectrogram, self.decibel_limits)
        return self._new(lo + unit * (hi - lo), decibel_limits=(lo, hi), scaled=True)

    def min_max_scale(self, feature_range: tuple[float, float] = (0, 1)) -> "Spectrogram":
        """Map the smallest value to feature_range[0] and the largest to feature_range[1]."""
        lo, hi = _check_limits(feature_range, "feature_range")
        s = self.spectrogram
        span = float(s.max() - s.min())
        unit = (s - s.min()) / span if span > 0 else np.zeros_like(s)
        return self._new(lo + unit * (hi - lo), decibel_limits=(lo, hi), scaled=True)

    def amplitude(self, freq_range: tuple[float, float] | None = None) -> np.ndarray:
        """Per frame, the sum of the values over frequency (rows in `freq_range` Hz if given)."""
        spec = self if freq_range is None else self.bandpass(*freq_range)
        return spec.spectrogram.sum(axis=0)

    def net_amplitude(
        self,
        signal_band: tuple[float, float],
        reject_bands: list[tuple[float, float]] | None = None,
    ) -> np.ndarray:
        """Per frame, the amplitude in `signal_band` minus the amplitudes in `reject_bands`."""
        out = self.amplitude(signal_band)
        for band in reject_bands or []:
            out = out - self.amplitude(band)
        return out

    # ------------------------------------------------------------------ output
    def to_image(self, shape: tuple[int, int] | None = None, mode: str = "RGB") -> Image.Image:
        """PIL image: loudest = black, quietest = white, low frequencies at the bottom.

        Parameters
        ----------
        shape : (width, height), optional
            Resize to this size (bilinear with antialiasing, the same resize the
            datasets use); None keeps one pixel per bin and frame.
        mode : "RGB" or "L"
        """
        if mode not in ("RGB", "L"):
            raise ParameterError(f"mode must be 'RGB' or 'L', got {mode!r}")
        unit = 1.0 - db_to_unit(self.spectrogram, self.decibel_limits)  # loud -> 0 (black)
        unit = unit[::-1]  # row 0 is the top of an image: highest frequency first
        if shape is not None:
            if len(shape) != 2 or not all(isinstance(v, Integral) and v >= 1 for v in shape):
                raise ParameterError(f"shape must be (width, height) in pixels, got {shape!r}")
            width, height = shape
            unit = dsp.resize_unit_image(unit, int(height), int(width))
        img = Image.fromarray(np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8))
        return img.convert(mode)

    def plot(
        self,
        ax=None,
        colorbar: bool = True,
        fname: str | Path | None = None,
        title: str | None = None,
        cmap: str = "Greys",
        figsize: tuple[float, float] = (8, 4),
    ):
        """Plot with matplotlib: time (s) on x, frequency (Hz) on y, louder = darker.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Draw into these axes; None makes a new figure.
        colorbar : bool
            Add a colour bar labelled with the value units.
        fname : path, optional
            Also save the figure there (format from the extension).

        Returns
        -------
        (fig, ax) : the matplotlib Figure and Axes (shown inline in notebooks).
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=figsize)
        else:
            fig = ax.figure
        lo, hi = self.decibel_limits
        if _uniform(self.frequencies) and _uniform(self.times):
            extent = (*_edges(self.times), *_edges(self.frequencies))
            image = ax.imshow(
                self.spectrogram,
                origin="lower",
                aspect="auto",
                extent=extent,
                cmap=cmap,
                vmin=lo,
                vmax=hi,
                interpolation="nearest",
            )
        else:  # e.g. mel bands: uneven frequency spacing
            image = ax.pcolormesh(
                self.times,
                self.frequencies,
                self.spectrogram,
                shading="nearest",
                cmap=cmap,
                vmin=lo,
                vmax=hi,
            )
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (Hz)")
        if title:
            ax.set_title(title)
        if colorbar:
            fig.colorbar(image, ax=ax, label="scaled value" if self.scaled else "dB")
        if fname is not None:
            fig.savefig(fname, bbox_inches="tight")
        return fig, ax


def _uniform(values: np.ndarray) -> bool:
    if len(values) < 3:
        return True
    steps = np.diff(values)
    return bool(np.allclose(steps, steps[0], rtol=1e-6, atol=0))


def _edges(centres: np.ndarray) -> tuple[float, float]:
    """First and last cell edges around evenly spaced centres."""
    half = (centres[1] - centres[0]) / 2 if len(centres) > 1 else 0.5
    return float(centres[0] - half), float(centres[-1] + half)


class MelSpectrogram(Spectrogram):
    """A mel-frequency power spectrogram in dB; `frequencies` are the filters' centres (Hz)."""

    @classmethod
    def from_audio(
        cls,
        audio: Audio,
        n_mels: int = 64,
        window_type: str = "hann",
        window_samples: int = 512,
        overlap_samples: int = 256,
        decibel_limits: tuple[float, float] = (-100, -20),
        scaling: str = "spectrum",
        min_f: float = 0.0,
        max_f: float | None = None,
    ) -> "MelSpectrogram":
        """Mel spectrogram of `audio`: `mel_filterbank` applied to the power spectrogram, then dB.

        Takes the arguments of `Spectrogram.from_audio` plus `n_mels` filters spanning
        `min_f` to `max_f` Hz (default: the Nyquist frequency).
        """
        if not isinstance(audio, Audio):
            raise TypeError(
                f"MelSpectrogram.from_audio expects an Audio object, got {type(audio).__name__}"
            )
        limits = _check_limits(decibel_limits)
        fb = torch.from_numpy(mel_filterbank(n_mels, window_samples, audio.sample_rate, min_f, max_f))
        power = _power(audio.samples, audio.sample_rate, window_type, window_samples,
                       overlap_samples, scaling)
        db = dsp.power_to_db(torch.matmul(fb, power), limits, inplace=True).numpy()
        _, times = _frame_axes(db.shape[1], window_samples, overlap_samples, audio.sample_rate)
        max_f = audio.sample_rate / 2 if max_f is None else max_f
        centres = dsp.mel_edges(fb.shape[0], min_f, max_f)[1:-1]
        return cls(db, centres, times, limits, window_samples, overlap_samples, audio.sample_rate)
