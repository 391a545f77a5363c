"""The config-driven network and its model files.

:class:`ConfigModel` holds a front end and an encoder per audio input, embeddings for category
inputs, and the :class:`~soundscape.torch.encoders.Combiner`. It is registered as the
``"config_model"`` architecture, whose keyword arguments (the full config and the training-set
metadata) rebuild it, so :func:`soundscape.model_file.load_model` reads its model files like
any other (once this module has been imported, which ``import soundscape.workflow`` does).

Its input is a dict ``{feature name: tensor}``: fitted waveforms ``(batch, samples)`` for audio
inputs, raw encoded values for the others (see :func:`soundscape.workflow.encoding.encode_inputs`).
A model with a single audio input and nothing else also takes the waveform tensor itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError, ParameterError
from ..frontends import FrontEnd
from ..model_file import Detector, load_model
from ..torch.encoders import Combiner, build_encoder
from ..torch.models import register
from .encoding import class_names

__all__ = ["ConfigModel", "ARCHITECTURE", "make_detector", "load_detector", "MODEL_FILE",
           "METADATA_FILE", "HYPERPARAMETERS_FILE"]

ARCHITECTURE = "config_model"
MODEL_FILE = "model.pt"
METADATA_FILE = "training_set_metadata.json"
HYPERPARAMETERS_FILE = "model_hyperparameters.json"


class ConfigModel(nn.Module):
    """The network a config describes.

    Parameters
    ----------
    config : dict
        A validated config (``Config.to_dict()``).
    metadata : dict
        Training-set metadata (:func:`soundscape.workflow.encoding.build_metadata`).
    num_classes : int
        Output logits (classes, or 1 for a binary output).
    """

    def __init__(self, config: dict, metadata: dict, num_classes: int):
        super().__init__()
        self.config = config
        self.metadata = metadata
        inputs = config["input_features"]
        self.audio_names = [f["name"] for f in inputs if f["type"] == "audio"]
        self.category_names = [f["name"] for f in inputs if f["type"] == "category"]
        self.scalar_names = [f["name"] for f in inputs if f["type"] in ("number", "binary")]
        self.frontends = nn.ModuleList()
        self.encoders = nn.ModuleList()
        for feat in inputs:
            if feat["type"] == "audio":
                fe = FrontEnd.from_config(feat["preprocessing"])
                self.frontends.append(fe)
                self.encoders.append(build_encoder(feat["encoder"], fe.output_shape))
        embedding = {f["name"]: f["embedding_size"] for f in inputs if f["type"] == "category"}
        self.combiner = Combiner(
            [e.output_size for e in self.encoders],
            [(metadata[n]["vocab_size"], embedding[n]) for n in self.category_names],
            len(self.scalar_names),
            int(num_classes),
        )

    @property
    def frontend_by_name(self) -> dict[str, FrontEnd]:
        return dict(zip(self.audio_names, self.frontends))

    def _as_dict(self, inputs: Any) -> dict:
        if isinstance(inputs, torch.Tensor):
            if len(self.audio_names) != 1 or self.category_names or self.scalar_names:
                raise ParameterError(
                    "this model has several inputs; pass a dict {feature name: tensor} with "
                    f"{self.audio_names + self.category_names + self.scalar_names}"
                )
            return {self.audio_names[0]: inputs}
        return dict(inputs)

    def featurize(self, inputs: Any) -> dict:
        """Replace each audio waveform tensor of ``inputs`` by its front-end features.

        For a ``spectrogram_image`` front end, a 4-D tensor is taken to be the images already
        (so the image pipeline of :func:`soundscape.torch.predict.predict_recordings` works).
        """
        inputs = self._as_dict(inputs)
        for name, fe in zip(self.audio_names, self.frontends):
            x = inputs[name]
            if not (fe.type == "spectrogram_image" and x.ndim == 4):
                inputs[name] = fe(x)
        return inputs

    def forward_features(self, inputs: dict) -> torch.Tensor:
        """Logits from inputs whose audio entries are already front-end features."""
        missing = [n for n in self.audio_names if n not in inputs]
        if missing:
            raise ParameterError(f"missing model input(s) {missing}")
        audio = [enc(inputs[n]) for n, enc in zip(self.audio_names, self.encoders)]
        cats = nums = None
        if self.category_names:
            cats = inputs.get("__categories__")
            if cats is None:
                cats = torch.stack([inputs[n].long() for n in self.category_names], dim=1)
        if self.scalar_names:
            nums = inputs.get("__scalars__")
            if nums is None:
                nums = torch.stack([inputs[n].float() for n in self.scalar_names], dim=1)
        return self.combiner(audio, cats, nums)

    def forward(self, inputs: Any) -> torch.Tensor:
        """Logits from waveforms (and other inputs)."""
        return self.forward_features(self.featurize(inputs))


@register(ARCHITECTURE)
def config_model(num_classes: int, config: dict, metadata: dict) -> ConfigModel:
    """Registered constructor: rebuild a :class:`ConfigModel` from its config and metadata."""
    return ConfigModel(config, metadata, num_classes)


def make_detector(network: ConfigModel, extra_metadata: dict | None = None) -> Detector:
    """Wrap a trained :class:`ConfigModel` as a :class:`~soundscape.model_file.Detector`."""
    config, meta = network.config, network.metadata
    out = config["output_features"][0]
    classes = class_names(meta, config)
    return Detector(
        network,
        ARCHITECTURE,
        classes,
        multi_target=out["type"] != "category",
        preprocessing=network.frontends[0].preprocessing,
        architecture_kwargs={"config": config, "metadata": meta},
        metadata={"output_feature": out["name"], "output_type": out["type"], **(extra_metadata or {})},
    )


def _json_dump(obj: Any, path: Path) -> None:
    from .runs import write_json

    write_json(obj, path)


def save_model_dir(detector: Detector, model_dir: str | os.PathLike) -> Path:
    """Write ``model.pt``, ``training_set_metadata.json`` and ``model_hyperparameters.json``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    detector.save(model_dir / MODEL_FILE)
    _json_dump(detector.network.metadata, model_dir / METADATA_FILE)
    _json_dump(detector.network.config, model_dir / HYPERPARAMETERS_FILE)
    return model_dir


def model_file_path(model_path: str | os.PathLike) -> Path:
    """The model file of ``model_path`` (a model folder or the file itself)."""
    path = Path(model_path).expanduser()
    if path.is_dir():
        candidate = path / MODEL_FILE
        if not candidate.is_file() and (path / "model" / MODEL_FILE).is_file():
            candidate = path / "model" / MODEL_FILE  # the run folder was given
        if not candidate.is_file():
            raise FileNotFoundError(f"no model file {MODEL_FILE} in folder {path}")
        return candidate
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    return path


def load_detector(model_path: str | os.PathLike) -> Detector:
    """Load a config-driven model from its folder (``results/<run>/model``) or file.

    Raises ModelFileError when the file holds another kind of model.
    """
    path = model_file_path(model_path)
    detector = load_model(path)
    if detector.architecture != ARCHITECTURE:
        raise ModelFileError(
            f"{path}: holds a {detector.architecture!r} model, not a config-driven model "
            "(train one with `soundscape train --config ...`)"
        )
    return detector


def read_metadata(model_path: str | os.PathLike) -> dict:
    """The ``training_set_metadata.json`` beside a model (or inside a model folder)."""
    path = Path(model_path)
    path = path if path.suffix == ".json" else (path if path.is_dir() else path.parent) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"training set metadata not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))
