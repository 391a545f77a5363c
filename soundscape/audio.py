"""The `Audio` container: mono samples plus a sample rate, loaded from disk in segments.

Data flows one way through soundscape: file -> Audio -> Spectrogram -> tensor batch -> model.
`Audio` is immutable by convention: every method returns a new object.
"""

from __future__ import annotations

from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import soundfile
from scipy import signal

from .audio_files import (  # noqa: F401  (audio_info: the classic import path)
    MAX_TRUNCATION,
    _is_mpeg,
    _open_checked,
    audio_info,
    quiet_mpeg_decoder,
    truncation_allowance,
    warn_truncated,
)
from .errors import AudioFileError, ParameterError

FinalClip = Literal[None, "remainder", "full", "extend"]
_FINAL_CLIPS = (None, "remainder", "full", "extend")
_WRITE_BLOCK = (
    1 << 16
)  # frames per write call (large single OGG writes upset some libsndfile builds)
def _check_rate(sample_rate, name: str = "sample_rate") -> int:
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, Real):
        raise ParameterError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    if not np.isfinite(sample_rate) or sample_rate <= 0 or int(sample_rate) != sample_rate:
        raise ParameterError(f"{name} must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _check_seconds(value, name: str, allow_zero: bool) -> float:
    """A finite number of seconds, >= 0 (allow_zero) or > 0."""
    ok = isinstance(value, Real) and not isinstance(value, (bool, np.bool_)) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name} must be a finite number of seconds {bound}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- file checks


