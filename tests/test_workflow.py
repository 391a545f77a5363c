import copy
import json
import logging

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from _workflow_data import make_dataset, tiny_config
from soundscape.config import load_config
from soundscape.errors import AnnotationError, AudioFileError, ConfigError, ModelFileError
from soundscape.model_file import load_model
from soundscape.workflow import DeclarativeModel, evaluate, predict, train
from soundscape.workflow.data import read_table, split_table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("wf"), n=18)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A model with audio + category + number inputs and a binary output."""
    cfg = tiny_config(epochs=3)
    cfg["input_features"] += [{"name": "gender", "type": "category", "embedding_size": 3},
                              {"name": "age", "type": "number"}]
    cfg["output_features"] = [{"name": "present", "type": "binary"}]
    out = tmp_path_factory.mktemp("runs")
    return train(cfg, data, output_directory=out, progress=False), out


def test_run_folder_layout_and_statistics(trained):
    results, out = trained
    run = results.run_directory
    assert run == out / "experiment_run"
    for name in ("model/model.pt", "model/training_set_metadata.json", "model/model_hyperparameters.json",
                 "training_statistics.json", "test_statistics.json", "metrics.csv", "description.json"):
        assert (run / name).is_file(), name
    stats = json.loads((run / "training_statistics.json").read_text())
    assert set(stats) >= {"training", "validation", "test"}
    assert len(stats["training"]["present"]["loss"]) == stats["summary"]["epochs_run"] == 3
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert metrics["validation_loss"].tolist() == pytest.approx(stats["validation"]["present"]["loss"])
    desc = json.loads((run / "description.json").read_text())
    assert desc["data_set_size"]["rows"] == 18
    assert sum(desc["data_set_size"][s] for s in ("training", "validation", "test")) == 18
    assert desc["config"]["trainer"]["epochs"] == 3 and desc["versions"]["torch"] == torch.__version__


def test_metadata_holds_vocabularies_and_training_split_statistics(trained, data):
    results, _ = trained
    meta = json.loads((results.model_directory / "training_set_metadata.json").read_text())
    assert meta["present"]["idx2str"] == ["no", "yes"] and meta["present"]["positive_label"] == "yes"
    assert meta["gender"]["idx2str"] == ["<UNK>", "f", "m"]
    table = read_table(data)
    train_rows = split_table(table, load_config(results.detector.network.config).split)["training"]
    assert meta["age"]["mean"] == pytest.approx(train_rows["age"].mean())
    assert meta["age"]["std"] == pytest.approx(train_rows["age"].std(ddof=0))
    assert meta["audio"]["feature_shape"] == [48, 20]


def test_model_file_loads_through_model_file_and_predicts_like_predict(trained, data):
    results, _ = trained
    detector = load_model(results.model_directory / "model.pt")
    assert detector.architecture == "config_model" and detector.classes == ["yes"]
    assert detector.multi_target and detector.preprocessing.sample_rate == 8000
    preds, _ = predict(results.model_directory, data, progress=False)
    row = pd.read_csv(data).iloc[4]
    wave = detector.preprocessing.load_audio(data.parent / row["audio"]).samples
    with torch.no_grad():
        logit = detector({"audio": detector.preprocessing.features(torch.from_numpy(wave)[None]), "gender": torch.tensor([2 if row["gender"] == "m" else 1]),
                          "age": torch.tensor([(row["age"] - detector.network.metadata["age"]["mean"])
                                               / detector.network.metadata["age"]["std"]])})
    assert preds["present_probabilities_yes"].iloc[4] == pytest.approx(float(torch.sigmoid(logit[0, 0])), abs=1e-5)
    assert set(preds.columns) >= {"audio", "present_predictions", "present_probability",
                                  "present_probabilities_no", "present_probabilities_yes"}
    assert set(preds["present_predictions"]) <= {"yes", "no"}


def test_evaluate_reproduces_the_test_split_and_saves_best_weights(trained, data, tmp_path):
    results, _ = trained
    stats, preds, out = evaluate(results.model_directory, data, split="test", output_directory=tmp_path,
                                 progress=False)
    s = stats["present"]
    expected = results.test_statistics["present"]
    for key in ("loss", "accuracy", "macro_f1", "num_examples"):
        assert s[key] == pytest.approx(expected[key], abs=1e-6), key
    assert s["confusion_matrix"] == expected["confusion_matrix"]
    assert s["num_examples"] == len(preds) > 0
    assert np.array(s["confusion_matrix"]).sum() == s["num_examples"]
    best = results.train_stats["summary"]["best_epoch"]
    val_stats, _, _ = evaluate(results.model_directory, data, split="validation", progress=False)
    assert val_stats["present"]["loss"] == pytest.approx(results.train_stats["validation"]["present"]["loss"][best - 1], abs=1e-5)
    assert (tmp_path / "test_statistics.json").is_file() and (tmp_path / "predictions.parquet").is_file()
    assert pd.read_parquet(tmp_path / "predictions.parquet")["present"].tolist() == preds["present"].tolist()


def test_classic_model_file_predicts_and_evaluates_through_the_workflow(data, tmp_path):
    from soundscape.model_file import Detector
    from soundscape.preprocessing import Preprocessing
    from soundscape.torch.models import build

    prep = Preprocessing(sample_rate=8000, clip_duration=0.5, height=32, width=32)
    Detector(build("resnet18", 3), "resnet18", ["chirp", "high", "low"], False, prep).save(tmp_path / "model.pt")
    preds, _ = predict(tmp_path, data, progress=False)
    assert len(preds) == 18 and set(preds["label_predictions"]) <= {"chirp", "high", "low"}
    assert np.allclose(preds.filter(like="label_probabilities_").sum(axis=1), 1.0, atol=1e-5)
    stats, _, _ = evaluate(tmp_path / "model.pt", data, progress=False)
    assert stats["label"]["num_examples"] == 18
    with pytest.raises(FileNotFoundError, match="model not found"):
        predict(tmp_path / "model.pt.missing", data)


@pytest.mark.parametrize("output", [
    {"name": "tags", "type": "set"},
    {"name": "tags", "type": "set", "columns": ["tag_a", "tag_b"]},
])
def test_set_output(data, output):
    cfg = tiny_config(epochs=2)
    cfg["output_features"] = [output]
    results = train(cfg, data, output_directory=None, progress=False)
    assert results.metadata["tags"]["idx2str"] == (["a", "b"] if "columns" not in output else ["tag_a", "tag_b"])
    s = results.test_statistics["tags"]
    assert "per_class_confusion" in s and s["num_examples"] > 0
    preds, _ = predict(results.detector, data, progress=False)
    labels = results.metadata["tags"]["idx2str"]
    expected = ["|".join(lab for lab in labels if row[f"tags_probabilities_{lab}"] >= 0.5) for _, row in preds.iterrows()]
    assert preds["tags_predictions"].fillna("").tolist() == expected


def test_fixed_and_group_splits(data):
    table = read_table(data)
    fixed = split_table(table, {"type": "fixed", "column": "split"})
    assert [len(fixed[s]) for s in ("training", "validation", "test")] == [12, 3, 3]
    group = split_table(table, {"type": "group", "column": "site", "probabilities": [0.5, 0.25, 0.25]})
    sites = [set(group[s]["site"]) for s in ("training", "validation", "test")]
    assert all(sites) and not (sites[0] & sites[1] or sites[0] & sites[2] or sites[1] & sites[2])
    rnd = split_table(table, {"type": "random", "probabilities": [0.5, 0.0, 0.5]}, seed=3)
    assert len(rnd["validation"]) == 0 and len(rnd["training"]) == 9
    assert rnd["training"].index.tolist() == split_table(table, {"type": "random", "probabilities": [0.5, 0.0, 0.5]}, seed=3)["training"].index.tolist()


def test_declarative_model_with_given_splits_and_early_stopping(data, tmp_path):
    frame = pd.read_csv(data)
    frame["audio"] = [str(data.parent / p) for p in frame["audio"]]
    cfg = tiny_config(epochs=30, early_stop=1, learning_rate=0.3)
    model = DeclarativeModel(cfg)
    results = model.train(training_set=frame.iloc[:12], validation_set=frame.iloc[12:15],
                          test_set=frame.iloc[15:], output_directory=tmp_path, progress=False)
    summary = results.train_stats["summary"]
    assert summary["stopped_early"] and summary["epochs_run"] == summary["best_epoch"] + 1 < 30
    stats, preds, _ = model.evaluate(frame.iloc[15:], collect_predictions=True, progress=False)
    assert stats["label"]["num_examples"] == 3 and len(preds) == 3
    assert stats["label"]["loss"] == pytest.approx(results.test_statistics["label"]["loss"], abs=1e-5)
    reloaded = DeclarativeModel.load(results.model_directory)
    preds2, _ = reloaded.predict(frame.iloc[15:], progress=False)
    assert np.allclose(preds2["label_probability"], preds["label_probability"], atol=1e-6)


def test_a_few_unreadable_files_are_skipped(data, tmp_path, caplog):
    frame = pd.read_csv(data)
    frame["audio"] = [str(data.parent / p) for p in frame["audio"]]
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    frame.loc[0, "audio"] = str(tmp_path / "broken.wav")
    frame.loc[6, "audio"] = str(tmp_path / "missing.wav")
    with caplog.at_level(logging.WARNING, logger="soundscape"):
        results = train(tiny_config(epochs=1), frame, output_directory=tmp_path, progress=False)
    assert "could not be read" in caplog.text and "skipped" in caplog.text
    desc = json.loads((results.run_directory / "description.json").read_text())
    assert sum(desc["data_set_size"]["skipped_unreadable_audio"].values()) == 2
    assert sum(desc["data_set_size"][s] for s in ("training", "validation", "test")) == 16


def test_bad_tables_give_messages_naming_the_problem(data, tmp_path):
    cfg = tiny_config(epochs=1)
    with pytest.raises(AnnotationError, match="column 'emotion' named in the config is missing"):
        c = copy.deepcopy(cfg)
        c["output_features"] = [{"name": "emotion", "type": "category"}]
        train(c, data, output_directory=None, progress=False)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(AnnotationError, match="empty"):
        train(cfg, tmp_path / "empty.csv", output_directory=None, progress=False)
    (tmp_path / "header.csv").write_text("audio,label\n")
    with pytest.raises(AnnotationError, match="no rows"):
        train(cfg, tmp_path / "header.csv", output_directory=None, progress=False)
    frame = pd.read_csv(data)
    frame.loc[3, "label"] = None
    with pytest.raises(AnnotationError, match="'label' has 1 empty value"):
        train(cfg, frame, base_dir=data.parent, output_directory=None, progress=False)
    frame = pd.read_csv(data)
    frame["audio"] = [f"nowhere/{i}.wav" for i in range(len(frame))]
    with pytest.raises(AudioFileError, match=r"training audio.*13 of 13 audio file\(s\) could not be read.*nowhere.0\.wav"):
        train(cfg, frame, base_dir=tmp_path, output_directory=None, progress=False)
    c = copy.deepcopy(cfg)
    c["split"] = {"type": "fixed", "column": "label"}
    with pytest.raises(AnnotationError, match="split column 'label' has value 'low'"):
        train(c, data, output_directory=None, progress=False)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        train(cfg, tmp_path / "nope.csv", output_directory=None, progress=False)
    with pytest.raises(ConfigError):
        train({"input_features": []}, data, output_directory=None, progress=False)


def test_predict_folder_windows_long_recordings(trained, tmp_path):
    results, _ = trained
    cfg = tiny_config(epochs=1)
    rec = tmp_path / "recs"
    rec.mkdir()
    sf.write(rec / "long.wav", np.random.default_rng(0).standard_normal(8000 * 2 + 1000).astype(np.float32) * 0.1, 8000)
    sf.write(rec / "short.flac", np.zeros(1200, dtype=np.float32), 8000)
    with pytest.raises(Exception, match="only input is one audio feature"):
        predict(results.model_directory, rec, progress=False)
    data = make_dataset(tmp_path / "d", n=9)
    audio_only = train(cfg, data, output_directory=None, progress=False)
    preds, _ = predict(audio_only.detector, rec, clip_overlap=0.25, progress=False)
    long = preds[preds["file"].str.endswith("long.wav")]
    assert long["start_time"].tolist() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
    assert (long["end_time"] - long["start_time"]).tolist() == pytest.approx([0.5] * 8)
    assert len(preds[preds["file"].str.endswith("short.flac")]) == 1
    assert np.allclose(preds.filter(like="label_probabilities_").sum(axis=1), 1.0, atol=1e-5)


def test_image_models_predict_folders_through_predict_recordings(tmp_path):
    data = make_dataset(tmp_path / "d", n=9)
    cfg = tiny_config(epochs=1)
    cfg["input_features"][0]["preprocessing"] = {
        "type": "spectrogram_image", "sample_rate": 8000, "audio_file_length_limit_in_s": 0.5,
        "height": 32, "width": 32, "channels": 1}
    cfg["input_features"][0]["encoder"] = {"type": "resnet18"}
    results = train(cfg, data, output_directory=tmp_path / "runs", progress=False)
    rec = tmp_path / "recs"
    rec.mkdir()
    wave = np.concatenate([sf.read(data.parent / f"audio/clip0{i}.wav")[0] for i in (0, 1)])  # 8 kHz clips
    sf.write(rec / "two.wav", wave.astype(np.float32), 8000)
    folder, _ = predict(results.model_directory, rec, progress=False)
    assert folder["start_time"].tolist() == [0.0, 0.5]
    clips = pd.DataFrame({"audio": [str(data.parent / "audio/clip00.wav"), str(data.parent / "audio/clip01.wav")]})
    table, _ = predict(results.model_directory, clips, progress=False)
    cols = [c for c in table.columns if c.startswith("label_probabilities_")]
    np.testing.assert_allclose(folder[cols].to_numpy(), table[cols].to_numpy(), atol=1e-4)


def test_random_split_keeps_duplicate_files_on_one_side(data, caplog):
    frame = pd.read_csv(data)
    doubled = pd.concat([frame, frame.iloc[:6]], ignore_index=True)  # 6 files listed twice
    table = read_table(doubled, base_dir=data.parent)
    with caplog.at_level(logging.WARNING, logger="soundscape"):
        parts = split_table(table, {"type": "random", "probabilities": [0.5, 0.25, 0.25]}, seed=1,
                            audio_column="audio")
    sides = [set(parts[s]["audio"]) for s in ("training", "validation", "test")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert "12 rows name a file that another row names too" in caplog.text
    # without duplicates the split is the plain row shuffle it always was
    plain = split_table(read_table(data), {"type": "random", "probabilities": [0.5, 0.0, 0.5]}, seed=3,
                        audio_column="audio")
    assert len(plain["training"]) == 9


def test_config_augmentation_reaches_the_training_dataset(data):
    from soundscape.workflow.encoding import build_metadata
    from soundscape.workflow.model import config_preprocessing
    from soundscape.workflow.tables import config_dataset
    from soundscape.workflow.training import _augmentations

    base = tiny_config(epochs=1)
    base["trainer"]["augmentation"] = {"time_masks": 2, "frequency_masks": 1}
    cfg = load_config(base).to_dict()
    table = read_table(data)
    meta = build_metadata(cfg, table.frame, table.frame, table.source)
    made = config_dataset(cfg, meta, config_preprocessing(cfg), table, table.frame,
                          augmentations=_augmentations(cfg["trainer"]))
    assert made.dataset.time_masks == 2 and made.dataset.frequency_masks == 1
    a, b = made.dataset[0]["X"], made.dataset[0]["X"]
    assert a.shape == b.shape == (48, 20) and not torch.equal(a, b)  # masked anew each time
    results = train(cfg, data, output_directory=None, progress=False)
    assert results.train_stats["summary"]["epochs_run"] == 1


def test_kfold_cross_validate_keeps_groups_together(data):
    from soundscape.workflow import kfold_cross_validate

    cfg = tiny_config(epochs=1)
    cfg["split"] = {"type": "group", "column": "site", "probabilities": [0.7, 0.1, 0.2]}
    results = kfold_cross_validate(2, cfg, data, output_directory=None, progress=False)
    assert results.run_directory is None and len(results.folds) == 2
    frame = pd.read_csv(data)
    for fold in results.folds:
        assert fold.run_directory is None and fold.test_statistics is not None
    table = results.fold_statistics
    assert table["test_rows"].sum() == len(frame) and table["fold"].tolist() == [1, 2]
    assert sorted(set(results.row_folds)) == [1, 2]
    # every site is tested in one fold only: its clips never train the model that tests them
    folds_of_site = pd.Series(results.row_folds).groupby(frame["site"]).nunique()
    assert (folds_of_site == 1).all()
    for k in (1, 2):
        assert table.loc[table["fold"] == k, "test_rows"].item() == int((results.row_folds == k).sum())
    assert set(results.summary) >= {"accuracy", "macro_f1", "loss"}
    assert results.summary["accuracy"]["folds"] == 2
    assert "accuracy" in results.describe()
    with pytest.raises(ConfigError, match="k_fold must be an integer >= 2"):
        kfold_cross_validate(1, cfg, data, output_directory=None)
