"""Tests of soundscape.runtime: devices, the precision policy, and bf16 against fp32."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import soundscape
from soundscape.datasets import SingleTargetAudioDataset
from soundscape.detections import detections
from soundscape.errors import ParameterError
from soundscape.models.compact import compact_cnn
from soundscape.runtime import native_bf16_cpu, resolve_device, resolve_precision
from soundscape.torch.train import train

CLIPS = Path(__file__).resolve().parents[1] / "sample_data" / "woodcock_labeled_data"
FIELD = Path(__file__).resolve().parents[1] / "sample_data" / "field_recording" / "field_recording.flac"


def test_devices_and_precision_names_are_checked():
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ParameterError, match="not a torch device name"):
        resolve_device("gpu")
    with pytest.raises(ParameterError, match="precision must be one of"):
        resolve_precision("int4")
    with pytest.raises(ParameterError, match="needs a GPU"):
        resolve_precision("fp16", "cpu")
    assert resolve_precision("fp32").name == "fp32"


def test_auto_uses_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.delenv("SOUNDSCAPE_PRECISION", raising=False)
    expected = "bf16" if native_bf16_cpu() else "fp32"
    assert resolve_precision("auto", "cpu").name == expected
    monkeypatch.setenv("SOUNDSCAPE_PRECISION", "fp32")
    assert resolve_precision("auto", "cpu").name == "fp32"  # forced for the whole process
    assert resolve_precision("bf16", "cpu").name == "bf16"  # an explicit choice wins


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    labels = pd.read_csv(CLIPS / "woodcock_labels.csv")
    labels["file"] = [str(CLIPS / f) for f in labels["filename"]]
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  clip_duration=2.0)
    torch.manual_seed(0)
    model = compact_cnn(2)
    out = tmp_path_factory.mktemp("bf16")
    train(out, model, ds, ds, torch.optim.Adam(model.parameters(), 3e-3), torch.nn.CrossEntropyLoss(),
          epochs=4, batch_size=8, num_workers=0, print_logging=False, precision="fp32")
    return soundscape.load_model(out / "best.model"), labels


def test_bf16_scores_stay_within_0_02_of_fp32_on_a_trained_model(trained_model, tmp_path):
    detector, labels = trained_model
    audio, rate = sf.read(FIELD, frames=60 * 22050, dtype="float32")
    sf.write(tmp_path / "minute.wav", audio, rate)
    runs = {p: soundscape.predict_recordings(detector, tmp_path / "minute.wav", clip_overlap=1.0,
                                             precision=p, progress=False) for p in ("fp32", "bf16")}
    assert runs["bf16"].attrs["summary"]["precision"] == "bf16"
    diff = np.abs(runs["bf16"].to_numpy() - runs["fp32"].to_numpy())
    assert diff.max() <= 0.02, diff.max()
    events = {p: detections(s, threshold=0.5, classes=["present"]) for p, s in runs.items()}
    assert len(events["bf16"]) == len(events["fp32"])
    clips = {p: soundscape.predict(detector, labels["file"].tolist(), precision=p) for p in ("fp32", "bf16")}
    assert np.abs(clips["bf16"].to_numpy() - clips["fp32"].to_numpy()).max() <= 0.02


def test_bf16_training_learns_like_fp32(trained_model, tmp_path):
    _, labels = trained_model
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  clip_duration=2.0)
    torch.manual_seed(0)
    model = compact_cnn(2)
    history = train(tmp_path, model, ds, ds, torch.optim.Adam(model.parameters(), 3e-3),
                    torch.nn.CrossEntropyLoss(), epochs=4, batch_size=8, num_workers=0,
                    print_logging=False, precision="bf16")
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert soundscape.load_model(tmp_path / "best.model").metadata["precision"] == "bf16"
    assert history.attrs["precision"] == "bf16" and history.attrs["threads"] >= 1  # measured per batch


# --------------------------------------------------------------------------- compile and int8
def test_compiled_network_scores_like_the_plain_one(trained_model, tmp_path, caplog):
    """torch.compile (inductor, C++ on the CPU: ~40 s for the compact CNN here) changes nothing."""
    detector, _ = trained_model
    audio, rate = sf.read(FIELD, frames=30 * 22050, dtype="float32")
    sf.write(tmp_path / "half.wav", audio, rate)
    plain = soundscape.predict_recordings(detector, tmp_path / "half.wav", precision="fp32", progress=False,
                                          batch_size=8)
    fast = soundscape.predict_recordings(detector, tmp_path / "half.wav", precision="fp32", compile=True,
                                         progress=False, batch_size=8)
    assert fast.attrs["summary"]["compile"] is True
    assert len(plain) % 8 != 0  # the last, short batch was padded to the compiled size
    np.testing.assert_allclose(fast.to_numpy(), plain.to_numpy(), atol=1e-4)


def test_compile_failure_falls_back_with_a_warning(trained_model, tmp_path, monkeypatch, caplog):
    import torch._inductor.config as inductor_config

    detector, labels = trained_model
    # no C++ compiler: inductor cannot build its kernels (torch's setting, not ours)
    monkeypatch.setattr(inductor_config.cpp, "cxx", ("/nonexistent/c++",))
    torch._dynamo.reset()
    files = labels["file"].tolist()[:4]
    with caplog.at_level("WARNING", logger="soundscape.predict"):
        scores = soundscape.predict(detector, files, precision="fp32", compile=True, batch_size=4)
    torch._dynamo.reset()
    assert "torch.compile failed" in caplog.text
    assert scores.attrs["summary"]["compile"] is False
    plain = soundscape.predict(detector, files, precision="fp32")
    np.testing.assert_allclose(scores.to_numpy(), plain.to_numpy(), atol=1e-6)


def test_int8_is_calibrated_on_the_users_clips_and_reports_its_agreement(trained_model, tmp_path, caplog):
    detector, labels = trained_model
    audio, rate = sf.read(FIELD, frames=60 * 22050, dtype="float32")
    sf.write(tmp_path / "minute.wav", audio, rate)
    calibration = labels["file"].tolist()
    with pytest.raises(ParameterError, match="needs calibration"):
        soundscape.predict_recordings(detector, tmp_path / "minute.wav", precision="int8", progress=False)
    with caplog.at_level("INFO", logger="soundscape.predict"):
        q = soundscape.predict_recordings(detector, tmp_path / "minute.wav", precision="int8",
                                          calibration=calibration, progress=False)
    ref = soundscape.predict_recordings(detector, tmp_path / "minute.wav", precision="fp32", progress=False)
    summary = q.attrs["summary"]
    assert summary["precision"] == "int8" and summary["calibration_clips"] == len(calibration)
    agreement = summary["int8_max_abs_score_diff_vs_fp32"]
    assert f"largest score difference from fp32 on them: {agreement:.4f}" in caplog.text
    assert 0 < agreement <= 0.1  # quantized: close, not equal
    assert np.abs(q.to_numpy() - ref.to_numpy()).max() <= 0.15
    # a dataset calibrates too, and predict() takes int8 like predict_recordings
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  preprocessing=detector.preprocessing)
    clips = soundscape.predict(detector, ds, precision="int8", calibration=ds)
    assert clips.attrs["summary"]["calibration_clips"] == len(ds)
    fp32 = soundscape.predict(detector, ds, precision="fp32")
    assert np.abs(clips.to_numpy() - fp32.to_numpy()).max() <= 0.1


def test_int8_is_for_prediction_on_the_cpu_only(trained_model, tmp_path, monkeypatch):
    detector, labels = trained_model
    label_dict = {0: "absent", 1: "present"}
    ds = SingleTargetAudioDataset(labels, label_dict, filename_column="file", label_column="woodcock",
                                  clip_duration=2.0)
    with pytest.raises(ParameterError, match="prediction only"):
        train(tmp_path, compact_cnn(2), ds, ds, torch.optim.Adam(compact_cnn(2).parameters()),
              torch.nn.CrossEntropyLoss(), epochs=1, num_workers=0, print_logging=False, precision="int8")
    monkeypatch.setenv("SOUNDSCAPE_PRECISION", "int8")
    with pytest.raises(ParameterError, match="SOUNDSCAPE_PRECISION"):
        resolve_precision("auto")
    with pytest.raises(ParameterError, match="calibration= is for precision 'int8'"):
        soundscape.predict(detector, labels["file"].tolist()[:2], precision="fp32", calibration=[FIELD])


# --------------------------------------------------------------------------- threads
def test_thread_tuner_keeps_the_faster_count_and_measures_again(monkeypatch):
    import os

    from soundscape.runtime import ThreadTuner, thread_candidates

    assert thread_candidates(2) == [2, 1] and thread_candidates(1) == [1]
    assert thread_candidates(16) == [16, 15, 8]
    ThreadTuner.last_choice.clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))  # a quiet machine: all CPUs first
    tuner = ThreadTuner([2, 1], trial=2, period=3)
    used = []
    for _ in range(40):
        n = tuner.threads()
        used.append(n)
        tuner.record(16, 1.0 if n == 2 else 0.5)  # one thread twice as fast (a busy machine)
    assert used[:5] == [2, 2, 2, 1, 1]  # warm-up, then two trial batches of each
    assert used.count(1) > 3 * used.count(2)
    assert tuner.summary() == {"threads": 1, "threads_clips_per_s": {"1": 32.0, "2": 16.0}}
    assert ThreadTuner([2, 1]).threads() == 1  # the next run in this process starts with the winner
    ThreadTuner.last_choice.clear()
    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))  # busier than 2 CPUs
    assert ThreadTuner([2, 1]).threads() == 1
    single = ThreadTuner([1])
    single.record(16, 1.0)
    single.record(16, 1.0)
    assert single.threads() == 1 and single.summary()["threads_clips_per_s"] == {}


# --------------------------------------------------------------------------- more architectures
FINCH_RATE = 32000


@pytest.fixture(scope="module")
def finch(shared_data, tmp_path_factory):
    """1-s song / no-song clips of 14 Bengalese finch recordings (real audio) and 7 held-out recordings."""
    root = shared_data / "bengalese_finch"
    table = pd.read_csv(root / "clip_labels_1s.csv")
    table["file"] = [str(root / f) for f in table["filename"]]
    recordings = sorted(table["file"].unique())
    held_out = recordings[::3]
    train_rows = table[~table["file"].isin(held_out)].reset_index(drop=True)
    folder = tmp_path_factory.mktemp("finch_clips")
    rows = []  # the clips as files too, for the config workflow (one clip per table row)
    for i, r in train_rows.iterrows():
        audio, rate = sf.read(r["file"], start=int(r["start_time"] * FINCH_RATE),
                              stop=int(r["end_time"] * FINCH_RATE), dtype="float32")
        path = folder / f"clip{i:03d}.wav"
        sf.write(path, audio, rate)
        rows.append({"audio": str(path), "label": "song" if r["song_present"] else "quiet"})
    return train_rows, pd.DataFrame(rows), held_out


def _guard(detector, files, classes, threshold=0.5):
    """fp32 and bf16 scores of held-out recordings: (max difference, events fp32, events bf16)."""
    runs = {p: soundscape.predict_recordings(detector, files, clip_overlap=0.5, final_clip="extend",
                                             precision=p, progress=False, batch_size=16)
            for p in ("fp32", "bf16")}
    assert runs["bf16"].attrs["summary"]["precision"] == "bf16"
    diff = float(np.abs(runs["bf16"].to_numpy() - runs["fp32"].to_numpy()).max())
    events = {p: detections(s, threshold=threshold, classes=classes) for p, s in runs.items()}
    return diff, events["fp32"], events["bf16"]


def test_bf16_resnet18_on_real_song_stays_within_0_02_of_fp32(finch, tmp_path):
    from soundscape.preprocessing import Preprocessing
    from soundscape.torch.models import build

    train_rows, _, held_out = finch
    prep = Preprocessing(sample_rate=FINCH_RATE, clip_duration=1.0, height=64, width=64)
    frame = train_rows.set_index(["file", "start_time", "end_time"])[["song_present"]]
    make = lambda f: SingleTargetAudioDataset(f, {0: "quiet", 1: "song"},  # noqa: E731
                                              label_column="song_present", preprocessing=prep)
    torch.manual_seed(0)
    network = build("resnet18", 2)  # a few steps on 64 x 64 images: ResNet18 is slow on 2 cores
    train(tmp_path, network, make(frame.iloc[::2]), make(frame.iloc[1::8]),
          torch.optim.Adam(network.parameters(), 1e-3), torch.nn.CrossEntropyLoss(), epochs=2,
          batch_size=16, num_workers=0, print_logging=False, precision="fp32", seed=0)
    detector = soundscape.load_model(tmp_path / "best.model")
    diff, fp32, bf16 = _guard(detector, held_out, ["song"])
    assert diff <= 0.02, diff
    assert len(fp32) > 0 and len(bf16) == len(fp32)
    pd.testing.assert_frame_equal(bf16[["file", "start_time"]], fp32[["file", "start_time"]])


def test_bf16_config_fbank_model_on_real_song_stays_within_0_02_of_fp32(finch, tmp_path):
    from soundscape.workflow import train as config_train

    _, clips, held_out = finch
    config = {
        "input_features": [{
            "name": "audio", "type": "audio",
            "encoder": {"type": "stacked_cnn", "num_filters": 16, "num_layers": 2, "output_size": 32},
            "preprocessing": {"type": "fbank", "sample_rate": 16000, "audio_file_length_limit_in_s": 1.0,
                              "num_filter_bands": 40},
        }],
        "output_features": [{"name": "label", "type": "category"}],
        "trainer": {"epochs": 6, "batch_size": 16, "learning_rate": 0.003, "precision": "fp32"},
        "split": {"type": "random", "probabilities": [0.8, 0.2, 0.0]},
    }
    results = config_train(config, clips, output_directory=None, progress=False)
    detector = results.detector
    assert detector.preprocessing.feature == "fbank"
    assert detector.metadata["precision"] == "fp32"  # trainer.precision reached the training loop
    diff, fp32, bf16 = _guard(detector, held_out, ["song"])
    assert diff <= 0.02, diff
    assert len(bf16) == len(fp32)
