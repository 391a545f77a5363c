"""Few-shot heads on backbone embeddings: `fit_head` -> a `Detector` that reads audio.

A head is a logistic regression or a one-hidden-layer MLP fitted (scikit-learn) on
embeddings, with balanced class weights, the regularisation strength chosen by
stratified cross-validation, and a per-class threshold chosen on the out-of-fold
scores (best F1). The feature standardisation is folded into the first layer, so the
head is plain torch layers on raw embeddings. The result is a `Detector` with the
backbone and the head (architecture ``"backbone_head"``): it predicts from audio with
`predict` / `predict_recordings` / the CLI like any model, and its file holds only the
head (plus, for an ONNX backbone, that model's bytes), never BirdNET's weights.

>>> head = soundscape.fit_head(store.lookup(reviewed), reviewed["label"])   # doctest: +SKIP
>>> head.metadata["thresholds"]                                            # doctest: +SKIP
{'rooster': 0.41, 'other': 0.62}
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import ParameterError
from ..model_file import Detector
from .backbone import Backbone, get_backbone
from .networks import HeadNetwork, backbone_preprocessing, backbone_spec, make_head

__all__ = ["fit_head", "head_scores", "HEAD_KINDS"]

logger = logging.getLogger("soundscape.pretrained")

HEAD_KINDS = ("logistic", "mlp")
#: inverse regularisation strengths tried for the logistic head
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
#: L2 penalties tried for the MLP head
DEFAULT_ALPHAS = (1e-4, 1e-2, 1.0)


def _matrix(embeddings) -> tuple[np.ndarray, pd.Index | None, dict]:
    """(float64 matrix, row index or None, backbone info) of the `embeddings` argument."""
    if isinstance(embeddings, pd.DataFrame):
        from .embeddings import vector_columns

        x = embeddings[vector_columns(embeddings)].to_numpy(np.float64)
        return x, embeddings.index, dict(embeddings.attrs.get("backbone") or {})
    if isinstance(embeddings, (np.ndarray, torch.Tensor)):
        x = np.asarray(embeddings, dtype=np.float64)
        return x, None, {}
    raise ParameterError("embeddings must be a DataFrame of embedding columns (EmbeddingStore."
                         "lookup / to_pandas) or an array (rows, size); got "
                         f"{type(embeddings).__name__}")


def _targets(labels, n: int, index) -> tuple[np.ndarray, list[str], bool]:
    """(targets, classes, multi_target): 1-D class labels, or a 0/1 DataFrame per class."""
    if isinstance(labels, pd.DataFrame):
        frame = labels  # rows in the order of the embeddings
        y = frame.to_numpy()
        if not np.isin(y, [0, 1, True, False]).all():
            raise ParameterError("a DataFrame of labels must hold 0/1 per class (multi-target)")
        classes = [str(c) for c in frame.columns]
        y = y.astype(np.int64)
        multi = True
    else:
        values = np.asarray(labels.to_numpy() if isinstance(labels, pd.Series) else labels,
                            dtype=object)
        if values.ndim != 1:
            raise ParameterError(f"labels must be one label per row, got shape {values.shape}")
        if pd.isna(values).any():
            raise ParameterError(f"labels has {int(pd.isna(values).sum())} missing value(s); "
                                 "label every row (or drop the unlabelled rows)")
        values = np.asarray([str(v) for v in values], dtype=object)
        classes = sorted(set(values))
        y = np.searchsorted(np.asarray(classes, dtype=object), values)
        multi = False
    if len(y) != n:
        raise ParameterError(f"labels has {len(y)} rows but embeddings has {n}: one label per row")
    if not multi and len(classes) < 2:
        raise ParameterError(f"labels need at least two classes, got {classes}")
    return y, classes, multi


def _folds(y: np.ndarray, cv: int) -> int:
    counts = np.bincount(y) if y.ndim == 1 else np.minimum(y.sum(0), len(y) - y.sum(0))
    return int(min(cv, counts.min())) if len(counts) else 0


def _balanced_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean over classes of the mean -log p(true class) of that class's rows."""
    p = np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0)
    return float(np.mean([-np.log(p[y == c]).mean() for c in np.unique(y)]))


def _best_threshold(positive: np.ndarray, score: np.ndarray) -> float:
    """The score threshold with the best F1 of `positive`, halfway to the next lower score."""
    order = np.argsort(-score, kind="stable")
    s, pos = score[order], positive[order].astype(bool)
    if pos.sum() == 0:
        return 0.5
    tp = np.cumsum(pos)
    f1 = 2 * tp / (np.arange(1, len(s) + 1) + pos.sum())
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last row of each distinct score
    best = last[int(np.argmax(f1[last]))]
    lower = s[best + 1] if best + 1 < len(s) else 0.0
    return float((s[best] + lower) / 2)


def _single_model(kind: str, strength: float, hidden_size: int, seed: int, max_iter: int):
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=strength, class_weight="balanced", max_iter=max_iter)
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(hidden_size,), alpha=strength, max_iter=max_iter,
                         random_state=seed)


