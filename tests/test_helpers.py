import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.helpers import (
    atomic_path,
    atomic_write,
    binarize,
    file_fingerprint,
    run_command,
    sigmoid,
)


def test_run_command_string_through_shell(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    out, err = run_command(f"ls {tmp_path} | wc -l && echo oops 1>&2")
    assert out.split() == ["1"]
    assert err.strip() == "oops"


def test_run_command_list_and_failure():
    out, err = run_command([sys.executable, "-c", "import sys; print('hi'); sys.exit(3)"])
    assert out == "hi\n"
    with pytest.raises(subprocess.CalledProcessError) as info:
        run_command(
            [sys.executable, "-c", "import sys; sys.stderr.write('bad thing'); sys.exit(3)"],
            check=True,
        )
    assert info.value.returncode == 3
    assert "bad thing" in str(info.value) and "status 3" in str(info.value)


def test_sigmoid_stable_numpy_and_torch():
    x = np.array([-1000.0, 0.0, 1000.0])
    with np.errstate(over="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y, [0.0, 0.5, 1.0])
    assert sigmoid(0) == 0.5
    t = torch.tensor([-1000.0, 2.0])
    ty = sigmoid(t)
    assert isinstance(ty, torch.Tensor)
    np.testing.assert_allclose(ty.numpy(), [0.0, 1 / (1 + np.exp(-2))], rtol=1e-6)
    s = sigmoid(pd.Series([0.0], index=["a"]))
    assert s.index.tolist() == ["a"] and s["a"] == 0.5


def test_binarize_keeps_container():
    assert binarize([0.2, 0.5, 0.9], 0.5).tolist() == [0, 0, 1]
    df = binarize(pd.DataFrame({"a": [0.1, 0.7]}, index=[5, 6]), 0.5)
    assert df.to_dict() == {"a": {5: 0, 6: 1}}
    assert binarize(torch.tensor([0.1, 0.6]), 0.5).tolist() == [0, 1]


def test_atomic_path_replaces_on_success(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".csv" and tmp != target
        pd.DataFrame({"a": [1]}).to_csv(tmp, index=False)
        assert target.read_text() == "old"
    assert target.read_text() == "a\n1\n"
    assert os.listdir(tmp_path) == ["table.csv"]


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.pt"]


def test_atomic_write_and_missing_folder(tmp_path):
    out = atomic_write(tmp_path / "w.pt", lambda p: torch.save({"w": torch.ones(2)}, p))
    assert torch.load(out)["w"].tolist() == [1.0, 1.0]
    with pytest.raises(FileNotFoundError, match="nope"):
        atomic_write(tmp_path / "nope" / "x.txt", lambda p: p.write_text("x"))


def test_file_fingerprint_changes_with_content(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"1234")
    fp = file_fingerprint(f)
    assert fp[0] == str(f.resolve()) and fp[1] == 4
    os.utime(f, ns=(fp[2] + 10**9, fp[2] + 10**9))
    assert file_fingerprint(f) != fp
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        file_fingerprint(tmp_path / "missing.wav")
