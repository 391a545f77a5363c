"""Tests for soundscape.loading: cached clip loading and parallel DataLoaders."""

import io
import os
import time
from contextlib import redirect_stdout

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from soundscape import cache as cache_module
from soundscape.cache import ClipCache
from soundscape.errors import AudioFileError, ParameterError
from soundscape.loading import ClipLoader, default_loader_settings, worker_init
from soundscape.preprocessing import Preprocessing

RATE = 16000
PRE = Preprocessing(sample_rate=8000, clip_duration=1.0, window_samples=256, overlap_samples=128,
                    height=48, width=64)
LABELS = {0: "low", 1: "high"}


def _settle(path):
    """Date a file one minute back (freshly written files are not cached, see SETTLE_SECONDS)."""
    then = time.time() - 60
    os.utime(path, (then, then))
    return path


def _write(path, seed, seconds=1.2, rate=RATE):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    x = 0.4 * np.sin(2 * np.pi * (300 + 400 * seed) * t) + 0.02 * rng.standard_normal(len(t))
    sf.write(path, x.astype(np.float32), rate)
    return _settle(path)


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    return [_write(folder / f"clip{i}.wav", i) for i in range(6)]


@pytest.fixture
def private_default_cache(tmp_path, monkeypatch):
    """Point the process-wide default cache (and that of worker processes) at tmp_path."""
    monkeypatch.setenv("SOUNDSCAPE_CACHE_DIR", str(tmp_path / "default_cache"))
    cache_module.set_default_cache(None)
    yield tmp_path / "default_cache"
    cache_module.set_default_cache(None)