def _fit(model, x: np.ndarray, y: np.ndarray, kind: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of tiny few-shot sets
        if kind == "mlp":  # no class_weight: balanced sample weights instead
            counts = np.bincount(y)
            model.fit(x, y, sample_weight=len(y) / (len(counts) * counts[y]))
        else:
            model.fit(x, y)
    return model


def _oof(kind, strength, x, y, folds, hidden_size, seed, max_iter) -> np.ndarray:
    """Out-of-fold class probabilities (single-target)."""
    from sklearn.model_selection import StratifiedKFold

    proba = np.zeros((len(y), int(y.max()) + 1))
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        model = _single_model(kind, strength, hidden_size, seed, max_iter)
        model = _fit(model, x[train], y[train], kind)
        proba[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return proba


def _logits_layers(model, kind: str, n_classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per torch Linear layer giving softmax logits equal to `model`'s."""
    if kind == "logistic":
        layers = [(model.coef_, model.intercept_)]
    else:
        layers = [(w.T, b) for w, b in zip(model.coefs_, model.intercepts_)]
    w, b = layers[-1]
    if w.shape[0] == 1 and n_classes == 2:  # binary: one logit z -> softmax([-z/2, z/2])
        layers[-1] = (np.vstack([-w / 2, w / 2]), np.r_[-b / 2, b / 2])
    return layers


def fit_head(
    embeddings,
    labels,
    kind: str = "logistic",
    backbone: str | Backbone | None = None,
    hidden_size: int = 128,
    cv: int = 5,
    strengths: Sequence[float] | None = None,
    seed: int = 0,
    max_iter: int = 2000,
) -> Detector:
    """Fit a few-shot head on embeddings; returns a `Detector` (backbone + head).

    Parameters
    ----------
    embeddings : DataFrame or array
        One row per example: `EmbeddingStore.lookup` / `to_pandas` output (columns
        ``emb_*``), the DataFrame of `embed`, or an array ``(rows, embedding_size)``.
    labels : sequence or DataFrame
        One class label per row (single-target: softmax), or a DataFrame of 0/1 columns,
        one per class (multi-target: a sigmoid per class; logistic only).
    kind : {"logistic", "mlp"}
        Logistic regression, or an MLP with one hidden layer of `hidden_size` ReLUs.
    backbone : str or Backbone, optional
        The backbone that made the embeddings; default the one recorded with them
        (``attrs["backbone"]``), else ``"birdnet"``.
    hidden_size : int
        Hidden units of the MLP.
    cv : int
        Stratified folds for choosing the regularisation and the thresholds (fewer when
        a class has fewer examples; with one example in a class there is no
        cross-validation: the middle strength and thresholds of 0.5 are used).
    strengths : sequence of float, optional
        Candidate inverse regularisation ``C`` (logistic; default 0.001-100) or L2 penalty
        ``alpha`` (MLP; default 1e-4-1).
    seed : int
        Seed of the folds and the MLP's initialisation.
    max_iter : int
        Optimiser iterations.

    Returns
    -------
    Detector
        Architecture ``"backbone_head"``. ``metadata["thresholds"]`` holds the per-class
        thresholds (use them with `soundscape.detections.detections`); ``metadata["head"]``
        the chosen strength, the folds and the cross-validated log-loss of each strength.
    """
    from threadpoolctl import threadpool_limits

    # few-shot fits are tiny matrix products: with several BLAS threads they were ~100x
    # slower on our shared 2-core machine (thread start-up and contention), not faster
    with threadpool_limits(limits=1):
        return _fit_head(embeddings, labels, kind, backbone, hidden_size, cv, strengths, seed,
                         max_iter)


def _fit_head(embeddings, labels, kind, backbone, hidden_size, cv, strengths, seed,
              max_iter) -> Detector:
    from sklearn.preprocessing import StandardScaler

    if kind not in HEAD_KINDS:
        raise ParameterError(f"kind must be one of {HEAD_KINDS}, got {kind!r}")
    x, index, info = _matrix(embeddings)
    if x.ndim != 2 or len(x) == 0:
        raise ParameterError("embeddings must be a non-empty (rows, size) table, got shape "
                             f"{x.shape}")
    if not np.isfinite(x).all():
        raise ParameterError("embeddings contain NaN or infinite values")
    y, classes, multi = _targets(labels, len(x), index)
    if multi and kind != "logistic":
        raise ParameterError("a multi-target head (labels as 0/1 columns) must be kind='logistic'")
    backbone = get_backbone(backbone if backbone is not None else info.get("backbone", "birdnet"),
                            **({} if backbone is not None else info.get("backbone_kwargs", {})))
    if x.shape[1] != backbone.embedding_size:
        raise ParameterError(f"embeddings have {x.shape[1]} columns but backbone {backbone.name!r} "
                             f"makes {backbone.embedding_size}-d embeddings")
    strengths = list(strengths or (DEFAULT_CS if kind == "logistic" else DEFAULT_ALPHAS))
    scaler = StandardScaler().fit(x)
    xs = scaler.transform(x)
    columns = [y[:, c] for c in range(len(classes))] if multi else [y]
    chosen, cv_losses, thresholds, layers_per = [], [], {}, []
    folds = 0
    for c, target in enumerate(columns):
        folds = _folds(target, cv)
        losses = {}
        if folds >= 2:
            for strength in strengths:
                proba = _oof(kind, strength, xs, target, folds, hidden_size, seed, max_iter)
                losses[strength] = _balanced_log_loss(target, proba)
            best = min(losses, key=losses.get)
            proba = _oof(kind, best, xs, target, folds, hidden_size, seed, max_iter)
        else:
            best, proba = strengths[len(strengths) // 2], None
            logger.warning("fit_head: a class has fewer than 2 examples: no cross-validation")
        model = _fit(_single_model(kind, best, hidden_size, seed, max_iter), xs, target, kind)
        chosen.append(best)
        cv_losses.append({str(k): round(v, 5) for k, v in losses.items()})
        if multi:
            thresholds[classes[c]] = (0.5 if proba is None
                                      else _best_threshold(target == 1, proba[:, 1]))
            layers_per.append(_logits_layers(model, kind, 2)[0])
        else:
            for k, name in enumerate(classes):
                thresholds[name] = (0.5 if proba is None
                                    else _best_threshold(target == k, proba[:, k]))
            layers = _logits_layers(model, kind, len(classes))
    if multi:  # one binary logistic per class: the "present" logit of each softmax pair
        w = np.vstack([lw[1:2] - lw[0:1] for lw, _ in layers_per])
        b = np.array([lb[1] - lb[0] for _, lb in layers_per])
        layers = [(w, b)]
    # fold the standardisation into the first layer: W((x - mu) / sd) + b
    w0, b0 = layers[0]
    sd = scaler.scale_
    layers[0] = (w0 / sd, b0 - (w0 / sd) @ scaler.mean_)
    hidden = None if kind == "logistic" else int(hidden_size)
    head = make_head(x.shape[1], len(classes), hidden)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for linear, (w, b) in zip(linears, layers):
            linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            linear.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    name, kwargs = backbone_spec(backbone)
    counts = (y.sum(0).tolist() if multi else np.bincount(y, minlength=len(classes)).tolist())
    metadata = {
        "backbone": name, "license": backbone.license,
        "thresholds": {k: round(float(v), 6) for k, v in thresholds.items()},
        "head": {"kind": kind, "strength": chosen if multi else chosen[0],
                 "strength_name": "C" if kind == "logistic" else "alpha", "cv_folds": folds,
                 "cv_log_loss": cv_losses if multi else cv_losses[0], "n_examples": int(len(x)),
                 "class_counts": dict(zip(classes, counts)), "seed": seed},
    }
    return Detector(HeadNetwork(backbone, head), "backbone_head", classes, multi,
                    backbone_preprocessing(backbone),
                    {"backbone": name, "backbone_kwargs": kwargs, "embedding_size": int(x.shape[1]),
                     "hidden_size": hidden}, metadata).eval()


def head_scores(model: Detector, embeddings, activation: str | None = "auto",
                block_rows: int = 65536) -> pd.DataFrame:
    """Scores of a head `Detector` on stored embeddings (no audio is read).

    Gives what `predict_recordings` would on the same windows (the head applied to the
    backbone's embedding), from an `EmbeddingStore` (block by block) or a DataFrame /
    array of embeddings.

    Parameters
    ----------
    model : Detector
        A ``"backbone_head"`` detector (from `fit_head` or its model file).
    embeddings : EmbeddingStore, DataFrame or array
    activation : {"auto", "softmax", "sigmoid", None}
        As in `predict` ("auto": the model's default).

    Returns
    -------
    DataFrame
        One column per class, indexed like the embeddings (``(file, start_time,
        end_time)`` for a store).
    """
    from .embeddings import EmbeddingStore
    from ..torch.predict import _activation

    if not isinstance(model, Detector) or not isinstance(model.network, HeadNetwork):
        raise ParameterError("head_scores needs a Detector with a head (from fit_head)")
    _, act = _activation(model, activation)
    head = model.network.head.eval()
    device = next(head.parameters()).device

    def score(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.as_tensor(np.array(x, dtype=np.float32), device=device)
            return act(head(x)).cpu().numpy()

    if isinstance(embeddings, EmbeddingStore):
        keys, parts = [], []
        for k, v in embeddings.blocks(block_rows):
            keys.append(k)
            parts.append(score(v))
        if not parts:
            return pd.DataFrame(columns=model.classes, dtype=np.float32)
        index = pd.MultiIndex.from_frame(pd.concat(keys, ignore_index=True))
        return pd.DataFrame(np.concatenate(parts), index=index, columns=model.classes)
    x, index, _ = _matrix(embeddings)
    return pd.DataFrame(score(x), index=index, columns=model.classes)
