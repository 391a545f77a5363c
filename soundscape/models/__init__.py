"""Model architectures, by name, and loading of pretrained weights from local files.

Nothing here downloads at run time unless torchvision can (and is allowed to); when
weights cannot be had, the error says where to put the file and how to train from
scratch instead.
"""

from __future__ import annotations

import copy
import importlib
import os
from pathlib import Path
from typing import Callable

import torch
import torchvision

from ..errors import ParameterError, WeightsNotFoundError

#: torchvision's file name for the ImageNet ResNet18 weights
RESNET18_IMAGENET_FILE = "resnet18-f37072fd.pth"

_ARCHITECTURES: dict[str, Callable[..., torch.nn.Module]] = {}
#: architecture -> function(clip_duration) giving the Preprocessing it is built for
_PREPROCESSING: dict[str, Callable] = {}
#: architectures registered by modules that are imported only when needed
_LAZY_MODULES = {
    "config_model": "soundscape.workflow.model",
    # networks on frozen pretrained backbones (soundscape.pretrained.networks)
    "birdnet": "soundscape.pretrained.networks",
    "backbone_embedding": "soundscape.pretrained.networks",
    "backbone_head": "soundscape.pretrained.networks",
}


def register(name: str, preprocessing: Callable | None = None):
    """Decorator adding a model constructor `fn(num_classes, **kwargs)` to the registry.

    `preprocessing(sample_rate=..., clip_duration=...)`, if given, returns the
    `Preprocessing` the architecture is built for; `train()` uses it for datasets made
    without one.
    """

    def wrap(fn):
        _ARCHITECTURES[name] = fn
        if preprocessing is not None:
            _PREPROCESSING[name] = preprocessing
        return fn

    return wrap


def default_preprocessing(architecture: str, sample_rate: int, clip_duration: float | None):
    """The `Preprocessing` `architecture` is built for at this rate and clip length, or None
    when it takes the default one."""
    fn = _PREPROCESSING.get(architecture)
    return None if fn is None else fn(sample_rate=sample_rate, clip_duration=clip_duration)


def build(architecture: str, num_classes: int, **kwargs) -> torch.nn.Module:
    """Construct a registered architecture by name (used when loading model files)."""
    if architecture not in _ARCHITECTURES and architecture in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[architecture])  # registers it on import
    if architecture not in _ARCHITECTURES:
        raise ParameterError(f"unknown architecture {architecture!r}; known: {sorted(_ARCHITECTURES)}")
    return _ARCHITECTURES[architecture](num_classes=num_classes, **kwargs)


def architectures() -> list[str]:
    """Names of the registered architectures (those registered on first use included)."""
    return sorted(set(_ARCHITECTURES) | set(_LAZY_MODULES))


def imagenet_weights_path() -> Path:
    """Where torchvision keeps (and we look for) the ImageNet ResNet18 weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_IMAGENET_FILE


def _load_state_dict(path: Path) -> dict:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for bad files
        raise WeightsNotFoundError(f"{path}: could not read weights ({exc})") from exc
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    return state


@register("resnet18")
def resnet18(num_classes: int, weights: str | os.PathLike | None = None) -> torch.nn.Module:
    """torchvision ResNet18 with `fc` replaced by ``Linear(512, num_classes)``.

    Parameters
    ----------
    num_classes : int
        Number of outputs (2 for present/absent, or the number of species).
    weights : None, "imagenet" or path
        None: random initialisation. "imagenet": torchvision's ImageNet weights from
        the local torch cache (see `imagenet_weights_path`), downloaded only if that is
        possible. A path: a local ``.pth`` state dict (with or without ``fc``).
    """
    if int(num_classes) < 1:
        raise ParameterError(f"num_classes must be >= 1, got {num_classes}")
    model = torchvision.models.resnet18(weights=None)
    if weights is not None:
        if weights == "imagenet":
            path = imagenet_weights_path()
            if not path.exists():
                try:
                    torchvision.models.resnet18(weights=torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
                except Exception as exc:
                    raise WeightsNotFoundError(
                        "ImageNet weights for ResNet18 are not available offline and could not be "
                        f"downloaded ({type(exc).__name__}). Put the file {RESNET18_IMAGENET_FILE} "
                        f"(from torchvision's model zoo) at {path}, or pass weights='/path/to/file.pth', "
                        "or train from scratch with weights=None."
                    ) from exc
            state = _load_state_dict(path)
        else:
            path = Path(weights)
            if not path.exists():
                raise WeightsNotFoundError(
                    f"weights file not found: {path}. Pass an existing .pth file, 'imagenet', "
                    "or weights=None to train from scratch."
                )
            state = _load_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise WeightsNotFoundError(
                f"{weights}: not ResNet18 weights (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
    model.fc = torch.nn.Linear(model.fc.in_features, int(num_classes))
    return model


#: architecture name for networks that are not registered: the module itself is pickled
PICKLED_MODULE = "torch_module"


@register(PICKLED_MODULE)
def torch_module(num_classes: int, module: torch.nn.Module) -> torch.nn.Module:
    """A copy of a pickled module (for networks that are not a registered architecture).

    Model files holding one need the module's class to be importable when loaded.
    """
    if not isinstance(module, torch.nn.Module):
        raise ParameterError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return copy.deepcopy(module)


def _layout(network: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in network.state_dict().items()]


def identify(network: torch.nn.Module, num_classes: int) -> tuple[str, dict]:
    """(architecture name, kwargs) that rebuild `network` through `build`.

    A network with the class and parameter layout of a registered architecture (e.g. a
    torchvision ResNet18 whose ``fc`` has `num_classes` outputs) gets that name and no
    kwargs (weights travel in the state dict). A network with ``architecture_name`` and
    ``init_kwargs`` attributes (e.g. `CompactCNN`) gets those. Anything else is stored whole:
    ``(PICKLED_MODULE, {"module": network})``.
    """
    layout = _layout(network)
    own = getattr(network, "architecture_name", None)  # networks that know their constructor
    if own in _ARCHITECTURES:
        kwargs = dict(getattr(network, "init_kwargs", {}))
        reference = build(own, num_classes, **kwargs)
        if type(reference) is type(network) and _layout(reference) == layout:
            return own, kwargs
    for name in architectures():
        if name == PICKLED_MODULE:
            continue
        try:
            reference = build(name, num_classes)
        except Exception:  # an architecture that needs arguments cannot match by default
            continue
        if type(reference) is type(network) and _layout(reference) == layout:
            return name, {}
    return PICKLED_MODULE, {"module": network}


# the compact model for CPU training (soundscape.models.compact)
from .compact import ARCHITECTURE as _COMPACT, compact_cnn as _compact_cnn  # noqa: E402
from .compact import compact_preprocessing as _compact_preprocessing  # noqa: E402

register(_COMPACT, preprocessing=_compact_preprocessing)(_compact_cnn)
