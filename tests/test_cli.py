"""End-to-end runs of the `soundscape` command line (`python -m soundscape ...` in a subprocess)."""

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from _workflow_data import make_dataset, tiny_config
from soundscape.cli import main


def soundscape(*args, cwd, env=None, timeout=240):
    full_env = dict(os.environ)
    full_env.pop("SOUNDSCAPE_OFFLINE", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "soundscape", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A data set, a config and one `soundscape train` run in a fresh folder."""
    root = tmp_path_factory.mktemp("cli")
    make_dataset(root, n=18)
    cfg = tiny_config(epochs=2)
    cfg["input_features"] += [{"name": "gender", "type": "category"}]
    (root / "config.yaml").write_text(yaml.safe_dump(cfg))
    audio_cfg = tiny_config(epochs=1)
    (root / "audio_only.yaml").write_text(yaml.safe_dump(audio_cfg))
    proc = soundscape("train", "--config", "config.yaml", "--dataset", "data.csv", cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root, proc


def test_train_writes_the_run_folder(work):
    root, proc = work
    run = root / "results" / "experiment_run"
    assert f"run folder: {os.path.join('results', 'experiment_run')}" in proc.stdout
    assert (run / "model" / "model.pt").is_file()
    meta = json.loads((run / "model" / "training_set_metadata.json").read_text())
    assert meta["label"]["idx2str"] == ["chirp", "high", "low"]
    stats = json.loads((run / "training_statistics.json").read_text())
    assert len(stats["validation"]["label"]["accuracy"]) == 2
    assert json.loads((run / "description.json").read_text())["data_set_size"]["rows"] == 18
    assert list(pd.read_csv(run / "metrics.csv").columns[:3]) == ["epoch", "training_loss", "training_accuracy"]
    assert "epoch 2/2" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_writes_statistics_and_predictions(work):
    root, _ = work
    proc = soundscape("evaluate", "--model_path", "results/experiment_run/model", "--dataset", "data.csv",
                      "--split", "test", "--output_directory", "test_results", cwd=root)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads((root / "test_results" / "test_statistics.json").read_text())
    s = stats["label"]
    assert {"loss", "accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc",
            "confusion_matrix", "per_class_stats"} <= set(s)
    assert set(s["per_class_stats"]) == {"chirp", "high", "low"}
    assert len(s["confusion_matrix"]) == 3
    preds = pd.read_parquet(root / "test_results" / "predictions.parquet")
    assert len(preds) == s["num_examples"] == len(pd.read_csv(root / "test_results" / "predictions.csv"))
    assert {"label_predictions", "label_probability", "label_probabilities_low", "label"} <= set(preds.columns)
    assert s["accuracy"] == pytest.approx((preds["label_predictions"] == preds["label"]).mean())


def test_predict_csv_of_new_audio(work):
    root, _ = work
    new = pd.read_csv(root / "data.csv")[["audio", "gender"]].iloc[:4]
    new.loc[0, "audio"] = str(root / new.loc[0, "audio"])  # absolute paths work too
    new.to_csv(root / "new_audio.csv", index=False)
    proc = soundscape("predict", "--model_path", "results/experiment_run/model", "--dataset", "new_audio.csv",
                      "--output_directory", "predictions", cwd=root)
    assert proc.returncode == 0, proc.stderr
    preds = pd.read_parquet(root / "predictions" / "predictions.parquet")
    assert len(preds) == 4 and preds["label_predictions"].isin(["chirp", "high", "low"]).all()
    probs = preds[[f"label_probabilities_{c}" for c in ("chirp", "high", "low")]].to_numpy()
    assert probs.sum(axis=1) == pytest.approx([1, 1, 1, 1], abs=1e-5)
    assert preds["label_probability"].tolist() == pytest.approx(probs.max(axis=1).tolist())


def test_visualize_every_plot(work, monkeypatch):
    root, _ = work
    monkeypatch.chdir(root)
    run = "results/experiment_run"
    for vis, stats_arg in (("confusion_matrix", "--test_statistics"), ("roc_curves", "--test_statistics"),
                           ("precision_recall", "--test_statistics"), ("learning_curves", "--training_statistics")):
        stats_file = f"{run}/test_statistics.json" if "test" in stats_arg else f"{run}/training_statistics.json"
        args = ["--visualization", vis, stats_arg, stats_file, "--ground_truth_metadata",
                f"{run}/model/training_set_metadata.json", "--output_directory", "visualizations",
                "--file_format", "png"]
        if vis == "confusion_matrix":  # one subprocess end to end, the rest in-process (same code path)
            proc = soundscape("visualize", *args, cwd=root)
            assert proc.returncode == 0, proc.stderr
        else:
            assert main(["visualize", *args]) == 0
    names = sorted(p.name for p in (root / "visualizations").iterdir())
    assert names == ["confusion_matrix_label.png", "learning_curves_label_accuracy.png",
                     "learning_curves_label_loss.png", "precision_recall_label.png", "roc_curves_label.png"]
    assert all(p.stat().st_size > 1000 for p in (root / "visualizations").iterdir())


def test_predict_a_folder_of_recordings(work, capsys, monkeypatch):
    root, _ = work
    monkeypatch.chdir(root)
    assert main(["train", "--config", "audio_only.yaml", "--dataset", "data.csv", "-q",
                 "--precision", "fp32"]) == 0
    assert "results/experiment_run_1" in capsys.readouterr().out
    from soundscape.workflow.model import load_detector

    assert load_detector("results/experiment_run_1").metadata["precision"] == "fp32"
    assert main(["predict", "--model_path", "results/experiment_run_1", "--dataset", "audio",
                 "--output_directory", "folder_predictions", "-q", "--precision", "bf16"]) == 0
    preds = pd.read_csv(root / "folder_predictions" / "predictions.csv")
    assert len(preds) == 18 and set(preds.columns[:3]) == {"file", "start_time", "end_time"}
    run = json.loads((root / "folder_predictions" / "scores" / "run.json").read_text())
    assert run["precision"] == "bf16"  # the choice is kept with the score tables
    assert main(["predict", "--model_path", "results/experiment_run_1", "--dataset", "audio",
                 "--precision", "int4"]) == 2


def test_config_show_and_reference(work, capsys):
    root, _ = work
    proc = soundscape("config", "show", "config.yaml", cwd=root)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["trainer"]["optimizer"] == "adam" and shown["split"]["type"] == "random"
    assert shown["input_features"][1]["embedding_size"] == 16
    assert main(["config", "reference"]) == 0
    assert "input_features[].encoder.num_heads" in capsys.readouterr().out


def test_datasets_list_and_offline_download(work):
    root, _ = work
    proc = soundscape("datasets", "list", cwd=root)
    assert proc.returncode == 0 and "emodb" in proc.stdout and "sample_woodcock" in proc.stdout
    proc = soundscape("datasets", "download", "emodb", "--output_directory", "downloads", cwd=root,
                      env={"SOUNDSCAPE_OFFLINE": "1"})
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "http://emodb.bilderbar.info/download/download.zip" in line and "downloads/emodb.zip" in line


def test_config_mistakes_exit_2_with_one_line(work):
    root, _ = work
    bad = tiny_config()
    bad["input_features"][0]["encoder"] = {"type": "transformer", "num_head": 4}
    (root / "bad.yaml").write_text(yaml.safe_dump(bad))
    proc = soundscape("train", "--config", "bad.yaml", "--dataset", "data.csv", cwd=root)
    assert proc.returncode == 2
    assert "input_features[0].encoder.num_head: unknown key; did you mean 'num_heads'" in one_line_error(proc)
    proc = soundscape("train", "--dataset", "data.csv", cwd=root)  # usage: --config missing
    assert proc.returncode == 2 and "--config" in proc.stderr


def test_data_mistakes_exit_1_with_one_line(work, capsys, monkeypatch):
    root, _ = work
    monkeypatch.chdir(root)
    monkeypatch.setenv("SOUNDSCAPE_DATASETS_DIR", str(root / "cache"))
    frame = pd.read_csv(root / "data.csv")
    frame.drop(columns=["gender"]).to_csv(root / "no_gender.csv", index=False)
    (root / "empty.csv").write_text("")
    broken = frame.copy()
    broken["audio"] = [f"missing/{i}.wav" for i in range(len(broken))]
    broken.to_csv(root / "missing_audio.csv", index=False)
    cases = {
        "no_gender.csv": "column 'gender' named in the config is missing",
        "empty.csv": "empty.csv: the file is empty",
        "missing_audio.csv": "could not be read; first (line 2): audio file not found",
        "nope.csv": "data set file not found: nope.csv",
        "soundscape://esc50": "soundscape datasets download esc50",
    }
    for dataset, message in cases.items():
        code = main(["train", "--config", "config.yaml", "--dataset", dataset, "-q"])
        err = capsys.readouterr().err
        assert code == 1, (dataset, err)
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], (dataset, err)
    proc = soundscape("evaluate", "--model_path", "results/nothing", "--dataset", "data.csv", cwd=root)
    assert proc.returncode == 1 and "model not found" in one_line_error(proc)


def test_help_of_every_command_has_an_example(tmp_path, capsys):
    proc = soundscape("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "example:" in proc.stdout and "--experiment_name" in proc.stdout
    for command in ("evaluate", "predict", "visualize", "config", "datasets"):
        assert main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "example:" in out and f"soundscape {command}" in out, command
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("soundscape ")


def test_small_validation_split_is_said_once_with_a_pointer_to_k_fold(work):
    _, proc = work  # 18 rows: the default 0.7 / 0.1 / 0.2 split leaves 1 validation row
    lines = [line for line in proc.stderr.splitlines() if "validation set has only" in line]
    assert len(lines) == 1, proc.stderr
    assert re.match(r"warning: the validation set has only \d clips? \(\d 'chirp', \d 'high', \d 'low'\)",
                    lines[0]), lines[0]
    assert "--k_fold 5" in lines[0]


def test_k_fold_trains_every_fold_and_reports_mean_and_spread(work):
    root, _ = work
    proc = soundscape("train", "--config", "audio_only.yaml", "--dataset", "data.csv", "--k_fold", "3",
                      "--experiment_name", "cv", cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    folds = [line for line in out if line.startswith("fold ")]
    assert [f.split(":")[0] for f in folds] == ["fold 1/3", "fold 2/3", "fold 3/3"]
    assert all("(6 examples)" in f for f in folds)  # 18 rows, 3 stratified folds
    summary = next(line for line in out if line.startswith("k-fold (3 folds) test: "))
    assert "accuracy" in summary and "±" in summary and "mean ± standard deviation" in summary
    assert f"run folder: {os.path.join('results', 'cv_kfold_run')}" in out
    assert "validation set has only" not in proc.stderr  # the folds do not warn one by one
    run = root / "results" / "cv_kfold_run"
    stats = json.loads((run / "kfold_statistics.json").read_text())
    assert stats["num_folds"] == 3 and len(stats["folds"]) == 3
    accuracies = [f["accuracy"] for f in stats["folds"]]
    assert stats["summary"]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 3)
    assert stats["summary"]["accuracy"]["std"] == pytest.approx(pd.Series(accuracies).std())
    assert f"accuracy {stats['summary']['accuracy']['mean']:.3f} ± " in summary
    for k in (1, 2, 3):
        fold = run / f"fold_{k}_run"
        assert (fold / "model" / "model.pt").is_file() and (fold / "test_statistics.json").is_file()
    table = pd.read_csv(run / "kfold_summary.csv")
    assert table["test_rows"].tolist() == [6, 6, 6]
    assert (table["training_rows"] + table["validation_rows"]).tolist() == [12, 12, 12]


def test_k_fold_usage_mistakes_exit_2(work):
    root, _ = work
    fixed = tiny_config()
    fixed["split"] = {"type": "fixed", "column": "split"}
    (root / "fixed.yaml").write_text(yaml.safe_dump(fixed))
    for args, message in (
            (["--dataset", "data.csv", "--k_fold", "1"], "--k_fold must be at least 2"),
            (["--training_set", "data.csv", "--k_fold", "3"], "--k_fold makes its own folds"),
    ):
        proc = soundscape("train", "--config", "audio_only.yaml", *args, cwd=root)
        assert proc.returncode == 2 and message in one_line_error(proc), proc.stderr
    proc = soundscape("train", "--config", "fixed.yaml", "--dataset", "data.csv", "--k_fold", "3", cwd=root)
    assert proc.returncode == 2 and "makes its own folds" in one_line_error(proc)
