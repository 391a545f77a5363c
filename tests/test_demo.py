"""The quick-start job (`make demo`) trains on the sample data and saves a loadable model."""

import subprocess
import sys
from pathlib import Path

import soundscape

REPO = Path(__file__).resolve().parents[1]


def test_demo_trains_prints_metrics_and_saves_the_model(tmp_path):
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.demo", "--epochs", "1",
         "--data", str(REPO / "sample_data" / "woodcock_labeled_data"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for line in ("Epoch 0", "  Validation results:", "    train_loss: ", "    valid_f1: ["):
        assert line in done.stdout
    assert str(out / "best.model") in done.stdout
    model = soundscape.load_model(out / "best.model")
    assert model.classes == ["scolopax-minor-absent", "scolopax-minor-present"]


def test_demo_rejects_a_missing_data_folder(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "soundscape.demo", "--data", str(tmp_path / "nowhere")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith("error: ") and "nowhere" in done.stderr
    assert "Traceback" not in done.stderr
