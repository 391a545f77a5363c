"""Train/validation splits (stratified, grouped), numeric labels and class balancing.

Every function leaves its input DataFrame untouched and returns new ones. Rows keep their
original index and order within each returned table.

Labels given one-hot (one 0/1 column per class) can be stratified on only one column at a
time: pass that class's column (e.g. the species of interest) as ``stratify_from_column``.

Rows holding the same clip (the same audio file, and the same ``start_time``/``end_time``
in a clip table) always land on the same side of a split, so a label table with
duplicate rows cannot leak a clip into validation; a warning names the duplicates.
"""

from __future__ import annotations

import math
import warnings
from pathlib import PurePath
from typing import Callable, Hashable

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from .audio_files import AUDIO_SUFFIXES
from .errors import ParameterError

__all__ = [
    "add_binary_numeric_labels",
    "add_numeric_labels",
    "binary_train_valid_split",
    "train_valid_split",
    "upsample",
]


def _require_columns(df: pd.DataFrame, *columns: Hashable) -> None:
    for col in columns:
        if col not in df.columns:
            raise KeyError(f"column {col!r} not found; the columns are: {list(df.columns)}")


#: column / index names taken for the audio path of a row (compared in lower case)
FILE_COLUMNS = ("file", "filename", "file_name", "filepath", "file_path", "path", "audio",
                "audio_file", "audio_path", "clip", "clip_path")
_TIME_COLUMNS = ("start_time", "end_time")


def _looks_like_paths(values: pd.Index | pd.Series) -> bool:
    sample = [v for v in values[:50] if isinstance(v, (str, PurePath))]
    return bool(sample) and all(PurePath(v).suffix.lower() in AUDIO_SUFFIXES for v in sample)


def _clip_keys(df: pd.DataFrame, file_column: str | None) -> tuple[pd.Series | None, str]:
    """Per row, the clip it holds: its audio path (plus start/end time in a clip table).

    `file_column` "auto" looks for an index level or column named like a file (see
    `FILE_COLUMNS`), or an index of audio paths; None gives no keys. Returns the keys
    (or None) and a description of what they are made of.
    """
    if file_column is None or len(df) == 0:
        return None, ""
    names = [n for n in df.index.names if n is not None]
    parts: list[pd.Series] = []
    used: list[str] = []

    def part(name: Hashable) -> pd.Series:
        if name in df.columns:
            return df[name].reset_index(drop=True)
        return pd.Series(df.index.get_level_values(name), dtype=object)

    if file_column != "auto":
        if file_column not in df.columns and file_column not in names:
            raise KeyError(f"file_column {file_column!r} not found; the columns are: "
                           f"{list(df.columns)}, the index levels: {list(df.index.names)}")
        found: Hashable | None = file_column
    else:
        found = next((n for n in names if str(n).lower() in FILE_COLUMNS), None)
        if found is None:
            found = next((c for c in df.columns if str(c).lower() in FILE_COLUMNS), None)
        if found is None and df.index.nlevels == 1 and _looks_like_paths(df.index):
            parts, used = [pd.Series(df.index, dtype=object)], ["the index"]
    if found is not None:
        parts, used = [part(found)], [repr(found)]
    if not parts:
        return None, ""
    for t in _TIME_COLUMNS:
        if t in df.columns or t in names:
            parts.append(part(t))
            used.append(repr(t))
    keys = pd.Series(list(zip(*[p.astype(object).where(p.notna(), None) for p in parts])),
                     dtype=object)
    return keys, " and ".join(used)


