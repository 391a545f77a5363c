"""The bad-input corpus through every batch entry point.

A corpus of real files that cannot be used (missing, empty, cut header, cut data, random
bytes, text renamed .wav, NaN / infinite samples, a folder named like a file, a symbolic
link loop, an unreadable file) sits beside good ones that must be scored (1-6 channels,
8/16/24/32-bit and float samples, 8 kHz to 384 kHz, a 0.01-s clip, a slightly truncated
file, unicode and spaces in the path). Every batch entry point gets all of them:

* Python: `predict`, `predict_recordings`, `train` on a dataset;
* CLI: ``soundscape predict`` on a folder and on a CSV, ``soundscape evaluate`` on a CSV.

For each bad case there must be exactly one listed error (or skip) naming the file and
saying what is wrong with it, and every good file's results must be present.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape import audio_files
from soundscape.cli import main
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.errors import AudioFileError
from soundscape.model_file import Detector
from soundscape.models.compact import compact_cnn, compact_preprocessing
from soundscape.torch.predict import predict, predict_recordings
from soundscape.torch.train import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RATE = 8000
PREP = compact_preprocessing(sample_rate=RATE, clip_duration=0.5, n_mels=16, window_samples=256)
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

#: bad case -> what its message must say (besides the file's path)
BAD = {
    "missing": "not found",
    "empty": "empty (0 bytes)",
    "truncated_header": "not a readable audio file",
    "truncated_data": "truncated",
    "random_bytes": "not in an audio format",
    "text_as_wav": "not a readable audio file",
    "nan_samples": "NaN or infinite",
    "inf_samples": "NaN or infinite",
    "directory": "is a folder",
    "symlink_loop": "symbolic link loop",
    "unreadable": "permission denied",
}
#: cases a folder search cannot meet: no file there, or a folder (searched, not scored)
NOT_IN_A_FOLDER = {"missing", "directory"}


def _noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(-0.3, 0.3, (max(1, int(seconds * rate)), channels))
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def build_corpus(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(good files, bad files) by case name, written under `root`."""
    root.mkdir(parents=True)
    good: dict[str, Path] = {}
    bad: dict[str, Path] = {}
    for ch in range(1, 7):
        good[f"channels_{ch}"] = root / f"channels_{ch}.wav"
        sf.write(good[f"channels_{ch}"], _noise(0.5, RATE, ch, seed=ch), RATE)
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"):
        good[subtype] = root / f"bits_{subtype}.wav"
        sf.write(good[subtype], _noise(0.5, RATE), RATE, subtype=subtype)
    for rate in (8000, 22050, 48000, 96000, 192000, 384000):
        good[f"rate_{rate}"] = root / f"rate_{rate}.wav"
        sf.write(good[f"rate_{rate}"], _noise(0.5, rate), rate)
    good["0.01_s"] = root / "short_0.01s.wav"
    sf.write(good["0.01_s"], _noise(0.01, RATE), RATE)
    spaced = root / "sub folder ünïcødé"
    spaced.mkdir()
    good["unicode_and_spaces"] = spaced / "café ♪ clip 1.wav"
    sf.write(good["unicode_and_spaces"], _noise(0.5, RATE), RATE)
    whole = root / "whole.bin"
    sf.write(whole, _noise(1.0, RATE), RATE, format="WAV", subtype="PCM_16")
    data = whole.read_bytes()
    whole.unlink()
    good["slightly_truncated"] = root / "slightly_truncated.wav"  # 0.2 % short: read, warned
    good["slightly_truncated"].write_bytes(data[: len(data) - len(data) // 500])

    bad["missing"] = root / "missing.wav"
    bad["empty"] = root / "empty.wav"
    bad["empty"].write_bytes(b"")
    bad["truncated_header"] = root / "cut_header.wav"
    bad["truncated_header"].write_bytes(data[:20])
    bad["truncated_data"] = root / "cut_data.wav"
    bad["truncated_data"].write_bytes(data[: len(data) // 3])
    bad["random_bytes"] = root / "random_bytes.wav"
    bad["random_bytes"].write_bytes(np.random.default_rng(1).bytes(5000))
    bad["text_as_wav"] = root / "notes.wav"
    bad["text_as_wav"].write_text("field notes, not audio\n" * 40, encoding="utf-8")
    for name, value in (("nan_samples", np.nan), ("inf_samples", np.inf)):
        x = _noise(0.5, RATE)
        x[100:200] = value
        bad[name] = root / f"{name}.wav"
        sf.write(bad[name], x, RATE, subtype="FLOAT")
    bad["directory"] = root / "folder.wav"
    bad["directory"].mkdir()
    bad["symlink_loop"] = root / "loop.wav"
    bad["symlink_loop"].symlink_to("loop.wav")
    if not AS_ROOT:  # root reads a chmod 000 file anyway: that case is skipped (see below)
        bad["unreadable"] = root / "unreadable.wav"
        sf.write(bad["unreadable"], _noise(0.5, RATE), RATE)
        bad["unreadable"].chmod(0)
    return good, bad


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    good, bad = build_corpus(root / "corpus")
    yield root, good, bad
    if "unreadable" in bad:
        bad["unreadable"].chmod(0o644)  # so the tmp folder can be removed


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return Detector(compact_cnn(2, widths=(4, 8)), "compact_cnn", ["a", "b"], False, PREP,
                    {"widths": [4, 8]})


def _inputs(good: dict, bad: dict) -> list[Path]:
    return list(good.values()) + list(bad.values())


def _check_errors(errors: list[tuple[str, str]], good: dict, bad: dict, skip=()) -> None:
    """Exactly one error per bad case (naming its file, saying what is wrong), none for good files."""
    for case, path in bad.items():
        if case in skip:
            continue
        mine = [msg for file, msg in errors if file == str(path)]
        assert len(mine) == 1, (case, mine, errors)
        assert str(path) in mine[0] and BAD[case] in mine[0], (case, mine[0])
    good_paths = {str(p) for p in good.values()}
    assert not [e for e in errors if e[0] in good_paths], errors


def test_unreadable_file_case_needs_a_non_root_user():
    if AS_ROOT:
        pytest.skip("tests run as root, and root reads a chmod 000 file: the unreadable-file case "
                    "is left out of the corpus (test_permission_denied_is_named covers the message)")


def test_permission_denied_is_named(tmp_path, monkeypatch):
    """The message for a file this user may not read (simulated: root reads everything)."""
    path = tmp_path / "locked.wav"
    sf.write(path, _noise(0.5, RATE), RATE)
    real_open = open

    def refusing_open(file, *args, **kwargs):
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(audio_files, "open", refusing_open, raising=False)
    with pytest.raises(AudioFileError, match=r"locked\.wav: permission denied"):
        audio_files.audio_info(path)


# ---------------------------------------------------------------------------- Python entry points
def test_predict(corpus, detector):
    _, good, bad = corpus
    result = predict(detector, _inputs(good, bad))
    assert set(result.index) == {str(p) for p in good.values()}
    assert np.isfinite(result.to_numpy()).all()
    _check_errors([(e["file"], e["error"]) for e in result.attrs["errors"]], good, bad)
    assert result.attrs["summary"]["n_failed"] == len(bad)


def test_predict_recordings(corpus, detector):
    root, good, bad = corpus
    out = root / "recordings_out"
    result = predict_recordings(detector, _inputs(good, bad), output_dir=out, final_clip="extend",
                                progress=False)
    assert set(result.index.get_level_values("file")) == {str(p) for p in good.values()}
    errors = [(e["file"], e["error"]) for e in result.attrs["errors"]]
    _check_errors(errors, good, bad)
    listed = pd.read_csv(out / "errors.csv", keep_default_na=False)
    _check_errors(list(zip(listed["file"], listed["error"])), good, bad)


def test_train_on_a_dataset(corpus):
    root, good, bad = corpus
    files = _inputs(good, bad)
    table = pd.DataFrame({"file": [str(f) for f in files], "label": [i % 2 for i in range(len(files))]})
    make = lambda d: SingleTargetAudioDataset(d.reset_index(drop=True), {0: "a", 1: "b"},  # noqa: E731
                                              filename_column="file", label_column="label",
                                              preprocessing=PREP)
    torch.manual_seed(0)
    net = compact_cnn(2, widths=(4, 8))
    with contextlib.redirect_stdout(io.StringIO()):
        history = train(root / "train_run", net, make(table), make(table.iloc[: len(good)]),
                        torch.optim.SGD(net.parameters(), lr=0.01), torch.nn.CrossEntropyLoss(),
                        epochs=1, batch_size=8, num_workers=0, device="cpu", progress_bar=False)
    skipped = history.attrs["skipped_errors"]
    _check_errors(list(skipped.items()), good, bad)
    assert len(history) == 1 and np.isfinite(history["train_loss"]).all()  # the good files trained


# ---------------------------------------------------------------------------- CLI entry points
@pytest.fixture(scope="module")
def cli_inputs(corpus, detector):
    root, good, bad = corpus
    model = detector.save(root / "model" / "best.model")
    files = _inputs(good, bad)
    table = pd.DataFrame({"file": [str(f) for f in files],
                          "label": [("a", "b")[i % 2] for i in range(len(files))]})
    table.to_csv(root / "table.csv", index=False)
    return root, model, root / "table.csv", table


def _cli(*args) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main([*map(str, args), "-q"])
    return code, err.getvalue()


def test_cli_predict_on_a_folder(corpus, cli_inputs):
    root, good, bad = corpus
    _, model, _, _ = cli_inputs
    out = root / "cli_folder"
    code, err = _cli("predict", "--model_path", model, "--dataset", root / "corpus",
                     "--output_directory", out)
    assert code == 0, err
    preds = pd.read_csv(out / "predictions.csv")
    assert set(preds["file"]) == {str(p) for p in good.values()}
    assert preds.filter(like="probabilities").notna().all().all()
    listed = pd.read_csv(out / "errors.csv", keep_default_na=False)  # beside the predictions
    in_folder = {k: v for k, v in bad.items() if k not in NOT_IN_A_FOLDER}
    _check_errors(list(zip(listed["file"], listed["error"])), good, in_folder)
    assert len(listed) == len(in_folder)


def _check_table_outputs(out: Path, table: pd.DataFrame, good: dict, bad: dict) -> pd.DataFrame:
    preds = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(preds["file"]) == list(table["file"])  # one row per input row, in order
    bad_paths = {str(p) for p in bad.values()}
    for _, row in preds.iterrows():
        if row["file"] in bad_paths:
            assert row["label_predictions"] == "" and row["label_probability"] == "", row.to_dict()
            assert row["file"] in row["error"]
        else:
            assert row["error"] == "" and 0 <= float(row["label_probability"]) <= 1, row.to_dict()
    listed = pd.read_csv(out / "errors.csv", keep_default_na=False)
    _check_errors(list(zip(listed["file"], listed["error"])), good, bad)
    lines = dict(zip(table["file"], table.index + 2))  # the CSV's own line numbers
    assert all(int(r) == lines[f] for f, r in zip(listed["file"], listed["row"]))
    assert list(listed["row"]) == sorted(listed["row"])
    return preds


def test_cli_predict_on_a_csv(corpus, cli_inputs):
    root, good, bad = corpus
    _, model, csv, table = cli_inputs
    out = root / "cli_csv"
    code, err = _cli("predict", "--model_path", model, "--dataset", csv, "--output_directory", out)
    assert code == 0, err
    _check_table_outputs(out, table, good, bad)


def test_cli_evaluate(corpus, cli_inputs):
    root, good, bad = corpus
    _, model, csv, table = cli_inputs
    out = root / "cli_evaluate"
    code, err = _cli("evaluate", "--model_path", model, "--dataset", csv, "--output_directory", out)
    assert code == 0, err
    preds = _check_table_outputs(out, table, good, bad)
    assert list(preds["label"]) == list(table["label"])  # the truth beside every row
    stats = json.loads((out / "test_statistics.json").read_text())
    assert stats["label"]["num_examples"] == len(good)


def test_cli_predict_on_a_csv_of_mostly_bad_files_still_gives_every_row(corpus, cli_inputs):
    root, good, bad = corpus
    _, model, _, _ = cli_inputs
    one_good = {"channels_1": good["channels_1"]}
    table = pd.DataFrame({"file": [str(p) for p in _inputs(one_good, bad)]})
    table.to_csv(root / "mostly_bad.csv", index=False)
    out = root / "cli_mostly_bad"
    code, err = _cli("predict", "--model_path", model, "--dataset", root / "mostly_bad.csv",
                     "--output_directory", out)
    assert code == 0, err
    _check_table_outputs(out, table, one_good, bad)
    table.iloc[1:].to_csv(root / "all_bad.csv", index=False)  # nothing readable: an error
    code, err = _cli("predict", "--model_path", model, "--dataset", root / "all_bad.csv",
                     "--output_directory", root / "cli_all_bad")
    assert code == 1 and f"{len(bad)} of {len(bad)} audio file(s) could not be read" in err, err
