"""Training datasets: label tables -> model inputs, with optional augmentation.

`SingleTargetAudioDataset` serves one-of-n labels (e.g. present/absent);
`MultiTargetAudioDataset` serves one 0/1 column per species. Both turn each clip into
exactly `Preprocessing.feature_of` that clip (by default the classic image: loud = dark, low
frequencies at the bottom, 3 identical channels, values in [-1, 1]; any feature of
`soundscape.preprocessing` works) and load audio only through a `ClipLoader`.

A table row names a whole file (``filename_column``), or a clip of a longer recording:
either the table is indexed by ``(file, start_time, end_time)`` (as made by
`soundscape.annotations.clip_labels`) or it has ``start_time`` and ``end_time`` columns.
"""

from __future__ import annotations

import contextlib
from typing import Any, Hashable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import augment
from .errors import AudioFileError, ParameterError, SoundscapeError
from .loading import ClipLoader
from .preprocessing import Preprocessing

__all__ = ["AudioDataset", "SingleTargetAudioDataset", "MultiTargetAudioDataset"]

#: dataset argument name -> (Preprocessing field, default)
_SPECTROGRAM_ARGS = {
    "audio_sample_rate": ("sample_rate", 22050),
    "clip_duration": ("clip_duration", None),
    "window_type": ("window_type", "hann"),
    "window_samples": ("window_samples", 512),
    "overlap_samples": ("overlap_samples", 256),
    "decibel_limits": ("decibel_limits", (-100.0, -20.0)),
    "scaling": ("scaling", "spectrum"),
    "n_mels": ("n_mels", None),
    "min_frequency": ("min_frequency", None),
    "max_frequency": ("max_frequency", None),
    "height": ("height", 224),
    "width": ("width", 224),
    "channels": ("channels", 3),
}
_CLIP_KEYS = ("file", "start_time", "end_time")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(float(x) == float(y) for x, y in zip(a, b))
    return a == b


def build_preprocessing(preprocessing: Preprocessing | None = None,
                        random_trim_length: float | None = None,
                        extend_short_clips: bool = False, **spectrogram_args) -> Preprocessing:
    """The `Preprocessing` a dataset uses, from `preprocessing=` or spectrogram arguments.

    `spectrogram_args` are the dataset's spectrogram arguments (see `_SPECTROGRAM_ARGS`).
    With `preprocessing` given, arguments left at their defaults are ignored and others
    must agree with it. `random_trim_length` becomes the clip duration; `extend_short_clips`
    makes short clips loop instead of being zero-padded.
    """
    unknown = sorted(set(spectrogram_args) - set(_SPECTROGRAM_ARGS))
    if unknown:
        raise ParameterError(f"unknown dataset arguments {unknown}; valid spectrogram arguments: "
                             f"{sorted(_SPECTROGRAM_ARGS)}")
    if preprocessing is None:
        fields = {_SPECTROGRAM_ARGS[k][0]: v for k, v in spectrogram_args.items()}
        preprocessing = Preprocessing(**fields)
    else:
        if not isinstance(preprocessing, Preprocessing):
            raise ParameterError(
                "preprocessing must be a soundscape.preprocessing.Preprocessing, got "
                f"{type(preprocessing).__name__}"
            )
        for name, value in spectrogram_args.items():
            field, default = _SPECTROGRAM_ARGS[name]
            if not _same(value, default) and not _same(value, getattr(preprocessing, field)):
                raise ParameterError(
                    f"{name}={value!r} disagrees with preprocessing.{field}="
                    f"{getattr(preprocessing, field)!r}; pass either preprocessing= or spectrogram "
                    "arguments, not both"
                )
    if random_trim_length is not None:
        if not random_trim_length > 0:
            raise ParameterError(
                f"random_trim_length must be > 0 seconds, got {random_trim_length!r}"
            )
        if preprocessing.clip_duration is None:
            preprocessing = preprocessing.replace(clip_duration=float(random_trim_length))
        elif abs(preprocessing.clip_duration - random_trim_length) > 1e-9:
            raise ParameterError(
                f"random_trim_length={random_trim_length} disagrees with clip_duration="
                f"{preprocessing.clip_duration}; the trimmed length is the clip duration the model "
                "sees"
            )
    if extend_short_clips and preprocessing.short_clip != "extend":
        preprocessing = preprocessing.replace(short_clip="extend")
    return preprocessing


