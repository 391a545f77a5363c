"""Training-set metadata (vocabularies, normalisation statistics) and table -> tensor encoding.

The metadata is a JSON-able dict keyed by feature name, written as
``model/training_set_metadata.json`` and stored in the model file, so evaluation and
prediction encode new tables exactly as the training table was encoded:

- category output: ``idx2str`` (sorted labels of the whole table), ``str2idx``, ``counts``;
- binary output: ``idx2str`` = ``[negative, positive]``, ``positive_label``, ``threshold``;
- set output: ``idx2str`` (classes), ``delimiter`` or ``columns``, ``threshold``;
- category input: ``idx2str`` with ``"<UNK>"`` first (values unseen in training map there);
- number input: ``mean``, ``std``, ``min``, ``max`` of the training split, ``normalization``;
- binary input: nothing to learn (yes/no-like values become 1/0).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AnnotationError, ConfigError
from .data import rows_text

__all__ = ["build_metadata", "encode_targets", "encode_inputs", "class_names", "label_strings"]

log = logging.getLogger("soundscape.workflow")
UNKNOWN = "<UNK>"
_TRUE = {"1", "true", "yes", "y", "t", "present", "positive", "pos", "on"}
_FALSE = {"0", "false", "no", "n", "f", "absent", "negative", "neg", "off"}


def label_strings(values: pd.Series) -> pd.Series:
    """Labels as strings; whole floats lose their ``.0`` (``3.0`` -> ``"3"``); NaN stays NaN."""

    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return str(int(v))
        return str(v).strip()

    return values.map(one)


def _require_labels(labels: pd.Series, column: str, source: str) -> None:
    missing = labels.isna() | (labels == "")
    if missing.any():
        raise AnnotationError(
            f"{source}: column {column!r} has {int(missing.sum())} empty value(s) "
            f"({rows_text(labels.index[missing.to_numpy()], source)}); every row needs a label"
        )


def _binary_sides(labels: pd.Series, positive: str | None, column: str, source: str):
    """(negative label, positive label) of a binary column."""
    distinct = sorted(labels.unique())
    if positive is not None:
        others = [v for v in distinct if v != positive]
        if len(others) > 1:
            raise AnnotationError(
                f"{source}: binary column {column!r} has values {distinct}; with positive_label "
                f"{positive!r} only one other value is allowed"
            )
        return (others[0] if others else f"not_{positive}"), positive
    lower = {v.lower() for v in distinct}
    if lower <= _TRUE | _FALSE:
        neg = next((v for v in distinct if v.lower() in _FALSE), "false")
        pos = next((v for v in distinct if v.lower() in _TRUE), "true")
        return neg, pos
    if len(distinct) == 2:
        log.warning(
            "binary output %r: taking %r as the positive value (set positive_label to choose)",
            column, distinct[1],
        )
        return distinct[0], distinct[1]
    raise AnnotationError(
        f"{source}: binary column {column!r} has {len(distinct)} distinct values "
        f"({', '.join(map(repr, distinct[:8]))}); a binary output needs two (use type: category "
        "for more, or set positive_label)"
    )


def _set_classes(frame: pd.DataFrame, out: dict, source: str) -> list[str]:
    if out.get("columns"):
        return [str(c) for c in out["columns"]]
    labels = label_strings(frame[out["name"]]).fillna("")
    classes = sorted({x.strip() for s in labels for x in s.split(out["delimiter"]) if x.strip()})
    if not classes:
        raise AnnotationError(f"{source}: set column {out['name']!r} holds no labels at all")
    return classes


def build_metadata(config: dict, full: pd.DataFrame, train: pd.DataFrame, source: str) -> dict:
    """Training-set metadata: output vocabulary from ``full``, input statistics from ``train``."""
    meta: dict[str, Any] = {}
    out = config["output_features"][0]
    name = out["name"]
    if out["type"] == "category":
        labels = label_strings(full[name])
        _require_labels(labels, name, source)
        counts = labels.value_counts()
        classes = sorted(counts.index, key=str)
        if len(classes) < 2:
            raise AnnotationError(
                f"{source}: output column {name!r} has only one class ({classes[0]!r}); "
                "a classifier needs at least two"
            )
        meta[name] = {"type": "category", "idx2str": classes, "counts": {c: int(counts[c]) for c in classes}}
    elif out["type"] == "binary":
        labels = label_strings(full[name])
        _require_labels(labels, name, source)
        neg, pos = _binary_sides(labels, out.get("positive_label"), name, source)
        meta[name] = {"type": "binary", "idx2str": [neg, pos], "positive_label": pos,
                      "threshold": out["threshold"]}
    else:
        meta[name] = {"type": "set", "idx2str": _set_classes(full, out, source),
                      "delimiter": out["delimiter"], "columns": out.get("columns"),
                      "threshold": out["threshold"]}
    meta[name]["str2idx"] = {c: i for i, c in enumerate(meta[name]["idx2str"])}
    meta[name]["vocab_size"] = len(meta[name]["idx2str"])
    for feat in config["input_features"]:
        fname, kind = feat["name"], feat["type"]
        if kind == "category":
            values = label_strings(train[fname]).dropna()
            vocab = [UNKNOWN] + sorted(values.unique(), key=str)
            meta[fname] = {"type": "category", "idx2str": vocab,
                           "str2idx": {v: i for i, v in enumerate(vocab)}, "vocab_size": len(vocab)}
        elif kind == "number":
            values = _numbers(train[fname], fname, source)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                raise AnnotationError(f"{source}: number column {fname!r} has no values in the training split")
            meta[fname] = {"type": "number", "normalization": feat["normalization"],
                           "mean": float(finite.mean()), "std": float(finite.std()),
                           "min": float(finite.min()), "max": float(finite.max())}
        elif kind == "binary":
            meta[fname] = {"type": "binary"}
    return meta


def class_names(meta: dict, config: dict) -> list[str]:
    """The model's output names: all classes, or only the positive label for a binary output."""
    out = meta[config["output_features"][0]["name"]]
    return [out["positive_label"]] if out["type"] == "binary" else list(out["idx2str"])


