"""embed / fit_head / the agile loop with a toy backbone (needs no optional package).

The toy backbone's embedding is the log energy of a clip in 16 frequency bands, enough to
tell the sample woodcock clips apart; every code path but BirdNET's own runs here.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import soundscape
from soundscape.errors import ParameterError
from soundscape.pretrained import (
    Backbone,
    EmbeddingStore,
    head_scores,
    read_review,
    round_metrics,
    select_for_review,
    similarity_search,
    write_review,
)
from soundscape.pretrained import backbone as backbone_module
from soundscape.workflow import inference

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "woodcock_labeled_data"


class Bands(Backbone):
    """Log energy in 16 equal frequency bands of a 2-s clip at 22.05 kHz."""

    name = "bands"
    sample_rate = 22050
    clip_duration = 2.0
    embedding_size = 16

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.init_kwargs = {"scale": scale}
        self.scale = scale

    def _infer(self, waveforms, logits):
        power = np.abs(np.fft.rfft(waveforms, axis=1)) ** 2
        bands = np.array_split(power, 16, axis=1)
        return self.scale * np.log10(np.stack([b.sum(1) for b in bands], 1) + 1e-6), None


@pytest.fixture
def bands(monkeypatch):
    monkeypatch.setitem(backbone_module._REGISTRY, "bands", Bands)
    return Bands()


@pytest.fixture(scope="module")
def labels():
    table = pd.read_csv(SAMPLE / "woodcock_labels.csv")
    table["file"] = [str(SAMPLE / f) for f in table.filename]
    return table


def brute_force(vectors, queries, k):
    a = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(a @ q.T).max(1), kind="stable")[:k]


def test_similarity_search_matches_brute_force_across_blocks():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 32)).astype(np.float32)
    queries = vectors[[7, 99]] + 0.01
    expected = brute_force(vectors, queries, 25)
    for block_rows in (64, 1000, 10_000):
        found = similarity_search(vectors, queries, k=25, block_rows=block_rows)
        assert found.row.tolist() == expected.tolist()
    assert found.row.iloc[0] in (7, 99) and found.similarity.iloc[0] > 0.99
    mean = similarity_search(vectors, queries, k=3, combine="mean")
    assert len(mean) == 3
    with pytest.raises(ParameterError, match="combine"):
        similarity_search(vectors, queries, combine="min")


def test_select_for_review_strategies():
    index = pd.MultiIndex.from_arrays([["a.wav"] * 100, np.arange(100.0), np.arange(100.0) + 1],
                                      names=["file", "start_time", "end_time"])
    scores = pd.DataFrame({"bird": np.linspace(0, 1, 100), "other": 0.5}, index=index)
    top = select_for_review(scores, n=5, column="bird")
    assert top.score.tolist() == sorted(top.score, reverse=True) and top.score.iloc[0] == 1.0
    unsure = select_for_review(scores, n=4, strategy="uncertain", column="bird", threshold=0.3)
    assert (abs(unsure.score - 0.3) < 0.03).all()
    spread = select_for_review(scores, n=10, strategy="stratified", column="bird", bins=5)
    assert np.histogram(spread.score, bins=5, range=(0, 1))[0].tolist() == [2] * 5
    again = select_for_review(scores, n=5, column="bird", exclude=top)
    assert not set(again.start_time) & set(top.start_time)
    with pytest.raises(ParameterError, match="name one with column="):
        select_for_review(scores, n=5)


def test_embed_head_and_review_loop_with_a_toy_backbone(bands, labels, tmp_path):
    files = labels.file.tolist()
    store = soundscape.embed(bands, files[:10], output_dir=tmp_path / "emb", progress=False)
    store = soundscape.embed(bands, files, output_dir=tmp_path / "emb", progress=False)
    assert (store.summary["n_skipped"], store.summary["n_scored"], len(store)) == (10, 19, 29)
    assert EmbeddingStore(tmp_path / "emb").info["backbone"] == "bands"
    with pytest.raises(ParameterError, match="another backbone"):
        soundscape.embed(Bands(scale=2.0), files, output_dir=tmp_path / "emb", progress=False)

    # round 1: search from two examples, review the top hits, fit a head
    present = labels[labels.woodcock == "present"].file.tolist()
    examples = store.lookup(pd.DataFrame({"file": present[:2], "start_time": 0.0, "end_time": 2.0}))
    hits = similarity_search(store, examples, k=10, exclude=examples)
    picked = select_for_review(hits, n=10)
    table_path = write_review(picked, tmp_path / "round1", padding=0.5)
    table = pd.read_csv(table_path)
    truth = dict(zip(labels.file, labels.woodcock))
    table["label"] = [truth[f] for f in table.file]
    table.to_csv(table_path, index=False)
    reviewed = read_review(table_path, classes=["present", "absent"])
    assert len(reviewed) == 10
    train = pd.concat([store.lookup(reviewed), examples])
    y = reviewed.label.tolist() + ["present", "present"]
    if len(set(y)) < 2:  # the search found only woodcocks: add two known absences
        absent = labels[labels.woodcock == "absent"].file.tolist()[:2]
        train = pd.concat([train, store.lookup(pd.DataFrame(
            {"file": absent, "start_time": 0.0, "end_time": 2.0}))])
        y += ["absent", "absent"]
    head = soundscape.fit_head(train, y, backbone=bands)
    scores = head_scores(head, store)
    assert len(scores) == 29 and list(scores.columns) == ["absent", "present"]
    is_present = pd.Series([truth[f] == "present" for f in scores.index.get_level_values("file")],
                           index=scores.index)
    metrics = round_metrics(scores["present"], is_present, threshold=0.5)
    assert metrics["average_precision"] > 0.8, metrics

    # the head is a model file that reads audio, through every door
    path = head.save(tmp_path / "woodcock.model")
    loaded = soundscape.load_model(path)
    assert sorted(torch.load(path, weights_only=True)["state_dict"]) == ["head.0.bias", "head.0.weight"]
    from_audio = soundscape.predict_recordings(loaded, files[:5], progress=False)
    np.testing.assert_allclose(from_audio.to_numpy(), scores.loc[files[:5]].to_numpy(), atol=1e-5)
    preds, _ = inference.predict(path, pd.DataFrame({"file": files[:5]}), progress=False)
    np.testing.assert_allclose(preds["label_probabilities_present"], scores.loc[files[:5], "present"],
                               atol=1e-5)
    table = pd.DataFrame({"file": files, "label": [truth[f] for f in files]})
    stats, _, _ = inference.evaluate(path, table, progress=False)
    assert stats["label"]["accuracy"] > 0.7
    from soundscape.detections import detections

    events = detections(from_audio, threshold=loaded.metadata["thresholds"], classes=["present"])
    assert set(events.columns) >= {"file", "annotation", "start_time", "end_time"}


def test_fit_head_checks_its_inputs(bands):
    x = np.random.default_rng(0).normal(size=(12, 16))
    with pytest.raises(ParameterError, match="one label per row"):
        soundscape.fit_head(x, ["a", "b"] * 5, backbone=bands)
    with pytest.raises(ParameterError, match="at least two classes"):
        soundscape.fit_head(x, ["a"] * 12, backbone=bands)
    with pytest.raises(ParameterError, match="16-d"):
        soundscape.fit_head(x[:, :8], ["a", "b"] * 6, backbone=bands)
    with pytest.raises(ParameterError, match="kind"):
        soundscape.fit_head(x, ["a", "b"] * 6, kind="svm", backbone=bands)
    multi = pd.DataFrame({"a": [0, 1] * 6, "b": [1, 1, 0] * 4})
    head = soundscape.fit_head(x + multi.a.to_numpy()[:, None], multi, backbone=bands)
    assert head.multi_target and head.classes == ["a", "b"] and head.default_activation == "sigmoid"
    assert set(head.metadata["thresholds"]) == {"a", "b"}


def test_head_on_an_onnx_backbone_is_a_self_contained_model_file(labels, tmp_path):
    """An ONNX backbone's bytes travel in the state dict: embed resumes, the head file loads."""
    pytest.importorskip("onnxruntime", reason='needs the onnx extra: pip install "soundscape[onnx]"')
    pytest.importorskip("onnx", reason='needs the onnx extra: pip install "soundscape[onnx]"')
    import io
    import warnings

    from soundscape.pretrained import OnnxBackbone

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv1d(1, 8, kernel_size=256, stride=128)

        def forward(self, waveform):
            return self.conv(waveform[:, None]).abs().mean(-1)

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Encoder().eval(), (torch.randn(2, 44100),), buffer, dynamo=False,
                          input_names=["waveform"], output_names=["embedding"],
                          dynamic_axes={"waveform": {0: "batch"}, "embedding": {0: "batch"}})
    (tmp_path / "encoder.onnx").write_bytes(buffer.getvalue())
    backbone = OnnxBackbone(buffer.getvalue(), sample_rate=22050, clip_duration=2.0)
    files = labels.file.tolist()[:8]
    by_name = soundscape.embed("onnx", files[:4], progress=False, backbone_kwargs={
        "path": tmp_path / "encoder.onnx", "sample_rate": 22050, "clip_duration": 2.0})
    store = soundscape.embed(backbone, files[:4], output_dir=tmp_path / "emb", progress=False)
    np.testing.assert_allclose(store.to_pandas().to_numpy(), by_name.to_numpy(), atol=1e-6)
    store = soundscape.embed(backbone, files, output_dir=tmp_path / "emb", progress=False)
    assert store.summary["n_skipped"] == 4 and len(store) == 8
    x = store.to_pandas()
    y = labels.set_index("file").loc[x.index.get_level_values("file"), "woodcock"].tolist()
    head = soundscape.fit_head(x, y, backbone=backbone)
    path = head.save(tmp_path / "onnx_head.model")
    loaded = soundscape.load_model(path)
    assert "backbone.model_bytes" in torch.load(path, weights_only=True)["state_dict"]
    np.testing.assert_allclose(soundscape.predict(loaded, files).to_numpy(),
                               head_scores(head, x).to_numpy(), atol=1e-5)