def _split_unique(df: pd.DataFrame, file_column: str | None, stratify: Hashable | None,
                  split: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    """`split(table)` (a training mask) on one row per clip; repeated clips follow their first row.

    Warns when some rows repeat an earlier row's clip.
    """
    keys, what = _clip_keys(df, file_column)
    if keys is None:
        return split(df)
    repeated = keys.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return split(df)
    codes, uniques = pd.factorize(keys)
    example = uniques[codes[np.flatnonzero(repeated)[0]]]
    rows = list(df.index[codes == codes[np.flatnonzero(repeated)[0]]][:5])
    message = (f"{int(repeated.sum())} row(s) repeat the clip of an earlier row (same "
               f"{what}; e.g. {example[0] if len(example) == 1 else example!r} in rows {rows}); "
               "each clip goes to one side of the split with all its rows")
    if stratify is not None:
        labels = df[stratify].reset_index(drop=True)
        n_labels = labels.groupby(codes).nunique(dropna=False)
        if (n_labels > 1).any():
            message += (f"; {int((n_labels > 1).sum())} clip(s) have different {stratify!r} "
                        "values in their rows (the first row's value is used to stratify)")
    warnings.warn(message + ". Drop duplicate rows (e.g. df.drop_duplicates()) if they were "
                  "entered twice", UserWarning, stacklevel=3)
    first = ~repeated  # factorize numbers clips in order of first appearance
    return split(df[first])[codes]


def _check_train_size(train_size: float) -> None:
    if not isinstance(train_size, (int, float)) or not 0 < train_size < 1:
        raise ParameterError(
            f"train_size must be a fraction strictly between 0 and 1, got {train_size!r}"
        )


def _class_train_positions(
    positions: np.ndarray, cls: Hashable, train_size: float, random_state: int | None
) -> np.ndarray:
    """Pick the training positions of one class, as sklearn's train_test_split would."""
    n = len(positions)
    n_train = math.floor(train_size * n)
    if n < 2 or n_train == 0 or n_train == n:
        raise ValueError(
            f"class {cls!r} has {n} row(s): too few to split with train_size={train_size} "
            f"(each side needs at least one row; train would get {n_train}, "
            f"validation {n - n_train})"
        )
    train, _ = train_test_split(positions, train_size=train_size, random_state=random_state)
    return train


def _stratified_mask(labels: pd.Series, train_size: float, random_state: int | None) -> np.ndarray:
    """Boolean mask (by position) of training rows, splitting each label value separately."""
    codes, classes = pd.factorize(labels, use_na_sentinel=False)
    mask = np.zeros(len(codes), dtype=bool)
    for code, cls in enumerate(classes):
        positions = np.flatnonzero(codes == code)
        mask[_class_train_positions(positions, cls, train_size, random_state)] = True
    return mask


def add_binary_numeric_labels(
    df: pd.DataFrame,
    label: Hashable,
    label_column: str = "Labels",
    numeric_column: str = "NumericLabels",
) -> pd.DataFrame:
    """Return a copy of ``df`` with a 0/1 ``numeric_column`` (1 where the label is ``label``)."""
    _require_columns(df, label_column)
    out = df.copy()
    out[numeric_column] = (out[label_column] == label).astype(int)
    return out


def add_numeric_labels(
    df: pd.DataFrame, label_column: str, numeric_column: str = "NumericLabels"
) -> tuple[pd.DataFrame, dict[int, Hashable]]:
    """Number the classes of ``label_column`` 0..n-1 in sorted order.

    Returns
    -------
    (df, label_dict)
        A copy of ``df`` with ``numeric_column`` added, and ``{number: class name}``.
    """
    _require_columns(df, label_column)
    if df[label_column].isna().any():
        rows = list(df.index[df[label_column].isna()][:5])
        raise ValueError(f"column {label_column!r} has missing labels (rows {rows})")
    classes = sorted(df[label_column].unique())
    label_dict = {i: c for i, c in enumerate(classes)}
    out = df.copy()
    out[numeric_column] = out[label_column].map({c: i for i, c in label_dict.items()}).astype(int)
    return out, label_dict


def binary_train_valid_split(
    input_df: pd.DataFrame,
    label: Hashable,
    label_column: str = "Labels",
    train_size: float = 0.8,
    random_state: int | None = 101,
    file_column: str | None = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a table into train and validation sets, stratified on "is ``label``" vs "is not".

    Adds a 0/1 ``NumericLabels`` column (1 where ``input_df[label_column] == label``) and splits
    the positive and negative rows separately with ``train_size`` of each going to training.
    Rows of the same clip stay together (see `train_valid_split`'s `file_column`).

    Returns
    -------
    (train_df, valid_df) : copies; ``input_df`` is not modified.
    """
    _check_train_size(train_size)
    df = add_binary_numeric_labels(input_df, label, label_column)
    mask = _split_unique(df, file_column, "NumericLabels", lambda d: _stratified_mask(
        d["NumericLabels"], train_size, random_state))
    return df[mask].copy(), df[~mask].copy()


def _group_split_mask(
    groups: pd.Series, strata: pd.Series | None, train_size: float, random_state: int | None
) -> np.ndarray:
    """Mask of training rows: whole groups go to validation until each stratum's share is near
    ``1 - train_size``."""
    if groups.isna().any():
        rows = list(groups.index[groups.isna()][:5])
        raise ValueError(f"group column {groups.name!r} has missing values (rows {rows})")
    sizes = groups.value_counts(sort=False)
    if len(sizes) < 2:
        raise ValueError(
            f"need at least 2 groups in column {groups.name!r} to split, found {len(sizes)}"
        )
    if strata is None:
        group_stratum = pd.Series(0, index=sizes.index)
    else:  # each group is stratified by its majority label (ties: smallest label)
        counts = pd.crosstab(groups, strata)
        group_stratum = counts.idxmax(axis=1).reindex(sizes.index)
    rng = np.random.default_rng(random_state)
    valid_groups: list = []
    for stratum in sorted(group_stratum.unique(), key=str):
        members = np.array(group_stratum.index[group_stratum == stratum], dtype=object)
        if len(members) < 2:
            raise ValueError(
                f"class {stratum!r} is the majority label of only {len(members)} group(s) in "
                f"column "
                f"{groups.name!r}: too few to put groups on both sides of the split"
            )
        members = members[rng.permutation(len(members))]
        target = (1 - train_size) * sizes.loc[members].sum()
        chosen, total = [], 0
        for g in members:  # greedy: take a group when it brings the total closer to the target
            if (
                abs(total + sizes.loc[g] - target) < abs(total - target)
                and len(chosen) < len(members) - 1
            ):
                chosen.append(g)
                total += sizes.loc[g]
        if not chosen:
            chosen = [min(members, key=lambda g: sizes.loc[g])]
        valid_groups.extend(chosen)
    return ~groups.isin(valid_groups).to_numpy()


def train_valid_split(
    df: pd.DataFrame,
    stratify_from_column: str | None = None,
    train_size: float = 0.8,
    random_state: int | None = 101,
    group_column: str | None = None,
    file_column: str | None = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a table into train and validation sets.

    Parameters
    ----------
    df : DataFrame
    stratify_from_column : str, optional
        One column whose values are split separately so each class keeps the same proportion
        on both sides. One-hot labels: name a single class column.
    train_size : float
        Fraction of rows for training, strictly between 0 and 1.
    random_state : int, optional
    group_column : str, optional
        Rows sharing a value here (recording, site, recorder ...) all go to the same side.
        Whole groups are assigned so that the row fraction is close to ``train_size`` (exact
        only when group sizes allow); with ``stratify_from_column`` too, groups are stratified
        by their majority label.
    file_column : str or None
        Column or index level holding each row's audio path. Rows with the same path
        (and the same ``start_time``/``end_time``, when the table has them) hold the
        same clip and always go to the same side; repeated clips are warned about, and
        the fractions then count clips, not rows. "auto" (default): an index level or
        column named like ``file``/``filename``/``path`` (see `FILE_COLUMNS`), or an index
        of audio paths; None: treat every row as its own clip. To keep all clips of a
        recording together, use ``group_column`` instead.

    Returns
    -------
    (train_df, valid_df) : copies; ``df`` is not modified.
    """
    _check_train_size(train_size)
    if isinstance(stratify_from_column, (list, tuple, set, pd.Index)):
        raise ParameterError(
            "stratify_from_column must be a single column name; for one-hot labels pass the "
            f"column of one class, got {stratify_from_column!r}"
        )
    _require_columns(df, *[c for c in (stratify_from_column, group_column) if c is not None])

    def split(frame: pd.DataFrame) -> np.ndarray:
        if group_column is not None:
            strata = frame[stratify_from_column] if stratify_from_column is not None else None
            return _group_split_mask(frame[group_column], strata, train_size, random_state)
        if stratify_from_column is not None:
            return _stratified_mask(frame[stratify_from_column], train_size, random_state)
        mask = np.zeros(len(frame), dtype=bool)
        mask[_class_train_positions(np.arange(len(frame)), "(all rows)", train_size,
                                    random_state)] = True
        return mask

    if group_column is not None:  # a clip's rows could lie in different groups: no regrouping
        mask = split(df)
    else:
        mask = _split_unique(df, file_column, stratify_from_column, split)
    return df[mask].copy(), df[~mask].copy()


def upsample(
    df: pd.DataFrame, label_column: str = "Labels", random_state: int | None = None
) -> pd.DataFrame:
    """Balance classes by repeating rows of the smaller classes.

    Each class is brought up to the size of the largest: its rows are repeated whole as
    many times as fit, and the remainder is drawn without replacement. The result is shuffled.
    """
    _require_columns(df, label_column)
    rng = np.random.default_rng(random_state)
    codes, classes = pd.factorize(df[label_column], use_na_sentinel=False)
    counts = np.bincount(codes, minlength=len(classes))
    target = counts.max() if len(counts) else 0
    picks = [np.array([], dtype=int)]
    for code, n in enumerate(counts):
        positions = np.flatnonzero(codes == code)
        extra = rng.choice(positions, size=target % n, replace=False)
        picks.append(np.concatenate([np.tile(positions, target // n), extra]))
    return df.iloc[rng.permutation(np.concatenate(picks))].copy()
