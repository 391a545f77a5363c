"""The `Audio` container: mono samples plus a sample rate, loaded from disk in segments.

Data flows one way through soundscape: file -> Audio -> Spectrogram -> tensor batch -> model.
`Audio` is immutable by convention: every method returns a new object.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import soundfile
from scipy import signal

from .errors import AudioFileError, ParameterError

FinalClip = Literal[None, "remainder", "full", "extend"]


def _check_rate(sample_rate, name: str = "sample_rate") -> int:
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(
        sample_rate, (int, np.integer, float, np.floating)
    ):
        raise ParameterError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ParameterError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def audio_info(path: str | Path) -> soundfile._SoundFileInfo:
    """Header information (sample rate, frames, channels, duration) of an audio file.

    Raises FileNotFoundError for a missing file and AudioFileError for one that
    cannot be parsed.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")
    try:
        return soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from exc


class Audio:
    """Mono audio: float32 `samples` and an integer `sample_rate` in Hz.

    Parameters
    ----------
    samples : array-like
        1-D finite samples (converted to float32).
    sample_rate : int
        Samples per second.
    """

    __slots__ = ("samples", "sample_rate", "metadata")

    def __init__(self, samples, sample_rate: int, metadata: dict | None = None):
        arr = np.asarray(samples)
        if arr.ndim != 1:
            raise ParameterError(
                f"Audio samples must be a 1-D array (mono), got shape {arr.shape}; "
                "mix channels first, e.g. samples.mean(axis=1)"
            )
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ParameterError(f"Audio samples must be numeric, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ParameterError(
                f"Audio samples must be finite; sample {bad} is {arr[bad]} (NaN or infinity)"
            )
        self.samples = arr
        self.sample_rate = _check_rate(sample_rate)
        self.metadata = dict(metadata or {})

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(
        cls,
        path: str | Path,
        sample_rate: int | None = None,
        offset: float = 0.0,
        duration: float | None = None,
    ) -> "Audio":
        """Load (a segment of) an audio file as mono float32.

        Reads WAV, FLAC, OGG/Vorbis and MP3 through soundfile. Only the requested
        segment is read from disk, so a 5-s clip costs the same from a 2-hour file
        as from a 10-s one.

        Parameters
        ----------
        path : str or Path
            The audio file.
        sample_rate : int, optional
            Resample to this rate (polyphase filter); None keeps the file's rate.
        offset : float
            Start of the segment in seconds.
        duration : float, optional
            Length of the segment in seconds; None reads to the end of the file.
        """
        path = Path(path)
        info = audio_info(path)
        if info.frames == 0 or info.samplerate <= 0:
            raise AudioFileError(f"{path}: file holds no audio samples")
        if not np.isfinite(offset) or offset < 0:
            raise ParameterError(f"offset must be >= 0 seconds, got {offset} (file {path})")
        file_duration = info.frames / info.samplerate
        start = int(round(offset * info.samplerate))
        if start >= info.frames:
            raise ParameterError(
                f"offset {offset} s is beyond the end of {path} ({file_duration:.3f} s long)"
            )
        if duration is None:
            n_frames = info.frames - start
        else:
            if not np.isfinite(duration) or duration <= 0:
                raise ParameterError(f"duration must be > 0 seconds, got {duration} (file {path})")
            n_frames = min(int(round(duration * info.samplerate)), info.frames - start)
        try:
            with soundfile.SoundFile(str(path)) as handle:
                if start:
                    handle.seek(start)
                data = handle.read(n_frames, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{path}: could not decode audio ({exc})") from exc
        if data.shape[0] < n_frames:
            raise AudioFileError(
                f"{path}: file is truncated: header promises {info.frames} frames but only "
                f"{start + data.shape[0]} could be read"
            )
        samples = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if not np.all(np.isfinite(samples)):
            raise AudioFileError(f"{path}: file contains NaN or infinite samples")
        audio = cls(samples, info.samplerate, metadata={"path": str(path), "offset": start / info.samplerate})
        if sample_rate is not None and _check_rate(sample_rate) != info.samplerate:
            audio = audio.resample(sample_rate)
        return audio

    # ------------------------------------------------------------------ basics
    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"<Audio(samples={self.samples.shape}, sample_rate={self.sample_rate}, duration={self.duration:.3f}s)>"

    def _new(self, samples, sample_rate: int | None = None) -> "Audio":
        return Audio(samples, self.sample_rate if sample_rate is None else sample_rate, self.metadata)

    def time_to_sample(self, time: float) -> int:
        """Index of the sample at `time` seconds (rounded to the nearest sample)."""
        return int(round(time * self.sample_rate))

    # ------------------------------------------------------------------ transforms
    def resample(self, sample_rate: int) -> "Audio":
        """Resample with a polyphase anti-aliasing filter (scipy.signal.resample_poly)."""
        sample_rate = _check_rate(sample_rate)
        if sample_rate == self.sample_rate:
            return self._new(self.samples)
        ratio = Fraction(sample_rate, self.sample_rate)
        out = signal.resample_poly(self.samples, ratio.numerator, ratio.denominator)
        return self._new(out.astype(np.float32), sample_rate)

    def _check_times(self, start_time: float, end_time: float) -> None:
        dur = self.duration
        tol = 0.5 / self.sample_rate
        if start_time < 0 or end_time < 0:
            raise ParameterError(
                f"times must be >= 0; got start_time={start_time}, end_time={end_time} "
                f"(valid range 0 to {dur:.4f} s)"
            )
        if end_time <= start_time:
            raise ParameterError(f"end_time ({end_time}) must be greater than start_time ({start_time})")
        if end_time > dur + tol:
            raise ParameterError(
                f"end_time {end_time} s is beyond the end of the audio (valid range 0 to {dur:.4f} s)"
            )

    def trim(self, start_time: float, end_time: float) -> "Audio":
        """The segment from `start_time` to `end_time` (seconds)."""
        self._check_times(start_time, end_time)
        return self._new(self.samples[self.time_to_sample(start_time):self.time_to_sample(end_time)])

    def extend(self, duration: float) -> "Audio":
        """Loop the audio until it lasts `duration` seconds (trimmed if longer)."""
        n = self._target_len(duration)
        reps = int(np.ceil(n / len(self.samples)))
        return self._new(np.tile(self.samples, reps)[:n])

    def pad(self, duration: float) -> "Audio":
        """Append zeros until the audio lasts `duration` seconds (trimmed if longer)."""
        n = self._target_len(duration)
        out = np.zeros(n, dtype=np.float32)
        keep = min(n, len(self.samples))
        out[:keep] = self.samples[:keep]
        return self._new(out)

    def _target_len(self, duration: float) -> int:
        if not np.isfinite(duration) or duration <= 0:
            raise ParameterError(f"duration must be > 0 seconds, got {duration}")
        if len(self.samples) == 0:
            raise ParameterError("cannot extend or pad empty audio")
        return int(round(duration * self.sample_rate))

    def split(
        self, clip_duration: float, clip_overlap: float = 0.0, final_clip: FinalClip = None
    ) -> tuple[list["Audio"], pd.DataFrame]:
        """Split into clips of `clip_duration` s, stepping by `clip_duration - clip_overlap`.

        Parameters
        ----------
        final_clip : {None, "remainder", "full", "extend"}
            What to do with a last clip shorter than `clip_duration`: None drops it,
            "remainder" keeps it short, "full" moves its start back so it ends at the
            end of the audio with full length, "extend" pads it with zeros.

        Returns
        -------
        clips : list of Audio
        times : DataFrame with columns ``start_time``, ``end_time``
        """
        starts, ends = clip_times(self.duration, clip_duration, clip_overlap, final_clip)
        clips = []
        for s, e in zip(starts, ends):
            i0, i1 = self.time_to_sample(s), self.time_to_sample(min(e, self.duration))
            clip = self._new(self.samples[i0:i1])
            if e > self.duration + 0.5 / self.sample_rate:
                clip = clip.pad(e - s)
            clips.append(clip)
        return clips, pd.DataFrame({"start_time": starts, "end_time": ends})

    def bandpass(self, low_f: float, high_f: float, order: int = 9) -> "Audio":
        """Zero-phase Butterworth band-pass filter (second-order sections)."""
        nyquist = self.sample_rate / 2
        if not (0 < low_f < high_f < nyquist):
            raise ParameterError(
                f"bandpass edges must satisfy 0 < low_f < high_f < Nyquist ({nyquist} Hz); "
                f"got low_f={low_f}, high_f={high_f}"
            )
        sos = signal.butter(order, [low_f, high_f], btype="bandpass", fs=self.sample_rate, output="sos")
        return self._new(signal.sosfiltfilt(sos, self.samples).astype(np.float32))

    def normalize(self, peak_level: float = 1.0) -> "Audio":
        """Scale so the largest absolute sample equals `peak_level` (silence stays silent)."""
        peak = float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0
        if peak == 0:
            return self._new(self.samples)
        return self._new(self.samples * (peak_level / peak))

    def apply_gain(self, dB: float, clip_range: tuple[float, float] | None = (-1.0, 1.0)) -> "Audio":
        """Multiply by 10**(dB/20); clip to `clip_range` unless it is None."""
        out = self.samples * np.float32(10 ** (dB / 20))
        if clip_range is not None:
            out = np.clip(out, *clip_range)
        return self._new(out)

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """Magnitude spectrum of the whole clip: (fft magnitudes, frequencies in Hz)."""
        mags = np.abs(np.fft.rfft(self.samples)) / max(len(self.samples), 1)
        freqs = np.fft.rfftfreq(len(self.samples), 1 / self.sample_rate)
        return mags, freqs

    def save(self, path: str | Path, subtype: str | None = None) -> Path:
        """Write the audio to `path`; the format follows the extension (wav, flac, ogg)."""
        path = Path(path)
        soundfile.write(str(path), self.samples, self.sample_rate, subtype=subtype)
        return path


def clip_times(
    duration: float, clip_duration: float, clip_overlap: float = 0.0, final_clip: FinalClip = None
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times of the clips that tile `duration` seconds.

    See `Audio.split` for the meaning of the arguments.
    """
    if not np.isfinite(clip_duration) or clip_duration <= 0:
        raise ParameterError(f"clip_duration must be > 0 seconds, got {clip_duration}")
    if not (0 <= clip_overlap < clip_duration):
        raise ParameterError(
            f"clip_overlap must be >= 0 and smaller than clip_duration ({clip_duration}); got {clip_overlap}"
        )
    if final_clip not in (None, "remainder", "full", "extend"):
        raise ParameterError(
            f"final_clip must be None, 'remainder', 'full' or 'extend'; got {final_clip!r}"
        )
    step = clip_duration - clip_overlap
    eps = 1e-9
    n_full = int(np.floor((duration - clip_duration) / step + eps)) + 1 if duration + eps >= clip_duration else 0
    starts = np.arange(n_full) * step
    ends = starts + clip_duration
    covered = ends[-1] if n_full else 0.0
    next_start = n_full * step
    if duration - covered > eps and next_start < duration - eps:
        if final_clip == "remainder":
            starts, ends = np.append(starts, next_start), np.append(ends, duration)
        elif final_clip == "extend":
            starts, ends = np.append(starts, next_start), np.append(ends, next_start + clip_duration)
        elif final_clip == "full" and duration >= clip_duration:
            starts, ends = np.append(starts, duration - clip_duration), np.append(ends, duration)
    if len(starts) == 0 and final_clip is None:
        raise ParameterError(
            f"the audio ({duration:.4f} s) is shorter than clip_duration ({clip_duration} s); "
            "use final_clip='extend' or 'remainder' to keep it"
        )
    return np.round(starts, 10), np.round(ends, 10)


def iter_segments(
    path: str | Path, segment_duration: float, sample_rate: int | None = None
) -> Iterator[tuple[float, Audio]]:
    """Stream a long file as consecutive `(start_time, Audio)` segments.

    Only one segment is held in memory at a time.
    """
    info = audio_info(path)
    total = info.frames / info.samplerate
    start = 0.0
    while start < total - 1e-9:
        yield start, Audio.from_file(path, sample_rate=sample_rate, offset=start, duration=segment_duration)
        start += segment_duration
