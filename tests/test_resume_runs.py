"""Resuming training: the same run only, refused for another configuration, reproducible.

* a checkpoint names its run (run id) and configuration (hash of architecture, classes,
  preprocessing, optimizer and hyperparameters, loss, recipe); a folder resumes only
  the run that last started there; another configuration is refused naming what differs;
* a new run in a folder holding another run's files warns;
* a seeded run killed with SIGKILL after a checkpoint and resumed ends with the weights
  of an uninterrupted run (random states, sampler and mixup generators are saved).
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import ParameterError
from soundscape.torch.checkpoints import RUN_FILE, latest_checkpoint
from soundscape.torch.models import build, register
from soundscape.torch.train import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _resume_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
SMALL = dict(height=24, width=24, audio_sample_rate=RATE, window_samples=128, overlap_samples=64)


@register("test_resume_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(2, num_classes))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_clips")
    t = np.arange(RATE // 2) / RATE
    rows = []
    for i in range(6):
        path = folder / f"c{i}.wav"
        sf.write(path, (0.4 * np.sin(2 * np.pi * (400 + 1500 * (i % 2)) * t)).astype(np.float32), RATE)
        rows.append({"file": str(path), "label": i % 2})
    df = pd.DataFrame(rows)
    make = lambda d: SingleTargetAudioDataset(d.reset_index(drop=True), {0: "low", 1: "high"},  # noqa: E731
                                              filename_column="file", label_column="label", **SMALL)
    return make(df.iloc[:4]), make(df.iloc[4:])


def _train(save_dir, clips, lr=0.01, epochs=2, **kw):
    torch.manual_seed(0)
    model = build("test_resume_tiny", 2)
    with redirect_stdout(io.StringIO()):
        return train(save_dir, model, *clips, torch.optim.SGD(model.parameters(), lr=lr),
                     torch.nn.CrossEntropyLoss(), epochs=epochs, batch_size=2, num_workers=0,
                     log_every=1, seed=0, device="cpu", progress_bar=False, **kw)


# ---------------------------------------------------------------------------- item 6: run identity
def test_checkpoints_and_run_file_name_the_run(clips, tmp_path):
    _train(tmp_path, clips)
    record = json.loads((tmp_path / RUN_FILE).read_text())
    assert record["status"] == "complete" and record["checkpoints"] == ["epoch-0.tar", "epoch-1.tar"]
    ckpt = torch.load(tmp_path / "epoch-1.tar", weights_only=True)
    assert ckpt["run_id"] == record["run_id"] and ckpt["config_hash"] == record["config_hash"]
    assert ckpt["config"]["optimizer"]["param_groups"][0]["lr"] == 0.01
    assert {"torch", "numpy", "python", "loader"} <= set(ckpt["rng"])


def test_resuming_with_another_configuration_is_refused(clips, tmp_path):
    _train(tmp_path, clips)
    with pytest.raises(ParameterError, match=r"another configuration.*"
                                             r"optimizer\.param_groups\[0\]\.lr: 0\.01 -> 0\.001"):
        _train(tmp_path, clips, lr=0.001, epochs=3, resume_from=tmp_path)
    with pytest.raises(ParameterError, match=r"recipe\.label_smoothing: 0\.0 -> 0\.1"):
        _train(tmp_path, clips, epochs=3, resume_from=tmp_path / "epoch-1.tar", label_smoothing=0.1)
    more = _train(tmp_path, clips, epochs=3, resume_from=tmp_path)  # more epochs: same run
    assert list(more["epoch"]) == [0, 1, 2]


def test_a_folder_resumes_only_the_run_that_last_started_there(clips, tmp_path, caplog):
    _train(tmp_path, clips, epochs=3)  # run A: epoch-0..2
    first = json.loads((tmp_path / RUN_FILE).read_text())["run_id"]
    with caplog.at_level(logging.WARNING, logger="soundscape.train"):
        _train(tmp_path, clips, lr=0.05, epochs=1)  # run B, another configuration: epoch-0 only
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "already holds files of run" in warning and first in warning and "epoch-2.tar" in warning
    record = json.loads((tmp_path / RUN_FILE).read_text())
    assert record["run_id"] != first and record["checkpoints"] == ["epoch-0.tar"]
    assert latest_checkpoint(tmp_path).name == "epoch-0.tar"  # not run A's epoch-2.tar
    resumed = _train(tmp_path, clips, lr=0.05, epochs=2, resume_from=tmp_path)
    assert list(resumed["epoch"]) == [0, 1]  # continued run B from its epoch 0
    with pytest.raises(ParameterError, match="another configuration"):  # run A's settings
        _train(tmp_path, clips, epochs=4, resume_from=tmp_path)


def test_a_run_that_wrote_no_checkpoint_yet_is_not_confused_with_an_older_one(clips, tmp_path):
    _train(tmp_path, clips)
    record = json.loads((tmp_path / RUN_FILE).read_text())
    record.update(run_id="20990101T000000Z-deadbeef", checkpoints=[])  # a run killed in epoch 0
    (tmp_path / RUN_FILE).write_text(json.dumps(record))
    with pytest.raises(FileNotFoundError, match=r"wrote no checkpoint yet.*epoch-1\.tar.*earlier run"):
        _train(tmp_path, clips, epochs=3, resume_from=tmp_path)


def test_no_warning_in_a_fresh_or_own_folder(clips, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="soundscape.train"):
        _train(tmp_path, clips)
        _train(tmp_path, clips, epochs=3, resume_from=tmp_path)
    assert not [r for r in caplog.records if "already holds files" in r.getMessage()]


# ---------------------------------------------------------------------------- item 7: reproducible resume
def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_run_killed_with_sigkill_and_resumed_ends_with_the_uninterrupted_weights(tmp_path):
    full = tmp_path / "full"
    again = tmp_path / "again"
    history = _resume_run.run(full)
    _resume_run.run(again)
    for k, v in _resume_run.final_weights(full).items():  # seeded runs are repeatable...
        assert torch.equal(v, _resume_run.final_weights(again)[k]), k

    killed, ready = tmp_path / "killed", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_resume_run.ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, str(Path(_resume_run.__file__)), str(killed), str(ready)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists(), proc.stderr.read().decode() if proc.poll() is not None else "timed out"
    time.sleep(0.3)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    names = sorted(p.name for p in killed.iterdir())
    assert f"epoch-{_resume_run.KILL_AFTER_EPOCH}.tar" in names
    assert f"epoch-{_resume_run.EPOCHS - 1}.tar" not in names  # it really was interrupted
    assert json.loads((killed / RUN_FILE).read_text())["status"] == "running"

    resumed = _resume_run.run(killed, resume=True)  # ...and so is a resumed one
    _close(_resume_run.final_weights(killed), _resume_run.final_weights(full))
    np.testing.assert_allclose(resumed["train_loss"], history["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["valid_loss"], history["valid_loss"], rtol=1e-5)
    assert json.loads((killed / RUN_FILE).read_text())["status"] == "complete"
