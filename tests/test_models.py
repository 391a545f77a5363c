"""Tests for soundscape.torch.models: architectures and offline weights."""

import pytest
import torch
import torchvision

from soundscape.errors import ParameterError, WeightsNotFoundError
from soundscape.torch import models
from soundscape.torch.models import RESNET18_IMAGENET_FILE, build, identify, resnet18


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub folder and no network (downloads fail like they do offline)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, *args, **kwargs):
        raise OSError(f"network unreachable: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_resnet18_from_scratch_has_num_classes_outputs():
    net = resnet18(3)
    assert isinstance(net.fc, torch.nn.Linear) and net.fc.out_features == 3
    net.eval()
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    assert build("resnet18", 2).fc.out_features == 2
    with pytest.raises(ParameterError, match="num_classes"):
        resnet18(0)
    with pytest.raises(ParameterError, match="known: .*resnet18"):
        build("resnet9000", 2)


def test_imagenet_offline_without_cached_weights_says_where_to_put_them(offline_hub):
    with pytest.raises(WeightsNotFoundError) as info:
        resnet18(2, weights="imagenet")
    message = str(info.value)
    assert str(offline_hub / RESNET18_IMAGENET_FILE) in message
    assert "weights=None" in message
    assert models.imagenet_weights_path() == offline_hub / RESNET18_IMAGENET_FILE


def test_imagenet_weights_placed_in_the_cache_are_used(offline_hub):
    source = torchvision.models.resnet18(weights=None)  # stands in for the ImageNet file
    offline_hub.mkdir(parents=True)
    torch.save(source.state_dict(), offline_hub / RESNET18_IMAGENET_FILE)
    net = resnet18(2, weights="imagenet")
    assert torch.equal(net.conv1.weight, source.conv1.weight)
    assert net.fc.out_features == 2


def test_local_weights_file_is_loaded_and_fc_replaced(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "my_resnet.pth"
    torch.save(source.state_dict(), path)
    net = resnet18(5, weights=path)
    assert torch.equal(net.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert net.fc.out_features == 5 and net.fc.in_features == 512
    with pytest.raises(WeightsNotFoundError, match="weights file not found: .*nope.pth"):
        resnet18(2, weights=tmp_path / "nope.pth")
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 3).state_dict(), other)
    with pytest.raises(WeightsNotFoundError, match="not ResNet18 weights"):
        resnet18(2, weights=other)


def test_identify_torchvision_resnet18_and_other_modules():
    tv = torchvision.models.resnet18(weights=None)
    tv.fc = torch.nn.Linear(tv.fc.in_features, 2)  # the classic tutorial's recipe
    assert identify(tv, 2) == ("resnet18", {})
    wrong_outputs = identify(tv, 3)
    assert wrong_outputs[0] == models.PICKLED_MODULE
    small = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    name, kwargs = identify(small, 2)
    assert name == models.PICKLED_MODULE and kwargs["module"] is small
    rebuilt = build(name, 2, **kwargs)
    assert rebuilt is not small
    x = torch.randn(1, 3, 2, 2)
    assert torch.equal(rebuilt(x), small(x))
