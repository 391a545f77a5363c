"""The config-driven network and its model files.

:class:`ConfigModel` holds the encoder of the (one) audio input, embeddings for category
inputs, and the :class:`~soundscape.models.encoders.Combiner`. Like every other network it
takes the model inputs that its `Preprocessing` makes (``fbank`` frames, images, ...), not
waveforms: the preprocessing travels in the model file and the predictor applies it. It is
registered as the ``"config_model"`` architecture, whose keyword arguments (the full config
and the training-set metadata) rebuild it, so :func:`soundscape.model_file.load_model`
reads its model files like any other.

Its input is the audio feature tensor itself, or, for a model with category / number
inputs too, a dict ``{"audio": features, "__categories__": codes, "__scalars__": values}``
(the audio entry may also be keyed by the feature's name, the others by their names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, ModelFileError, ParameterError
from ..io import missing_file
from ..model_file import Detector, load_model
from ..preprocessing import Preprocessing
from ..models.encoders import Combiner, build_encoder
from ..models import register
from .encoding import class_names
from .features import preprocessing_from_config

__all__ = ["ConfigModel", "ARCHITECTURE", "make_detector", "load_detector", "MODEL_FILE",
           "METADATA_FILE", "HYPERPARAMETERS_FILE", "config_preprocessing"]

ARCHITECTURE = "config_model"
MODEL_FILE = "model.pt"
METADATA_FILE = "training_set_metadata.json"
HYPERPARAMETERS_FILE = "model_hyperparameters.json"
AUDIO_KEY = "audio"


def _audio_feature(config: dict) -> dict:
    audio = [f for f in config["input_features"] if f["type"] == "audio"]
    if len(audio) != 1:
        raise ConfigError(
            f"input_features: a soundscape model takes exactly one audio input, the config has "
            f"{len(audio)} ({[f['name'] for f in audio]})"
        )
    return audio[0]


def config_preprocessing(config: dict) -> Preprocessing:
    """The `Preprocessing` of a config's audio input."""
    return preprocessing_from_config(_audio_feature(config)["preprocessing"])


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

    architecture_name = ARCHITECTURE

    def __init__(self, config: dict, metadata: dict, num_classes: int):
        super().__init__()
        self.config = config
        self.metadata = metadata
        self.init_kwargs = {"config": config, "metadata": metadata}
        inputs = config["input_features"]
        audio = _audio_feature(config)
        self.audio_name = audio["name"]
        self.category_names = [f["name"] for f in inputs if f["type"] == "category"]
        self.scalar_names = [f["name"] for f in inputs if f["type"] in ("number", "binary")]
        self.preprocessing = preprocessing_from_config(audio["preprocessing"])
        self.encoders = nn.ModuleList([build_encoder(audio["encoder"], self.preprocessing.input_shape)])
        embedding = {f["name"]: f["embedding_size"] for f in inputs if f["type"] == "category"}
        self.combiner = Combiner(
            [self.encoders[0].output_size],
            [(metadata[n]["vocab_size"], embedding[n]) for n in self.category_names],
            len(self.scalar_names),
            int(num_classes),
        )

    @property
    def extra_inputs(self) -> list[str]:
        """Names of the inputs besides audio (category and number features)."""
        return self.category_names + self.scalar_names

    def forward(self, inputs: Any) -> torch.Tensor:
        """Logits from the audio features (and the other inputs, in a dict)."""
        if isinstance(inputs, torch.Tensor):
            if self.extra_inputs:
                raise ParameterError(
                    f"this model also takes the inputs {self.extra_inputs}; pass a dict "
                    f"{{'audio': features, {', '.join(repr(n) + ': ...' for n in self.extra_inputs)}}}"
                )
            return self.combiner([self.encoders[0](inputs)], None, None)
        inputs = dict(inputs)
        x = inputs.get(AUDIO_KEY, inputs.get(self.audio_name))
        if x is None:
            raise ParameterError(f"missing model input {AUDIO_KEY!r} (the audio features)")
        cats = nums = None
        if self.category_names:
            cats = inputs.get("__categories__")
            if cats is None:
                cats = torch.stack([torch.as_tensor(inputs[n]).long().reshape(-1) for n in self.category_names], 1)
        if self.scalar_names:
            nums = inputs.get("__scalars__")
            if nums is None:
                nums = torch.stack([torch.as_tensor(inputs[n]).float().reshape(-1) for n in self.scalar_names], 1)
        return self.combiner([self.encoders[0](x)], cats, nums)


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
        preprocessing=network.preprocessing,
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
        raise missing_file(path, "model")
    return path


def load_detector(model_path: str | os.PathLike) -> Detector:
    """Load any soundscape model from a run or model folder (``results/<run>/model``) or file.

    Models of both doors load: a config run's ``model.pt``, or a classic ``best.model``.
    """
    return load_model(model_file_path(model_path))


def read_metadata(model_path: str | os.PathLike) -> dict:
    """The ``training_set_metadata.json`` beside a model (or inside a model folder)."""
    path = Path(model_path)
    path = path if path.suffix == ".json" else (path if path.is_dir() else path.parent) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"training set metadata not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))