def _numbers(values: pd.Series, column: str, source: str) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise AnnotationError(
            f"{source}: number column {column!r} has a non-numeric value {values.iloc[i]!r} "
            f"({rows_text([values.index[i]], source)})"
        )
    return numeric.to_numpy(dtype=float)


def _booleans(values: pd.Series, column: str, source: str) -> np.ndarray:
    text = label_strings(values).fillna("0").str.lower()
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise AnnotationError(
            f"{source}: binary column {column!r} has value {values.iloc[i]!r} "
            f"({rows_text([values.index[i]], source)}); "
            f"use one of {sorted(_TRUE)} or {sorted(_FALSE)}"
        )
    return text.isin(_TRUE).to_numpy(dtype=np.float32)


def encode_targets(meta: dict, config: dict, frame: pd.DataFrame, source: str) -> np.ndarray:
    """Targets of ``frame``: class indices (category), 0/1 (binary) or an (n, classes) 0/1 matrix (set)."""
    out = config["output_features"][0]
    name, info = out["name"], meta[out["name"]]
    if info["type"] == "set":
        if info.get("columns"):
            missing = [c for c in info["columns"] if c not in frame.columns]
            if missing:
                raise AnnotationError(f"{source}: set output column {missing[0]!r} is missing")
            return np.stack([_booleans(frame[c], c, source) for c in info["columns"]], axis=1)
        index = info["str2idx"]
        matrix = np.zeros((len(frame), len(index)), dtype=np.float32)
        for row, text in enumerate(label_strings(frame[name]).fillna("")):
            for label in (x.strip() for x in text.split(info["delimiter"])):
                if label and label not in index:
                    raise AnnotationError(
                        f"{source}: set column {name!r} ({rows_text([frame.index[row]], source)}) "
                        f"has label {label!r}, unknown to "
                        f"the model (known: {', '.join(info['idx2str'])})"
                    )
                if label:
                    matrix[row, index[label]] = 1.0
        return matrix
    labels = label_strings(frame[name])
    _require_labels(labels, name, source)
    if info["type"] == "binary":
        neg, pos = info["idx2str"]
        lower = labels.str.lower()
        if neg.lower() in _FALSE | _TRUE and pos.lower() in _FALSE | _TRUE:
            known = labels.isin([neg, pos]) | lower.isin(_TRUE | _FALSE)
            positive = labels.eq(pos) | (lower.isin(_TRUE) & ~labels.eq(neg))
        else:
            known = labels.isin([neg, pos])
            positive = labels.eq(pos)
        if not known.all():
            i = int(np.flatnonzero(~known.to_numpy())[0])
            raise AnnotationError(
                f"{source}: binary column {name!r} ({rows_text([labels.index[i]], source)}) has "
                f"value {labels.iloc[i]!r}; "
                f"the model knows {neg!r} and {pos!r}"
            )
        return positive.to_numpy(dtype=np.float32)
    index = info["str2idx"]
    unknown = ~labels.isin(list(index))
    if unknown.any():
        values = sorted(labels[unknown].unique())[:5]
        raise AnnotationError(
            f"{source}: column {name!r} has label(s) {values} unknown to the model "
            f"({rows_text(labels.index[unknown.to_numpy()], source)}; known: "
            f"{', '.join(info['idx2str'])})"
        )
    return labels.map(index).to_numpy(dtype=np.int64)


def encode_inputs(meta: dict, config: dict, frame: pd.DataFrame, source: str):
    """(categories (n, k) int64 or None, scalars (n, m) float32 or None) of the non-audio inputs."""
    cats, nums = [], []
    for feat in config["input_features"]:
        name, kind = feat["name"], feat["type"]
        if kind == "category":
            index = meta[name]["str2idx"]
            cats.append(label_strings(frame[name]).map(lambda v: index.get(v, 0)).to_numpy(dtype=np.int64))
        elif kind == "number":
            info = meta[name]
            x = _numbers(frame[name], name, source)
            x = np.where(np.isfinite(x), x, info["mean"])
            if info["normalization"] == "zscore":
                x = (x - info["mean"]) / (info["std"] or 1.0)
            elif info["normalization"] == "minmax":
                x = (x - info["min"]) / ((info["max"] - info["min"]) or 1.0)
            nums.append(x.astype(np.float32))
        elif kind == "binary":
            nums.append(_booleans(frame[name], name, source))
        elif kind != "audio":  # pragma: no cover - the schema allows only these
            raise ConfigError(f"unknown input type {kind!r}")
    return (np.stack(cats, axis=1) if cats else None), (np.stack(nums, axis=1) if nums else None)
