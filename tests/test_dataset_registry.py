import io
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundscape import dataset_registry as reg
from soundscape.errors import ParameterError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Downloads go to a temporary cache; the current folder is a temporary one."""
    monkeypatch.setenv("SOUNDSCAPE_DATASETS_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SOUNDSCAPE_DATA_ROOT", raising=False)
    monkeypatch.delenv("SOUNDSCAPE_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)


def wav_bytes(seconds=0.2, rate=8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(rate * seconds), dtype=np.float32), rate, format="WAV")
    return buf.getvalue()


def fake_esc50(path: Path) -> Path:
    meta = pd.DataFrame({"filename": ["1-1-A-0.wav", "2-2-A-1.wav"], "fold": [1, 2], "target": [0, 1],
                         "category": ["dog", "rooster"], "esc10": [True, True], "src_file": [1, 2],
                         "take": ["A", "A"]})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("ESC-50-master/meta/esc50.csv", meta.to_csv(index=False))
        for name in meta["filename"]:
            z.writestr(f"ESC-50-master/audio/{name}", wav_bytes())
    return path


def test_registry_lists_the_public_and_local_sets():
    names = [d.name for d in reg.list_datasets()]
    assert {"emodb", "esc50", "woodcock", "sample_woodcock", "esc10", "fsdd"} <= set(names)
    assert all(d.url for d in reg.list_datasets() if d.kind == "download")
    assert reg.is_uri("ludwig://emodb") and reg.is_uri("soundscape://esc10") and not reg.is_uri("data.csv")
    with pytest.raises(ParameterError, match="unknown data set 'emodbb'"):
        reg.resolve("soundscape://emodbb")


def test_offline_download_fails_at_once_naming_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDSCAPE_OFFLINE", "1")
    with pytest.raises(reg.DatasetUnavailableError) as info:
        reg.download("esc50", tmp_path / "out")
    text = str(info.value)
    assert "https://github.com/karolpiczak/ESC-50/archive/master.zip" in text
    assert str(tmp_path / "out" / "ESC-50-master.zip") in text


def test_unreachable_server_fails_quickly_without_retry(tmp_path):
    with socket.socket() as s:  # a local port nobody listens on: refused at once, no network used
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    with pytest.raises(reg.DatasetUnavailableError, match=rf"could not download emodb from http://127.0.0.1:{port}/x.zip"):
        reg.download("emodb", tmp_path, url=f"http://127.0.0.1:{port}/x.zip", timeout=2)
    assert time.time() - start < 5
    assert not list(tmp_path.glob("*.part"))


def test_archive_placed_by_hand_is_prepared_and_uri_resolves(tmp_path):
    fake_esc50(tmp_path / "ESC-50-master.zip")
    csv = reg.download("esc50", tmp_path)
    frame = pd.read_csv(csv)
    assert list(frame.columns) == ["audio_path", "target", "target_id", "fold", "esc10", "src_file"]
    assert frame["target"].tolist() == ["dog", "rooster"]
    assert all((csv.parent / p).is_file() for p in frame["audio_path"])  # relative to the CSV
    assert reg.resolve("ludwig://esc50") == Path.cwd() / "esc50.csv"
    assert reg.download("esc50", tmp_path) == csv  # already there: nothing to do


def test_emodb_names_become_emotion_gender_and_age(tmp_path):
    with zipfile.ZipFile(tmp_path / "emodb.zip", "w") as z:
        for name in ("03a01Wa.wav", "08b10Lb.wav", "16b10Td.wav", "readme.wav"):
            z.writestr(f"wav/{name}", wav_bytes())
    frame = pd.read_csv(reg.download("emodb", tmp_path))
    assert frame[["emotion", "gender", "age", "speaker"]].values.tolist() == [
        ["anger", "male", 31, 3], ["boredom", "female", 34, 8], ["sadness", "female", 31, 16]]


def test_archive_members_outside_the_folder_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "emodb.zip", "w") as z:
        z.writestr("../evil.wav", wav_bytes())
    with pytest.raises(reg.DatasetUnavailableError, match="refusing to extract"):
        reg.download("emodb", tmp_path)
    assert not (tmp_path.parent / "evil.wav").exists()


def test_not_downloaded_uri_says_what_to_do():
    with pytest.raises(reg.DatasetUnavailableError, match="soundscape datasets download woodcock"):
        reg.resolve("soundscape://woodcock")


def test_local_sets_need_a_data_root(tmp_path):
    with pytest.raises(reg.DatasetUnavailableError, match="--data_root"):
        reg.resolve("soundscape://fsdd")
    root = tmp_path / "root"
    (root / "fsdd" / "audio").mkdir(parents=True)
    (root / "fsdd" / "audio" / "0_a_0.wav").write_bytes(wav_bytes())
    pd.DataFrame({"filename": ["audio/0_a_0.wav"], "label": [0], "speaker": ["a"], "index": [0],
                  "split": ["test"]}).to_csv(root / "fsdd" / "labels.csv", index=False)
    csv = reg.resolve("soundscape://fsdd", data_root=root)
    frame = pd.read_csv(csv)
    assert frame.columns.tolist() == ["audio", "label", "speaker", "index", "split"]
    assert Path(frame["audio"][0]).is_file()


@pytest.mark.skipif(not (SHARED / "esc10" / "labels.csv").is_file(), reason=f"no ESC-10 copy at {SHARED}")
def test_real_esc10_copy(tmp_path):
    frame = pd.read_csv(reg.download("esc10", tmp_path, data_root=SHARED))
    assert len(frame) == 400 and frame["label"].nunique() == 10 and sorted(frame["fold"].unique()) == [1, 2, 3, 4, 5]
    assert Path(frame["audio"][0]).is_file()


def test_sample_woodcock_writes_a_csv_of_the_sample_clips(tmp_path):
    csv = reg.download("sample_woodcock", tmp_path)
    frame = pd.read_csv(csv)
    assert len(frame) == 29 and set(frame["woodcock"]) == {"present", "absent"}
    assert all(Path(p).is_file() for p in frame["audio"])


def test_load_gives_train_test_validation_frames(tmp_path):
    fake_esc50(tmp_path / "ESC-50-master.zip")
    reg.download("esc50", tmp_path)
    train_df, test_df, val_df = reg.load("esc50", probabilities=(0.5, 0.5, 0.0))
    assert len(train_df) == len(test_df) == 1 and len(val_df) == 0
    assert Path(train_df["audio_path"][0]).is_absolute() and Path(train_df["audio_path"][0]).is_file()
