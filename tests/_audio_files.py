"""Audio files as some recorders write them, for the tests that read awkward files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf


def mp3_in_wav(path: Path, samples: np.ndarray, rate: int, tail: bytes = b"") -> Path:
    """A WAV holding an MP3 stream (format tag 0x55), as some recorders write, plus `tail`."""
    mp3_path = path.with_suffix(".tmp.mp3")
    sf.write(mp3_path, samples, rate)
    mp3 = mp3_path.read_bytes() + tail
    mp3_path.unlink()
    fmt = struct.pack("<HHIIHHH", 0x55, 1, rate, 4000, 1, 0, 12) + struct.pack("<HIHHH", 1, 2, 417, 1, 1393)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<I", 4)
            + struct.pack("<I", len(samples)) + b"data" + struct.pack("<I", len(mp3)) + mp3
            + (b"\0" if len(mp3) % 2 else b""))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path
