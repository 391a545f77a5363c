"""What the batch paths say: errors.csv of CLI train, row numbers, exit statuses, silent resizing.

* ``soundscape train``'s errors.csv lists clips the training loop skipped (files whose
  header is fine but whose samples are not), not only those the header check refused;
* CSV mistakes name the CSV's own 1-based lines, as plain numbers;
* a link loop is called one, a missing config file and an unknown ``--device`` exit 2
  with one ``error:`` line;
* ``clip_duration=None`` warns once that clips are stretched to one image width;
* opening an MP3-in-WAV file for chunked reading keeps the decoder's notes off stderr.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from _audio_files import mp3_in_wav
from _workflow_data import make_dataset, tiny_config
from soundscape.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, n=12)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_config(epochs=1)))
    return tmp_path


# ---------------------------------------------------------------------------- item 13
def test_cli_train_errors_csv_lists_clips_the_loop_skipped(data, capsys):
    frame = pd.read_csv(data / "data.csv")
    x = np.full(4000, 0.1, np.float32)
    x[100:200] = np.nan  # the header is fine: only reading the samples fails
    sf.write(data / "audio" / "nan.wav", x, 8000, subtype="FLOAT")
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "audio": "audio/nan.wav"}
    frame.loc[len(frame)] = {**frame.iloc[1].to_dict(), "audio": "audio/missing.wav"}
    frame.to_csv(data / "bad.csv", index=False)
    assert main(["train", "--config", "config.yaml", "--dataset", "bad.csv", "-q",
                 "--output_directory", "results"]) == 0, capsys.readouterr().err
    errors = pd.read_csv(data / "results" / "experiment_run" / "errors.csv", keep_default_na=False)
    by_file = {Path(f).name: e for f, e in zip(errors["file"], errors["error"])}
    assert set(by_file) == {"nan.wav", "missing.wav"}, errors
    assert "NaN or infinite" in by_file["nan.wav"] and "not found" in by_file["missing.wav"]
    row = errors.loc[[Path(f).name == "missing.wav" for f in errors["file"]], "row"].iloc[0]
    assert int(row) == len(frame) + 1  # its line in bad.csv


# ---------------------------------------------------------------------------- item 16
def test_csv_mistakes_name_the_files_own_lines(data, capsys):
    frame = pd.read_csv(data / "data.csv")
    frame["label"] = frame["label"].astype(object)
    for line in (2, 5, 12):  # lines of the CSV file; the header is line 1
        frame.loc[line - 2, "label"] = np.nan
    frame.to_csv(data / "nan_labels.csv", index=False)
    assert main(["train", "--config", "config.yaml", "--dataset", "nan_labels.csv", "-q"]) == 1
    lines = _errors(capsys)
    assert len(lines) == 1 and "3 empty value(s) (file lines 2, 5, 12)" in lines[0], lines
    assert "np.int64" not in lines[0]

    frame = pd.read_csv(data / "data.csv")
    frame.loc[6, "label"] = "unheard"  # line 8
    frame.to_csv(data / "unknown.csv", index=False)
    model = data / "results" / "experiment_run" / "model"
    assert main(["train", "--config", "config.yaml", "--dataset", "data.csv", "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model_path", str(model), "--dataset", "unknown.csv", "-q"]) == 1
    lines = _errors(capsys)
    assert len(lines) == 1 and "['unheard'] unknown to the model (file line 8;" in lines[0], lines


def test_link_loops_and_missing_files_are_named(data, capsys):
    (data / "loop.csv").symlink_to("loop.csv")
    (data / "loop.yaml").symlink_to("loop.yaml")
    assert main(["train", "--config", "config.yaml", "--dataset", "loop.csv", "-q"]) == 1
    assert "loop.csv is a symbolic link loop" in _errors(capsys)[0]
    assert main(["predict", "--model_path", "loop.yaml", "--dataset", "data.csv", "-q"]) == 1
    assert "model loop.yaml is a symbolic link loop" in _errors(capsys)[0]
    for config in ("loop.yaml", "nothing.yaml"):
        assert main(["train", "--config", config, "--dataset", "data.csv", "-q"]) == 2
        lines = _errors(capsys)
        assert len(lines) == 1 and config in lines[0] and (
            "link loop" in lines[0] or "config file not found" in lines[0]), lines
    assert main(["config", "show", "nothing.yaml", "-q"]) == 2
    assert "config file not found: nothing.yaml" in _errors(capsys)[0]


def test_an_unknown_device_is_a_usage_error(data, capsys):
    for device in ("gpu", "cuda:7" if not __import__("torch").cuda.is_available() else "gpu"):
        code = main(["train", "--config", "config.yaml", "--dataset", "data.csv", "--device", device, "-q"])
        lines = _errors(capsys)
        assert code == 2 and len(lines) == 1 and f"--device: device {device!r}" in lines[0], lines
        assert "unexpected" not in lines[0]
    assert main(["predict", "--model_path", "m", "--dataset", "data.csv", "--device", "gpu", "-q"]) == 2


# ---------------------------------------------------------------------------- item 17
def test_clips_of_any_length_resized_to_one_image_warn_once(tmp_path, caplog):
    from soundscape.datasets import SingleTargetAudioDataset

    rows = []
    for i, seconds in enumerate((1.0, 3.0, 18.0)):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, np.random.default_rng(i).uniform(-0.2, 0.2, int(seconds * 8000)).astype(np.float32), 8000)
        rows.append({"file": str(path), "label": i % 2})
    ds = SingleTargetAudioDataset(pd.DataFrame(rows), {0: "a", 1: "b"}, filename_column="file",
                                  label_column="label", audio_sample_rate=8000, height=32, width=64,
                                  window_samples=256, overlap_samples=128)
    with caplog.at_level(logging.WARNING, logger="soundscape.preprocessing"):
        shapes = {tuple(ds.feature(i).shape) for i in range(len(ds))}
    assert shapes == {(3, 32, 64)}  # one image size whatever the length...
    warnings = [r.getMessage() for r in caplog.records if "clip_duration is None" in r.getMessage()]
    assert len(warnings) == 1, warnings  # ...said once
    assert "stretched" in warnings[0] and "x" in warnings[0] and "set clip_duration" in warnings[0]

    fixed = SingleTargetAudioDataset(pd.DataFrame(rows), {0: "a", 1: "b"}, filename_column="file",
                                     label_column="label", audio_sample_rate=8000, clip_duration=1.0,
                                     height=32, width=64, window_samples=256, overlap_samples=128)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="soundscape.preprocessing"):
        fixed.feature(0)
    assert not caplog.records


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3")
def test_chunk_reader_keeps_mpeg_notes_off_stderr(tmp_path, capfd):
    from soundscape.preprocessing import Preprocessing
    from soundscape.torch.windows import ChunkReader, plan_windows

    x = np.random.default_rng(0).uniform(-0.3, 0.3, 3 * 16000).astype(np.float32)
    path = mp3_in_wav(tmp_path / "recorder.wav", x, 16000, tail=b"\0" * 2000)
    probe = subprocess.run([sys.executable, "-c", f"import soundfile; soundfile.SoundFile({str(path)!r})"],
                           capture_output=True, text=True)
    if not probe.stderr.strip():
        pytest.skip("this libmpg123 prints nothing when the test file is opened")
    prep = Preprocessing(sample_rate=16000, clip_duration=1.0, window_samples=256, overlap_samples=128)
    plan = plan_windows(path, prep)
    capfd.readouterr()
    print("before", file=sys.stderr, flush=True)
    with ChunkReader(plan, 16000) as reader:
        assert len(reader.read(0, 1000)) == 1000
    print("after", file=sys.stderr, flush=True)
    assert capfd.readouterr().err.splitlines() == ["before", "after"]