# --------------------------------------------------------------------------- Audio
class Audio:
    """Mono audio: float32 `samples` and an integer `sample_rate` in Hz.

    Parameters
    ----------
    samples : array-like of float
        1-D finite samples (stored as float32, nominally within [-1, 1]).
    sample_rate : int
        Samples per second.
    metadata : dict, optional
        Free-form information (``from_file`` stores ``path`` and ``offset``).
    """

    __slots__ = ("samples", "sample_rate", "metadata")

    def __init__(self, samples, sample_rate: int, metadata: dict | None = None):
        arr = np.asarray(samples)
        if arr.ndim != 1:
            raise ParameterError(
                f"Audio samples must be a 1-D array (mono), got shape {arr.shape}; "
                "mix channels first, e.g. samples.mean(axis=1)"
            )
        if np.issubdtype(arr.dtype, np.integer):
            raise ParameterError(
                f"Audio samples must be floats, got integer dtype {arr.dtype}; convert and scale "
                "first, e.g. samples / 32768 for 16-bit PCM"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise ParameterError(f"Audio samples must be a float array, got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise ParameterError(
                f"Audio samples must be finite; sample {bad} is {arr[bad]} (NaN or infinity)"
            )
        self.samples = arr
        self.sample_rate = _check_rate(sample_rate)
        self.metadata = dict(metadata or {})

    @classmethod
    def _trusted(cls, samples: np.ndarray, sample_rate: int, metadata: dict) -> "Audio":
        """Build from samples already known to be finite 1-D float32 (no copy, no scan)."""
        out = object.__new__(cls)
        out.samples, out.sample_rate, out.metadata = samples, sample_rate, dict(metadata)
        return out

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(
        cls,
        path: str | Path,
        sample_rate: int | None = None,
        offset: float = 0.0,
        duration: float | None = None,
        max_truncation: float = MAX_TRUNCATION,
    ) -> "Audio":
        """Load (a segment of) an audio file as mono float32.

        Reads WAV, FLAC, OGG/Vorbis and MP3 through soundfile; channels are averaged.
        Only the requested segment is read from disk, so a 5-s clip costs the same
        from a 2-hour file as from a 10-s one.

        Parameters
        ----------
        path : str or Path
            The audio file.
        sample_rate : int, optional
            Resample to this rate (polyphase filter); None keeps the file's rate.
        offset : float
            Start of the segment in seconds.
        duration : float, optional
            Length of the segment in seconds (cut at the end of the file); None reads
            to the end.
        max_truncation : float
            Seconds of audio the file may lack at its end compared with what its
            header promises (a recorder stopped while writing): such a file is read up
            to where its data ends and a warning gives the shortfall. The allowance is
            ``min(max_truncation, 5 % of the promised length)`` (see
            `truncation_allowance`); a larger shortfall is an error, and 0 refuses
            every truncated file.

        Raises
        ------
        FileNotFoundError
            The file does not exist.
        AudioFileError
            The file is a folder, empty, not audio, corrupt or truncated by more than
            the allowance.
        ParameterError
            A bad rate, offset or duration.
        """
        path = Path(path)
        if sample_rate is not None:
            sample_rate = _check_rate(sample_rate)
        offset = _check_seconds(offset, "offset", allow_zero=True)
        if duration is not None:
            duration = _check_seconds(duration, "duration", allow_zero=False)
        mpeg = _is_mpeg(path)
        handle, frames = _open_checked(path, max_truncation, mpeg=mpeg)  # frames it holds
        with handle:
            rate, promised = handle.samplerate, handle.frames
            start = int(round(offset * rate))
            if start >= frames:
                raise ParameterError(
                    f"offset {offset} s is beyond the end of {path} "
                    f"(valid range 0 to {frames / rate:.3f} s)"
                )
            n_frames = frames - start
            if duration is not None:
                n_frames = min(int(round(duration * rate)), n_frames)
            try:
                with quiet_mpeg_decoder(mpeg):
                    handle.seek(start)  # always: the truncation check may have moved the position
                    data = handle.read(n_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise AudioFileError(f"{path}: could not decode audio ({exc})") from exc
        if data.shape[0] < n_frames:  # MP3 (not checked at open) or a file cut meanwhile
            end = start + data.shape[0]
            missing_s, promised_s = (promised - end) / rate, promised / rate
            if data.shape[0] == 0 or missing_s > truncation_allowance(promised_s, max_truncation):
                raise AudioFileError(
                    f"{path}: file is truncated: the header promises {promised} frames but reading "
                    f"stopped at frame {end}"
                )
            warn_truncated(path, missing_s, promised_s, f"reading stopped at frame {end}")
        samples = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
        if not np.isfinite(samples).all():
            raise AudioFileError(f"{path}: file contains NaN or infinite samples")
        audio = cls._trusted(
            np.ascontiguousarray(samples), int(rate), {"path": str(path), "offset": start / rate}
        )
        if sample_rate is not None and sample_rate != rate:
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
        return (
            f"<Audio(samples={self.samples.shape}, sample_rate={self.sample_rate}, "
            f"duration={self.duration:.3f}s)>"
        )

    def _new(self, samples, sample_rate: int | None = None) -> "Audio":
        return Audio(
            samples, self.sample_rate if sample_rate is None else sample_rate, self.metadata
        )

    def _slice(self, i0: int, i1: int | None = None) -> "Audio":
        return Audio._trusted(self.samples[i0:i1], self.sample_rate, self.metadata)

    def time_to_sample(self, time: float) -> int:
        """Index of the sample at `time` seconds (rounded to the nearest sample)."""
        return int(round(time * self.sample_rate))

    # ------------------------------------------------------------------ transforms
    def resample(self, sample_rate: int) -> "Audio":
        """Resample with a polyphase anti-aliasing filter (scipy.signal.resample_poly)."""
        sample_rate = _check_rate(sample_rate)
        if sample_rate == self.sample_rate:
            return self._slice(0)
        ratio = Fraction(sample_rate, self.sample_rate)
        out = signal.resample_poly(self.samples, ratio.numerator, ratio.denominator)
        return Audio(out.astype(np.float32), sample_rate, self.metadata)

    def _check_times(self, start_time: float, end_time: float) -> None:
        dur = self.duration
        valid = f"valid range 0 to {dur:.4f} s"
        for name, value in (("start_time", start_time), ("end_time", end_time)):
            if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value):
                raise ParameterError(
                    f"{name} must be a finite number of seconds, got {value!r} ({valid})"
                )
        if start_time < 0 or end_time < 0:
            raise ParameterError(
                f"times must be >= 0; got start_time={start_time}, end_time={end_time} ({valid})"
            )
        if end_time <= start_time:
            raise ParameterError(
                f"end_time ({end_time}) must be greater than start_time ({start_time}) ({valid})"
            )
        if end_time > dur + 0.5 / self.sample_rate:
            raise ParameterError(f"end_time {end_time} s is beyond the end of the audio ({valid})")

    def trim(self, start_time: float, end_time: float) -> "Audio":
        """The segment from `start_time` to `end_time` seconds (both within the audio)."""
        self._check_times(start_time, end_time)
        return self._slice(self.time_to_sample(start_time), self.time_to_sample(end_time))

    def _target_len(self, duration: float) -> int:
        duration = _check_seconds(duration, "duration", allow_zero=False)
        if len(self.samples) == 0:
            raise ParameterError("cannot extend or pad empty audio (0 samples)")
        return max(1, int(round(duration * self.sample_rate)))

    def extend(self, duration: float) -> "Audio":
        """Loop the audio until it lasts `duration` seconds (cut to `duration` if longer)."""
        n = self._target_len(duration)
        reps = -(-n // len(self.samples))
        return self._new(np.tile(self.samples, reps)[:n])

    def pad(self, duration: float) -> "Audio":
        """Append zeros until the audio lasts `duration` seconds (cut to `duration` if longer)."""
        n = self._target_len(duration)
        out = np.zeros(n, dtype=np.float32)
        keep = min(n, len(self.samples))
        out[:keep] = self.samples[:keep]
        return self._new(out)

    def split(
        self, clip_duration: float, clip_overlap: float = 0.0, final_clip: FinalClip = None
    ) -> tuple[list["Audio"], pd.DataFrame]:
        """Split into clips of `clip_duration` s, stepping by `clip_duration - clip_overlap`.

        Parameters
        ----------
        clip_duration : float
            Length of each clip in seconds.
        clip_overlap : float
            Seconds shared by consecutive clips (0 <= overlap < clip_duration).
        final_clip : {None, "remainder", "full", "extend"}
            What to do with audio left over after the last full clip: None drops it,
            "remainder" keeps a shorter last clip, "full" moves the last clip back so it
            ends at the end of the audio with full length (audio shorter than one clip
            gives one clip of all of it), "extend" pads it with zeros to full length
            (its end time then lies past the end of the audio).

        Returns
        -------
        clips : list of Audio
        times : DataFrame with columns ``start_time`` and ``end_time`` (seconds), one row per clip
        """
        starts, ends = clip_times(self.duration, clip_duration, clip_overlap, final_clip)
        n_clip = max(1, int(round(clip_duration * self.sample_rate)))
        n_total = len(self.samples)
        clips = []
        for s, e in zip(starts, ends, strict=True):
            i0 = min(self.time_to_sample(s), n_total)
            if e > self.duration + 1e-9:  # "extend": pad the final clip with zeros
                padded = np.zeros(n_clip, dtype=np.float32)
                piece = self.samples[i0 : i0 + n_clip]
                padded[: len(piece)] = piece
                clips.append(Audio._trusted(padded, self.sample_rate, self.metadata))
            elif e >= self.duration - 1e-9 and e - s < clip_duration - 1e-9:  # "remainder"
                clips.append(self._slice(i0))
            else:
                i0 = max(0, min(i0, n_total - n_clip))  # a "full" last clip ends at the end
                clips.append(self._slice(i0, i0 + n_clip))
        return clips, pd.DataFrame({"start_time": starts, "end_time": ends})

    def bandpass(self, low_f: float, high_f: float, order: int = 9) -> "Audio":
        """Zero-phase Butterworth band-pass filter (second-order sections, run forwards and back).

        Parameters
        ----------
        low_f, high_f : float
            Pass-band edges in Hz, 0 < low_f < high_f < Nyquist.
        order : int
            Butterworth order of each low/high edge.
        """
        nyquist = self.sample_rate / 2
        if not all(isinstance(v, Real) for v in (low_f, high_f)) or not (
            0 < low_f < high_f < nyquist
        ):
            raise ParameterError(
                f"bandpass edges must satisfy 0 < low_f < high_f < Nyquist ({nyquist} Hz); "
                f"got low_f={low_f}, high_f={high_f}"
            )
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
            raise ParameterError(f"bandpass order must be a positive integer, got {order!r}")
        if len(self.samples) < 2:
            raise ParameterError(f"cannot filter audio of {len(self.samples)} samples")
        sos = signal.butter(
            order, [low_f, high_f], btype="bandpass", fs=self.sample_rate, output="sos"
        )
        padlen = min(3 * (2 * len(sos) + 1), len(self.samples) - 1)  # short clips: shorter padding
        out = signal.sosfiltfilt(sos, self.samples.astype(np.float64), padlen=padlen)
        return self._new(out.astype(np.float32))

    def normalize(self, peak_level: float = 1.0) -> "Audio":
        """Scale so the largest absolute sample equals `peak_level` (silence stays silent)."""
        peak = float(np.max(np.abs(self.samples))) if len(self.samples) else 0.0
        if peak == 0:
            return self._slice(0)
        return self._new(self.samples * np.float32(peak_level / peak))

    def apply_gain(
        self, dB: float, clip_range: tuple[float, float] | None = (-1.0, 1.0)
    ) -> "Audio":
        """Multiply by 10**(dB/20); clip to `clip_range` unless it is None."""
        out = self.samples * np.float32(10 ** (dB / 20))
        if clip_range is not None:
            out = np.clip(out, *clip_range)
        return self._new(out)

    def spectrum(self) -> tuple[np.ndarray, np.ndarray]:
        """Magnitude spectrum of the whole clip: ``(magnitudes, frequencies_hz)``.

        Magnitudes are |rfft| / number of samples (a full-scale sine peaks near 0.5).
        """
        if len(self.samples) == 0:
            raise ParameterError("cannot take the spectrum of empty audio (0 samples)")
        mags = np.abs(np.fft.rfft(self.samples)) / len(self.samples)
        freqs = np.fft.rfftfreq(len(self.samples), 1 / self.sample_rate)
        return mags, freqs

    def save(self, path: str | Path, subtype: str | None = None) -> Path:
        """Write the audio to `path`; the format follows the extension (wav, flac, ogg, mp3).

        `subtype` is a soundfile subtype such as ``"PCM_16"`` (the WAV default) or ``"FLOAT"``.
        """
        path = Path(path)
        fmt = path.suffix[1:].upper()
        if fmt not in soundfile.available_formats():
            raise ParameterError(
                f"cannot save {path}: unknown audio extension {path.suffix!r}; "
                "use .wav, .flac, .ogg or .mp3"
            )
        try:
            with soundfile.SoundFile(str(path), "w", self.sample_rate, 1, subtype=subtype) as out:
                for i in range(0, len(self.samples), _WRITE_BLOCK):
                    out.write(self.samples[i : i + _WRITE_BLOCK])
        except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
            raise ParameterError(f"cannot save {path} (subtype={subtype!r}): {exc}") from exc
        return path


def clip_times(
    duration: float, clip_duration: float, clip_overlap: float = 0.0, final_clip: FinalClip = None
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end times (seconds) of the clips that tile `duration` seconds.

    See `Audio.split` for the meaning of the arguments.
    """
    clip_duration = _check_seconds(clip_duration, "clip_duration", allow_zero=False)
    clip_overlap = _check_seconds(clip_overlap, "clip_overlap", allow_zero=True)
    if clip_overlap >= clip_duration:
        raise ParameterError(
            f"clip_overlap must be >= 0 and smaller than clip_duration ({clip_duration}); "
            f"got {clip_overlap}"
        )
    if final_clip not in _FINAL_CLIPS:
        raise ParameterError(
            f"final_clip must be None, 'remainder', 'full' or 'extend'; got {final_clip!r}"
        )
    step = clip_duration - clip_overlap
    eps = 1e-9
    n_full = (
        int(np.floor((duration - clip_duration) / step + eps)) + 1
        if duration + eps >= clip_duration
        else 0
    )
    if n_full == 0 and final_clip is None:
        raise ParameterError(
            f"the audio ({duration:.4f} s) is shorter than clip_duration ({clip_duration} s); "
            "use final_clip='extend', 'remainder' or 'full' to keep it"
        )
    starts = np.arange(n_full) * step
    ends = starts + clip_duration
    covered = ends[-1] if n_full else 0.0
    next_start = n_full * step
    if duration - covered > eps and next_start < duration - eps:
        if final_clip == "remainder":
            starts, ends = np.append(starts, next_start), np.append(ends, duration)
        elif final_clip == "extend":
            starts, ends = (
                np.append(starts, next_start),
                np.append(ends, next_start + clip_duration),
            )
        elif final_clip == "full":  # audio shorter than one clip: the whole audio
            starts = np.append(starts, max(0.0, duration - clip_duration))
            ends = np.append(ends, duration)
    return np.round(starts, 10), np.round(ends, 10)


def iter_segments(
    path: str | Path, segment_duration: float, sample_rate: int | None = None
) -> Iterator[tuple[float, Audio]]:
    """Stream a long file as consecutive `(start_time, Audio)` segments.

    Only one segment is held in memory at a time; the last one may be shorter.
    """
    segment_duration = _check_seconds(segment_duration, "segment_duration", allow_zero=False)
    info = audio_info(path)
    n_segments = int(np.ceil(info.frames / (segment_duration * info.samplerate) - 1e-9))
    for i in range(n_segments):
        start = i * segment_duration
        yield (
            start,
            Audio.from_file(path, sample_rate=sample_rate, offset=start, duration=segment_duration),
        )
