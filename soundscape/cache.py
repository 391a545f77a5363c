"""A two-level cache of arrays: memory up to a byte budget, then a folder on disk.

`ClipLoader` keeps decoded, resampled clips and their spectrograms here, so epochs
after the first do no decoding and no STFT. Entries are keyed by the source file (its
resolved path, size and modification time), the segment read from it and the
preprocessing parameters: editing or touching a file, or changing a parameter, makes a
new key, so stale values are never served.

Memory is per process. Processes share the disk level: DataLoader workers write what
they compute to disk as well, so other workers and later epochs (whose workers are new
processes) find it there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ParameterError
from .io import atomic_path

__all__ = ["ClipCache", "CacheStats", "default_cache", "set_default_cache", "default_cache_dir",
           "source_key", "FORMAT_VERSION", "SETTLE_SECONDS"]

#: bumped when the meaning of cached arrays changes, so old disk entries are ignored
FORMAT_VERSION = 1
_ENV_DIR = "SOUNDSCAPE_CACHE_DIR"
_ENV_MEMORY = "SOUNDSCAPE_CACHE_MEMORY_MB"


def default_cache_dir() -> Path:
    """``$SOUNDSCAPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/soundscape``, else ``~/.cache/soundscape``."""
    if os.environ.get(_ENV_DIR):
        return Path(os.environ[_ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "soundscape"


def _default_memory_bytes() -> int:
    if os.environ.get(_ENV_MEMORY):
        return int(float(os.environ[_ENV_MEMORY]) * 2**20)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(min(total // 8, 4 * 2**30))


#: files changed less than this long ago (seconds) are not cached: file systems stamp
#: modification times with a coarse clock, so a second write within the same tick could
#: leave size and mtime unchanged and a cached value would go stale unnoticed
SETTLE_SECONDS = 0.05


def source_key(path: str | Path, *parts: Any) -> str | None:
    """Cache key of data derived from the file `path` plus `parts` (segment, parameters).

    Includes the resolved path, the file's size and modification time (ns), so a changed
    or touched file gets a new key. Returns None (do not cache) for a file modified in
    the last `SETTLE_SECONDS`. Raises FileNotFoundError for a missing file.
    """
    path = Path(path)
    st = os.stat(path)
    if time.time() - st.st_mtime < SETTLE_SECONDS:
        return None
    ident = [FORMAT_VERSION, os.path.realpath(path), st.st_size, st.st_mtime_ns, *parts]
    return hashlib.sha1(json.dumps(ident, default=str).encode()).hexdigest()


@dataclass
class CacheStats:
    """Counts of lookups answered from memory, from disk, and not at all."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    spills: int = 0  # entries moved from memory to disk because memory was full
    disk_writes: int = 0

    @property
    def hits(self) -> int:
        return self.memory_hits + self.disk_hits