def _clip_table(df: pd.DataFrame, filename_column: str
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """(paths, offsets, durations or NaN, columns used for locating clips)."""
    if not isinstance(df, pd.DataFrame):
        raise ParameterError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if len(df) == 0:
        raise ParameterError("the label table is empty: a dataset needs at least one row")
    if isinstance(df.index, pd.MultiIndex) and set(_CLIP_KEYS) <= set(df.index.names):
        files = df.index.get_level_values("file")
        starts = df.index.get_level_values("start_time")
        ends = df.index.get_level_values("end_time")
        used: list = []
    elif filename_column in df.columns or df.index.name == filename_column:
        files = df[filename_column] if filename_column in df.columns else df.index
        if "start_time" in df.columns and "end_time" in df.columns:
            starts, ends = df["start_time"], df["end_time"]
            used = [filename_column, "start_time", "end_time"]
        else:
            starts, ends = np.zeros(len(df)), np.full(len(df), np.nan)
            used = [filename_column]
    else:
        raise KeyError(
            f"filename column {filename_column!r} not found; the table's columns are "
            f"{list(df.columns)} (or index it by (file, start_time, end_time) for clips of long "
            "files)"
        )
    starts = pd.to_numeric(pd.Series(np.asarray(starts)), errors="coerce").to_numpy(float)
    ends = pd.to_numeric(pd.Series(np.asarray(ends)), errors="coerce").to_numpy(float)
    has_end = ~np.isnan(ends)
    bad = np.isnan(starts) | (starts < 0) | (has_end & ~(ends > starts))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParameterError(
            f"row {_show(df.index[i])}: clip times start_time={_show(starts[i])}, "
            f"end_time={_show(ends[i])} are invalid (need 0 <= start_time < end_time)"
        )
    return np.asarray(files, dtype=object).astype(str), starts, ends - starts, used


def _show(value: Any) -> str:
    """repr of a table cell without numpy's type wrapper (2, not np.int64(2))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


@contextlib.contextmanager
def _naming(where: str) -> Iterator[None]:
    """Re-raise errors so their message names `where` (the clip), keeping soundscape types."""
    try:
        yield
    except Exception as exc:
        if where.split(" [")[0] in str(exc):
            raise
        cls = type(exc) if isinstance(exc, SoundscapeError) else AudioFileError
        raise cls(f"{where}: {type(exc).__name__}: {exc}") from exc


class AudioDataset(torch.utils.data.Dataset):
    """Common base: clip table, preprocessing, loading and augmentation.

    Subclasses set `label_dict`, `classes` and implement `_target(i)` and
    `_overlay_pool(i)`. See `SingleTargetAudioDataset` for the arguments.
    """

    multi_target = False

    def __init__(self, df: pd.DataFrame, filename_column: str = "Destination", *,
                 add_noise: bool = False, random_trim_length: float | None = None,
                 extend_short_clips: bool = False, max_overlay_num: int = 0,
                 overlay_prob: float = 0.2, overlay_weight: float | str = "random",
                 overlay_class: Hashable | None = None, time_masks: int = 0,
                 frequency_masks: int = 0, max_mask_fraction: float = 0.1,
                 augmentations: Sequence = (),
                 preprocessing: Preprocessing | None = None,
                 extra_inputs: Mapping[str, np.ndarray] | None = None, **spectrogram_args):
        self.df = df
        self.filename_column = filename_column
        located = _clip_table(df, filename_column)
        self.paths, self.offsets, self.durations, self._location_columns = located
        self.extra_inputs = {k: torch.as_tensor(np.asarray(v)) for k, v in (extra_inputs or {}).items()}
        for name, values in self.extra_inputs.items():
            if len(values) != len(self.paths):
                raise ParameterError(f"extra input {name!r} has {len(values)} rows, the table {len(self.paths)}")
        #: False when the preprocessing is the default one (train() may then use the model's)
        self.preprocessing_given = preprocessing is not None or any(
            not _same(v, _SPECTROGRAM_ARGS[k][1]) for k, v in spectrogram_args.items()
            if k in _SPECTROGRAM_ARGS and k not in ("audio_sample_rate", "clip_duration"))
        self.preprocessing = build_preprocessing(preprocessing, random_trim_length,
                                                 extend_short_clips, **spectrogram_args)
        self.loader = ClipLoader(self.preprocessing)
        self.random_trim_length = random_trim_length
        self.extend_short_clips = bool(extend_short_clips)
        # random trims need the whole clip first, then a random window of it
        self._raw_loader = (ClipLoader(self.preprocessing.replace(clip_duration=None))
                            if random_trim_length is not None else None)
        if int(max_overlay_num) < 0:
            raise ParameterError(f"max_overlay_num must be >= 0, got {max_overlay_num!r}")
        if not 0 <= overlay_prob <= 1:
            raise ParameterError(f"overlay_prob must be in [0, 1], got {overlay_prob!r}")
        augment.overlay_weight(overlay_weight, np.random.default_rng(0))  # validates
        for name, n in (("time_masks", time_masks), ("frequency_masks", frequency_masks)):
            if int(n) < 0:
                raise ParameterError(f"{name} must be >= 0, got {n!r}")
        if not 0 < max_mask_fraction <= 1:
            raise ParameterError(f"max_mask_fraction must be in (0, 1], got {max_mask_fraction!r}")
        self.add_noise = bool(add_noise)
        self.max_overlay_num = int(max_overlay_num)
        self.overlay_prob = float(overlay_prob)
        self.overlay_weight = overlay_weight
        self.overlay_class = overlay_class
        self.time_masks = int(time_masks)
        self.frequency_masks = int(frequency_masks)
        self.max_mask_fraction = float(max_mask_fraction)
        self.augmentations = augment.check_augmentations(augmentations)
        self._waveform_steps = [a for a in self.augmentations if a.kind == "waveform"]
        self._image_steps = [a for a in self.augmentations if a.kind == "image"]
        if self.preprocessing.feature == "waveform" and (self._image_steps or self.add_noise
                                                         or self.time_masks or self.frequency_masks):
            raise ParameterError("spectrogram augmentations (add_noise, time_masks, frequency_masks, "
                                 "image steps) need a spectral feature; this preprocessing feeds the "
                                 "waveform itself")

    def use_preprocessing(self, preprocessing: Preprocessing) -> None:
        """Prepare clips with `preprocessing` from now on (train() gives a model's own)."""
        self.preprocessing = preprocessing
        self.loader = ClipLoader(preprocessing, self.loader._cache)
        if self._raw_loader is not None:
            self._raw_loader = ClipLoader(preprocessing.replace(clip_duration=None), self.loader._cache)

    # ------------------------------------------------------------------ table
    def __len__(self) -> int:
        return len(self.paths)

    def clip_path(self, i: int) -> str:
        """The file of item `i`, with its time span when it is a clip of a longer file."""
        if np.isnan(self.durations[i]):
            return self.paths[i]
        return f"{self.paths[i]} [{self.offsets[i]:g}-{self.offsets[i] + self.durations[i]:g} s]"

    @property
    def augmenting(self) -> bool:
        """True when any random augmentation is switched on."""
        return bool(self.add_noise or self.random_trim_length is not None or self.max_overlay_num
                    or self.time_masks or self.frequency_masks or self.augmentations)

    # ------------------------------------------------------------------ loading
    def _load(self, loader: ClipLoader, i: int) -> np.ndarray:
        duration = None if np.isnan(self.durations[i]) else float(self.durations[i])
        with _naming(self.clip_path(i)):
            return loader.load(self.paths[i], offset=float(self.offsets[i]), duration=duration)

    def _waveform(self, i: int, rng: np.random.Generator | None) -> np.ndarray:
        """Fitted samples of item `i` (a random window of it when random trims are on)."""
        if self._raw_loader is None or rng is None:
            return self._load(self.loader, i)
        samples = self._load(self._raw_loader, i)
        return augment.random_trim(samples, self.preprocessing.clip_samples, rng,
                                   self.extend_short_clips, source=self.clip_path(i))

    def _target(self, i: int) -> np.ndarray | None:
        raise NotImplementedError

    def _overlay_pool(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def _overlay(self, i: int, samples: np.ndarray, target, rng: np.random.Generator):
        pool = self._overlay_pool(i)
        for _ in range(self.max_overlay_num):
            if len(pool) == 0 or rng.random() >= self.overlay_prob:
                continue
            j = int(pool[rng.integers(len(pool))])
            samples = augment.overlay(samples, self._waveform(j, rng),
                                      augment.overlay_weight(self.overlay_weight, rng))
            if self.multi_target and target is not None:
                target = np.maximum(target, self._target(j))
        return samples, target

    def _augment_input(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Spectrogram augmentations of a model input; frame features (frames, bins) are
        handled as a one-channel (bins, frames) image."""
        if self.preprocessing.feature != "image":
            return self._augment_image(x.T[None], rng)[0].T.contiguous()
        return self._augment_image(x, rng)

    def _augment_image(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.add_noise:
            x = augment.colour_noise(augment.affine_jitter(x, rng), rng)
        if self.time_masks:
            x = augment.time_mask(x, rng, self.time_masks, self.max_mask_fraction)
        if self.frequency_masks:
            x = augment.frequency_mask(x, rng, self.frequency_masks, self.max_mask_fraction)
        for step in self._image_steps:
            x = step(x, rng)
        return x

    @property
    def _waveform_augmenting(self) -> bool:
        return (self.random_trim_length is not None or self.max_overlay_num > 0
                or bool(self._waveform_steps))

    def feature(self, i: int) -> torch.Tensor | dict:
        """The un-augmented model input of item `i` (e.g. (channels, H, W)), via the loader's cache.

        With `extra_inputs`, a dict ``{"audio": features, name: value, ...}``.
        """
        return self._with_extra(i, self._audio_feature(i))

    def _with_extra(self, i: int, x: torch.Tensor) -> torch.Tensor | dict:
        if not self.extra_inputs:
            return x
        return {"audio": x, **{k: v[i] for k, v in self.extra_inputs.items()}}

    def _audio_feature(self, i: int) -> torch.Tensor:
        duration = None if np.isnan(self.durations[i]) else float(self.durations[i])
        with _naming(self.clip_path(i)):
            return self.loader.feature(self.paths[i], offset=float(self.offsets[i]),
                                       duration=duration)

    #: the classic name of `feature`
    image = feature

    def _to_feature(self, i: int, samples: np.ndarray) -> torch.Tensor:
        with _naming(self.clip_path(i)):
            wave = torch.from_numpy(np.array(samples, dtype=np.float32))[None]  # a writable copy
            return self.preprocessing.features(wave)[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range for a dataset of {len(self)} clips")
        i %= len(self)
        rng = augment.generator() if self.augmenting else None
        target = self._target(i)
        if rng is not None and self._waveform_augmenting:
            samples = self._waveform(i, rng)
            if self.max_overlay_num:
                samples, target = self._overlay(i, samples, target, rng)
            for step in self._waveform_steps:
                samples = step(samples, rng)
            x = self._to_feature(i, samples)
        else:
            x = self._audio_feature(i)
        if rng is not None and self.preprocessing.feature != "waveform":
            x = self._augment_input(x, rng)
        item = {"X": self._with_extra(i, x)}
        if target is not None:
            item["y"] = torch.as_tensor(target)
        return item

    def __repr__(self) -> str:
        kind = "multi-target" if self.multi_target else "single-target"
        return f"<{type(self).__name__} {len(self)} clips, {kind}, classes={self.classes}>"


def _check_label_dict(label_dict: Mapping) -> dict[int, str]:
    if not isinstance(label_dict, Mapping) or not label_dict:
        raise ParameterError(
            f"label_dict must be a non-empty dict mapping numeric label -> name, e.g. "
            f"{{0: 'absent', 1: 'present'}}; got {label_dict!r}"
        )
    out = {}
    for k, v in label_dict.items():
        try:
            key = int(k)
            if key != k and str(key) != str(k).strip():
                raise ValueError
        except (TypeError, ValueError):
            raise ParameterError(
                f"label_dict keys must be the numeric labels (0, 1, ...), got key {k!r}; it maps "
                "numeric label -> name, e.g. {0: 'absent', 1: 'present'}"
            ) from None
        out[key] = str(v)
    return dict(sorted(out.items()))


class SingleTargetAudioDataset(AudioDataset):
    """One label per clip (one-of-n), from a table of files and numeric labels.

    Parameters
    ----------
    df : DataFrame
        One row per clip.
    label_dict : dict
        Numeric label -> class name, e.g. ``{0: "absent", 1: "present"}``; kept with the
        dataset and saved with the trained model.
    filename_column : str
        Column of audio file paths (or index the table by ``(file, start_time, end_time)``).
    label_column : str, optional
        Column of labels: the keys of `label_dict` (0, 1, ...) or its class names; without
        it items have no ``"y"`` (for prediction).
    height, width, audio_sample_rate, clip_duration, window_type, window_samples,
    overlap_samples, decibel_limits, scaling, n_mels, min_frequency, max_frequency, channels
        Spectrogram and image parameters; together they make `self.preprocessing`.
    preprocessing : Preprocessing, optional
        Use this instead of the spectrogram arguments.
    add_noise : bool
        Random affine jitter plus brightness/contrast/pixel noise on the image.
    random_trim_length : float, optional
        Train on a random window of this many seconds of each clip (sets the clip duration).
    extend_short_clips : bool
        Loop clips shorter than the clip duration instead of zero-padding them.
    max_overlay_num, overlay_prob, overlay_weight, overlay_class
        Up to `max_overlay_num` times, with probability `overlay_prob`, mix another clip
        into the waveform with weight `overlay_weight` (float or "random": 0.3-0.7). The
        other clip comes from a different class (`overlay_class` None or "different") or
        from the named class (label or name).
    time_masks, frequency_masks, max_mask_fraction
        Number of random time / frequency bands (each up to `max_mask_fraction` of the
        image) filled with the image mean.
    augmentations : list, optional
        Further steps from `soundscape.augment` (e.g. ``[augment.RandomGain(6),
        augment.AddNoise((10, 30)), augment.TimeShift(0.5), augment.SpecAugment()]``),
        applied in order after the options above: waveform steps before the spectrogram,
        image steps after it. Labels are unchanged.

    Items are ``{"X": float tensor (channels, height, width), "y": long tensor (1,)}``.
    """

    def __init__(self, df: pd.DataFrame, label_dict: Mapping[int, str],
                 filename_column: str = "Destination", label_column: str | None = None,
                 height: int = 224, width: int = 224, add_noise: bool = False,
                 random_trim_length: float | None = None, extend_short_clips: bool = False,
                 max_overlay_num: int = 0, overlay_prob: float = 0.2,
                 overlay_weight: float | str = "random", overlay_class: Hashable | None = None,
                 audio_sample_rate: int = 22050, preprocessing: Preprocessing | None = None,
                 **kwargs):
        self.label_dict = _check_label_dict(label_dict)
        self.classes = list(self.label_dict.values())
        self.label_column = label_column
        super().__init__(df, filename_column, height=height, width=width, add_noise=add_noise,
                         random_trim_length=random_trim_length,
                         extend_short_clips=extend_short_clips,
                         max_overlay_num=max_overlay_num, overlay_prob=overlay_prob,
                         overlay_weight=overlay_weight, overlay_class=overlay_class,
                         audio_sample_rate=audio_sample_rate, preprocessing=preprocessing, **kwargs)
        self.labels = None if label_column is None else self._read_labels(df, label_column)
        self._pools = self._make_pools() if self.max_overlay_num else {}

    def _read_labels(self, df: pd.DataFrame, column: str) -> np.ndarray:
        if column not in df.columns:
            raise KeyError(
                f"label column {column!r} not found; the table's columns are {list(df.columns)}"
            )
        names = {name: key for key, name in self.label_dict.items()}
        raw = df[column]
        values = pd.to_numeric(raw, errors="coerce")
        by_name = raw.map(lambda v: names.get(str(v)) if isinstance(v, str) else None)
        values = values.where(values.notna(), pd.to_numeric(by_name, errors="coerce"))
        bad = values.isna() | ~values.isin(list(self.label_dict))
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise ParameterError(
                f"row {_show(df.index[pos])}: label {_show(df[column].iloc[pos])} in column "
                f"{column!r} is neither a key nor a name of label_dict {self.label_dict} "
                f"({int(bad.sum())} bad row(s))"
            )
        return values.to_numpy().astype(np.int64)

    def _make_pools(self) -> dict:
        if self.labels is None:
            raise ParameterError(
                "overlay augmentation needs label_column (overlays come from other classes)"
            )
        by_label = {k: np.flatnonzero(self.labels == k) for k in self.label_dict}
        oc = self.overlay_class
        if oc is None or oc == "different":
            return {k: np.flatnonzero(self.labels != k) for k in self.label_dict}
        names = {v: k for k, v in self.label_dict.items()}
        if oc in names:
            key = names[oc]
        elif oc in self.label_dict:
            key = oc
        else:
            raise ParameterError(
                f"overlay_class {oc!r} is not a label or class name; labels: {self.label_dict}"
            )
        return {k: by_label[key] for k in self.label_dict}

    def _target(self, i: int) -> np.ndarray | None:
        return None if self.labels is None else self.labels[i:i + 1]

    def _overlay_pool(self, i: int) -> np.ndarray:
        pool = self._pools[int(self.labels[i])]
        return pool[pool != i]


class MultiTargetAudioDataset(AudioDataset):
    """Several independent present/absent labels per clip (multi-species detection).

    Parameters
    ----------
    df : DataFrame
        One row per clip and one 0/1 column per class; rows name a file
        (`filename_column`) or are indexed by ``(file, start_time, end_time)`` as made by
        `soundscape.annotations.clip_labels`.
    classes : list of str, optional
        The label columns, in output order. Default: every column except the file and
        clip-time columns.
    filename_column : str
    **kwargs
        Spectrogram and augmentation arguments as in `SingleTargetAudioDataset`. With
        overlays, `overlay_class` None draws any other clip (labels are combined), a class
        name draws clips having that class.

    Items are ``{"X": float tensor (channels, height, width), "y": float tensor (n_classes,)}``.
    """

    multi_target = True

    def __init__(self, df: pd.DataFrame, classes: Sequence[str] | None = None,
                 filename_column: str = "Destination", **kwargs):
        super().__init__(df, filename_column, **kwargs)
        if classes is None:
            classes = [c for c in df.columns if c not in self._location_columns]
        classes = list(classes)
        if not classes:
            raise ParameterError(
                f"no label columns: pass classes=; the table's columns are {list(df.columns)}"
            )
        missing = [c for c in classes if c not in df.columns]
        if missing:
            raise KeyError(
                f"label column(s) {missing} not found; the table's columns are {list(df.columns)}"
            )
        values = df[classes].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values) | (values < 0) | (values > 1)
        if bad.any():
            r, c = (int(x[0]) for x in np.nonzero(bad))
            raise ParameterError(
                f"row {_show(df.index[r])}, column {classes[c]!r}: label "
                f"{_show(df[classes[c]].iloc[r])} must be a number from 0 to 1 "
                "(0 absent, 1 present)"
            )
        self.classes = [str(c) for c in classes]
        self.label_dict = dict(enumerate(self.classes))
        self.labels = values.astype(np.float32)
        if self.overlay_class not in (None, "different") and self.overlay_class not in self.classes:
            raise ParameterError(
                f"overlay_class {self.overlay_class!r} is not one of the classes {self.classes}"
            )

    def _target(self, i: int) -> np.ndarray:
        return self.labels[i]

    def _overlay_pool(self, i: int) -> np.ndarray:
        oc = self.overlay_class
        if oc is None:
            pool = np.arange(len(self))
        elif oc == "different":
            pool = np.flatnonzero((self.labels != self.labels[i]).any(axis=1))
        else:
            pool = np.flatnonzero(self.labels[:, self.classes.index(oc)] > 0.5)
        return pool[pool != i]