def test_load_spectrogram_and_image_equal_the_uncached_path(files, tmp_path):
    loader = ClipLoader(PRE, ClipCache(tmp_path / "c", memory_bytes=2**26))
    f = files[0]
    expected = PRE.load_audio(f).samples
    np.testing.assert_array_equal(loader.load(f), expected)
    again = loader.load(f)
    np.testing.assert_array_equal(again, expected)
    assert loader.cache.stats.memory_hits == 1 and loader.cache.stats.misses == 1
    again[:] = 0  # callers get their own copy: the cache is not changed through it
    np.testing.assert_array_equal(loader.load(f), expected)
    image = loader.feature(f)
    assert torch.equal(image, PRE.image(PRE.load_audio(f)))
    torch.testing.assert_close(image, PRE.image_reference(PRE.load_audio(f)), atol=2e-5, rtol=0)
    assert torch.equal(loader.feature(f), image)  # from the cached spectrogram
    np.testing.assert_array_equal(loader.frames(f), PRE.frames(torch.from_numpy(expected)[None])[0])
    # a segment of a file is its own entry
    seg = loader.load(f, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(seg, PRE.load_audio(f, offset=0.25, duration=0.5).samples)
    assert ClipLoader(PRE, cache=False).cache is None
    np.testing.assert_array_equal(ClipLoader(PRE, cache=False).load(f), expected)


def test_touched_or_rewritten_file_and_new_parameters_are_recomputed(files, tmp_path):
    store = ClipCache(tmp_path / "c", memory_bytes=2**26)
    loader = ClipLoader(PRE, store)
    f = files[0]
    first = loader.frames(f)
    loader.frames(f)
    assert store.stats.misses == 1 and store.stats.hits == 1
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
    misses = store.stats.misses
    np.testing.assert_array_equal(loader.frames(f), first)
    assert store.stats.misses > misses  # recomputed
    _write(f, seed=5)  # new content under the same name
    np.testing.assert_array_equal(loader.load(f), PRE.load_audio(f).samples)
    assert not np.allclose(loader.frames(f), first)
    # a new spectrogram parameter recomputes the spectrogram but reuses the cached waveform
    mel = ClipLoader(PRE.replace(n_mels=20), store)
    misses, hits = store.stats.misses, store.stats.hits
    spec = mel.frames(f)
    assert spec.shape[0] == 20
    assert store.stats.misses == misses + 1 and store.stats.hits == hits + 1
    # an image-size change reuses the cached spectrogram
    small = ClipLoader(PRE.replace(height=16, width=16), store)
    misses = store.stats.misses
    assert small.feature(f).shape == (3, 16, 16) and store.stats.misses == misses


def test_pickled_loader_keeps_its_cache_settings_for_spawned_workers(files, tmp_path):
    import pickle

    store = ClipCache(tmp_path / "c", memory_bytes=12345)
    loader = ClipLoader(PRE, store)
    loader.load(files[0])
    clone = pickle.loads(pickle.dumps(loader))
    assert clone.preprocessing == PRE and clone.cache.directory == store.directory
    assert clone.cache.memory_bytes == 12345 and len(clone.cache) == 0  # settings, not contents
    assert pickle.loads(pickle.dumps(ClipLoader(PRE, cache=False))).cache is None


def test_fresh_files_are_served_but_not_cached(tmp_path):
    f = tmp_path / "fresh.wav"
    sf.write(f, np.zeros(RATE, np.float32), RATE)
    store = ClipCache(None, memory_bytes=2**26)
    ClipLoader(PRE, store).load(f)
    assert len(store) == 0


def test_spill_to_disk_and_reuse_by_a_new_loader(files, tmp_path):
    one = PRE.load_audio(files[0]).samples.nbytes
    store = ClipCache(tmp_path / "c", memory_bytes=2 * one)  # room for two waveforms
    loader = ClipLoader(PRE, store)
    for f in files:
        loader.load(f)
    assert store.memory_used <= 2 * one and store.stats.spills == len(files) - 2
    fresh = ClipLoader(PRE, ClipCache(tmp_path / "c", memory_bytes=2 * one))
    store.clear()  # the old loader's memory is gone; its spills are on disk
    for f in files[:-2]:
        np.testing.assert_array_equal(fresh.load(f), PRE.load_audio(f).samples)
    assert fresh.cache.stats.misses == 0 and fresh.cache.stats.disk_hits == len(files) - 2


def test_batched_images_equal_single_images(files, tmp_path):
    loader = ClipLoader(PRE, ClipCache(tmp_path / "c", memory_bytes=2**26))
    loader.feature(files[1])  # one cached, the rest computed in one batch
    items = [files[0], (files[1], 0.0, None), (files[2], 0.1, 1.0), files[3]]
    batch = loader.features(items)
    assert batch.shape == (4, 3, 48, 64)
    singles = torch.stack([ClipLoader(PRE, cache=False).feature(*it) if isinstance(it, tuple) else
                           ClipLoader(PRE, cache=False).feature(it) for it in items])
    torch.testing.assert_close(batch, singles, atol=1e-6, rtol=0)
    torch.testing.assert_close(loader.features(items), batch, atol=0, rtol=0)  # all cached now
    unfixed = ClipLoader(PRE.replace(clip_duration=None), cache=False)
    with pytest.raises(ParameterError, match="equally long"):
        unfixed.features([files[0], (files[1], 0.0, 0.5)])
    with pytest.raises(ParameterError, match="path or"):
        loader.features([{"file": files[0]}])
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        loader.load(tmp_path / "nope.wav")


# --------------------------------------------------------------------------- DataLoaders
def _dataset(files, labels=None):
    from soundscape.datasets import SingleTargetAudioDataset

    df = pd.DataFrame({"file": [str(f) for f in files],
                       "label": labels if labels is not None else [i % 2 for i in range(len(files))]})
    return SingleTargetAudioDataset(df, LABELS, filename_column="file", label_column="label", preprocessing=PRE)


def _collect(dataset, **kw):
    loader = DataLoader(dataset, batch_size=2, shuffle=False, **kw)
    batches = list(loader)
    return torch.cat([b["X"] for b in batches]), torch.cat([b["y"] for b in batches])


def test_workers_give_the_same_tensors_as_the_main_process(files, private_default_cache):
    if "fork" not in torch.multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no fork start method")
    dataset = _dataset(files)
    x0, y0 = _collect(dataset, num_workers=0)
    cache_module.default_cache().clear()
    x2, y2 = _collect(dataset, num_workers=2, multiprocessing_context="fork", worker_init_fn=worker_init,
                      timeout=120)
    torch.testing.assert_close(x2, x0, atol=0, rtol=0)
    assert torch.equal(y2, y0)
    # the workers wrote what they computed to the shared disk level
    assert ClipCache(private_default_cache).disk_bytes() > 0


def test_default_loader_settings_run_a_dataloader(files, private_default_cache):
    settings = default_loader_settings(device="cpu", n_cpus=2)
    assert settings["num_workers"] == 1 and settings["batch_size"] == 32
    assert settings["persistent_workers"] and settings["worker_init_fn"] is worker_init
    gpu = default_loader_settings(device="cuda", n_cpus=16)
    assert gpu["num_workers"] == 8 and gpu["batch_size"] == 64 and gpu["pin_memory"]
    assert default_loader_settings(device="cpu", n_cpus=1)["num_workers"] == 1
    with pytest.raises(ParameterError, match="n_cpus"):
        default_loader_settings(n_cpus=0)
    settings.update(batch_size=4, timeout=120)
    batches = [b["X"].shape[0] for b in DataLoader(_dataset(files), **settings)]
    assert batches == [4, 2]


def _corrupt(tmp_path, files):
    bad = tmp_path / "audio" / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40)
    _settle(bad)
    return list(files[:3]) + [bad] + list(files[3:])


