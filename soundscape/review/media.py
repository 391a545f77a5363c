"""What the review page shows and plays: spectrogram pictures and short WAV cuts.

Every path a browser asks for is resolved against one audio root (`AudioRoot`); a path
that leads outside it (``../``, an absolute path elsewhere, a symbolic link out of it) is
refused. Audio is read only for the stretch asked for, never copied whole.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import soundfile

from soundscape.errors import ParameterError

__all__ = ["AudioRoot", "PathRefused", "wav_bytes", "spectrogram_png", "MAX_CLIP_S"]

#: the longest stretch (seconds) one request may cut from a recording
MAX_CLIP_S = 120.0


class PathRefused(ParameterError):
    """A requested path lies outside the audio root (the web app answers 403)."""


class AudioRoot:
    """The folder the review page may read audio from.

    Parameters
    ----------
    root : path
        The folder; relative file names in tables are relative to it.
    """

    def __init__(self, root: str | os.PathLike):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ParameterError(f"audio root {root} is not a folder")
        self.root = path.resolve()

    def __repr__(self) -> str:
        return f"AudioRoot({str(self.root)!r})"

    def resolve(self, name: str | os.PathLike) -> Path:
        """The file `name`, checked to lie inside the root.

        A relative `name` is looked up in the root, then in the working folder (tables
        written by `predict_recordings` name files as they were given); either way it
        must lead into the root.

        Raises
        ------
        PathRefused
            The path leads outside the audio root (after following symbolic links).
        FileNotFoundError
            It is inside the root but there is no such file.
        """
        text = os.fspath(name)
        if not text or "\x00" in text:
            raise PathRefused(f"path {text!r} is not a file name")
        path = Path(text).expanduser()
        places = [path] if path.is_absolute() else [self.root / path, Path.cwd() / path]
        inside = False
        for place in places:
            try:
                real = place.resolve()
            except (OSError, RuntimeError):
                raise PathRefused(f"path {text!r} cannot be resolved (a symbolic link loop?)") \
                    from None
            if real != self.root and self.root not in real.parents:
                continue
            inside = True
            if real.is_file():
                return real
        if not inside:
            raise PathRefused(f"path {text!r} is outside the audio root {self.root}; only "
                              "recordings under the folder given with --audio are served")
        raise FileNotFoundError(f"no audio file {text!r} under the audio root {self.root}")


def _check_span(start: float, end: float) -> tuple[float, float]:
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise ParameterError(f"start={start:g} and end={end:g} must be seconds with "
                             "0 <= start < end")
    if end - start > MAX_CLIP_S:
        raise ParameterError(f"clip {start:g}-{end:g} s is longer than {MAX_CLIP_S:g} s; ask for "
                             "a shorter stretch")
    return start, end


def read_span(path: Path, start: float, end: float) -> tuple[np.ndarray, int]:
    """Mono float32 samples of `path` from `start` to `end` seconds (cut at the file end).

    Read by `Audio.from_file` (only that stretch; its header, truncation and MPEG-in-WAV
    handling); a stretch that starts after the end of the file is empty.
    """
    from soundscape.audio import Audio
    from soundscape.audio_files import audio_info

    start, end = _check_span(start, end)
    info = audio_info(path)
    if int(round(start * info.samplerate)) >= info.frames:
        return np.zeros(0, np.float32), int(info.samplerate)
    audio = Audio.from_file(path, offset=start, duration=end - start)
    return audio.samples, audio.sample_rate


def wav_bytes(path: Path, start: float, end: float) -> bytes:
    """A 16-bit mono WAV of `path` from `start` to `end` seconds, as bytes.

    Only that stretch is read from the recording.
    """
    samples, rate = read_span(path, start, end)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def spectrogram_png(path: Path, start: float, end: float, context: float = 1.0,
                    low_f: float | None = None, high_f: float | None = None,
                    title: str | None = None, size: tuple[float, float] = (8.0, 3.2),
                    dpi: int = 80) -> bytes:
    """PNG of the spectrogram of `start` - `end` s of `path` with `context` s either side.

    The clip itself is outlined as a red box (from `low_f` to `high_f` Hz when given,
    else the full height). Uses `soundscape.spectrogram.Spectrogram`.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from soundscape.audio import Audio
    from soundscape.spectrogram import Spectrogram

    start, end = _check_span(start, end)
    if not (context >= 0 and math.isfinite(context)):
        raise ParameterError(f"context must be seconds >= 0, got {context!r}")
    t0 = max(0.0, start - context)
    samples, rate = read_span(path, t0, max(end + context, t0 + 1e-3))
    if len(samples) < 512:  # a stretch shorter than one FFT window: pad with silence
        samples = np.pad(samples, (0, 512 - len(samples)))
    spec = Spectrogram.from_audio(Audio(samples, rate), window_samples=512, overlap_samples=384)
    low_db, high_db = _db_range(spec.spectrogram)
    spec = Spectrogram(np.clip(spec.spectrogram, low_db, high_db), spec.frequencies,
                       spec.times + t0, (low_db, high_db), sample_rate=rate)
    fig = Figure(figsize=size, dpi=dpi)
    ax = fig.add_subplot()
    spec.plot(ax=ax, colorbar=False, title=title, cmap="magma")
    nyquist = rate / 2
    lo = 0.0 if low_f is None or not math.isfinite(low_f) else max(0.0, float(low_f))
    hi = nyquist if high_f is None or not math.isfinite(high_f) else min(nyquist, float(high_f))
    ax.add_patch(Rectangle((start, lo), end - start, hi - lo, fill=False, edgecolor="#e01010",
                           linewidth=2))
    ax.set_xlim(t0, t0 + len(samples) / rate)
    ax.set_ylim(0, nyquist)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _db_range(db: np.ndarray) -> tuple[float, float]:
    """A contrast range for display: from the median (background) to the loudest bins."""
    finite = db[np.isfinite(db)]
    if not finite.size:
        return -100.0, -20.0
    low, high = np.percentile(finite, [50, 99.9])
    return float(low), float(max(high, low + 1.0))
