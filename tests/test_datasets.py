"""Tests for soundscape.datasets on audio files written to tmp_path."""

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.annotations import clip_labels
from soundscape.datasets import MultiTargetAudioDataset, SingleTargetAudioDataset
from soundscape.errors import AudioFileError, ParameterError
from soundscape.preprocessing import Preprocessing

RATE = 8000
SMALL = dict(height=32, width=48, audio_sample_rate=RATE, window_samples=256, overlap_samples=128)


def _tone(freq, seconds=1.0, rate=RATE, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


@pytest.fixture
def table(tmp_path):
    rows = []
    for i, (freq, label) in enumerate([(500, 0), (3000, 1), (700, 0), (2500, 1)]):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, _tone(freq, seed=i), RATE)
        rows.append({"file": str(path), "label": label, "other": "x"})
    return pd.DataFrame(rows)


LABELS = {0: "absent", 1: "present"}


def test_item_shape_range_channels_and_equals_preprocessing_image(table):
    ds = SingleTargetAudioDataset(table, LABELS, filename_column="file", label_column="label", **SMALL)
    assert len(ds) == 4 and ds.label_dict == LABELS and ds.classes == ["absent", "present"]
    item = ds[1]
    x, y = item["X"], item["y"]
    assert x.shape == (3, 32, 48) and x.dtype == torch.float32
    assert y.shape == (1,) and y.dtype == torch.long and int(y) == 1
    assert x.min() >= -1 and x.max() <= 1 and x.min() < 0.5  # something loud is in there
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], x[2])
    pp = ds.preprocessing
    assert (pp.sample_rate, pp.height, pp.width, pp.window_samples) == (RATE, 32, 48, 256)
    expected = pp.image(pp.load_audio(table["file"][1]))
    torch.testing.assert_close(x, expected)
    # a DataLoader stacks items into batches
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["X"].shape == (4, 3, 32, 48) and batch["y"].shape == (4, 1)


def test_low_tone_sits_low_and_is_dark(table):
    ds = SingleTargetAudioDataset(table, LABELS, filename_column="file", **SMALL)
    x = ds[0]["X"][0]  # 500 Hz of a 4 kHz band: about 1/8 from the bottom
    darkest_row = int(x.mean(dim=1).argmin())
    assert darkest_row > 0.75 * x.shape[0]
    assert "y" not in ds[0]  # no label column: items for prediction


def test_default_image_is_224_and_preprocessing_can_be_passed(table):
    ds = SingleTargetAudioDataset(table.iloc[:1], LABELS, filename_column="file", label_column="label")
    assert ds[0]["X"].shape == (3, 224, 224) and ds.preprocessing.sample_rate == 22050
    pp = Preprocessing(sample_rate=RATE, height=20, width=30, window_samples=128, overlap_samples=64)
    ds = SingleTargetAudioDataset(table, LABELS, filename_column="file", preprocessing=pp)
    assert ds.preprocessing == pp and ds[0]["X"].shape == (3, 20, 30)
    with pytest.raises(ParameterError, match="disagrees"):
        SingleTargetAudioDataset(table, LABELS, filename_column="file", preprocessing=pp, height=64)
    with pytest.raises(ParameterError, match="unknown dataset arguments"):
        SingleTargetAudioDataset(table, LABELS, filename_column="file", hieght=64)


def test_missing_columns_and_bad_labels_are_named(table):
    with pytest.raises(KeyError, match=r"'Destination'.*'file', 'label', 'other'"):
        SingleTargetAudioDataset(table, LABELS)
    with pytest.raises(KeyError, match=r"'numeric'.*'file', 'label'"):
        SingleTargetAudioDataset(table, LABELS, filename_column="file", label_column="numeric")
    bad = table.assign(label=[0, 1, 2, 1])
    with pytest.raises(ParameterError, match=r"row 2.*label 2.*label_dict"):
        SingleTargetAudioDataset(bad, LABELS, filename_column="file", label_column="label")
    with pytest.raises(ParameterError, match="numeric label -> name"):
        SingleTargetAudioDataset(table, {"absent": 0}, filename_column="file")


