"""The `Audio` container: mono samples plus a sample rate, loaded from disk in segments.

Data flows one way through soundscape: file -> Audio -> Spectrogram -> tensor batch -> model.
`Audio` is immutable by convention: every method returns a new object.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import re
import sys
import tempfile
import threading
from fractions import Fraction
from numbers import Real
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import pandas as pd
import soundfile
from scipy import signal

from .errors import AudioFileError, ParameterError

FinalClip = Literal[None, "remainder", "full", "extend"]
_FINAL_CLIPS = (None, "remainder", "full", "extend")
_WRITE_BLOCK = (
    1 << 16
)  # frames per write call (large single OGG writes upset some libsndfile builds)
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # bytes: header + lacing table + largest body

logger = logging.getLogger("soundscape.audio")

#: default `max_truncation` (seconds): a file whose header promises at most this much
#: more audio than it holds is read (what is there, with a warning) instead of refused...
MAX_TRUNCATION = 1.0
#: ...provided the missing part is also at most this fraction of the promised length
#: (so the allowance is min(max_truncation, 5 %): 0.1 s of a 2-s clip, 1 s of an hour)
MAX_TRUNCATION_FRACTION = 0.05
_TAIL_BLOCK = 1024  # frames per read when checking the end of a file


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
def _wav_shortfall(fh, size: int) -> tuple[int, int, int]:
    """(bytes the WAV/RF64 `data` chunk claims beyond the end of the file, the chunk's
    claimed size, the format's bytes per second); (0, 0, 0) if complete or unknown.

    libsndfile silently shortens the frame count of a truncated WAV, so the header has
    to be compared with the file size here. Unknown layouts count as complete.
    """
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RF64"):
        return 0, 0, 0
    rf64_data_size = None
    byte_rate = 0
    pos = 12
    while pos + 8 <= size:
        fh.seek(pos)
        chunk = fh.read(16)
        cid, csize = chunk[:4], int.from_bytes(chunk[4:8], "little")
        if cid == b"ds64" and len(chunk) >= 16:
            fh.seek(pos + 16)  # ds64: riff size (8 bytes), data size (8 bytes), ...
            rf64_data_size = int.from_bytes(fh.read(8), "little")
        if cid == b"fmt " and len(chunk) >= 16:
            fh.seek(pos + 16)  # fmt: tag, channels, rate (8 bytes), then bytes per second
            byte_rate = int.from_bytes(fh.read(4), "little")
        if cid == b"data":
            if head[:4] == b"RF64" and csize == 0xFFFFFFFF:
                csize = rf64_data_size or 0
            if csize in (0, 0xFFFFFFFF):  # streaming writers leave the size unset
                return 0, 0, 0
            return max(0, pos + 8 + csize - size), csize, byte_rate
        pos += 8 + csize + (csize & 1)
    return 0, 0, 0


def _ogg_problem(fh, size: int) -> str | None:
    """Why an Ogg file looks cut short (last page incomplete or no end-of-stream page)."""
    start = max(0, size - _OGG_MAX_PAGE - 4)
    fh.seek(start)
    tail = fh.read()
    pos = tail.rfind(b"OggS")
    while pos >= 0 and (len(tail) - pos < 27 or tail[pos + 4] != 0):
        pos = tail.rfind(b"OggS", 0, pos)  # skip capture patterns that are not page headers
    if pos < 0:
        return "no Ogg page found near the end of the file"
    n_segments = tail[pos + 26]
    lacing = tail[pos + 27 : pos + 27 + n_segments]
    page_end = pos + 27 + n_segments + sum(lacing)
    if len(lacing) < n_segments or page_end > len(tail):
        return "the last Ogg page is cut off"
    if not tail[pos + 5] & 0x04:
        return "the stream has no end-of-stream page"
    return None


def truncation_allowance(promised_seconds: float, max_truncation: float = MAX_TRUNCATION) -> float:
    """Seconds a recording of `promised_seconds` may lack and still be read.

    ``min(max_truncation, MAX_TRUNCATION_FRACTION * promised_seconds)``; 0 refuses any
    truncated file.
    """
    if (isinstance(max_truncation, (bool, np.bool_)) or not isinstance(max_truncation, Real)
            or not max_truncation >= 0):
        raise ParameterError(f"max_truncation must be a number of seconds >= 0, got {max_truncation!r}")
    return min(max_truncation, MAX_TRUNCATION_FRACTION * max(promised_seconds, 0.0))


_warned_truncated: set = set()
_warned_lock = threading.Lock()


def warn_truncated(path, missing_seconds: float, promised_seconds: float, detail: str = "") -> None:
    """Log (once per file and process) that `path` lacks `missing_seconds` at its end."""
    try:
        st = os.stat(path)
        key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = (os.fspath(path), None, None)
    with _warned_lock:
        if key in _warned_truncated:
            return
        _warned_truncated.add(key)
    share = 100 * missing_seconds / promised_seconds if promised_seconds > 0 else 0.0
    logger.warning(
        "%s: file is truncated: %.3f s (%.2f %%) of the %.3f s its header promises are "
        "missing%s; reading the %.3f s it holds", path, missing_seconds, share,
        promised_seconds, f" ({detail})" if detail else "", promised_seconds - missing_seconds)


def _truncation_problem(path: Path, handle: soundfile.SoundFile, max_truncation: float = MAX_TRUNCATION,
                        check_mp3: bool = False) -> tuple[str | None, int]:
    """(Why the open file is unusably truncated, or None; frames it really holds).

    A shortfall within `truncation_allowance` is logged by `warn_truncated` and counts
    as no problem. MP3 files are only checked with `check_mp3` (seeking to their end
    scans the whole file); short reads are caught when reading them.
    """
    fmt, rate, frames = handle.format, handle.samplerate, handle.frames
    if fmt in ("WAV", "WAVEX", "RF64"):
        size = path.stat().st_size
        with open(path, "rb") as fh:
            missing, claimed, byte_rate = _wav_shortfall(fh, size)
        if not missing:
            return None, frames
        if byte_rate > 0:
            missing_s = missing / byte_rate
        else:  # no usable byte rate: scale the frames libsndfile found
            missing_s = frames / rate * missing / max(claimed - missing, 1)
        promised_s = frames / rate + missing_s  # libsndfile reports only the frames present
        if missing_s <= truncation_allowance(promised_s, max_truncation):
            warn_truncated(path, missing_s, promised_s, f"{missing} bytes of its data chunk")
            return None, frames
        return (f"its data chunk promises {missing} bytes ({missing_s:.3f} s of audio) more "
                "than the file holds"), frames
    if fmt == "OGG":  # Ogg headers hold no length: a cut stream cannot be measured
        with open(path, "rb") as fh:
            return _ogg_problem(fh, path.stat().st_size), frames
    if fmt == "MP3" and not check_mp3:
        return None, frames
    # other formats: the last frames the header promises must decode (up to the allowance);
    # read in blocks, as a decoder error (FLAC: "lost sync") ends what can be read
    allowed = int(truncation_allowance(frames / rate, max_truncation) * rate)

    def decodable(handle: soundfile.SoundFile, n: int) -> tuple[int, Exception | None]:
        """Frames of the last `n` that decode, and the error that stopped decoding."""
        got = 0
        try:
            with quiet_mpeg_decoder(fmt == "MP3"):
                handle.seek(frames - n)
                while got < n:
                    block = handle.read(min(_TAIL_BLOCK, n - got), dtype="float32", always_2d=True)
                    got += block.shape[0]
                    if block.shape[0] == 0:
                        break
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            return got, exc
        return got, None

    n = min(frames, _TAIL_BLOCK)  # complete files: decode only the last block
    got, error = decodable(handle, n)
    if got >= n:
        return None, frames
    if allowed > 0 and n < frames:  # measure the shortfall over the allowance
        n = min(frames, _TAIL_BLOCK + allowed)
        try:  # a fresh handle: a decoder error can leave the first one unusable
            with quiet_mpeg_decoder(fmt == "MP3"), soundfile.SoundFile(str(path)) as fresh:
                got, error = decodable(fresh, n)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            got, error = 0, exc
    missing = n - got
    if missing <= allowed:
        warn_truncated(path, missing / rate, frames / rate,
                       f"{missing} frames" + (f"; the decoder stopped: {error}" if error else ""))
        return None, frames - missing
    if error is not None:
        return f"the last frames the header promises cannot be decoded ({error})", frames
    return (f"the header promises {frames} frames but only {frames - n + got} exist"
            if got else f"the header promises {frames} frames but the last {n} cannot be read"), frames


# --------------------------------------------------------------------------- MPEG decoder noise
#: lines libmpg123 prints on the C stderr while decoding damaged or odd MPEG streams
_MPEG_NOISE = re.compile(rb"^(Note: |Warning: |\[src/libmpg123/|\[.*mpg123.*\] |Big trouble|"
                         rb"Did not find|Cannot |Illegal )")
_quiet_lock = threading.Lock()
_quiet_state: dict = {"depth": 0, "saved": None, "capture": None}


def _is_mpeg(path: Path) -> bool:
    """True for an MP3 file or a WAV holding MPEG audio (format tag 0x50/0x55), by its header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return True
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        at = head.find(b"fmt ", 12)
        if at >= 0 and len(head) >= at + 10:
            return int.from_bytes(head[at + 8:at + 10], "little") in (0x50, 0x55)
    return False


@contextlib.contextmanager
def quiet_mpeg_decoder(active: bool = True) -> Iterator[None]:
    """Keep libmpg123's messages (``Note: Illegal Audio-MPEG-Header ...``) off stderr.

    The decoder writes them to file descriptor 2 itself, so while the block runs fd 2
    goes to a temporary file; afterwards other lines written meanwhile (by any thread)
    are passed on to stderr and the decoder's lines go to the ``soundscape.audio``
    logger at DEBUG level. Nested and concurrent blocks share one redirection. A no-op
    when `active` is False or fd 2 cannot be redirected.
    """
    if not active:
        yield
        return
    with _quiet_lock:
        redirected = True
        if _quiet_state["depth"] == 0:
            try:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                _quiet_state.update(saved=saved, capture=capture)
            except OSError:
                redirected = False
        if redirected:
            _quiet_state["depth"] += 1
    if not redirected:
        yield
        return
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_state["depth"] -= 1
            if _quiet_state["depth"] == 0:
                saved, capture = _quiet_state["saved"], _quiet_state["capture"]
                _quiet_state.update(saved=None, capture=None)
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                text = capture.read()
                capture.close()
                noise = [ln for ln in text.splitlines(keepends=True) if _MPEG_NOISE.match(ln)]
                rest = b"".join(ln for ln in text.splitlines(keepends=True) if not _MPEG_NOISE.match(ln))
                if rest:
                    with contextlib.suppress(OSError):
                        os.write(2, rest)
                if noise:
                    logger.debug("MPEG decoder messages: %s",
                                 b"".join(noise).decode("utf-8", "replace").strip())


def _check_path(path: Path) -> None:
    if not path.exists():
        if path.is_symlink():
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise AudioFileError(f"{path}: symbolic link loop (the link leads back to "
                                         "itself), not an audio file") from None
            raise FileNotFoundError(f"audio file not found: {path} is a broken symbolic link "
                                    f"(to {os.readlink(path)})")
        if glob.has_magic(str(path)):
            raise FileNotFoundError(f"no files match the pattern {str(path)!r} (and no file has "
                                    "that name)")
        raise FileNotFoundError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioFileError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioFileError(f"{path}: file is empty (0 bytes)")


def _open_checked(path: Path, max_truncation: float = MAX_TRUNCATION, check_mp3: bool = False,
                  mpeg: bool | None = None) -> tuple[soundfile.SoundFile, int]:
    """Open an audio file after checking it exists, holds audio and is complete (or cut
    within the allowance); returns the handle and the frames it really holds."""
    _check_path(path)
    mpeg = _is_mpeg(path) if mpeg is None else mpeg
    try:
        with quiet_mpeg_decoder(mpeg):
            handle = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioFileError(f"{path}: not a readable audio file ({exc})") from exc
    try:
        if handle.frames <= 0 or handle.samplerate <= 0:
            raise AudioFileError(f"{path}: file holds no audio samples")
        with quiet_mpeg_decoder(mpeg):
            problem, frames = _truncation_problem(path, handle, max_truncation, check_mp3)
        if problem:
            raise AudioFileError(f"{path}: file is truncated or corrupt: {problem}")
        if frames < handle.frames and _decodes_to_find_truncation(handle):
            handle.close()  # a decoder error may have left the handle unusable: a fresh one
            with quiet_mpeg_decoder(mpeg):
                handle = soundfile.SoundFile(str(path))
    except BaseException:
        handle.close()
        raise
    return handle, frames


def _decodes_to_find_truncation(handle: soundfile.SoundFile) -> bool:
    """True for formats whose truncation is found by decoding the end (not WAV/Ogg)."""
    return handle.format not in ("WAV", "WAVEX", "RF64", "OGG")


def audio_info(path: str | Path, max_truncation: float = MAX_TRUNCATION) -> soundfile._SoundFileInfo:
    """Header information (sample rate, frames, channels, duration) of an audio file.

    Checks the file as `Audio.from_file` does (cheaply, without decoding it):
    FileNotFoundError for a missing file (or a broken link, or a glob pattern that
    matches nothing); AudioFileError for one that is a folder, a symbolic link loop,
    empty, not audio, or truncated by more than `truncation_allowance` (see
    `Audio.from_file`). For a file truncated within the allowance, ``frames`` and
    ``duration`` are those it really holds (a warning is logged).
    """
    path = Path(path)
    mpeg = _is_mpeg(path)
    handle, frames = _open_checked(path, max_truncation, check_mp3=True, mpeg=mpeg)
    handle.close()
    with quiet_mpeg_decoder(mpeg):
        info = soundfile.info(str(path))
    if frames < info.frames:
        info.frames = frames
        info.duration = frames / info.samplerate
    return info


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
