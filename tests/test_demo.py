"""The quick-start job (`make demo`): labelled clips -> threshold on held-out clips ->
detections in the field recording -> event precision / recall against its truth table."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import soundscape

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
#: run this checkout's code in the subprocesses, whatever the working folder
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow
def test_demo_does_the_whole_job_as_shipped(tmp_path):
    """The default settings, as `make demo` runs them: event F1 >= 0.8 on the recording."""
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.demo", "--data", str(SAMPLE / "woodcock_labeled_data"),
         "--recording", str(SAMPLE / "field_recording"), "--out", str(out)],
        capture_output=True, text=True, timeout=1800, cwd=tmp_path, env=ENV,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout
    for step in ("1. Train the detector", "2. Choose the threshold on held-out clips",
                 "3. Detect in", "4. Compare with the truth table"):
        assert step in text
    last = text.strip().splitlines()[-1]
    m = re.fullmatch(r"field recording: precision (\d\.\d{3}) recall (\d\.\d{3}) F1 (\d\.\d{3})", last)
    assert m, last
    precision, recall, f1 = map(float, m.groups())
    assert f1 >= 0.8, text[-1500:]
    assert precision >= 0.7 and recall >= 0.7
    # the small validation split is said once, on stderr, with its counts
    assert done.stderr.count("warning: the validation set has only 6 clips") == 1
    assert "5-fold cross-validation" in text and text.count("  fold ") == 5
    threshold = float(re.search(r"threshold (\d\.\d+) \(best F1\)", text).group(1))
    assert 0 < threshold < 1

    model = soundscape.load_model(out / "best.model")
    assert model.classes == ["scolopax-minor-absent", "scolopax-minor-present"]
    assert model.preprocessing.clip_duration == 2.0
    assert (model.preprocessing.min_frequency, model.preprocessing.max_frequency) == (1500.0, 8000.0)
    for name in ("learning_curves.png", "precision_recall.png", "detections.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
        assert str(out / name) in text
    [scores_csv] = sorted((out / "scores" / "scores").glob("*.csv"))
    assert str(scores_csv) in text
    scores = pd.read_csv(scores_csv)
    assert len(scores) == 1197 and scores["end_time"].max() == 600.0
    table = out / "detections" / "field_recording.Table.1.selections.txt"
    assert str(table) in text
    raven = pd.read_csv(table, sep="\t")
    assert (raven["Low Freq (Hz)"] == 1500.0).all() and (raven["High Freq (Hz)"] == 8000.0).all()
    counts = re.search(r"(\d+) detections, 40 annotated peents: (\d+) found", text)
    assert counts and int(counts.group(1)) == len(raven)


def test_demo_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.demo", "--data", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=ENV,
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error: ") and "nowhere" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_rejects_a_recording_folder_without_truth(tmp_path):
    (tmp_path / "recordings").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.demo", "--data", str(SAMPLE / "woodcock_labeled_data"),
         "--recording", str(tmp_path / "recordings")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=ENV,
    )
    assert done.returncode == 1
    assert "error: " in done.stderr and "no Raven selection table" in done.stderr
