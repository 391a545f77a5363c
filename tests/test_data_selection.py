import numpy as np
import pandas as pd
import pytest

from soundscape.data_selection import (
    add_binary_numeric_labels,
    add_numeric_labels,
    binary_train_valid_split,
    train_valid_split,
    upsample,
)


@pytest.fixture
def hello_world():
    return pd.DataFrame(
        {"Labels": ["hello"] * 5 + ["world"] * 5, "file": [f"{i}.wav" for i in range(10)]}
    )


def test_binary_split_is_stratified_and_leaves_input_alone(hello_world):
    before = hello_world.copy()
    train, valid = binary_train_valid_split(hello_world, "hello")
    assert train["Labels"].value_counts().to_dict() == {"hello": 4, "world": 4}
    assert valid["Labels"].value_counts().to_dict() == {"hello": 1, "world": 1}
    assert set(train.index).isdisjoint(valid.index)
    assert set(train.index) | set(valid.index) == set(range(10))
    assert (train["NumericLabels"] == (train["Labels"] == "hello")).all()
    assert valid["NumericLabels"].tolist() == [1, 0]
    pd.testing.assert_frame_equal(hello_world, before)


def test_binary_split_is_reproducible_and_seed_dependent(hello_world):
    df = pd.concat([hello_world] * 4, ignore_index=True)
    a = binary_train_valid_split(df, "hello", random_state=3)[1].index.tolist()
    b = binary_train_valid_split(df, "hello", random_state=3)[1].index.tolist()
    others = {
        tuple(binary_train_valid_split(df, "hello", random_state=s)[1].index) for s in range(5)
    }
    assert a == b
    assert len(others) > 1


def test_train_valid_split_stratified_fractions():
    df = pd.DataFrame({"y": ["a"] * 50 + ["b"] * 20 + ["c"] * 10, "x": np.arange(80)})
    train, valid = train_valid_split(df, stratify_from_column="y", train_size=0.75)
    assert train["y"].value_counts().to_dict() == {"a": 37, "b": 15, "c": 7}
    assert valid["y"].value_counts().to_dict() == {"a": 13, "b": 5, "c": 3}
    assert train.index.is_monotonic_increasing  # original order kept


def test_train_valid_split_unstratified():
    df = pd.DataFrame({"x": np.arange(20)})
    train, valid = train_valid_split(df, train_size=0.7)
    assert (len(train), len(valid)) == (14, 6)
    assert sorted(train.x.tolist() + valid.x.tolist()) == list(range(20))


@pytest.mark.parametrize("stratify", [None, "y"])
def test_group_split_keeps_groups_together(stratify):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"recording": rng.integers(0, 40, 600), "y": rng.integers(0, 3, 600)})
    train, valid = train_valid_split(df, stratify, train_size=0.8, group_column="recording")
    assert set(train.recording).isdisjoint(valid.recording)
    assert len(train) + len(valid) == len(df)
    assert abs(len(train) / len(df) - 0.8) < 0.05
    if stratify:
        assert set(valid.y) == {0, 1, 2}


def test_group_split_with_one_group_fails():
    df = pd.DataFrame({"site": ["A"] * 6, "y": [0, 1] * 3})
    with pytest.raises(ValueError, match="at least 2 groups.*'site'"):
        train_valid_split(df, group_column="site")


def test_missing_column_names_it_and_lists_columns(hello_world):
    with pytest.raises(KeyError, match=r"'label'.*\['Labels', 'file'\]"):
        binary_train_valid_split(hello_world, "hello", label_column="label")
    with pytest.raises(KeyError, match="'site'"):
        train_valid_split(hello_world, group_column="site")


def test_too_small_class_names_class_and_count():
    df = pd.DataFrame({"y": ["a"] * 10 + ["rare"]})
    with pytest.raises(ValueError, match=r"'rare' has 1 row"):
        train_valid_split(df, "y")
    df = pd.DataFrame({"y": ["a"] * 10 + ["b"] * 3})
    with pytest.raises(ValueError, match=r"'b' has 3 row.*train would get 0"):
        train_valid_split(df, "y", train_size=0.3)


@pytest.mark.parametrize("size", [0, 1, 1.5, -0.1])
def test_train_size_out_of_range(hello_world, size):
    with pytest.raises(ValueError, match="train_size"):
        binary_train_valid_split(hello_world, "hello", train_size=size)


def test_one_hot_needs_single_column():
    df = pd.DataFrame({"a": [0, 1] * 5, "b": [1, 0] * 5})
    with pytest.raises(ValueError, match="single column"):
        train_valid_split(df, ["a", "b"])
    train, valid = train_valid_split(df, "a")
    assert valid["a"].tolist() == [0, 1]


def test_numeric_labels():
    df = pd.DataFrame({"species": ["wood", "crow", "wood", "jay"]})
    out, label_dict = add_numeric_labels(df, "species")
    assert label_dict == {0: "crow", 1: "jay", 2: "wood"}
    assert out["NumericLabels"].tolist() == [2, 0, 2, 1]
    assert "NumericLabels" not in df
    binary = add_binary_numeric_labels(df, "wood", "species", numeric_column="is_wood")
    assert binary["is_wood"].tolist() == [1, 0, 1, 0]


def test_upsample_balances_by_repeating():
    df = pd.DataFrame({"Labels": ["a"] * 7 + ["b"] * 3 + ["c"], "i": range(11)})
    out = upsample(df, "Labels", random_state=0)
    assert out["Labels"].value_counts().to_dict() == {"a": 7, "b": 7, "c": 7}
    b_counts = out.loc[out.Labels == "b", "i"].value_counts()
    assert sorted(b_counts.tolist()) == [2, 2, 3]  # whole repeats plus a remainder
    assert set(out.loc[out.Labels == "a", "i"]) == set(range(7))
    assert out["i"].tolist() != sorted(out["i"].tolist())  # shuffled
    pd.testing.assert_frame_equal(upsample(df, "Labels", random_state=0), out)
