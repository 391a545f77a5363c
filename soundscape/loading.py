"""Clip loading for datasets and prediction: decode + resample + fit, cached, in one place.

`ClipLoader` is the single entry point datasets and the clip predictor use to get a clip's
fitted waveform, its frames (`Preprocessing.frames`: the dB spectrogram of an image model,
the filterbank energies of an fbank model, ...) or its model input. Results are cached (see
`soundscape.cache`), so epochs after the first do no decoding and no STFT; augmentations
that must differ per epoch run on the cached waveform or model input.

DataLoader settings for the machine (`default_loader_settings`, `worker_init`) live in
`soundscape.runtime` and are importable from here too.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .cache import ClipCache, default_cache, source_key
from .errors import ParameterError
from .preprocessing import Preprocessing, stack_waveforms
from .runtime import cpu_count, default_loader_settings, worker_init  # noqa: F401 (classic path)

__all__ = ["ClipLoader", "default_loader_settings", "worker_init", "cpu_count"]


def _segment(offset: float, duration: float | None) -> tuple[float, float | None]:
    return round(float(offset), 6), None if duration is None else round(float(duration), 6)


class ClipLoader:
    """Loads clips as fitted waveforms, frames or model inputs, with caching.

    Parameters
    ----------
    preprocessing : Preprocessing
    cache : ClipCache, bool or None
        Where results are kept. None or True: the process-wide `default_cache()`
        (memory up to a budget, then ``~/.cache/soundscape``); a `ClipCache` of your own
        (e.g. ``ClipCache("/fast/disk/cache", memory_bytes=8 * 2**30)``); False: no caching.

    Notes
    -----
    Every method gives exactly what the uncached path gives: `load` equals
    ``preprocessing.load_audio(path, offset, duration).samples`` and `feature` equals
    ``preprocessing.feature_of(preprocessing.load_audio(...))``.
    """

    def __init__(self, preprocessing: Preprocessing, cache: ClipCache | bool | None = None):
        if not isinstance(preprocessing, Preprocessing):
            raise ParameterError(f"preprocessing must be a Preprocessing, got {type(preprocessing).__name__}")
        if cache is not None and not isinstance(cache, (bool, ClipCache)):
            raise ParameterError(f"cache must be a ClipCache, True, False or None; got {type(cache).__name__}")
        self.preprocessing = preprocessing
        self._cache = cache

    @property
    def cache(self) -> ClipCache | None:
        """The cache in use (None when caching is off)."""
        if self._cache is False:
            return None
        return default_cache() if self._cache in (None, True) else self._cache

    def __getstate__(self) -> dict:
        # a spawned worker gets the cache's settings (folder, budget), never its contents
        return {"preprocessing": self.preprocessing, "_cache": self.cache if self._cache is not False else False}

    def __repr__(self) -> str:
        return f"<ClipLoader cache={self.cache!r}>"

    # ------------------------------------------------------------------ keys
    def _key(self, kind: str, path, offset: float, duration: float | None) -> str | None:
        p = self.preprocessing
        params = p.audio_cache_key() if kind == "audio" else p.frames_cache_key()
        try:
            return source_key(path, kind, *_segment(offset, duration), params)
        except FileNotFoundError:
            raise FileNotFoundError(f"audio file not found: {path}") from None
        except OSError:  # a link loop, no permission...: say which, as the file checks do
            from .audio_files import _check_path

            _check_path(Path(path))
            raise

    # ------------------------------------------------------------------ single clips
    def load(self, path: str | Path, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
        """Fitted waveform (float32 samples at `preprocessing.sample_rate`) of a clip of `path`.

        Equals ``preprocessing.load_audio(path, offset, duration).samples``; a fresh array
        the caller may change.
        """
        return np.array(self._audio(path, offset, duration))

    def frames(self, path: str | Path, offset: float = 0.0, duration: float | None = None) -> np.ndarray:
        """Frames (bins, frames), float32, of a clip: ``preprocessing.frames`` of it."""
        return np.array(self._frames(path, offset, duration))

    def _audio(self, path, offset, duration) -> np.ndarray:
        def compute():
            return self.preprocessing.load_audio(path, offset=offset, duration=duration).samples

        cache = self.cache
        if cache is None:
            return compute()
        return cache.get_or_compute(self._key("audio", path, offset, duration), compute)

    def _frames(self, path, offset, duration) -> np.ndarray:
        cache = self.cache
        if cache is None:
            return self._compute_frames(path, offset, duration)
        return cache.get_or_compute(self._key("frames", path, offset, duration),
                                    lambda: self._compute_frames(path, offset, duration))

    def _compute_frames(self, path, offset, duration) -> np.ndarray:
        cache = self.cache
        samples = None
        if cache is not None:  # reuse a cached waveform, but do not cache one just for this
            samples = cache.get(self._key("audio", path, offset, duration), count_miss=False)
        if samples is None:
            samples = self.preprocessing.load_audio(path, offset=offset, duration=duration).samples
        wave = torch.from_numpy(np.array(samples, dtype=np.float32))[None]
        return self.preprocessing.frames(wave)[0].numpy()

    def feature(self, path: str | Path, offset: float = 0.0, duration: float | None = None) -> torch.Tensor:
        """Model input of a clip (e.g. (channels, H, W)), made from its cached frames."""
        frames = torch.from_numpy(self.frames(path, offset, duration))
        return self.preprocessing.finish(frames[None])[0]

    # ------------------------------------------------------------------ batches
    def load_batch(self, items: Sequence) -> torch.Tensor:
        """Fitted waveforms (batch, samples) of `items` (paths or ``(path, offset, duration)``)."""
        return stack_waveforms([self.load(*_item(it)) for it in items])

    def frames_batch(self, items: Sequence, device: str | torch.device | None = None) -> torch.Tensor:
        """Frames (batch, bins, frames) of `items`; misses are computed in one batch.

        Clips whose frames are not cached are decoded (or taken from the waveform cache),
        stacked and sent through `Preprocessing.frames` together on `device` (default
        CPU); the results are cached.
        """
        items = [_item(it) for it in items]
        if not items:
            raise ParameterError("items is empty: give at least one clip")
        cache = self.cache
        keys = [self._key("frames", *it) for it in items] if cache is not None else [None] * len(items)
        found: list = [cache.get(k) if cache is not None else None for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            waves = self.load_batch_uncached([items[i] for i in missing])
            device = torch.device(device) if device is not None else waves.device
            specs = self.preprocessing.frames(waves.to(device)).cpu().numpy()
            for j, i in enumerate(missing):
                spec = np.array(specs[j])  # its own memory, so cache entries are independent
                found[i] = cache.put(keys[i], spec) if cache is not None else spec
        shapes = {f.shape for f in found}
        if len(shapes) > 1:
            raise ParameterError(
                f"clips in a batch give frames of different shapes {sorted(shapes)}; "
                "set Preprocessing.clip_duration so every clip has one length"
            )
        out = torch.from_numpy(np.stack(found))
        return out if device is None else out.to(device)

    def load_batch_uncached(self, items: Sequence, threads: int | None = None) -> torch.Tensor:
        """Like `load_batch`, but waveforms missing from the cache are not added to it.

        Files are decoded by up to `threads` threads at once (default: up to 4, one per
        CPU; 1 inside a DataLoader worker, where the workers already run in parallel).
        """
        cache = self.cache
        items = [_item(it) for it in items]

        def one(item):
            path, offset, duration = item
            samples = (cache.get(self._key("audio", path, offset, duration), count_miss=False)
                       if cache is not None else None)
            if samples is None:
                samples = self.preprocessing.load_audio(path, offset=offset, duration=duration).samples
            return samples

        if threads is None:
            threads = 1 if torch.utils.data.get_worker_info() is not None else min(4, cpu_count())
        threads = max(1, min(int(threads), len(items)))
        if threads == 1:
            return stack_waveforms([one(it) for it in items])
        with ThreadPoolExecutor(threads) as pool:  # decoding and resampling release the GIL
            return stack_waveforms(list(pool.map(one, items)))

    def features(self, items: Sequence, device: str | torch.device | None = None) -> torch.Tensor:
        """Model inputs (batch, *input_shape) of `items`, through the batched engine on `device`."""
        return self.preprocessing.finish(self.frames_batch(items, device=device))


def _item(item) -> tuple[str | Path, float, float | None]:
    if isinstance(item, (str, Path)):
        return item, 0.0, None
    if isinstance(item, (tuple, list)) and 1 <= len(item) <= 3:
        path = item[0]
        offset = float(item[1]) if len(item) > 1 and item[1] is not None else 0.0
        duration = None if len(item) < 3 or item[2] is None else float(item[2])
        return path, offset, duration
    raise ParameterError(f"a clip is a path or (path, offset, duration), got {item!r}")

