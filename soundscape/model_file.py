"""Model files: one file holding a network and everything needed to use it.

A model file stores the weights, the architecture name and its arguments, the class
names, whether the model is single- or multi-target, the full `Preprocessing`, the
package version and a format version.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import ModelFileError
from .preprocessing import Preprocessing

FORMAT_VERSION = 1


class Detector(torch.nn.Module):
    """A network together with its classes and preprocessing.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (batch, channels, H, W) inputs to (batch, n_classes) logits.
    architecture : str
        Registered architecture name (see `soundscape.torch.models.build`).
    classes : list of str
        Output names, in output order.
    multi_target : bool
        True when each class is an independent present/absent output (sigmoid);
        False for one-of-n classification (softmax).
    preprocessing : Preprocessing
    architecture_kwargs : dict
        Extra arguments the architecture was built with.
    metadata : dict
        Free-form information (training metrics, label_dict, ...).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        architecture: str,
        classes: list[str],
        multi_target: bool,
        preprocessing: Preprocessing,
        architecture_kwargs: dict | None = None,
        metadata: dict | None = None,
    ):
        super().__init__()
        self.network = network
        self.architecture = architecture
        self.classes = [str(c) for c in classes]
        self.multi_target = bool(multi_target)
        self.preprocessing = preprocessing
        self.architecture_kwargs = dict(architecture_kwargs or {})
        self.metadata = dict(metadata or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically (temp file + rename)."""
        return save_model(path, self)

    def __repr__(self) -> str:
        kind = "multi-target" if self.multi_target else "single-target"
        return f"<Detector {self.architecture} {kind} classes={self.classes}>"


def model_payload(detector: Detector) -> dict[str, Any]:
    """The dict stored in a model file."""
    return {
        "format": "soundscape-model",
        "format_version": FORMAT_VERSION,
        "soundscape_version": __version__,
        "architecture": detector.architecture,
        "architecture_kwargs": detector.architecture_kwargs,
        "classes": detector.classes,
        "multi_target": detector.multi_target,
        "preprocessing": detector.preprocessing.to_dict(),
        "metadata": detector.metadata,
        "state_dict": detector.network.state_dict(),
    }


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, then rename onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_model(path: str | os.PathLike, detector: Detector) -> Path:
    """Save `detector` as a model file."""
    return atomic_torch_save(model_payload(detector), path)


def detector_from_payload(payload: dict, source: str = "model file") -> Detector:
    """Rebuild a Detector from a model-file dict."""
    from .torch.models import build

    version = payload.get("format_version")
    if version is None:
        raise ModelFileError(f"{source}: not a soundscape model file (no format_version)")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: written by a newer soundscape (model format {version}, "
            f"soundscape {payload.get('soundscape_version')}); this soundscape {__version__} reads "
            f"format <= {FORMAT_VERSION}. Upgrade soundscape to load it."
        )
    classes = payload["classes"]
    network = build(payload["architecture"], len(classes), **payload.get("architecture_kwargs", {}))
    network.load_state_dict(payload["state_dict"])
    network.eval()
    return Detector(
        network,
        payload["architecture"],
        classes,
        payload["multi_target"],
        Preprocessing.from_dict(payload["preprocessing"]),
        payload.get("architecture_kwargs"),
        payload.get("metadata"),
    )


def load_model(path: str | os.PathLike) -> Detector:
    """Load a model file written by `Detector.save` (or a checkpoint written by `train`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable model file ({exc})") from exc
    if not isinstance(payload, dict):
        raise ModelFileError(f"{path}: not a soundscape model file")
    if "model" in payload and isinstance(payload["model"], dict) and "format_version" in payload["model"]:
        payload = payload["model"]  # a training checkpoint embeds a model payload
    return detector_from_payload(payload, str(path))
