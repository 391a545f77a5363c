"""Prediction on clips and streamed prediction over long recordings."""

from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.audio import Audio
from soundscape.errors import ParameterError
from soundscape.model_file import Detector
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register
from soundscape.torch.outputs import read_scores
from soundscape.torch.predict import predict, predict_recordings

RATE = 16000
PREP = Preprocessing(sample_rate=RATE, clip_duration=1.0, window_samples=256, overlap_samples=128,
                     height=32, width=32, channels=1)


@register("test_predict_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(3),
        torch.nn.Flatten(), torch.nn.Linear(54, num_classes))


def _detector(prep: Preprocessing = PREP, classes=("song", "noise"), multi_target=False) -> Detector:
    torch.manual_seed(11)
    return Detector(build("test_predict_tiny", len(classes)), "test_predict_tiny", list(classes),
                    multi_target, prep)


def _tones(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """Noise with 2-kHz tone bursts switching on and off: windows differ from each other."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    gate = (np.sin(2 * np.pi * 0.13 * t) > 0.3) * (0.2 + 0.6 * rng.random())
    x = 0.05 * rng.standard_normal(len(t)) + gate * np.sin(2 * np.pi * 2000 * t)
    return x.astype(np.float32)


def _tone_clips(folder, n: int, seconds: float) -> list[str]:
    """`n` WAV clips of `_tones` (seeds 0..n-1), ``c0.wav``, ``c1.wav``, ... in `folder`."""
    paths = [str(folder / f"c{i}.wav") for i in range(n)]
    for i, path in enumerate(paths):
        sf.write(path, _tones(seconds, seed=i), RATE)
    return paths


def _reference(det: Detector, path, starts, ends, activation=None) -> np.ndarray:
    """Per-clip scores: each window read on its own, `image_reference`, the model."""
    paths = path if isinstance(path, list) else [path] * len(starts)
    rate = det.preprocessing.sample_rate
    images = [det.preprocessing.image_reference(Audio.from_file(p, sample_rate=rate, offset=s, duration=e - s))
              for p, s, e in zip(paths, starts, ends)]
    with torch.inference_mode():
        out = det.eval()(torch.stack(images))
    return (torch.softmax(out, 1) if activation == "softmax" else out).numpy()


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 3-minute field-like recording (synthetic woodcock scene) at 16 kHz."""
    from soundscape.sample_data import synthetic_recording

    samples, _ = synthetic_recording(180.0, RATE, seed=5)
    path = tmp_path_factory.mktemp("rec") / "field.wav"
    sf.write(path, samples, RATE, subtype="FLOAT")
    return path


# ---------------------------------------------------------------------------- predict (clips)
def test_predict_clip_files_with_a_corrupt_one(tmp_path):
    det = _detector()
    paths = _tone_clips(tmp_path, 5, 1.2)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    files = paths[:2] + [str(tmp_path / "broken.wav")] + paths[2:]
    result = predict(det, files, batch_size=2, activation=None)
    assert list(result.index) == paths and list(result.columns) == ["song", "noise"]
    assert result.index.name == "file"
    np.testing.assert_allclose(result.to_numpy(), _reference(det, paths, [0.0] * 5, [1.0] * 5),
                               atol=1e-5)
    errors = pd.DataFrame(result.attrs["errors"])
    assert list(errors["file"]) == [str(tmp_path / "broken.wav")]
    assert "broken.wav" in errors["error"][0]
    assert result.attrs["summary"] == {"n_clips": 6, "n_scored": 5, "n_failed": 1, "precision": "fp32",
                                      "backend": "torch", "compile": False,
                                      "threads": torch.get_num_threads()}
    soft = predict(det, files, activation="auto")  # single-target: softmax
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(soft, torch.softmax(torch.tensor(result.to_numpy()), 1).numpy(), atol=1e-6)


def test_predict_clip_table_and_dataset(tmp_path):
    det = _detector()
    sf.write(tmp_path / "long.wav", _tones(6.0), RATE)
    f = str(tmp_path / "long.wav")
    table = pd.DataFrame({"file": [f, f, f], "start_time": [0.0, 2.5, 4.0], "end_time": [1.0, 3.5, 5.0]})
    result = predict(det, table, activation=None, num_workers=0)
    assert result.index.names == ["file", "start_time", "end_time"]
    np.testing.assert_allclose(result.to_numpy(), _reference(det, f, table.start_time, table.end_time),
                               atol=1e-5)
    datasets = pytest.importorskip("soundscape.datasets")
    ds = datasets.MultiTargetAudioDataset(table.set_index(["file", "start_time", "end_time"]).assign(song=1),
                                          preprocessing=PREP)
    from_ds = predict(det, ds, activation=None)
    assert from_ds.index.equals(result.index)
    np.testing.assert_allclose(from_ds.to_numpy(), result.to_numpy(), atol=1e-6)
    with pytest.raises(ParameterError, match="activation"):
        predict(det, table, activation="relu")


# ---------------------------------------------------------------------------- recordings
def test_streamed_windows_equal_per_clip_reference(recording):
    det = _detector()
    # 1-s windows every 0.48 s: starts are multiples of the 128-sample hop (60 hops); small
    # chunks force many chunk edges
    result = predict_recordings(det, [recording], clip_overlap=0.52, chunk_duration=7.0, batch_size=13,
                                activation=None, progress=False, num_workers=1)
    assert result.index.names == ["file", "start_time", "end_time"]
    starts = result.index.get_level_values("start_time").to_numpy()
    np.testing.assert_allclose(starts, np.arange(373) * 0.48)
    ref = _reference(det, recording, starts, starts + 1.0)
    np.testing.assert_allclose(result.to_numpy(), ref, atol=2e-5)
    # the detections module takes the table as it is
    from soundscape.detections import detections

    events = detections(result, threshold=float(np.median(result["song"])), merge_gap=0.1)
    assert set(events["file"]) == {str(recording)} and len(events) > 0


def test_resampled_and_unaligned_windows_stay_close(recording, tmp_path):
    det = _detector(PREP.replace(sample_rate=12000))
    # 16 kHz file -> 12 kHz model; 0.3-s step is not a multiple of the 128-sample hop, so
    # windows are cut at the nearest frame (<= 64 samples = 5 ms away)
    result = predict_recordings(det, recording, clip_overlap=0.7, activation=None, progress=False,
                                chunk_duration=20.0)
    starts = result.index.get_level_values("start_time").to_numpy()
    assert len(starts) == int((180 - 1) / 0.3) + 1
    ref = _reference(det, recording, starts, starts + 1.0)
    diff = np.abs(result.to_numpy() - ref)
    scale = np.ptp(ref, axis=0)
    assert np.all(diff.max(axis=0) < 0.1 * scale), (diff.max(axis=0), scale)
    assert np.corrcoef(result["song"], ref[:, 0])[0, 1] > 0.99
    # windows on the frame grid (step 0.4 s = 37.5 hops at 12 kHz is not; 0.32 s = 30 hops is)
    aligned = predict_recordings(det, recording, clip_overlap=0.68, activation=None, progress=False)
    a_starts = aligned.index.get_level_values("start_time").to_numpy()[::20]
    ref = _reference(det, recording, a_starts, a_starts + 1.0)
    np.testing.assert_allclose(aligned.to_numpy()[::20], ref, atol=0.02 * scale.max())


def test_final_clip_windows_are_exact(tmp_path):
    det = _detector()
    sf.write(tmp_path / "short.wav", _tones(4.3), RATE)
    path = tmp_path / "short.wav"
    for final in ("extend", "full", "remainder"):
        result = predict_recordings(det, path, final_clip=final, activation=None, progress=False)
        starts = result.index.get_level_values("start_time").to_numpy()
        ends = result.index.get_level_values("end_time").to_numpy()
        assert len(result) == 5 and ends[-1] == pytest.approx(5.0 if final == "extend" else 4.3)
        ref = _reference(det, path, starts, np.minimum(starts + 1.0, 4.3))
        np.testing.assert_allclose(result.to_numpy(), ref, atol=2e-5)
    assert len(predict_recordings(det, path, progress=False)) == 4


def _write_long(path, minutes: float, rate: int = 8000) -> None:
    """Write a long 8-kHz recording in 1-minute blocks (never all in memory)."""
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as fh:
        for m in range(int(minutes)):
            fh.write(_tones(60.0, rate, seed=m))


def test_memory_does_not_grow_with_recording_length(tmp_path):
    prep = PREP.replace(sample_rate=8000, clip_duration=5.0, window_samples=512, overlap_samples=256)
    det = _detector(prep)
    peaks, chunks = {}, {}
    for minutes in (5, 15):
        path = tmp_path / f"m{minutes}.wav"
        _write_long(path, minutes)
        tracemalloc.start()
        result = predict_recordings(det, path, chunk_duration=30.0, batch_size=16, progress=False,
                                    num_workers=0)
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        chunks[minutes] = result.attrs["summary"]["max_chunk_samples"]
        assert len(result) == minutes * 12
    # the longest chunk read is set by chunk_duration, not by the file
    assert chunks[5] == chunks[15] <= 35 * 8000
    # traced (numpy/Python) peak: the 3x longer file costs no more than the 5-min one (plus
    # its slightly larger score table); the whole 15-min file would be 29 MB of float32
    assert peaks[15] < 1.2 * peaks[5] + 1_000_000, peaks
    assert peaks[15] < 8_000_000, peaks


def test_bad_files_are_listed_and_skipped(tmp_path, recording):
    det = _detector()
    good = tmp_path / "good.wav"
    sf.write(good, _tones(5.0), RATE)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(200))
    sf.write(tmp_path / "full.flac", _tones(20.0), RATE)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "truncated.flac").write_bytes(data[: len(data) // 2])
    sf.write(tmp_path / "tiny.wav", _tones(0.5), RATE)  # shorter than one window
    files = [tmp_path / "missing.wav", tmp_path / "empty.wav", good, tmp_path / "corrupt.wav",
             tmp_path / "truncated.flac", tmp_path / "tiny.wav"]
    out = tmp_path / "out"
    result = predict_recordings(det, files, output_dir=out, progress=False)
    assert set(result.index.get_level_values("file")) == {str(good)}
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors.columns) == ["file", "error"]
    reasons = dict(zip(errors["file"], errors["error"]))
    assert set(reasons) == {str(f) for f in files if f != good}
    assert "not found" in reasons[str(tmp_path / "missing.wav")]
    assert "empty" in reasons[str(tmp_path / "empty.wav")]
    assert "truncated" in reasons[str(tmp_path / "truncated.flac")] or \
        "decode" in reasons[str(tmp_path / "truncated.flac")]
    assert "shorter than clip_duration" in reasons[str(tmp_path / "tiny.wav")]
    assert result.attrs["errors"] == errors.to_dict("records")
    summary = result.attrs["summary"]
    assert (summary["n_files"], summary["n_scored"], summary["n_failed"]) == (6, 1, 5)


def test_resume_skips_finished_files(tmp_path):
    det = _detector()
    folder = tmp_path / "recordings"
    (folder / "site_b").mkdir(parents=True)
    for i, name in enumerate(["a.wav", "site_b/a.wav", "c.flac"]):
        sf.write(folder / name, _tones(6.0 + i, seed=i), RATE)
    out = tmp_path / "out"
    first = predict_recordings(det, folder, output_dir=out, progress=False, clip_overlap=0.5)
    assert first.attrs["summary"]["n_scored"] == 3
    assert first.index.get_level_values("file").unique().tolist() == sorted(
        str(p) for p in folder.rglob("*.*"))
    written = sorted((out / "scores").glob("*.csv"))
    assert len(written) == 3  # same stem "a" in two folders: two outputs
    mtimes = {p: p.stat().st_mtime_ns for p in written}

    again = predict_recordings(det, folder, output_dir=out, progress=False, clip_overlap=0.5)
    assert again.attrs["summary"]["n_scored"] == 0 and again.attrs["summary"]["n_skipped"] == 3
    assert {p: p.stat().st_mtime_ns for p in written} == mtimes
    pd.testing.assert_frame_equal(again, first, check_exact=False, rtol=1e-6)

    # an interrupted run: the manifest lost its last entry -> only that file is redone
    lines = (out / "manifest.jsonl").read_text().splitlines()
    (out / "manifest.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])
    redone = json.loads(lines[-1])["output"]
    third = predict_recordings(det, str(folder / "**" / "*.*"), output_dir=out, progress=False,
                               clip_overlap=0.5)
    assert (third.attrs["summary"]["n_scored"], third.attrs["summary"]["n_skipped"]) == (1, 2)
    changed = [p for p in written if p.stat().st_mtime_ns != mtimes[p]]
    assert [str(p.relative_to(out)) for p in changed] == [redone]
    pd.testing.assert_frame_equal(read_scores(out).sort_index(), first.sort_index(),
                                  check_exact=False, rtol=1e-6)

    with pytest.raises(ParameterError, match="other settings.*clip_overlap"):
        predict_recordings(det, folder, output_dir=out, progress=False, clip_overlap=0.25)
    fresh = predict_recordings(det, folder, output_dir=out, progress=False, clip_overlap=0.25,
                               overwrite=True)
    assert fresh.attrs["summary"]["n_scored"] == 3


def test_parquet_output_and_sigmoid(tmp_path):
    pytest.importorskip("pyarrow")
    det = _detector(multi_target=True)
    sf.write(tmp_path / "r.wav", _tones(8.0), RATE)
    out = tmp_path / "pq"
    result = predict_recordings(det, [tmp_path / "r.wav"], output_dir=out, output_format="parquet",
                                progress=False)
    assert ((result >= 0) & (result <= 1)).all().all()  # auto = sigmoid for multi-target
    assert len(list((out / "scores").glob("*.parquet"))) == 1
    pd.testing.assert_frame_equal(read_scores(out), result, check_exact=False, rtol=1e-6)
    logits = predict_recordings(det, [tmp_path / "r.wav"], activation=None, progress=False)
    np.testing.assert_allclose(result, torch.sigmoid(torch.tensor(logits.to_numpy())).numpy(), atol=1e-6)


def test_progress_bars_and_argument_errors(tmp_path, capsys):
    det = _detector()
    sf.write(tmp_path / "r.wav", _tones(3.0), RATE)
    predict_recordings(det, tmp_path, progress="always")
    err = capsys.readouterr().err
    assert "files" in err and "windows" in err and "1 recording(s) scored" in err
    with pytest.raises(FileNotFoundError, match="no files match"):
        predict_recordings(det, str(tmp_path / "*.mp3"), progress=False)
    with pytest.raises(ParameterError, match="output_format"):
        predict_recordings(det, tmp_path, output_format="xlsx", progress=False)
    with pytest.raises(ParameterError, match="batch_size"):
        predict_recordings(det, tmp_path, batch_size=0, progress=False)
    with pytest.raises(ParameterError, match="clip_duration"):
        predict_recordings(_detector(PREP.replace(clip_duration=None)), tmp_path, progress=False)


class _FailingNet(torch.nn.Module):
    """Raises on its second call, like a model that runs out of memory mid-run."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(1, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("model failed on purpose")
        return self.fc(x.mean(dim=(1, 2, 3))[:, None])


def test_model_error_stops_the_run_and_its_threads(tmp_path):
    import threading

    sf.write(tmp_path / "r.wav", _tones(30.0), RATE)
    det = Detector(_FailingNet(), "test_failing", ["a", "b"], False, PREP)
    def ours():  # tqdm may leave its own monitor thread
        return [t for t in threading.enumerate() if t.name != "tqdm_monitor"]

    before = ours()
    with pytest.raises(RuntimeError, match="on purpose"):
        predict_recordings(det, [tmp_path / "r.wav"] * 1, batch_size=4, chunk_duration=3.0,
                           num_workers=2, progress=False)
    assert ours() == before
    assert det.network.calls == 2


@pytest.mark.parametrize("file_rate,channels", [(44100, 1), (22050, 2), (16000, 2)])
def test_chunks_equal_the_whole_file_resampled(tmp_path, file_rate, channels):
    from soundscape.torch.windows import ChunkReader, plan_windows

    rng = np.random.default_rng(file_rate)
    x = (0.2 * rng.standard_normal((file_rate * 7, channels))).astype(np.float32)
    sf.write(tmp_path / "x.wav", x, file_rate, subtype="FLOAT")
    whole = Audio.from_file(tmp_path / "x.wav", sample_rate=RATE).samples  # mono, resampled at once
    plan = plan_windows(tmp_path / "x.wav", PREP)
    assert plan.n_samples == len(whole)
    with ChunkReader(plan, RATE) as reader:
        for start, stop in [(0, 5000), (12345, 54321), (len(whole) - 3000, len(whole)), (7, len(whole))]:
            np.testing.assert_allclose(reader.read(start, stop), whole[start:stop], atol=1e-6)


def test_scores_carry_the_model_band_to_the_detection_boxes(tmp_path):
    from soundscape.detections import detections

    sf.write(tmp_path / "r.wav", _tones(6.0), RATE)
    full = predict_recordings(_detector(), [tmp_path / "r.wav"], progress=False)
    assert full.attrs["frequency_band"] == (0.0, RATE / 2)  # no band: 0 to the model's Nyquist
    banded = _detector(PREP.replace(min_frequency=1000.0, max_frequency=5000.0))
    out = tmp_path / "out"
    scores = predict_recordings(banded, [tmp_path / "r.wav"], output_dir=out, progress=False)
    assert scores.attrs["frequency_band"] == (1000.0, 5000.0)
    assert read_scores(out).attrs["frequency_band"] == (1000.0, 5000.0)
    events = detections(scores, threshold=float(scores["song"].min()))
    assert len(events) and (events["low_f"] == 1000.0).all() and (events["high_f"] == 5000.0).all()


def test_predict_gives_a_dataset_without_preprocessing_arguments_the_models(tmp_path):
    from soundscape.datasets import SingleTargetAudioDataset

    det = _detector()
    paths = _tone_clips(tmp_path, 3, 1.0)
    table = pd.DataFrame({"file": paths})
    plain = SingleTargetAudioDataset(table, {0: "song", 1: "noise"}, filename_column="file")
    before = plain.preprocessing
    result = predict(det, plain, activation=None)
    assert plain.preprocessing == before  # the caller's dataset is not changed
    np.testing.assert_allclose(result.to_numpy(), predict(det, paths, activation=None).to_numpy(),
                               atol=1e-5)
    given = SingleTargetAudioDataset(table, {0: "song", 1: "noise"}, filename_column="file",
                                     height=40)  # its own preprocessing: used as given
    assert given.preprocessing_given
    with pytest.raises(RuntimeError):  # 3-channel images into the 1-channel model
        predict(det, given, activation=None)
