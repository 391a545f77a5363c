"""Model files: one file holding a network and everything needed to use it.

A model file stores the weights, the architecture name and its arguments, the class
names, whether the model is single- or multi-target, the full `Preprocessing`, the
package version and a format version. It is a ``torch.save`` archive of plain
containers and tensors, loaded with ``torch.load(weights_only=True)`` (plus numpy arrays
and torch/torchvision layer classes), so loading an untrusted file does not run code
from it unless ``trusted=True`` is passed.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .errors import ModelFileError, ParameterError
from .io import atomic_write, missing_file
from .preprocessing import Preprocessing

#: Version of the model-file layout written by this soundscape. Files with a higher
#: number come from a newer soundscape and are refused with a clear message.
FORMAT_VERSION = 1
FORMAT_NAME = "soundscape-model"


def _numpy_data_globals() -> list:
    """numpy constructors of plain arrays and scalars (training checkpoints hold metrics)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    names = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return names

_REQUIRED = ("architecture", "classes", "multi_target", "preprocessing", "state_dict")


class Detector(torch.nn.Module):
    """A network together with its classes and preprocessing.

    Parameters
    ----------
    network : torch.nn.Module
        Maps (batch, channels, H, W) inputs to (batch, n_classes) logits.
    architecture : str
        Registered architecture name (see `soundscape.models.build`).
    classes : list of str
        Output names, in output order.
    multi_target : bool
        True when each class is an independent present/absent output (sigmoid);
        False for one-of-n classification (softmax).
    preprocessing : Preprocessing
    architecture_kwargs : dict
        Extra arguments the architecture was built with.
    metadata : dict
        Free-form information (training metrics, label_dict, ...); saved as plain
        JSON-like values (numpy values become Python numbers and lists).
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
        if not isinstance(preprocessing, Preprocessing):
            raise ParameterError(
                f"preprocessing must be a soundscape Preprocessing, got {type(preprocessing).__name__}"
            )
        self.network = network
        self.architecture = architecture
        self.classes = [str(c) for c in classes]
        if len(set(self.classes)) != len(self.classes):
            raise ParameterError(f"classes must be unique, got {self.classes}")
        self.multi_target = bool(multi_target)
        self.preprocessing = preprocessing
        self.architecture_kwargs = dict(architecture_kwargs or {})
        self.metadata = dict(metadata or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    @property
    def default_activation(self) -> str:
        """"sigmoid" for a multi-target model, "softmax" otherwise."""
        return "sigmoid" if self.multi_target else "softmax"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file atomically (temp file + rename); returns its path."""
        return save_model(path, self)

    def export_onnx(self, path: str | os.PathLike, frontend: bool = False) -> Path:
        """Write the model as an ONNX file; returns its path (see `soundscape.torch.export`).

        ``frontend=False``: input ``features`` (what `preprocessing.features` makes);
        ``frontend=True``: input ``waveform`` ``(batch, clip_samples)`` at the preprocessing's
        sample rate, the front end's DSP in the graph. Output ``logits``. Needs the ``onnx``
        extra.
        """
        from .torch.export import export_onnx

        return export_onnx(self, path, frontend=frontend)

    def __repr__(self) -> str:
        kind = "multi-target" if self.multi_target else "single-target"
        return f"<Detector {self.architecture} {kind} classes={self.classes}>"