def test_corrupt_file_in_a_worker_raises_a_clear_error_not_a_hang(files, tmp_path, private_default_cache):
    dataset = _dataset(_corrupt(tmp_path, files))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, multiprocessing_context="fork",
                        worker_init_fn=worker_init, timeout=120)
    started = time.perf_counter()
    with pytest.raises(AudioFileError, match="broken.wav"):
        list(loader)
    assert time.perf_counter() - started < 60


def test_train_with_workers_skips_a_corrupt_file(files, tmp_path, private_default_cache):
    from soundscape.torch.train import train

    paths = _corrupt(tmp_path, files)
    train_ds = _dataset(paths, labels=[i % 2 for i in range(len(paths))])
    valid_ds = _dataset(files[:2], labels=[0, 1])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    with redirect_stdout(io.StringIO()):
        history = train(tmp_path / "run", model, train_ds, valid_ds,
                        torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.CrossEntropyLoss(),
                        epochs=1, batch_size=3, num_workers=2, device="cpu", progress_bar=False)
    assert len(history) == 1
    assert any("broken.wav" in f for f in history.attrs["skipped_files"])


def test_workers_run_inside_a_notebook_with_fork_and_spawn(files, private_default_cache):
    """Workers started from a Jupyter kernel (spawn re-imports everything in a fresh process)."""
    if "fork" not in torch.multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no fork start method")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    code = f"""
import torch
from torch.utils.data import DataLoader
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.loading import default_loader_settings
import pandas as pd
df = pd.DataFrame({{"file": {[str(f) for f in files]!r}, "label": [0, 1] * 3}})
pre = {PRE!r}
ds = SingleTargetAudioDataset(df, {{0: "low", 1: "high"}}, filename_column="file", label_column="label",
                              preprocessing=pre)
ref = torch.cat([b["X"] for b in DataLoader(ds, batch_size=2)])
for context in ("fork", "spawn"):
    settings = default_loader_settings("cpu", n_cpus=4)
    settings.update(batch_size=2, multiprocessing_context=context, timeout=120)
    got = torch.cat([b["X"] for b in DataLoader(ds, **settings)])
    assert torch.equal(got, ref), context
print("notebook workers ok")
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("from soundscape.preprocessing import Preprocessing"),
                                         nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    outputs = nb.cells[1].outputs
    assert any("notebook workers ok" in o.get("text", "") for o in outputs), outputs
    assert ClipCache(private_default_cache).disk_bytes() > 0  # spawned workers found the cache folder
