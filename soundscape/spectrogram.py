"""Per-clip spectrograms (the classic API): `Spectrogram` and `MelSpectrogram`.

This is the numpy reference implementation. The batched torch engine in
`soundscape.features` computes the same values for whole batches; tests check that
the two agree to float tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .audio import Audio
from .errors import ParameterError

#: power floor before taking dB, so silence maps to a finite value (then clipped)
POWER_FLOOR = 1e-20
_BLOCK_FRAMES = 8192  # frames per block when computing long spectrograms


def _window(window_type: str, n: int) -> np.ndarray:
    from scipy.signal import get_window

    try:
        return get_window(window_type, n, fftbins=True).astype(np.float64)
    except ValueError as exc:
        raise ParameterError(f"unknown window_type {window_type!r}: {exc}") from exc


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
    window_samples = int(window_samples)
    overlap_samples = int(overlap_samples)
    if window_samples <= 0:
        raise ParameterError(f"window_samples must be > 0, got {window_samples}")
    if not (0 <= overlap_samples < window_samples):
        raise ParameterError(
            f"overlap_samples ({overlap_samples}) must be >= 0 and smaller than "
            f"window_samples ({window_samples})"
        )
    if scaling not in ("spectrum", "density"):
        raise ParameterError(f"scaling must be 'spectrum' or 'density', got {scaling!r}")
    if len(samples) < window_samples:
        raise ParameterError(
            f"the window ({window_samples} samples) is longer than the audio ({len(samples)} samples)"
        )
    hop = window_samples - overlap_samples
    win = _window(window_type, window_samples)
    scale = 1.0 / (win.sum() ** 2) if scaling == "spectrum" else 1.0 / (sample_rate * (win**2).sum())
    n_frames = 1 + (len(samples) - window_samples) // hop
    n_freqs = window_samples // 2 + 1
    frames_all = np.lib.stride_tricks.sliding_window_view(samples, window_samples)[::hop]
    power = np.empty((n_freqs, n_frames), dtype=np.float32)
    for b0 in range(0, n_frames, _BLOCK_FRAMES):  # blocks bound memory on long audio
        frames = frames_all[b0:b0 + _BLOCK_FRAMES].astype(np.float64)
        frames = (frames - frames.mean(axis=1, keepdims=True)) * win
        spec = np.abs(np.fft.rfft(frames, axis=1)) ** 2 * scale
        spec[:, 1:n_freqs - (1 if window_samples % 2 == 0 else 0)] *= 2
        power[:, b0:b0 + _BLOCK_FRAMES] = spec.T
    frequencies = np.fft.rfftfreq(window_samples, 1 / sample_rate)
    times = (np.arange(n_frames) * hop + window_samples / 2) / sample_rate
    return power, frequencies, times


def power_to_db(power: np.ndarray, decibel_limits: tuple[float, float] | None) -> np.ndarray:
    """10*log10(power), floored at POWER_FLOOR, clipped to `decibel_limits` if given."""
    db = 10 * np.log10(np.maximum(power, POWER_FLOOR))
    if decibel_limits is not None:
        db = np.clip(db, decibel_limits[0], decibel_limits[1])
    return db.astype(np.float32)


def db_to_unit(db: np.ndarray, decibel_limits: tuple[float, float]) -> np.ndarray:
    """Map dB within `decibel_limits` to [0, 1] where 1 is the loudest."""
    lo, hi = decibel_limits
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0)


class Spectrogram:
    """A power spectrogram in dB: `spectrogram[freq, time]`, with `frequencies` and `times`.

    Build one with `Spectrogram.from_audio(audio)`.
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
            raise ParameterError(f"spectrogram must be 2-D (frequencies x times), got shape {spectrogram.shape}")
        if spectrogram.shape != (len(frequencies), len(times)):
            raise ParameterError(
                f"spectrogram shape {spectrogram.shape} does not match "
                f"{len(frequencies)} frequencies x {len(times)} times"
            )
        self.spectrogram = spectrogram
        self.frequencies = frequencies
        self.times = times
        self.decibel_limits = tuple(decibel_limits)
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

        At 22050 Hz a 2-s clip gives 257 frequency bins x 171 frames with the defaults.
        """
        if not isinstance(audio, Audio):
            raise TypeError(f"Spectrogram.from_audio expects an Audio object, got {type(audio).__name__}")
        power, freqs, times = stft_power(
            audio.samples, audio.sample_rate, window_type, window_samples, overlap_samples, scaling
        )
        return cls(
            power_to_db(power, decibel_limits), freqs, times, decibel_limits,
            window_samples, overlap_samples, audio.sample_rate,
        )

    def _new(self, spectrogram, frequencies=None, times=None, decibel_limits=None) -> "Spectrogram":
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        Spectrogram.__init__(
            out, spectrogram,
            self.frequencies if frequencies is None else frequencies,
            self.times if times is None else times,
            self.decibel_limits if decibel_limits is None else decibel_limits,
            self.window_samples, self.overlap_samples, self.sample_rate,
        )
        return out

    @property
    def shape(self) -> tuple[int, int]:
        return self.spectrogram.shape

    @property
    def duration(self) -> float:
        """Time span covered by the frames (first window start to last window end), seconds."""
        if len(self.times) == 0:
            return 0.0
        half = self.window_samples / self.sample_rate / 2 if self.window_samples and self.sample_rate else 0.0
        return float(self.times[-1] - self.times[0] + 2 * half)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__}(shape={self.shape}, frequencies {self.frequencies[0]:.0f}-"
            f"{self.frequencies[-1]:.0f} Hz, times {self.times[0]:.3f}-{self.times[-1]:.3f} s)>"
        )

    # ------------------------------------------------------------------ transforms
    def bandpass(self, min_f: float, max_f: float) -> "Spectrogram":
        """Keep only the rows with `min_f <= frequency <= max_f`."""
        if min_f >= max_f or min_f < 0:
            raise ParameterError(f"bandpass needs 0 <= min_f < max_f; got min_f={min_f}, max_f={max_f}")
        keep = (self.frequencies >= min_f) & (self.frequencies <= max_f)
        if not keep.any():
            raise ParameterError(
                f"no frequency bin lies in [{min_f}, {max_f}] Hz "
                f"(bins span {self.frequencies[0]:.1f}-{self.frequencies[-1]:.1f} Hz)"
            )
        return self._new(self.spectrogram[keep], frequencies=self.frequencies[keep])

    def trim(self, start_time: float, end_time: float) -> "Spectrogram":
        """Keep only the frames whose centre lies in [start_time, end_time]."""
        if start_time < 0 or end_time <= start_time:
            raise ParameterError(
                f"trim needs 0 <= start_time < end_time; got {start_time}, {end_time} "
                f"(frames span {self.times[0]:.3f}-{self.times[-1]:.3f} s)"
            )
        keep = (self.times >= start_time) & (self.times <= end_time)
        if not keep.any():
            raise ParameterError(
                f"no frame lies in [{start_time}, {end_time}] s "
                f"(frames span {self.times[0]:.3f}-{self.times[-1]:.3f} s)"
            )
        return self._new(self.spectrogram[:, keep], times=self.times[keep])

    def limit_db_range(self, min_db: float = -100, max_db: float = -20) -> "Spectrogram":
        """Clip values to [min_db, max_db]."""
        if min_db >= max_db:
            raise ParameterError(f"min_db ({min_db}) must be smaller than max_db ({max_db})")
        return self._new(np.clip(self.spectrogram, min_db, max_db), decibel_limits=(min_db, max_db))

    def linear_scale(self, feature_range: tuple[float, float] = (0, 1)) -> "Spectrogram":
        """Map the decibel limits linearly onto `feature_range`."""
        lo, hi = feature_range
        unit = db_to_unit(self.spectrogram, self.decibel_limits)
        return self._new(lo + unit * (hi - lo))

    def min_max_scale(self, feature_range: tuple[float, float] = (0, 1)) -> "Spectrogram":
        """Map the smallest value to feature_range[0] and the largest to feature_range[1]."""
        lo, hi = feature_range
        s = self.spectrogram
        span = float(s.max() - s.min())
        unit = (s - s.min()) / span if span > 0 else np.zeros_like(s)
        return self._new(lo + unit * (hi - lo))

    def amplitude(self, freq_range: tuple[float, float] | None = None) -> np.ndarray:
        """Sum of values over frequency (optionally only rows within `freq_range`), per frame."""
        spec = self if freq_range is None else self.bandpass(*freq_range)
        return spec.spectrogram.sum(axis=0)

    def net_amplitude(
        self, signal_band: tuple[float, float], reject_bands: list[tuple[float, float]] | None = None
    ) -> np.ndarray:
        """Amplitude in `signal_band` minus the amplitudes in each of `reject_bands`, per frame."""
        out = self.amplitude(signal_band)
        for band in reject_bands or []:
            out = out - self.amplitude(band)
        return out

    # ------------------------------------------------------------------ output
    def to_image(
        self, shape: tuple[int, int] | None = None, mode: str = "RGB"
    ) -> Image.Image:
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
        from .features import resize_unit_image

        unit = 1.0 - db_to_unit(self.spectrogram, self.decibel_limits)  # loud -> 0 (black)
        unit = unit[::-1]  # low frequencies at the bottom
        if shape is not None:
            width, height = shape
            unit = resize_unit_image(unit, height, width)
        img = Image.fromarray(np.round(np.clip(unit, 0, 1) * 255).astype(np.uint8), mode="L")
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
        """Plot with matplotlib (seconds on x, Hz on y). Returns ``(fig, ax)``.

        Works inline in notebooks; with `fname` the figure is also saved there.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=figsize)
        else:
            fig = ax.figure
        mesh = ax.pcolormesh(
            self.times, self.frequencies, self.spectrogram, shading="auto", cmap=cmap,
            vmin=self.decibel_limits[0], vmax=self.decibel_limits[1],
        )
        ax.set_xlabel("time (s)")
        ax.set_ylabel("frequency (Hz)")
        if title:
            ax.set_title(title)
        if colorbar:
            fig.colorbar(mesh, ax=ax, label="dB")
        if fname is not None:
            fig.savefig(fname, bbox_inches="tight")
        return fig, ax


