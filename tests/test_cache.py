"""Tests for soundscape.cache: the memory + disk array cache and its keys."""

import os
import pickle
import time

import numpy as np
import pytest

from soundscape import cache as cache_module
from soundscape.cache import ClipCache, source_key
from soundscape.errors import ParameterError

MB = 2**20


def _arr(value, n=MB // 4):  # 1 MiB of float32
    return np.full(n, value, dtype=np.float32)


def test_memory_hits_return_the_stored_array_read_only():
    cache = ClipCache(None, memory_bytes=4 * MB)
    assert cache.get("a") is None
    stored = cache.put("a", _arr(1))
    got = cache.get("a")
    assert got is stored and not got.flags.writeable
    assert (cache.stats.memory_hits, cache.stats.misses) == (1, 1)
    calls = []
    assert cache.get_or_compute("a", lambda: calls.append(1)) is stored
    assert cache.get_or_compute("b", lambda: _arr(2))[0] == 2
    assert calls == [] and cache.memory_used == 2 * MB
    assert cache.get_or_compute(None, lambda: _arr(5))[0] == 5  # no key: computed, not stored
    assert len(cache) == 2


def test_memory_budget_exceeded_spills_least_recent_to_disk(tmp_path):
    cache = ClipCache(tmp_path, memory_bytes=2 * MB)
    for i in range(3):
        cache.put(f"k{i}", _arr(i))
    assert cache.memory_used <= 2 * MB
    assert not cache.in_memory("k0") and cache.on_disk("k0")  # oldest went to disk
    assert cache.in_memory("k2") and not cache.on_disk("k2")  # newest stays in memory only
    assert cache.stats.spills == 1
    got = cache.get("k0")
    assert got[0] == 0 and cache.stats.disk_hits == 1
    assert cache.in_memory("k0")  # promoted back, k1 spilled in turn
    assert cache.on_disk("k1") and cache.get("k1")[0] == 1


def test_too_big_for_memory_goes_straight_to_disk_or_nowhere(tmp_path):
    disk_only = ClipCache(tmp_path, memory_bytes=0)
    disk_only.put("x", _arr(3))
    assert len(disk_only) == 0 and disk_only.on_disk("x")
    assert disk_only.get("x")[0] == 3
    nowhere = ClipCache(None, memory_bytes=0)
    nowhere.put("x", _arr(3))
    assert nowhere.get("x") is None


def test_disk_level_is_reused_by_a_new_cache(tmp_path):
    first = ClipCache(tmp_path, memory_bytes=MB, write_through=True)
    first.put("shared", _arr(7))
    second = ClipCache(tmp_path, memory_bytes=MB)
    assert second.get("shared")[0] == 7
    assert second.stats.disk_hits == 1 and second.stats.misses == 0
    assert first.disk_bytes() >= MB
    first.clear(disk=True)
    assert first.disk_bytes() == 0 and ClipCache(tmp_path).get("shared") is None


def test_damaged_disk_entry_is_a_miss_and_is_removed(tmp_path):
    cache = ClipCache(tmp_path, memory_bytes=0)
    cache.put("bad", _arr(1))
    path = cache._path("bad")
    path.write_bytes(b"\x93NUMPY garbage")
    fresh = ClipCache(tmp_path, memory_bytes=0)
    assert fresh.get("bad") is None and not path.exists()


def test_pickled_cache_keeps_settings_not_contents(tmp_path):
    cache = ClipCache(tmp_path, memory_bytes=3 * MB, write_through=False)
    cache.put("a", _arr(1))
    clone = pickle.loads(pickle.dumps(cache))
    assert clone.directory == cache.directory and clone.memory_bytes == 3 * MB
    assert len(clone) == 0 and clone.write_through is False


def test_source_key_follows_file_size_mtime_and_parts(tmp_path):
    f = tmp_path / "clip.bin"
    f.write_bytes(b"12345")
    os.utime(f, (time.time() - 60, time.time() - 60))
    key = source_key(f, "audio", 0.0, None, "params")
    assert key == source_key(f, "audio", 0.0, None, "params")
    assert key != source_key(f, "audio", 0.0, None, "other-params")
    assert key != source_key(f, "audio", 1.0, None, "params")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # touched
    touched = source_key(f, "audio", 0.0, None, "params")
    assert touched != key
    f.write_bytes(b"123456")  # changed just now: too fresh to trust its timestamp
    assert source_key(f, "audio", 0.0, None, "params") is None
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert source_key(f, "audio", 0.0, None, "params") not in (None, touched)  # size differs
    with pytest.raises(FileNotFoundError):
        source_key(tmp_path / "missing.wav")


def test_default_cache_uses_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSCAPE_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("SOUNDSCAPE_CACHE_MEMORY_MB", "5")
    cache_module.set_default_cache(None)
    try:
        default = cache_module.default_cache()
        assert default.directory == tmp_path / "c" and default.memory_bytes == 5 * MB
        assert cache_module.default_cache() is default
    finally:
        cache_module.set_default_cache(None)
    with pytest.raises(ParameterError, match="memory_bytes"):
        ClipCache(tmp_path, memory_bytes=-1)
    with pytest.raises(ParameterError, match="ClipCache"):
        cache_module.set_default_cache("somewhere")
