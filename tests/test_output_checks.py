"""Outputs checked before work, clear errors when writing fails, parameters checked first.

* a read-only (or impossible) output folder is refused before any audio is read, by
  `train`, `predict_recordings(output_dir=...)` and the CLI commands;
* a full disk gives one error naming the file and what was being written (real
  size-limited tmpfs mounts where the machine allows them, else skipped; and torch.save
  made to fail the way it does);
* a config run folder whose training failed says it is incomplete;
* window settings no recording could use, and an unreadable validation set, are
  reported as such.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from _workflow_data import make_dataset, tiny_config
from soundscape import io as sio
from soundscape.cli import main
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import OutputError, ParameterError, TrainingError
from soundscape.model_file import Detector
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register
from soundscape.torch.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
PREP = Preprocessing(sample_rate=RATE, clip_duration=0.5, window_samples=128, overlap_samples=64,
                     height=16, width=16, channels=1)


@register("test_output_checks_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(2, num_classes))


def _detector() -> Detector:
    torch.manual_seed(0)
    return Detector(build("test_output_checks_tiny", 2), "test_output_checks_tiny", ["a", "b"], False, PREP)


def _clips(folder: Path, n: int = 4, seconds: float = 0.5) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        t = np.arange(int(seconds * RATE)) / RATE
        paths.append(folder / f"c{i}.wav")
        sf.write(paths[-1], (0.4 * np.sin(2 * np.pi * (400 + 1500 * (i % 2)) * t)).astype(np.float32), RATE)
    return paths


def _datasets(paths: list[Path], valid: list[Path] | None = None):
    make = lambda ps: SingleTargetAudioDataset(  # noqa: E731
        pd.DataFrame({"file": [str(p) for p in ps], "label": [i % 2 for i in range(len(ps))]}),
        {0: "a", 1: "b"}, filename_column="file", label_column="label", preprocessing=PREP)
    return make(paths), make(valid if valid is not None else paths)


def _train(save_dir, datasets, **kw):
    torch.manual_seed(0)
    net = build("test_output_checks_tiny", 2)
    kw.setdefault("epochs", 1)
    with contextlib.redirect_stdout(io.StringIO()):
        return train(save_dir, net, *datasets, torch.optim.SGD(net.parameters(), lr=0.01),
                     torch.nn.CrossEntropyLoss(), batch_size=2, num_workers=0, log_every=1,
                     device="cpu", progress_bar=False, **kw)


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A tmpfs mounted at `path` (skips the test where mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({proc.stderr.strip() or proc.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _never(*_a, **_k):
    raise AssertionError("work started before the output folder was checked")


# ---------------------------------------------------------------------------- writable first
def test_check_writable(tmp_path):
    assert sio.check_writable(tmp_path / "new" / "folder").is_dir()
    assert not [p for p in (tmp_path / "new" / "folder").iterdir()]  # the probe is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"output folder .*file/sub cannot be created: part of its path is a file"):
        sio.check_writable(tmp_path / "file" / "sub")
    with pytest.raises(OutputError, match=r"has .* free but about .* will be written"):
        sio.check_writable(tmp_path, needed_bytes=1 << 62)


def test_read_only_folders_are_refused_before_any_work(tmp_path, monkeypatch):
    import soundscape.torch.predict as predict_module
    import soundscape.torch.run_setup as loop

    paths = _clips(tmp_path / "clips")
    datasets = _datasets(paths)
    with _tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        with pytest.raises(OutputError, match=r"cannot be created: the file system is read-only"):
            sio.check_writable(ro / "x")
        with pytest.raises(OutputError, match=r"cannot write into the output folder .*ro: the file system is read-only"):
            sio.check_writable(ro)
        monkeypatch.setattr(loop, "_model_preprocessing", _never)  # the first clip it would read
        with pytest.raises(OutputError, match=r"training save_dir .*ro/run .*read-only"):
            _train(ro / "run", datasets)
        monkeypatch.setattr(predict_module, "find_audio_files", _never)
        with pytest.raises(OutputError, match=r"predict_recordings output_dir .*read-only"):
            predict_module.predict_recordings(_detector(), paths, output_dir=ro / "out", progress=False)
        model = _detector().save(tmp_path / "m.model")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["predict", "--model_path", str(model), "--dataset", str(tmp_path / "clips"),
                         "--output_directory", str(ro / "predictions"), "-q"])
        lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
        assert code == 1 and len(lines) == 1 and "prediction output directory" in lines[0], err.getvalue()
        assert "read-only" in lines[0]


def test_train_in_a_path_that_cannot_be_a_folder_fails_first(tmp_path, monkeypatch):
    import soundscape.torch.run_setup as loop

    (tmp_path / "taken").write_text("a file where the run folder would go")
    monkeypatch.setattr(loop, "_model_preprocessing", _never)
    with pytest.raises(OutputError, match=r"training save_dir .*taken/run cannot be created"):
        _train(tmp_path / "taken" / "run", _datasets(_clips(tmp_path / "clips")))


def test_cli_train_probes_the_output_directory_before_reading_audio(tmp_path, monkeypatch, capsys):
    import soundscape.workflow.training as training

    make_dataset(tmp_path, n=6)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(epochs=1)))
    (tmp_path / "taken").write_text("")
    monkeypatch.setattr(training, "_tables", _never)
    code = main(["train", "--config", str(tmp_path / "config.yaml"), "--dataset", str(tmp_path / "data.csv"),
                 "--output_directory", str(tmp_path / "taken" / "results"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "output directory" in err and "taken/results" in err, err


# ---------------------------------------------------------------------------- disk full
def test_disk_full_during_training_names_the_file(tmp_path):
    datasets = _datasets(_clips(tmp_path / "clips"))
    with _tmpfs(tmp_path / "small", "size=96k") as small:
        with pytest.raises(OutputError) as info:
            _train(small / "run", datasets, epochs=40)
        message = str(info.value)
        assert "no space left on the device" in message and str(small / "run") in message, message
        assert "inline_container" not in message and "iostream" not in message
        assert info.value.errno == errno.ENOSPC
        assert not [p.name for p in (small / "run").iterdir() if sio.is_temp_file(p.name)]


def test_disk_full_during_predict_recordings_names_the_file(tmp_path):
    from soundscape.torch.predict import predict_recordings

    paths = _clips(tmp_path / "clips", n=40, seconds=0.5)
    with _tmpfs(tmp_path / "small", "size=48k") as small:
        with pytest.raises(OutputError, match=r"could not write the .* no space left on the device"):
            predict_recordings(_detector(), paths, output_dir=small / "out", progress=False)


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
    RuntimeError("basic_ios::clear: iostream error"),
])
def test_torch_save_failures_become_one_clear_error(tmp_path, monkeypatch, failure):
    datasets = _datasets(_clips(tmp_path / "clips"))

    def failing_save(*_a, **_k):
        if isinstance(failure, RuntimeError):  # what torch says when the disk is full
            monkeypatch.setattr(sio, "_free_bytes", lambda folder: 0)
        raise failure

    monkeypatch.setattr(torch, "save", failing_save)  # only the third-party writer fails
    with pytest.raises(OutputError, match=r"could not write the best model .*run/best\.model: "
                                          r"no space left on the device \(.* free\); free some space"):
        _train(tmp_path / "run", datasets)


def test_other_errors_in_a_writer_are_not_disguised(tmp_path):
    with pytest.raises(KeyError):
        with sio.atomic_path(tmp_path / "x.csv"):
            raise KeyError("a bug in the writer")
    with pytest.raises(RuntimeError, match="not a write failure"):
        with sio.atomic_path(tmp_path / "x.csv"):
            raise RuntimeError("not a write failure")


# ---------------------------------------------------------------------------- incomplete runs
def test_a_failed_cli_train_leaves_a_run_folder_marked_incomplete(tmp_path, monkeypatch, capsys):
    import soundscape.workflow.training as training

    make_dataset(tmp_path, n=9)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(epochs=1)))
    args = ["train", "--config", str(tmp_path / "config.yaml"), "--dataset", str(tmp_path / "data.csv"),
            "--output_directory", str(tmp_path / "results"), "-q"]

    def dies(save_dir, *a, **k):
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        raise TrainingError("the loss became nan at epoch 0, batch 1: training diverged")

    real_loop = training.train_loop
    monkeypatch.setattr(training, "train_loop", dies)
    assert main(args) == 1
    assert "training diverged" in capsys.readouterr().err
    run = tmp_path / "results" / "experiment_run"
    marker = (run / "INCOMPLETE").read_text()
    assert "has not finished" in marker and "training diverged" in marker and "--resume_from" in marker
    description = json.loads((run / "description.json").read_text())
    assert description["status"] == "incomplete" and "training diverged" in description["error"]
    assert (run / "errors.csv").is_file() and not (run / "model").exists()

    monkeypatch.setattr(training, "train_loop", real_loop)
    assert main(args) == 0
    done = tmp_path / "results" / "experiment_run_1"
    assert not (done / "INCOMPLETE").exists()
    assert json.loads((done / "description.json").read_text())["status"] == "complete"


# ---------------------------------------------------------------------------- parameters first
@pytest.mark.parametrize("kw, message", [
    (dict(clip_overlap=5.0), r"clip_overlap must be >= 0 and smaller than clip_duration \(0\.5\); got 5\.0"),
    (dict(clip_overlap=-1.0), r"clip_overlap must be a finite number of seconds >= 0"),
    (dict(final_clip="bogus"), r"final_clip must be None, 'remainder', 'full' or 'extend'; got 'bogus'"),
])
def test_window_settings_are_checked_before_any_file(tmp_path, monkeypatch, kw, message):
    import soundscape.torch.predict as predict_module

    paths = _clips(tmp_path / "clips")
    monkeypatch.setattr(predict_module, "find_audio_files", _never)
    with pytest.raises(ParameterError, match=message):
        predict_module.predict_recordings(_detector(), paths, output_dir=tmp_path / "out", progress=False, **kw)
    assert not (tmp_path / "out").exists()


def test_cli_clip_overlap_beyond_the_clip_is_a_usage_error(tmp_path, capsys):
    _clips(tmp_path / "clips")
    model = _detector().save(tmp_path / "m.model")
    for overlap, message in (("99", "--clip_overlap 99 must be smaller than the model's clip length (0.5 s)"),
                             ("-1", "--clip_overlap must be a number of seconds >= 0")):
        code = main(["predict", "--model_path", str(model), "--dataset", str(tmp_path / "clips"),
                     "--clip_overlap", overlap, "--output_directory", str(tmp_path / "p"), "-q"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("error:") == 1 and message in err, err


def test_an_unreadable_validation_set_is_named_as_such(tmp_path):
    good = _clips(tmp_path / "clips")
    broken = []
    for i in range(2):
        broken.append(tmp_path / f"broken{i}.wav")
        broken[-1].write_bytes(b"RIFF\x00\x00garbage" * 20)
    with pytest.raises(TrainingError, match=r"no validation clip could be read \(all 2 were skipped\).*broken0\.wav"):
        _train(tmp_path / "run", _datasets(good, broken))


def test_a_full_cache_disk_does_not_stop_the_work(tmp_path, caplog):
    from soundscape.cache import ClipCache

    with _tmpfs(tmp_path / "cache", "size=16k") as small:
        cache = ClipCache(small, memory_bytes=0)  # everything goes to disk
        with caplog.at_level(logging.WARNING, logger="soundscape.cache"):
            arrays = [cache.get_or_compute(f"key{i:02d}", lambda i=i: np.full(4096, i, np.float32))
                      for i in range(4)]
    assert [a[0] for a in arrays] == [0, 1, 2, 3]  # computed and returned all the same
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "could not write the clip cache file" in warned[0], warned
    assert "no space left on the device" in warned[0]
