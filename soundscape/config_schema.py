"""The declarative config schema: one table of nested dicts that drives validation and defaults.

Node kinds (plain dicts built by the small constructors below):

- leaf ``{"kind": "int"|"float"|"bool"|"str", "default", "choices", "ge", "gt", "le"}``
- ``{"kind": "list", "item": node, "default", "length", "min_len", "total"}``
- ``{"kind": "mapping", "keys": {name: node}, "checks": [(predicate, key, message)]}``
- ``{"kind": "union", "variants": {type name: mapping}, "default", "hoist", "shorthand"}``: a
  mapping whose ``type`` key picks the variant. ``hoist`` names a legacy nested sub-mapping whose
  keys are moved up (Ludwig's ``preprocessing.audio_feature``); with ``shorthand`` a bare string
  means ``{type: string}``.

``REQUIRED`` as a default marks a key the user must give; a default of ``None`` means null is
allowed. Checks run on a mapping once its keys are valid; ``message`` may use ``{key}`` fields.
"""

from __future__ import annotations

from typing import Any


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


def _leaf(kind: str, default: Any = REQUIRED, **rules: Any) -> dict:
    return {"kind": kind, "default": default, **{k: v for k, v in rules.items() if v is not None}}


def integer(default: Any = REQUIRED, ge: int | None = None, choices: list | None = None) -> dict:
    return _leaf("int", default, ge=ge, choices=choices)


