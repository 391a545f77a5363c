"""Model files: round trips, format versions, bad files, training checkpoints."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from soundscape.errors import ModelFileError
from soundscape.model_file import FORMAT_VERSION, Detector, load_model, model_payload
from soundscape.preprocessing import Preprocessing
from soundscape.torch.models import build, register

PREP = Preprocessing(sample_rate=8000, clip_duration=0.5, window_samples=128, overlap_samples=64,
                     height=24, width=24, channels=3, n_mels=None, min_frequency=100.0)


@register("test_mf_tiny")
def _tiny(num_classes: int, width: int = 4) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3), torch.nn.BatchNorm2d(width), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * width, num_classes))


def _detector(multi_target=False, width=4, classes=("woodcock", "absent")) -> Detector:
    torch.manual_seed(3)
    net = build("test_mf_tiny", len(classes), width=width)
    net.train()
    with torch.no_grad():  # non-trivial BatchNorm running statistics
        for _ in range(3):
            net(torch.randn(8, 3, 24, 24) * 2 + 1)
    return Detector(net, "test_mf_tiny", list(classes), multi_target, PREP, {"width": width},
                    {"epoch": np.int64(7), "f1": np.float32(0.5), "per_class": np.array([0.25, 0.75])})


def test_round_trip_is_bit_for_bit(tmp_path):
    det = _detector(multi_target=True, width=5)
    path = det.save(tmp_path / "sub" / "best.model")
    loaded = load_model(path)
    x = torch.randn(6, 3, 24, 24)
    det.eval()
    with torch.inference_mode():
        assert torch.equal(det(x), loaded(x))
    assert not loaded.training
    assert loaded.classes == ["woodcock", "absent"] and loaded.multi_target is True
    assert loaded.preprocessing == PREP and loaded.preprocessing.to_dict() == PREP.to_dict()
    assert loaded.architecture == "test_mf_tiny" and loaded.architecture_kwargs == {"width": 5}
    assert loaded.metadata == {"epoch": 7, "f1": 0.5, "per_class": [0.25, 0.75]}
    assert loaded.default_activation == "sigmoid"
    assert not list(tmp_path.joinpath("sub").glob(".best.model.*"))  # no temp file left


def test_resnet18_round_trip(tmp_path):
    torch.manual_seed(0)
    prep = PREP.replace(height=32, width=32)
    det = Detector(build("resnet18", 3), "resnet18", ["a", "b", "c"], False, prep)
    loaded = load_model(det.save(tmp_path / "r.model"))
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(det.eval()(x), loaded(x))
    payload = torch.load(tmp_path / "r.model", weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["soundscape_version"] and payload["preprocessing"]["sample_rate"] == 8000


def test_torch_layers_network_loads_without_trust(tmp_path):
    from soundscape.torch.models import identify

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(2, 2))
    arch, kwargs = identify(net, 2)
    det = Detector(build(arch, 2, **kwargs), arch, ["a", "b"], False, PREP, kwargs)
    loaded = load_model(det.save(tmp_path / "seq.model"))
    x = torch.randn(2, 3, 24, 24)
    with torch.inference_mode():
        assert torch.equal(det.eval()(x), loaded(x))


class _OwnNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean(dim=(2, 3)))


def test_own_classes_need_trusted(tmp_path):
    from soundscape.torch.models import identify

    arch, kwargs = identify(_OwnNet(), 2)
    path = Detector(build(arch, 2, **kwargs), arch, ["a", "b"], False, PREP, kwargs).save(tmp_path / "o.model")
    with pytest.raises(ModelFileError, match="trusted=True") as info:
        load_model(path)
    assert str(path) in str(info.value) and "_OwnNet" in str(info.value)
    assert load_model(path, trusted=True).classes == ["a", "b"]


def test_newer_format_version_is_refused(tmp_path):
    payload = model_payload(_detector())
    payload["format_version"] = FORMAT_VERSION + 1
    payload["soundscape_version"] = "99.0"
    path = tmp_path / "future.model"
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="newer soundscape") as info:
        load_model(path)
    assert str(path) in str(info.value) and "99.0" in str(info.value) and "Upgrade" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_files_name_the_file(tmp_path, damage):
    good = _detector().save(tmp_path / "good.model").read_bytes()
    path = tmp_path / f"{damage}.model"
    path.write_bytes({"truncated": good[: len(good) // 2], "garbage": b"\x00not a model" * 50,
                      "empty": b""}[damage])
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["state_dict", "tensor", "other_dict"])
def test_other_torch_files_are_not_models(tmp_path, content):
    det = _detector()
    obj = {"state_dict": det.network.state_dict(), "tensor": torch.ones(3),
           "other_dict": {"format_version": 1, "format": "someone-else"}}[content]
    path = tmp_path / "random.pt"
    torch.save(obj, path)
    with pytest.raises(ModelFileError, match="not a soundscape model file") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_missing_file_and_bad_contents(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.model"):
        load_model(tmp_path / "nowhere.model")
    payload = model_payload(_detector())
    payload["architecture"] = "no_such_architecture"
    torch.save(payload, tmp_path / "arch.model")
    with pytest.raises(ModelFileError, match="no_such_architecture.*not registered"):
        load_model(tmp_path / "arch.model")
    payload = model_payload(_detector())
    payload["classes"] = ["a", "b", "c"]  # 3 classes, weights for 2
    torch.save(payload, tmp_path / "shape.model")
    with pytest.raises(ModelFileError, match="do not fit") as info:
        load_model(tmp_path / "shape.model")
    assert "shape.model" in str(info.value)
    payload = model_payload(_detector())
    del payload["preprocessing"]
    torch.save(payload, tmp_path / "partial.model")
    with pytest.raises(ModelFileError, match=r"missing \['preprocessing'\]"):
        load_model(tmp_path / "partial.model")


def test_training_checkpoint_and_best_model_load(tmp_path):
    train_mod = pytest.importorskip("soundscape.torch.train")
    datasets = pytest.importorskip("soundscape.datasets")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        t = np.arange(4000) / 8000
        x = rng.standard_normal(4000) * 0.05 + (0.5 * np.sin(2 * np.pi * 1500 * t) if i % 2 else 0)
        sf.write(tmp_path / f"c{i}.wav", x.astype(np.float32), 8000)
        rows.append((str(tmp_path / f"c{i}.wav"), i % 2))
    df = pd.DataFrame(rows, columns=["Destination", "label"])
    ds = datasets.SingleTargetAudioDataset(df, {0: "absent", 1: "tone"}, label_column="label",
                                          preprocessing=PREP)
    net = build("test_mf_tiny", 2)
    train_mod.train(tmp_path / "run", net, ds, ds, torch.optim.SGD(net.parameters(), lr=0.01),
                    torch.nn.CrossEntropyLoss(), epochs=1, batch_size=4, log_every=1,
                    progress_bar=False, print_logging=False)
    checkpoint = load_model(tmp_path / "run" / "epoch-0.tar")
    best = load_model(tmp_path / "run" / "best.model")
    assert checkpoint.classes == best.classes == ["absent", "tone"]
    assert checkpoint.preprocessing == PREP and checkpoint.architecture == "test_mf_tiny"
    x = torch.randn(2, 3, 24, 24)
    with torch.inference_mode():
        assert torch.equal(checkpoint(x), best(x))


def test_model_files_of_the_previous_layout_still_load(tmp_path):
    """Files written before the one-engine redesign: classic preprocessing without the new
    keys, and config models whose front-end settings sat in an ``extra`` entry."""
    import soundscape.workflow  # noqa: F401  (registers config_model)
    from soundscape.model_file import model_payload
    from soundscape.workflow.model import ConfigModel, make_detector

    old_classic = Preprocessing(clip_duration=1.0).to_dict()
    for key in ("feature", "n_fft", "norm"):
        old_classic.pop(key)
    config = {"input_features": [{"name": "audio", "type": "audio", "encoder": {"type": "stacked_cnn"},
                                  "preprocessing": {"type": "fbank", "sample_rate": 8000,
                                                    "audio_file_length_limit_in_s": 0.5,
                                                    "num_filter_bands": 20}}],
              "output_features": [{"name": "label", "type": "category"}]}
    from soundscape.config import load_config

    conf = load_config(config).to_dict()
    meta = {"label": {"type": "category", "idx2str": ["a", "b"], "str2idx": {"a": 0, "b": 1}, "vocab_size": 2}}
    detector = make_detector(ConfigModel(conf, meta, 2))
    payload = model_payload(detector)
    settings = dict(conf["input_features"][0]["preprocessing"])
    payload["preprocessing"] = {"sample_rate": 8000, "clip_duration": 0.5, "short_clip": "pad",
                                "window_type": "hamming", "window_samples": 200, "overlap_samples": 120,
                                "n_mels": 20, "extra": {"audio_feature": settings}}
    torch.save(payload, tmp_path / "old_config.pt")
    loaded = load_model(tmp_path / "old_config.pt")
    assert loaded.preprocessing == detector.preprocessing and loaded.preprocessing.feature == "fbank"
    x = detector.preprocessing.features(torch.randn(2, 4000))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), detector.eval()(x))
    classic = model_payload(Detector(build("resnet18", 2), "resnet18", ["a", "b"], False, Preprocessing()))
    classic["preprocessing"] = old_classic
    torch.save(classic, tmp_path / "old_classic.model")
    assert load_model(tmp_path / "old_classic.model").preprocessing == Preprocessing(clip_duration=1.0)