def mel_filterbank(
    n_mels: int, n_fft: int, sample_rate: int, min_f: float = 0.0, max_f: float | None = None
) -> np.ndarray:
    """Triangular mel filters (HTK mel scale), shape (n_mels, n_fft // 2 + 1)."""
    max_f = sample_rate / 2 if max_f is None else max_f
    if not (0 <= min_f < max_f <= sample_rate / 2):
        raise ParameterError(
            f"mel band needs 0 <= min_f < max_f <= Nyquist ({sample_rate / 2}); got {min_f}, {max_f}"
        )
    if n_mels < 1:
        raise ParameterError(f"n_mels must be >= 1, got {n_mels}")

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(min_f), hz_to_mel(max_f), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / np.maximum(centre - lower, 1e-12)
    falling = (upper - freqs[None, :]) / np.maximum(upper - centre, 1e-12)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class MelSpectrogram(Spectrogram):
    """A mel-frequency power spectrogram in dB; `frequencies` are the filters' centres."""

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
        """Mel spectrogram of `audio` (filters applied to the power spectrogram)."""
        if not isinstance(audio, Audio):
            raise TypeError(f"MelSpectrogram.from_audio expects an Audio object, got {type(audio).__name__}")
        power, _, times = stft_power(
            audio.samples, audio.sample_rate, window_type, window_samples, overlap_samples, scaling
        )
        fb = mel_filterbank(n_mels, window_samples, audio.sample_rate, min_f, max_f)
        mel_power = fb @ power
        max_f = audio.sample_rate / 2 if max_f is None else max_f
        mels = np.linspace(2595 * np.log10(1 + min_f / 700), 2595 * np.log10(1 + max_f / 700), n_mels + 2)
        centres = 700 * (10 ** (mels[1:-1] / 2595) - 1)
        return cls(
            power_to_db(mel_power, decibel_limits), centres, times, decibel_limits,
            window_samples, overlap_samples, audio.sample_rate,
        )