def number(
    default: Any = REQUIRED,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> dict:
    return _leaf("float", default, ge=ge, gt=gt, le=le)


def boolean(default: Any = REQUIRED) -> dict:
    return _leaf("bool", default)


def string(default: Any = REQUIRED, choices: list | None = None) -> dict:
    return _leaf("str", default, choices=choices)


def listof(
    item: dict,
    default: Any = REQUIRED,
    length: int | None = None,
    min_len: int | None = None,
    total: float | None = None,
) -> dict:
    return _leaf("list", default, item=item, length=length, min_len=min_len, total=total)


def mapping(keys: dict, checks: list | None = None) -> dict:
    return {"kind": "mapping", "keys": keys, "checks": checks or []}


def union(
    variants: dict, default: Any = REQUIRED, hoist: str | None = None, shorthand: bool = False
) -> dict:
    """A mapping whose ``type`` key (put after ``name`` when there is one) selects the variant."""
    out = {}
    for tag, var in variants.items():
        keys = dict(var["keys"])
        head = {k: keys.pop(k) for k in ["name"] if k in keys}
        out[tag] = mapping({**head, "type": string(tag, choices=[tag]), **keys}, var["checks"])
    return {
        "kind": "union",
        "variants": out,
        "default": default,
        "hoist": hoist,
        "shorthand": shorthand,
    }


# ---------------------------------------------------------------- audio preprocessing
_WINDOW = {"window_length_in_s": number(0.025, gt=0), "window_shift_in_s": number(0.010, gt=0)}
_FFT = {
    "num_fft_points": integer(None, ge=2),  # null: next power of two >= the window
    "window_type": string("hamming", choices=["hamming", "hann", "blackman", "rectangular"]),
}
_CLIP = {
    "audio_file_length_limit_in_s": number(5.0, gt=0),  # clip or zero-pad every file to this
    "norm": string("per_file", choices=["per_file", None]),
    "sample_rate": integer(16000, ge=1),  # everything is resampled to this
}
_SHIFT = (
    lambda d: d["window_shift_in_s"] <= d["window_length_in_s"],
    "window_shift_in_s",
    "must not exceed window_length_in_s ({window_length_in_s})",
)
_NYQUIST = (
    lambda d: d["max_frequency_hz"] is None or d["max_frequency_hz"] <= d["sample_rate"] / 2,
    "max_frequency_hz",
    "must not exceed half the sample_rate ({sample_rate})",
)
_STFT = mapping({**_WINDOW, **_FFT, **_CLIP}, [_SHIFT])

AUDIO_PREPROCESSING = union(
    {
        "fbank": mapping(
            {"num_filter_bands": integer(80, ge=1), **_WINDOW, **_FFT, **_CLIP}, [_SHIFT]
        ),
        "stft": _STFT,
        "stft_phase": _STFT,
        "group_delay": _STFT,
        "spectrogram_image": mapping(
            {  # the classic API's spectrogram images
                "height": integer(224, ge=1),
                "width": integer(224, ge=1),
                "channels": integer(3, choices=[1, 3]),
                **_WINDOW,
                "min_frequency_hz": number(0.0, ge=0),
                "max_frequency_hz": number(None, gt=0),
                "decibel_limits": listof(number(), default=[-100.0, -20.0], length=2),
                **_CLIP,
            },
            [_SHIFT, _NYQUIST],
        ),
    },
    default="fbank",
    hoist="audio_feature",
)

# ---------------------------------------------------------------- encoders
_DROPOUT = number(0.1, ge=0, le=0.99)
ENCODER = union(
    {
        "stacked_cnn": mapping(
            {
                "num_filters": integer(64, ge=1),
                "filter_size": integer(3, ge=1),
                "num_layers": integer(3, ge=1),
                "pool_size": integer(2, ge=1),
                "output_size": integer(128, ge=1),
                "dropout": _DROPOUT,
            }
        ),
        "parallel_cnn": mapping(
            {
                "filter_sizes": listof(integer(ge=1), default=[2, 3, 4, 5], min_len=1),
                "num_filters": integer(64, ge=1),
                "output_size": integer(128, ge=1),
                "dropout": _DROPOUT,
            }
        ),
        "rnn": mapping(
            {
                "cell_type": string("lstm", choices=["lstm", "gru"]),
                "hidden_size": integer(128, ge=1),
                "num_layers": integer(2, ge=1),
                "bidirectional": boolean(True),
                "dropout": _DROPOUT,
            }
        ),
        "transformer": mapping(
            {
                "num_heads": integer(4, ge=1),
                "num_layers": integer(2, ge=1),
                "hidden_size": integer(256, ge=1),
                "dropout": _DROPOUT,
            },
            [
                (
                    lambda d: d["hidden_size"] % d["num_heads"] == 0,
                    "hidden_size",
                    "must be divisible by num_heads ({num_heads})",
                )
            ],
        ),
        "resnet18": mapping({"weights": string(None), "dropout": number(0.0, ge=0, le=0.99)}),
    },
    default="stacked_cnn",
    shorthand=True,
)

# ---------------------------------------------------------------- features
INPUT_FEATURE = union(
    {
        "audio": mapping(
            {"name": string(), "encoder": ENCODER, "preprocessing": AUDIO_PREPROCESSING}
        ),
        "category": mapping({"name": string(), "embedding_size": integer(16, ge=1)}),
        "number": mapping(
            {
                "name": string(),
                "normalization": string("zscore", choices=["zscore", "minmax", None]),
            }
        ),
        "binary": mapping({"name": string()}),
    }
)
OUTPUT_FEATURE = union(
    {
        "category": mapping({"name": string()}),
        "binary": mapping(
            {  # positive_label: the value meaning "true" when the column is not yes/no-like
                "name": string(),
                "threshold": number(0.5, ge=0, le=1),
                "positive_label": string(None),
            }
        ),
        "set": mapping(
            {  # multi-label: "a|b" in one column, or one 0/1 column per class
                "name": string(),
                "threshold": number(0.5, ge=0, le=1),
                "delimiter": string("|"),
                "columns": listof(string(), default=None, min_len=1),
            }
        ),
    }
)

# ---------------------------------------------------------------- trainer and split
TRAINER = mapping(
    {
        "epochs": integer(20, ge=1),
        "batch_size": integer(32, ge=1),
        "learning_rate": number(0.001, gt=0),
        "optimizer": string("adam", choices=["adam", "adamw", "sgd"]),
        # epochs without improvement before stopping; null: never stop early
        "early_stop": integer(None, ge=1),
        "weight_decay": number(0.0, ge=0),
        "seed": integer(42),
        # recipe options (soundscape.recipes), all off by default
        "lr_schedule": string(None, choices=[None, "constant", "cosine", "one_cycle"]),
        "warmup_epochs": number(0.0, ge=0),
        "label_smoothing": number(0.0, ge=0, le=0.99),
        "mixup_alpha": number(0.0, ge=0),
        "class_balance": string(None, choices=[None, "sampler", "loss"]),
        # augmentation of the training clips (the classic datasets' options), all off by default
        "augmentation": mapping({
            "time_masks": integer(0, ge=0),
            "frequency_masks": integer(0, ge=0),
            "max_mask_fraction": number(0.1, gt=0, le=1),
            "add_noise": boolean(False),
        }),
        # number format of training (soundscape.runtime.resolve_precision): auto = bf16
        # autocast + channels-last on CPUs with native bf16 and on GPUs, fp32 elsewhere
        "precision": string("auto", choices=["auto", "fp32", "bf16", "fp16"]),
    },
    [
        (
            lambda d: not d["warmup_epochs"] or d["lr_schedule"] is not None,
            "warmup_epochs",
            "needs lr_schedule ('constant', 'cosine' or 'one_cycle')",
        ),
        (
            lambda d: d["warmup_epochs"] < d["epochs"],
            "warmup_epochs",
            "must be below epochs ({epochs})",
        ),
    ],
)
_PROBABILITIES = listof(number(ge=0, le=1), default=[0.7, 0.1, 0.2], length=3, total=1.0)
_TRAIN_SHARE = (
    lambda d: d["probabilities"][0] > 0,
    "probabilities",
    "the first (training) share must be above 0",
)
SPLIT = union(
    {
        "random": mapping({"probabilities": _PROBABILITIES}, [_TRAIN_SHARE]),
        "fixed": mapping({"column": string("split")}),  # values 0/1/2 or train/validation/test
        "group": mapping({"column": string(), "probabilities": _PROBABILITIES}, [_TRAIN_SHARE]),
    },
    default="random",
)


def _names(d: dict) -> list:
    return [f["name"] for f in d["input_features"] + d["output_features"]]


ROOT = mapping(
    {
        "input_features": listof(INPUT_FEATURE, min_len=1),
        "output_features": listof(OUTPUT_FEATURE, min_len=1),
        "trainer": TRAINER,
        "split": SPLIT,
    },
    [
        (
            lambda d: len(d["output_features"]) == 1,
            "output_features",
            lambda d: "only one output feature is supported for now; got "
            f"{len(d['output_features'])}: {', '.join(f['name'] for f in d['output_features'])}",
        ),
        (
            lambda d: any(f["type"] == "audio" for f in d["input_features"]),
            "input_features",
            "at least one input feature must have type 'audio'",
        ),
        (
            lambda d: len(set(_names(d))) == len(_names(d)),
            "",
            lambda d: "feature names must be unique; repeated: "
            f"{', '.join(sorted({n for n in _names(d) if _names(d).count(n) > 1}))}",
        ),
    ],
)