class ClipCache:
    """Arrays by key: an LRU dict in memory up to `memory_bytes`, then `.npy` files in `directory`.

    Parameters
    ----------
    directory : str or Path or None
        Folder of the disk level (created when first written). None: memory only.
    memory_bytes : int, optional
        Memory budget of this process in bytes (default: 1/8 of RAM, at most 4 GiB, or
        ``$SOUNDSCAPE_CACHE_MEMORY_MB``). When it is exceeded the least recently used
        entries move to disk. 0 keeps nothing in memory.
    write_through : bool or None
        Also write every new entry to disk at once. Default (None): only inside DataLoader
        worker processes, whose memory dies with them at the end of an epoch.

    Examples
    --------
    >>> cache = ClipCache("/tmp/my_cache", memory_bytes=2**30)
    >>> x = cache.get_or_compute("some-key", lambda: np.zeros(10, np.float32))
    """

    def __init__(self, directory: str | Path | None = None, memory_bytes: int | None = None,
                 write_through: bool | None = None):
        memory_bytes = _default_memory_bytes() if memory_bytes is None else memory_bytes
        if int(memory_bytes) < 0:
            raise ParameterError(f"memory_bytes must be >= 0, got {memory_bytes!r}")
        self.directory = None if directory is None else Path(directory).expanduser()
        self.memory_bytes = int(memory_bytes)
        self.write_through = write_through
        self.stats = CacheStats()
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._used = 0
        self._on_disk: set[str] = set()
        self._lock = threading.Lock()
        self._disk_failed = False  # a write failed (disk full, read-only): memory only from then

    # ------------------------------------------------------------------ pickling (spawn workers)
    def __getstate__(self) -> dict:
        # a worker gets the settings, not a copy of the parent's memory level
        return {"directory": self.directory, "memory_bytes": self.memory_bytes,
                "write_through": self.write_through}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def __repr__(self) -> str:
        return (f"<ClipCache {len(self._memory)} arrays, {self._used / 2**20:.1f} of "
                f"{self.memory_bytes / 2**20:.0f} MiB in memory, disk: {self.directory}>")

    # ------------------------------------------------------------------ properties
    @property
    def memory_used(self) -> int:
        """Bytes held in memory now."""
        return self._used

    def __len__(self) -> int:
        return len(self._memory)

    def in_memory(self, key: str) -> bool:
        return key in self._memory

    def on_disk(self, key: str) -> bool:
        path = self._path(key)
        return path is not None and path.exists()

    def _budget(self) -> int:
        """This process's memory budget: shared out between DataLoader workers."""
        info = _worker_info()
        return self.memory_bytes // info.num_workers if info is not None else self.memory_bytes

    def _writes_through(self) -> bool:
        if self.directory is None:
            return False
        return _worker_info() is not None if self.write_through is None else bool(self.write_through)

    # ------------------------------------------------------------------ disk level
    def _path(self, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"v{FORMAT_VERSION}" / key[:2] / f"{key}.npy"

    def _write(self, key: str, array: np.ndarray) -> None:
        path = self._path(key)
        if path is None or key in self._on_disk or self._disk_failed:
            return
        try:
            with atomic_path(path, make_parents=True, what="clip cache file") as tmp:
                with open(tmp, "wb") as handle:  # readers never see half a file
                    np.save(handle, array, allow_pickle=False)
        except OSError as exc:  # a cache that cannot be written must not stop the work
            self._disk_failed = True
            logging.getLogger("soundscape.cache").warning(
                "%s; the clip cache keeps clips in memory only from now on", exc)
            return
        self._on_disk.add(key)
        self.stats.disk_writes += 1

    def _read(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (ValueError, OSError, EOFError):  # damaged file: forget it and recompute
            path.unlink(missing_ok=True)
            return None
        self._on_disk.add(key)
        return array

    # ------------------------------------------------------------------ memory level
    def _remember(self, key: str, array: np.ndarray) -> None:
        budget = self._budget()
        if array.nbytes > budget:
            self._write(key, array)
            return
        old = self._memory.pop(key, None)
        if old is not None:
            self._used -= old.nbytes
        self._memory[key] = array
        self._used += array.nbytes
        while self._used > budget:
            k, a = self._memory.popitem(last=False)
            self._used -= a.nbytes
            if self.directory is not None and k not in self._on_disk:
                self._write(k, a)
                self.stats.spills += 1

    # ------------------------------------------------------------------ public API
    def get(self, key: str | None, count_miss: bool = True) -> np.ndarray | None:
        """The array stored under `key` (memory first, then disk), or None (also for key None).

        `count_miss=False` looks without counting a miss (for optional reuse).
        """
        if key is None:
            return None
        with self._lock:
            array = self._memory.get(key)
            if array is not None:
                self._memory.move_to_end(key)
                self.stats.memory_hits += 1
                return array
            array = self._read(key)
            if array is None:
                self.stats.misses += int(count_miss)
                return None
            self.stats.disk_hits += 1
            array.setflags(write=False)
            self._remember(key, array)
            return array

    def put(self, key: str | None, array: np.ndarray) -> np.ndarray:
        """Store `array` (made read-only) under `key` (None: store nothing); returns it."""
        array = np.asarray(array)
        if key is None:
            return array
        array.setflags(write=False)
        with self._lock:
            if self._writes_through():
                self._write(key, array)
            self._remember(key, array)
        return array

    def get_or_compute(self, key: str | None, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array of `key`, or `compute()` stored under `key` (key None: just compute)."""
        if key is None:
            return compute()
        array = self.get(key)
        return array if array is not None else self.put(key, compute())

    def clear(self, disk: bool = False) -> None:
        """Empty the memory level; with `disk=True` also delete this format's files on disk."""
        with self._lock:
            self._memory.clear()
            self._used = 0
            self._on_disk.clear()
            if disk and self.directory is not None:
                shutil.rmtree(self.directory / f"v{FORMAT_VERSION}", ignore_errors=True)

    def disk_bytes(self) -> int:
        """Total size of this format's files in the disk level."""
        if self.directory is None or not (self.directory / f"v{FORMAT_VERSION}").exists():
            return 0
        return sum(p.stat().st_size for p in (self.directory / f"v{FORMAT_VERSION}").rglob("*.npy"))


def _worker_info():
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return get_worker_info()


_DEFAULT: ClipCache | None = None


def default_cache() -> ClipCache:
    """The process-wide cache `ClipLoader` uses unless given another (created on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ClipCache(default_cache_dir())
    return _DEFAULT


def set_default_cache(cache: ClipCache | None) -> None:
    """Replace the process-wide cache (None: a fresh default one is made on next use)."""
    global _DEFAULT
    if cache is not None and not isinstance(cache, ClipCache):
        raise ParameterError(f"cache must be a ClipCache or None, got {type(cache).__name__}")
    _DEFAULT = cache
