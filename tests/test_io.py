"""Files the package writes: permissions, stale temp files, concurrent output folders."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.model_file import Detector, atomic_torch_save, save_model
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register
from soundscape.torch.outputs import INDEX, OutputFolder, read_scores, write_table

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PREP = Preprocessing(sample_rate=8000, clip_duration=0.5, window_samples=128, overlap_samples=64,
                     height=24, width=24, channels=3, n_mels=None, min_frequency=100.0)
SETTINGS = {"model": "m", "clip_overlap": 0.0}
needs_fcntl = pytest.mark.skipif(sys.platform == "win32", reason="output-folder locking needs fcntl")


@register("test_io_tiny")
def _tiny(num_classes: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(2, num_classes))


@contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _scores(path: str, n: int = 3) -> pd.DataFrame:
    index = pd.MultiIndex.from_arrays([[path] * n, np.arange(n, dtype=float), np.arange(n) + 1.0],
                                      names=INDEX)
    return pd.DataFrame({"song": np.linspace(0, 1, n, dtype=np.float32)}, index=index)


# ---------------------------------------------------------------------------- item 4: modes
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, mask):
    from soundscape.annotations import write_raven
    from soundscape.cache import ClipCache
    from soundscape.helpers import atomic_path

    expected = 0o666 & ~mask
    with umask(mask):
        det = Detector(build("test_io_tiny", 2), "test_io_tiny", ["a", "b"], False, PREP)
        written = [
            save_model(tmp_path / "models" / "best.model", det),
            atomic_torch_save({"epoch": 1}, tmp_path / "run" / "epoch-1.tar"),
            write_table(_scores("x.wav"), tmp_path / "scores" / "x.csv", "csv"),
            *write_raven(pd.DataFrame({"file": ["x.wav"], "start_time": [0.0], "end_time": [1.0],
                                       "annotation": ["a"]}), tmp_path / "raven"),
        ]
        with atomic_path(tmp_path / "metrics.csv") as tmp:
            tmp.write_text("a\n1\n")
        written.append(tmp_path / "metrics.csv")
        cache = ClipCache(tmp_path / "cache", memory_bytes=0, write_through=True)
        cache.put("ab" * 20, np.zeros(4, np.float32))
        written.append(cache._path("ab" * 20))
        rec = tmp_path / "rec.wav"
        rec.write_bytes(b"x")
        folder = OutputFolder(tmp_path / "out", SETTINGS, "csv")
        written += [folder.write(rec, _scores(str(rec))), folder.manifest, tmp_path / "out" / "run.json"]
    for path in written:
        assert path.is_file()
        assert _mode(path) == expected, f"{path.name}: mode {oct(_mode(path))}, expected {oct(expected)}"


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_io_writers_respect_the_umask(tmp_path, mask):
    from soundscape.io import atomic_write, write_json

    with umask(mask):
        paths = [write_json({"a": 1}, tmp_path / "new" / "stats.json"),
                 atomic_write(tmp_path / "t.bin", lambda tmp: tmp.write_bytes(b"1"))]
    assert [_mode(p) for p in paths] == [0o666 & ~mask] * 2
    assert json.loads(paths[0].read_text()) == {"a": 1}
    with pytest.raises(ValueError):
        write_json({"a": float("nan")}, tmp_path / "nan.json")  # never invalid JSON
    assert not (tmp_path / "nan.json").exists()


# ---------------------------------------------------------------------------- item 5: temp files
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> Path:
    """Create `path` if missing and make it `seconds` old."""
    if not path.exists():
        path.write_text("half a file")
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_temp_names_follow_one_pattern(tmp_path):
    from soundscape.io import atomic_path, is_temp_file, temp_path_for

    tmp = temp_path_for(tmp_path / "epoch-2.tar")
    assert tmp.name.startswith(".epoch-2.tar.") and tmp.suffix == ".tar" and is_temp_file(tmp)
    assert f".{os.getpid()}-" in tmp.name
    seen = []
    with atomic_path(tmp_path / "x.csv") as t:
        seen.append(t)
        t.write_text("a")
    assert is_temp_file(seen[0]) and not seen[0].exists()
    for name in ("x.csv", "best.model", ".hidden", ".bashrc", "epoch-2.tar", "notes.tmp"):
        assert not is_temp_file(name)


def test_clean_stale_temp_files_keeps_live_and_recent_ones(tmp_path):
    from soundscape.io import clean_stale_temp_files

    dead, live = _dead_pid(), os.getppid()
    keep = {
        "recent_dead": tmp_path / f".a.csv.{dead}-0000aaaa.tmp.csv",  # young: maybe another host
        "old_live": _age(tmp_path / f".b.csv.{live}-0000bbbb.tmp.csv", 7200),  # its writer runs
        "mine": _age(tmp_path / f".c.csv.{os.getpid()}-0000cccc.tmp.csv", 7200),
        "user": _age(tmp_path / ".notes", 7200),
        "data": _age(tmp_path / "epoch-2.tar", 7200),
    }
    gone = {
        "old_dead": tmp_path / f".epoch-2.tar.{dead}-0000dddd.tmp.tar",
        "legacy_model": tmp_path / ".epoch-2.tar.k3j_x9q2",  # tempfile.mkstemp, older versions
        "legacy_scores": tmp_path / ".x.csv.ab12cd34.tmp",
        "legacy_helpers": tmp_path / ".metrics.1a2b3c4d.tmp.csv",
    }
    keep["recent_dead"].write_text("being written")
    for p in gone.values():
        _age(p, 7200)
    removed = clean_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted(gone.values())
    assert all(p.exists() for p in keep.values())
    assert all(not p.exists() for p in gone.values())
    assert clean_stale_temp_files(tmp_path / "missing") == []
    # a day-old file is removed whatever process now has its pid
    _age(keep["old_live"], 2 * 86400)
    assert clean_stale_temp_files(tmp_path) == [keep["old_live"]]


def test_output_folder_removes_stale_temp_files(tmp_path):
    dead = _dead_pid()
    out = tmp_path / "out"
    (out / "scores").mkdir(parents=True)
    stale = [_age(p, 7200) for p in (out / "scores" / ".x.csv.k3j_x9q2.tmp",
                                      out / "scores" / f".y-0123456789.csv.{dead}-00001111.tmp.csv",
                                      out / f".run.json.{dead}-00002222.tmp.json")]
    fresh = out / "scores" / f".z.csv.{dead}-00003333.tmp.csv"
    fresh.write_text("being written")
    OutputFolder(out, SETTINGS, "csv")
    assert not any(p.exists() for p in stale) and fresh.exists()


def test_train_removes_stale_temp_files_of_an_interrupted_run(tmp_path):
    from soundscape.datasets import SingleTargetAudioDataset
    from soundscape.torch.train import train

    rate = 8000
    rows = []
    for i in range(4):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, (0.3 * np.sin(np.arange(rate // 2) * (0.1 + 0.2 * (i % 2)))).astype(np.float32), rate)
        rows.append({"file": str(path), "label": i % 2})
    ds = SingleTargetAudioDataset(pd.DataFrame(rows), {0: "a", 1: "b"}, filename_column="file",
                                  label_column="label", height=24, width=24, audio_sample_rate=rate,
                                  window_samples=128, overlap_samples=64)
    save_dir = tmp_path / "run"
    save_dir.mkdir()
    stale = [save_dir / ".epoch-2.tar.k3j_x9q2", save_dir / f".best.model.{_dead_pid()}-0000abcd.tmp.model"]
    for p in stale:
        _age(p, 7200)
    model = build("test_io_tiny", 2)
    with redirect_stdout(io.StringIO()):
        train(save_dir, model, ds, ds, torch.optim.SGD(model.parameters(), lr=0.01),
              torch.nn.CrossEntropyLoss(), epochs=1, batch_size=4, num_workers=0, device="cpu",
              progress_bar=False)
    assert not any(p.exists() for p in stale)
    assert (save_dir / "epoch-0.tar").is_file()


# ---------------------------------------------------------------------------- item 6: concurrency
def _recordings(folder: Path, prefix: str, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{prefix}{i:03d}.wav"
        p.write_bytes(b"not read: only size and mtime matter")
        paths.append(str(p))
    return paths


def _job(root: str, paths: list[str], restarts: int, started) -> None:
    """A predict_recordings-like job: opens the folder (again and again) and writes scores."""
    started.set()
    folder = OutputFolder(root, SETTINGS, "csv")
    every = max(1, len(paths) // max(restarts, 1))
    for i, path in enumerate(paths):
        if restarts and i % every == 0:
            folder = OutputFolder(root, SETTINGS, "csv")  # a job (re)starting on the folder
        folder.write(path, _scores(path))


@needs_fcntl
def test_two_processes_writing_one_folder_lose_no_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    root = tmp_path / "out"
    a = _recordings(tmp_path / "a", "a", 120)
    b = _recordings(tmp_path / "b", "b", 120)
    OutputFolder(root, SETTINGS, "csv")
    started = [ctx.Event(), ctx.Event()]
    jobs = [ctx.Process(target=_job, args=(str(root), a, 0, started[0])),
            ctx.Process(target=_job, args=(str(root), b, 60, started[1]))]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(120)
        assert job.exitcode == 0
    lines = (root / "manifest.jsonl").read_text().splitlines()
    keys = {json.loads(line)["key"] for line in lines if line.strip()}
    expected = {str(Path(p).resolve()) for p in a + b}
    assert keys == expected, f"{len(expected - keys)} manifest entries lost"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = read_scores(root)
    assert set(table.index.get_level_values("file")) == set(a + b)
    again = OutputFolder(root, SETTINGS, "csv")
    assert all(again.finished(p) is not None for p in a + b)


@needs_fcntl
def test_a_job_sees_what_a_concurrent_job_finished(tmp_path):
    root = tmp_path / "out"
    (rec,) = _recordings(tmp_path, "r", 1)
    first = OutputFolder(root, SETTINGS, "csv")
    second = OutputFolder(root, SETTINGS, "csv")  # started before the first finished rec
    assert second.finished(rec) is None
    first.write(rec, _scores(rec))
    assert second.finished(rec) == first.score_path(rec)


def test_settings_check_and_overwrite(tmp_path):
    from soundscape.errors import ParameterError

    root = tmp_path / "out"
    (rec,) = _recordings(tmp_path, "r", 1)
    OutputFolder(root, SETTINGS, "csv").write(rec, _scores(rec))
    with pytest.raises(ParameterError, match="other settings.*clip_overlap"):
        OutputFolder(root, {**SETTINGS, "clip_overlap": 0.5}, "csv")
    fresh = OutputFolder(root, {**SETTINGS, "clip_overlap": 0.5}, "csv", overwrite=True)
    assert fresh.finished(rec) is None and not list((root / "scores").glob("*.csv"))
    assert json.loads((root / "run.json").read_text())["clip_overlap"] == 0.5


def test_manifest_line_cut_by_a_kill_does_not_swallow_the_next_record(tmp_path):
    root = tmp_path / "out"
    recs = _recordings(tmp_path, "r", 3)
    folder = OutputFolder(root, SETTINGS, "csv")
    folder.write(recs[0], _scores(recs[0]))
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write('{"key": "/cut/by/a/ki')  # a write cut short, no newline
    folder = OutputFolder(root, SETTINGS, "csv")
    folder.write(recs[1], _scores(recs[1]))
    folder.write(recs[2], _scores(recs[2]))
    assert all(OutputFolder(root, SETTINGS, "csv").finished(r) for r in recs)
    assert len(read_scores(root)) == 9


def test_read_scores_warns_about_missing_and_unlisted_score_files(tmp_path):
    root = tmp_path / "out"
    recs = _recordings(tmp_path, "r", 3)
    folder = OutputFolder(root, SETTINGS, "csv")
    outs = [folder.write(r, _scores(r)) for r in recs]
    outs[0].unlink()  # listed, but its scores are gone
    orphan = write_table(_scores("other.wav"), root / "scores" / "other-0123456789.csv", "csv")
    (root / "scores" / f".x.csv.{os.getpid()}-00000000.tmp.csv").write_text("half")  # ignored
    with pytest.warns(UserWarning) as record:
        table = read_scores(root)
    messages = " | ".join(str(w.message) for w in record)
    assert "1 recording(s) listed in manifest.jsonl have no score file" in messages
    assert outs[0].name in messages
    assert "1 score file(s) are not listed in manifest.jsonl" in messages and orphan.name in messages
    assert set(table.index.get_level_values("file")) == set(recs[1:])


def _hold_claim(root: str, path: str, claimed, release) -> None:
    folder = OutputFolder(root, SETTINGS, "csv")
    assert folder.claim(path)
    claimed.set()
    release.wait(60)


@needs_fcntl
def test_claims_split_work_between_live_jobs(tmp_path):
    ctx = multiprocessing.get_context("fork")
    root = tmp_path / "out"
    recs = _recordings(tmp_path, "r", 2)
    folder = OutputFolder(root, SETTINGS, "csv")
    claimed, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_claim, args=(str(root), recs[0], claimed, release))
    other.start()
    try:
        assert claimed.wait(60)
        assert not folder.claim(recs[0])  # the other live job has it
        assert folder.claim(recs[1]) and folder.claim(recs[1])
    finally:
        release.set()
        other.join(60)
    assert folder.claim(recs[0])  # its job ended: the claim went with it
    folder.release_all()