def to_plain(value: Any) -> Any:
    """`value` as plain Python containers/scalars/tensors, safe for weights_only loading."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, torch.nn.Module):  # a pickled network (see models.PICKLED_MODULE)
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, dict):
        return {(k if isinstance(k, (str, int, float, bool)) else str(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_plain(v) for v in value]
    return str(value)


def model_payload(detector: Detector) -> dict[str, Any]:
    """The dict stored in a model file (also embedded in training checkpoints)."""
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "soundscape_version": __version__,
        "torch_version": str(torch.__version__),
        "architecture": detector.architecture,
        "architecture_kwargs": to_plain(detector.architecture_kwargs),
        "classes": list(detector.classes),
        "multi_target": detector.multi_target,
        "preprocessing": to_plain(detector.preprocessing.to_dict()),
        "metadata": to_plain(detector.metadata),
        "state_dict": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else to_plain(v)
                       for k, v in detector.network.state_dict().items()},  # extra states: plain
    }


def atomic_torch_save(obj: Any, path: str | os.PathLike, what: str = "model file") -> Path:
    """torch.save to a temp file in the same folder, then rename onto `path` (see `soundscape.io`).

    A full disk or read-only folder raises `OutputError` naming `what` and `path`.
    """
    return atomic_write(path, lambda tmp: torch.save(obj, tmp), make_parents=True, what=what)


def save_model(path: str | os.PathLike, detector: Detector) -> Path:
    """Save `detector` as a model file."""
    if not isinstance(detector, Detector):
        raise ParameterError(f"save_model needs a Detector, got {type(detector).__name__}")
    return atomic_torch_save(model_payload(detector), path)


def _check_payload(payload: Any, source: str) -> dict:
    if not isinstance(payload, dict):
        raise ModelFileError(
            f"{source}: not a soundscape model file (it holds a {type(payload).__name__}, "
            "not a model-file dict); save models with Detector.save"
        )
    if "model" in payload and isinstance(payload["model"], dict) and "format_version" in payload["model"]:
        payload = payload["model"]  # a training checkpoint embeds a model payload
    fmt = payload.get("format", FORMAT_NAME)
    version = payload.get("format_version")
    if fmt != FORMAT_NAME or version is None:
        keys = sorted(str(k) for k in payload)[:8]
        raise ModelFileError(
            f"{source}: not a soundscape model file (no '{FORMAT_NAME}' format marker; "
            f"top-level keys {keys}). A bare state_dict or another program's checkpoint cannot "
            "be loaded as a Detector; build the network and call load_state_dict instead"
        )
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{source}: invalid model format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: written by a newer soundscape (model format {version}, "
            f"soundscape {payload.get('soundscape_version')}); this soundscape {__version__} reads "
            f"model format <= {FORMAT_VERSION}. Upgrade soundscape to load it."
        )
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ModelFileError(f"{source}: model file is incomplete, missing {missing}")
    return payload


def _preprocessing(d: dict) -> Preprocessing:
    """The Preprocessing of a model file; files of soundscape 0.1's config workflow kept the
    front end's config settings in an ``extra`` entry, translated here."""
    d = dict(d)
    extra = d.pop("extra", None) or {}
    if "audio_feature" in extra:
        from .workflow.features import preprocessing_from_config

        return preprocessing_from_config(extra["audio_feature"])
    return Preprocessing.from_dict(d)


def detector_from_payload(payload: dict, source: str = "model file") -> Detector:
    """Rebuild a Detector (in eval mode) from a model-file dict."""
    from .models import architectures, build

    payload = _check_payload(payload, source)
    classes = payload["classes"]
    arch = payload["architecture"]
    if arch not in architectures():
        raise ModelFileError(
            f"{source}: architecture {arch!r} is not registered in this session (known: "
            f"{architectures()}); import or register it (soundscape.models.register) "
            "before loading"
        )
    try:
        preprocessing = _preprocessing(payload["preprocessing"])
    except (ParameterError, TypeError) as exc:
        raise ModelFileError(f"{source}: invalid preprocessing in model file ({exc})") from exc
    try:
        network = build(arch, len(classes), **(payload.get("architecture_kwargs") or {}))
        network.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(
            f"{source}: weights do not fit architecture {arch!r} with {len(classes)} classes ({exc})"
        ) from exc
    network.eval()
    detector = Detector(
        network, arch, classes, payload["multi_target"], preprocessing,
        payload.get("architecture_kwargs"), payload.get("metadata"),
    )
    return detector.eval()


#: modules whose nn.Module subclasses (layers and models) load without trusted=True
SAFE_LAYER_MODULES = ("torch.nn.modules.", "torchvision.models.", "torchvision.ops.")
#: further objects allowed by exact name: tensor-rebuild helpers and parameter classes
#: (torch's weights_only loader already allows most of them; listed for older versions)
_SAFE_TORCH_HELPERS = (
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter",
    "torch.nn.parameter.Buffer",
)
_TRUST_HINT = "load it with load_model(path, trusted=True)"


def _qualified_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


