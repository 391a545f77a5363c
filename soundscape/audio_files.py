"""Audio files on disk: finding them, checking them, and reading their headers.

`find_audio_files` is the one place that turns paths, folders and glob patterns into the
list of recordings a job works on (`AUDIO_SUFFIXES` is the one suffix list). `audio_info`
reads a file's header and checks it before any samples are decoded: missing files,
folders, link loops, empty and corrupt files, and recordings that hold less audio than
their header promises (read with a warning within `truncation_allowance`, refused beyond
it). `quiet_mpeg_decoder` keeps the MP3 decoder's notes off stderr.
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
from numbers import Real
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile

from .errors import AudioFileError, ParameterError

#: suffixes of the audio files a folder search finds (case-insensitive)
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".au", ".opus"}

_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # bytes: header + lacing table + largest body

logger = logging.getLogger("soundscape.audio")

#: default `max_truncation` (seconds): a file whose header promises at most this much
#: more audio than it holds is read (what is there, with a warning) instead of refused...
MAX_TRUNCATION = 1.0
#: ...provided the missing part is also at most this fraction of the promised length
#: (so the allowance is min(max_truncation, 5 %): 0.1 s of a 2-s clip, 1 s of an hour)
MAX_TRUNCATION_FRACTION = 0.05
_TAIL_BLOCK = 1024  # frames per read when checking the end of a file


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
    try:
        os.stat(path)
    except PermissionError:  # a folder on the way cannot be searched (Path.exists raises too)
        raise AudioFileError(f"{path}: permission denied: a folder on its path cannot be "
                             "searched by this user") from None
    except OSError:
        pass  # missing, a broken link or a loop: told apart below
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
    try:
        size = path.stat().st_size
        with open(path, "rb"):  # libsndfile would only say "System error"
            pass
    except PermissionError:
        raise AudioFileError(f"{path}: permission denied: this user may not read the file "
                             "(check its permissions and those of its folders)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AudioFileError(f"{path}: symbolic link loop (the link leads back to "
                                 "itself), not an audio file") from None
        raise AudioFileError(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    if size == 0:
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
        raise AudioFileError(f"{path}: not a readable audio file ({_decoder_reason(exc, path)})") from exc
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


def _decoder_reason(exc: BaseException, path: Path) -> str:
    """libsndfile's reason for refusing a file, without its misleading "does not exist"."""
    text = str(exc)
    if "does not exist or is not a regular file" in text and path.is_file():
        return "its contents are not in an audio format soundfile/libsndfile recognises"
    return text


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


def find_audio_files(files) -> list[str]:
    """Expand `files` (a path, folder, glob string, or list of them) into audio file paths.

    A folder gives all audio files in it, recursively (sorted); a glob string gives
    its matches. Entries that cannot be audio files are kept as given, so that each
    fails on its own later with a clear message (`soundscape.audio.audio_info`
    raises it) while the other files are scored: in a list, a missing path, a folder
    named like an audio file (``x.wav/``) or holding no audio file, a glob pattern
    that matches nothing; anywhere, a symbolic link with an audio suffix that loops
    or points nowhere.

    Raises
    ------
    FileNotFoundError
        `files` is a single folder holding no audio file, a single missing path that is
        not named like an audio file (a missing folder), or a single glob pattern that
        matches nothing.
    ParameterError
        `files` is empty.
    """
    def _unreadable_link(path: Path) -> bool:  # a link that loops or points nowhere
        try:
            return path.is_symlink() and not path.exists()
        except OSError:
            return True

    single = isinstance(files, (str, os.PathLike))
    items = [files] if single else list(files)
    out: list[str] = []
    for item in items:
        p = Path(item)
        text = os.fspath(item)
        if _unreadable_link(p):
            out.append(str(item))  # fails later: "symbolic link loop" / "broken symbolic link"
        elif p.is_dir():
            if p.suffix.lower() in AUDIO_SUFFIXES and not single:
                out.append(str(item))  # fails later: "is a folder, not an audio file"
                continue
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES
                           and (f.is_file() or _unreadable_link(f)))
            if not found and single:
                raise FileNotFoundError(f"no audio files ({sorted(AUDIO_SUFFIXES)}) in folder {p}")
            out.extend(found or [str(item)])  # an empty folder in a list fails on its own
        elif not p.exists() and isinstance(item, str) and glob.has_magic(item):
            found = sorted(glob.glob(item, recursive=True))
            if not found and single:
                raise FileNotFoundError(f"no files match the pattern {item!r}")
            out.extend(found or [item])  # fails later: "no files match the pattern"
        elif single and not p.exists() and (text.endswith((os.sep, "/"))
                                            or p.suffix.lower() not in AUDIO_SUFFIXES):
            raise FileNotFoundError(f"no such folder or audio file: {p}")
        else:
            out.append(str(item))
    if not out:
        raise ParameterError("files is empty: give audio paths, a folder or a glob pattern")
    return list(dict.fromkeys(out))