def test_unreadable_clip_raises_naming_the_file(table, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav file" * 10)
    missing = tmp_path / "missing.wav"
    t = pd.concat([table, pd.DataFrame({"file": [str(broken), str(missing)], "label": [0, 1]})],
                  ignore_index=True)
    ds = SingleTargetAudioDataset(t, LABELS, filename_column="file", label_column="label", **SMALL)
    with pytest.raises(AudioFileError, match="broken.wav"):
        ds[4]
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        ds[5]
    short = tmp_path / "short.wav"
    sf.write(short, _tone(500, seconds=0.01), RATE)  # shorter than one window
    ds = SingleTargetAudioDataset(pd.DataFrame({"file": [str(short)]}), LABELS, filename_column="file", **SMALL)
    with pytest.raises(ParameterError, match="short.wav"):
        ds[0]


def test_multi_target_items_are_multi_hot(table):
    t = table.assign(low=[1, 0, 1, 0], high=[0, 1, 0, 1])[["file", "low", "high"]]
    ds = MultiTargetAudioDataset(t, filename_column="file", **SMALL)
    assert ds.classes == ["low", "high"] and ds.multi_target and ds.label_dict == {0: "low", 1: "high"}
    y = ds[1]["y"]
    assert y.dtype == torch.float32 and y.tolist() == [0.0, 1.0]
    with pytest.raises(ParameterError, match=r"row 0, column 'low'"):
        MultiTargetAudioDataset(t.assign(low=[5, 0, 1, 0]), filename_column="file", **SMALL)
    with pytest.raises(KeyError, match="mid"):
        MultiTargetAudioDataset(t, classes=["mid"], filename_column="file", **SMALL)


def test_clip_table_of_a_long_recording_loads_by_offset(tmp_path):
    long = tmp_path / "long.wav"
    audio = np.concatenate([_tone(500, 1.0), _tone(3000, 1.0), _tone(500, 1.0)])
    sf.write(long, audio, RATE)
    ann = pd.DataFrame({"file": [str(long)], "start_time": [1.1], "end_time": [1.9], "annotation": ["high"]})
    clips = clip_labels(ann, clip_duration=1.0, classes=["high"])
    assert list(clips.index.names) == ["file", "start_time", "end_time"] and len(clips) == 3
    ds = MultiTargetAudioDataset(clips, **SMALL)
    assert [float(ds[i]["y"][0]) for i in range(3)] == [0.0, 1.0, 0.0]
    pp = ds.preprocessing
    torch.testing.assert_close(ds[1]["X"], pp.image(pp.load_audio(long, offset=1.0, duration=1.0)))
    assert not torch.allclose(ds[0]["X"], ds[1]["X"])
    assert ds.clip_path(1) == f"{long} [1-2 s]"


def test_augmentations_change_inputs_but_keep_contract(table):
    torch.manual_seed(0)
    ds = SingleTargetAudioDataset(
        table, LABELS, filename_column="file", label_column="label", add_noise=True,
        max_overlay_num=1, overlay_prob=1.0, overlay_weight=0.5, time_masks=1, frequency_masks=1,
        random_trim_length=0.5, **SMALL)
    assert ds.preprocessing.clip_duration == 0.5 and ds.augmenting
    a, b = ds[0]["X"], ds[0]["X"]
    assert a.shape == (3, 32, 48) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a[0], a[2])
    assert not torch.equal(a, b)  # random each time
    assert int(ds[0]["y"]) == 0  # overlays keep the single-target label
    # overlays come from the other class: a low tone gets high-frequency energy
    plain = SingleTargetAudioDataset(table, LABELS, filename_column="file", label_column="label", **SMALL)
    mixed = SingleTargetAudioDataset(table, LABELS, filename_column="file", label_column="label",
                                     max_overlay_num=1, overlay_prob=1.0, overlay_weight=0.5, **SMALL)
    band = slice(4, 12)  # rows around 2.5-3 kHz (the image's top is 4 kHz)
    assert mixed[0]["X"][0, band].min() < plain[0]["X"][0, band].min() - 0.2
    with pytest.raises(ParameterError, match="overlay_class"):
        SingleTargetAudioDataset(table, LABELS, filename_column="file", label_column="label",
                                 max_overlay_num=1, overlay_class="bird", **SMALL)


def test_extend_short_clips_loops_instead_of_padding(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, _tone(1000, seconds=0.5), RATE)
    df = pd.DataFrame({"file": [str(path)], "label": [1]})
    padded = SingleTargetAudioDataset(df, LABELS, filename_column="file", clip_duration=1.0, **SMALL)
    looped = SingleTargetAudioDataset(df, LABELS, filename_column="file", clip_duration=1.0,
                                      extend_short_clips=True, **SMALL)
    assert looped.preprocessing.short_clip == "extend"
    right = slice(30, 48)  # second half of the clip: silence when padded, tone when looped
    assert padded[0]["X"][0, :, right].min() > 0.9
    assert looped[0]["X"][0, :, right].min() < 0
