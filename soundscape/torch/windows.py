"""Model inputs of the sliding windows of a long recording, computed chunk by chunk.

This works for every `Preprocessing` feature. A recording is read in chunks of about
`chunk_duration` seconds. Each chunk is resampled to the model's rate (with enough context
at its edges that the samples equal those of resampling the whole file, see
`ChunkReader`), its frames are computed once with `Preprocessing.frames` (in blocks of
`STFT_BLOCK_FRAMES` frames, which keeps the STFT's temporaries small and changes nothing,
frames being independent), and the input of every window that fits in the chunk is cut
from the chunk's frames and finished with `Preprocessing.finish` (image, normalisation).
The next chunk starts at the first window that did not fit, so windows spanning chunk
edges are complete. Memory depends on the chunk and group sizes, not on the recording's
length.

Frame alignment: the frames of the recording start every `hop` samples from the start of
the file. A window whose start is not a multiple of the hop uses the frames from the
nearest frame boundary, so its input may be shifted by up to half a hop (128 samples,
4 ms at 32 kHz, with the default 256-sample hop) compared with the clip read on its own
(the waveform feature has a one-sample hop: exact). Windows that do not fit in the
recording (a padded or extended final clip) are computed clip by clip, exactly.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile
import torch
from scipy import signal

from ..audio import Audio, clip_times
from ..audio_files import AUDIO_SUFFIXES, audio_info, find_audio_files  # noqa: F401 (classic path)
from ..errors import AudioFileError, ParameterError
from ..preprocessing import Preprocessing



@dataclass
class WindowPlan:
    """The windows of one recording and where their spectrogram frames lie.

    Attributes
    ----------
    path : str
    starts, ends : ndarray
        Window times in seconds (as `soundscape.audio.clip_times` gives them).
    first_frame : ndarray of int
        Index of each window's first STFT frame in the recording's frame grid.
    inside : ndarray of bool
        Window whose frames all lie in the recording (computed from chunks); the others
        are computed clip by clip.
    file_rate, file_frames : int
        Rate and length of the file as stored.
    n_samples : int
        Length of the recording at the model's rate.
    """

    path: str
    starts: np.ndarray
    ends: np.ndarray
    first_frame: np.ndarray
    inside: np.ndarray
    file_rate: int
    file_frames: int
    n_samples: int

    def __len__(self) -> int:
        return len(self.starts)


def frame_geometry(preprocessing: Preprocessing) -> tuple[int, int, int]:
    """(samples per frame, hop, frames per clip) of a preprocessing with a clip duration."""
    win, hop = preprocessing.frame_grid
    n = preprocessing.clip_samples
    if n is None:
        raise ParameterError("a clip duration is needed to slide windows over a recording")
    if n < win:
        raise ParameterError(
            f"clip_duration {preprocessing.clip_duration} s ({n} samples) is shorter than the "
            f"STFT window ({win} samples)"
        )
    return win, hop, preprocessing.frames_of(n)


def resampled_length(frames: int, file_rate: int, rate: int) -> int:
    """Length of `frames` samples at `file_rate` after scipy's polyphase resampling to `rate`."""
    ratio = Fraction(rate, file_rate)
    return -(-frames * ratio.numerator // ratio.denominator)


def plan_windows(
    path: str | Path,
    preprocessing: Preprocessing,
    clip_overlap: float = 0.0,
    final_clip: str | None = None,
) -> WindowPlan:
    """Windows of `path` (clip length from `preprocessing.clip_duration`).

    Raises FileNotFoundError / AudioFileError for a missing or unreadable file and
    ParameterError for a file shorter than one window when `final_clip` is None.
    """
    info = audio_info(path)
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioFileError(f"{path}: file holds no audio samples")
    win, hop, n_frames = frame_geometry(preprocessing)
    rate = preprocessing.sample_rate
    duration = info.frames / info.samplerate
    starts, ends = clip_times(duration, preprocessing.clip_duration, clip_overlap, final_clip)
    n_samples = resampled_length(info.frames, info.samplerate, rate)
    total_frames = preprocessing.frames_of(n_samples)
    first = np.floor(starts * rate / hop + 0.5).astype(np.int64)
    inside = (first + n_frames <= total_frames) & (ends <= duration + 0.5 / info.samplerate)
    return WindowPlan(str(path), starts, ends, first, inside, int(info.samplerate),
                      int(info.frames), int(n_samples))


class ChunkReader:
    """Reads sample ranges of a file at the model's rate, one chunk at a time.

    When the file's rate differs, each chunk is read with extra context on both sides,
    starting at a multiple of the resampling denominator, so that
    `scipy.signal.resample_poly` of the chunk gives the same samples as resampling the
    whole file (up to float rounding).
    """

    def __init__(self, plan: WindowPlan, rate: int):
        self.path = plan.path
        self.frames = plan.file_frames
        ratio = Fraction(rate, plan.file_rate)
        self.up, self.down = ratio.numerator, ratio.denominator
        # resample_poly's filter spans 10 * max(up, down) upsampled samples each side
        self.context = -(-10 * max(self.up, self.down) // self.up) + 2
        from ..audio_files import _is_mpeg, quiet_mpeg_decoder

        try:
            with quiet_mpeg_decoder(_is_mpeg(self.path)):  # MP3-in-WAV headers make it talk
                self.handle = soundfile.SoundFile(self.path)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioFileError(f"{self.path}: not a readable audio file ({exc})") from exc

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> "ChunkReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_file(self, start: int, stop: int) -> np.ndarray:
        """Samples `start:stop` as stored (mono float32).

        A file whose data ends less than `soundscape.audio.truncation_allowance` before
        the frames its header promises is padded with zeros there (a warning gives the
        shortfall); a larger shortfall is an AudioFileError. MPEG decoder messages are
        kept off stderr (see `soundscape.audio.quiet_mpeg_decoder`).
        """
        from ..audio import quiet_mpeg_decoder, truncation_allowance, warn_truncated

        handle = self.handle
        mpeg = handle.format == "MP3" or handle.subtype == "MPEG_LAYER_III"
        try:
            with quiet_mpeg_decoder(mpeg):
                handle.seek(start)
                if handle.subtype == "PCM_16":  # 16-bit samples: scaled here, about 2x faster
                    raw = handle.read(stop - start, dtype="int16")  # and equal to libsndfile's floats
                    data = np.multiply(raw, np.float32(1 / 32768), dtype=np.float32)
                else:
                    data = handle.read(stop - start, dtype="float32")  # 1-D for mono files
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioFileError(f"{self.path}: could not decode audio at sample {start} ({exc})") from exc
        if data.shape[0] < stop - start:
            end, rate = start + data.shape[0], handle.samplerate
            missing_s, promised_s = (self.frames - end) / rate, self.frames / rate
            if missing_s > truncation_allowance(promised_s):
                raise AudioFileError(
                    f"{self.path}: file is truncated: header promises {self.frames} frames but reading "
                    f"stopped at {end}"
                )
            warn_truncated(self.path, missing_s, promised_s, f"reading stopped at frame {end}; "
                           "the missing samples are scored as silence")
            pad = [(0, stop - start - data.shape[0])] + [(0, 0)] * (data.ndim - 1)
            data = np.pad(data, pad)
        samples = data.mean(axis=1, dtype=np.float32) if data.ndim > 1 else data
        if not np.isfinite(samples).all():
            raise AudioFileError(f"{self.path}: file contains NaN or infinite samples near sample {start}")
        return samples

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples `start:stop` of the recording at the model's rate (float32)."""
        if self.up == self.down:
            return self._read_file(start, stop)
        p0 = max(0, start * self.down // self.up - self.context)
        p0 -= p0 % self.down
        p1 = min(self.frames, -(-stop * self.down // self.up) + self.context)
        y = signal.resample_poly(self._read_file(p0, p1), self.up, self.down)
        offset = start - (p0 // self.down) * self.up
        out = y[offset:offset + stop - start]
        if len(out) < stop - start:  # cannot happen inside the recording; guard the end
            out = np.pad(out, (0, stop - start - len(out)))
        return out.astype(np.float32, copy=False)


def _clip_inputs(plan: WindowPlan, preprocessing: Preprocessing, idx: np.ndarray) -> torch.Tensor:
    """Inputs of windows that do not fit in the recording, one clip at a time (exact)."""
    images = []
    for i in idx:
        start, end = float(plan.starts[i]), float(plan.ends[i])
        length = min(end, plan.file_frames / plan.file_rate) - start
        audio = Audio.from_file(plan.path, sample_rate=preprocessing.sample_rate, offset=start,
                                duration=max(length, 1.0 / plan.file_rate))
        images.append(preprocessing.feature_of(audio))
    return torch.stack(images)


#: frames per call of `Preprocessing.frames` for frame features: the chunk's frames are
#: computed in blocks of this many, so the STFT's temporaries stay small whatever the chunk
#: length (the image feature blocks inside `dsp.spectrogram_units`)
STFT_BLOCK_FRAMES = 1024


def _chunk_frames(preprocessing: Preprocessing, wave: torch.Tensor, n_frames: int,
                  stft_dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """`Preprocessing.stream_frames` (rows, n_frames) of a chunk's samples, block by block.

    Frames are independent, so the blocks put together equal one call on the chunk.
    """
    if preprocessing.feature == "waveform":
        return preprocessing.frames(wave[None, :n_frames])[0]
    win, hop = preprocessing.frame_grid
    if preprocessing.feature == "image":
        return preprocessing.stream_frames(wave[:(n_frames - 1) * hop + win], stft_dtype)
    out = None
    for f0 in range(0, n_frames, STFT_BLOCK_FRAMES):
        f1 = min(f0 + STFT_BLOCK_FRAMES, n_frames)
        part = preprocessing.stream_frames(wave[f0 * hop:(f1 - 1) * hop + win])
        if out is None:
            out = torch.empty((part.shape[0], n_frames), dtype=part.dtype)
        out[:, f0:f1] = part
    return out


def window_frames(
    plan: WindowPlan,
    preprocessing: Preprocessing,
    chunk_duration: float = 60.0,
    group_size: int = 32,
    stats: dict | None = None,
    stft_dtype: torch.dtype = torch.float64,
) -> Iterator[tuple[np.ndarray, bool, torch.Tensor]]:
    """Yield `(window indices, finished, tensor)` for every window of `plan`, in groups.

    ``finished`` False: the tensor holds the windows' frames ``(n, rows, frames)`` cut from
    the chunk's `Preprocessing.stream_frames`, still to go through
    `Preprocessing.finish_stream` (the caller decides where its output goes); True: the
    model inputs themselves (windows computed clip by clip). Groups hold at most
    `group_size` windows. `stft_dtype`: see `Preprocessing.stream_frames`.
    """
    win, hop, n_frames = frame_geometry(preprocessing)
    chunk_frames = max(n_frames + 1, int(chunk_duration * preprocessing.sample_rate / hop))
    total_frames = preprocessing.frames_of(plan.n_samples)
    idx_in = np.flatnonzero(plan.inside)
    first = plan.first_frame[idx_in]
    order = np.argsort(first, kind="stable")
    idx_in, first = idx_in[order], first[order]
    pos = 0
    if len(idx_in):
        with ChunkReader(plan, preprocessing.sample_rate) as reader:
            while pos < len(idx_in):
                a = int(first[pos])
                b = min(a + chunk_frames, total_frames)
                stop = pos + int(np.searchsorted(first[pos:], b - n_frames, side="right"))
                s0, s1 = a * hop, (b - 1) * hop + win
                if stats is not None:
                    stats["max_chunk_samples"] = max(stats.get("max_chunk_samples", 0), s1 - s0)
                db = _chunk_frames(preprocessing, torch.from_numpy(reader.read(s0, s1)), b - a, stft_dtype)
                frames = db.unfold(1, n_frames, 1)  # view: (freqs, starts, n_frames)
                for g in range(pos, stop, group_size):
                    sel = slice(g, min(g + group_size, stop))
                    offsets = torch.from_numpy(first[sel] - a)
                    yield idx_in[sel], False, frames.permute(1, 0, 2)[offsets]
                del db, frames
                pos = stop
    idx_out = np.flatnonzero(~plan.inside)
    for g in range(0, len(idx_out), group_size):
        sel = idx_out[g:g + group_size]
        yield sel, True, _clip_inputs(plan, preprocessing, sel)


def window_inputs(
    plan: WindowPlan,
    preprocessing: Preprocessing,
    chunk_duration: float = 60.0,
    group_size: int = 32,
    stats: dict | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield `(window indices, model inputs (n, *input_shape))` for every window of `plan`.

    Groups hold at most `group_size` windows. `stats["max_chunk_samples"]` (if a dict
    is given) records the longest chunk read, at the model's rate.
    """
    for idx, finished, data in window_frames(plan, preprocessing, chunk_duration, group_size, stats):
        yield idx, data if finished else preprocessing.finish_stream(data)


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def background_items(make_iter: Callable[[int], Iterator], n_threads: int, stop: threading.Event,
                     max_items: int) -> Iterator:
    """Yield the items of `make_iter(0)` ... `make_iter(n_threads - 1)`, each run in a thread.

    At most `max_items` items wait in the queue, so producers stay at most that far
    ahead of the consumer. An exception in a producer is re-raised here. Setting `stop`
    (done on exit, also when the consumer stops early) makes the producers quit.
    """
    q: queue.Queue = queue.Queue(maxsize=max_items)
    sentinel = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(shard: int) -> None:
        try:
            for item in make_iter(shard):
                if not put(item):
                    return
        except BaseException as exc:  # a bug: hand it to the consumer
            put(_Failure(exc))
        finally:
            put(sentinel)

    threads = [threading.Thread(target=run, args=(s,), daemon=True) for s in range(n_threads)]
    for t in threads:
        t.start()
    alive = n_threads
    try:
        while alive:
            item = q.get()
            if item is sentinel:
                alive -= 1
            elif isinstance(item, _Failure):
                raise item.exc
            else:
                yield item
    finally:
        stop.set()
        for t in threads:
            t.join()