@functools.lru_cache(maxsize=1)
def safe_layer_classes() -> dict[str, type]:
    """The allowlist of `load_model` without trusted=True: exact pickled name -> class.

    Holds the `torch.nn.Module` subclasses defined in ``torch.nn.modules`` (every torch
    layer), ``torchvision.models`` and ``torchvision.ops`` (ResNet, BasicBlock,
    Bottleneck, Conv2dNormActivation...), and a few torch tensor-rebuild helpers. Only
    classes are admitted by the module-prefix scan; functions of those modules (e.g.
    ``register_module_forward_pre_hook``) never are.
    """
    import torch.nn  # noqa: F401  (imports all torch.nn.modules submodules)

    try:
        import torchvision.models  # noqa: F401
        import torchvision.ops  # noqa: F401
    except ImportError:  # pragma: no cover - torchvision is a dependency
        pass
    allowed: dict[str, type] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(SAFE_LAYER_MODULES):
            continue
        for obj in list(vars(module).values()):
            if (isinstance(obj, type) and issubclass(obj, torch.nn.Module)
                    and obj.__module__ == name and "<locals>" not in obj.__qualname__):
                allowed[_qualified_name(obj)] = obj
    for qualified in _SAFE_TORCH_HELPERS:
        module_name, _, attr = qualified.rpartition(".")
        obj = getattr(sys.modules.get(module_name), attr, None)
        if obj is not None:
            allowed[qualified] = obj
    return allowed


def _library_globals(path: Path) -> tuple[list, list[str]]:
    """(allowed torch/torchvision objects the file needs, names it needs that are not allowed)."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    allowed = safe_layer_classes()
    return [allowed[n] for n in names if n in allowed], [n for n in names if n not in allowed]


def _torch_load(path: Path, trusted: bool, hint: str = _TRUST_HINT) -> Any:
    """torch.load `path` on the CPU; unless `trusted`, without running code from the file.

    Untrusted files may hold tensors, plain containers, numpy arrays and the layer
    classes of `safe_layer_classes` (by exact name); anything else raises
    ModelFileError naming the objects and `hint` (how to pass trusted=True).
    """
    if trusted:
        return torch.load(str(path), map_location="cpu", weights_only=False)
    serialization = torch.serialization
    if not hasattr(serialization, "safe_globals") or not hasattr(
            serialization, "get_unsafe_globals_in_checkpoint"):
        raise ModelFileError(
            f"{path}: loading a model file without trusted=True needs torch >= 2.6 "
            f"(torch.serialization.safe_globals); this is torch {torch.__version__}. Upgrade "
            f"torch (pip install 'torch>=2.6'), or, if you trust the file's source, {hint}"
        )
    allowed = _numpy_data_globals()
    try:
        with serialization.safe_globals(allowed):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc).lower():
            raise
        layers, refused = _library_globals(path)
        if refused or not layers:
            names = refused or serialization.get_unsafe_globals_in_checkpoint(str(path))
            raise ModelFileError(
                f"{path}: holds Python objects other than tensors, plain values and torch "
                f"layers ({names[:5]}); if you trust its source, {hint}"
            ) from exc
    with serialization.safe_globals(allowed + layers):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_model(path: str | os.PathLike, device: str | torch.device | None = None,
               trusted: bool = False) -> Detector:
    """Load a model file written by `Detector.save` (or a checkpoint written by `train`).

    Parameters
    ----------
    path : path
        The model file (``.model``) or training checkpoint (``epoch-N.tar``).
    device : str or torch.device, optional
        Move the model there (default: CPU).
    trusted : bool
        Allow arbitrary pickled Python objects in the file (only for files from a source
        you trust). Not needed for soundscape's files with registered architectures, nor
        for networks built from torch/torchvision layers; a network of your own classes
        stored whole (architecture ``"torch_module"``) needs it.

    Returns
    -------
    Detector
        In eval mode.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ModelFileError
        The file is corrupt or truncated, is not a soundscape model file, or comes from
        a newer soundscape (format version above `FORMAT_VERSION`).
    """
    path = Path(path)
    if not path.exists():
        raise missing_file(path, "model file")
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: model file is empty (0 bytes)")
    try:
        payload = _torch_load(path, trusted)
    except ModelFileError:
        raise
    except Exception as exc:  # torch raises RuntimeError, KeyError, EOFError... for bad files
        msg = str(exc).split("\n")[0][:200]
        raise ModelFileError(
            f"{path}: not a readable model file; it is corrupt, truncated or not a torch "
            f"archive ({type(exc).__name__}: {msg})"
        ) from exc
    detector = detector_from_payload(payload, str(path))
    return detector.to(device) if device is not None else detector
