"""The `Backbone` interface for frozen pretrained audio models, and their registry.

A backbone turns fixed-length clips of raw audio into embeddings (and, when it has a
classifier head, into per-class logits). Backbones are frozen: they have no trainable
parameters and their outputs carry no gradient, so a model built on one trains only the
layers stacked on top of it. They are `torch.nn.Module` objects so that they sit inside a
network like any other layer, move through ``state_dict()`` and show up in ``print(model)``.

>>> from soundscape.pretrained import get_backbone
>>> backbone = get_backbone("birdnet")                       # doctest: +SKIP
>>> backbone.embed(torch.zeros(2, backbone.clip_samples)).shape  # doctest: +SKIP
torch.Size([2, 1024])
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Literal

import numpy as np
import torch

from ..errors import ParameterError

Output = Literal["embedding", "logits"]
_OUTPUTS = ("embedding", "logits")


class Backbone(torch.nn.Module):
    """Base class of frozen pretrained audio models: waveforms in, embeddings/logits out.

    Subclasses call ``super().__init__()``, set the attributes below (`classes` before
    `output`) and implement `_infer`.

    Attributes
    ----------
    name : str
        Registry name (``get_backbone(name)`` builds one).
    sample_rate : int
        Sample rate (Hz) the waveforms must have; resampling is the caller's job.
    clip_duration : float
        Length (s) of one input clip; `clip_samples` samples.
    embedding_size : int
        Length of one embedding vector.
    classes : list of str
        Labels of the `logits` columns; empty when the backbone has no classifier head.
    output : {"embedding", "logits"}
        What `forward` returns.
    license : str
        Licence of the pretrained weights ("" when unknown, e.g. a user's own model).

    Notes
    -----
    The outputs are computed outside autograd (by an external runtime) and never
    require grad. Inputs on any device are accepted; outputs come back on that device.
    """

    name: str = ""
    sample_rate: int = 0
    clip_duration: float = 0.0
    embedding_size: int = 0
    classes: list[str] = []
    license: str = ""

    #: attributes holding runtime objects (interpreters, sessions, locks) that are
    #: rebuilt on demand: dropped when the module is pickled or deep-copied
    _runtime_attributes: tuple[str, ...] = ("_lock",)

    def __init__(self) -> None:
        super().__init__()
        self._output: Output = "embedding"  # subclasses set `classes`, then `self.output = ...`
        self._lock: threading.Lock | None = None

    # ------------------------------------------------------------------ properties
    @property
    def output(self) -> Output:
        """What `forward` returns: ``"embedding"`` or ``"logits"``."""
        return self._output

    @output.setter
    def output(self, value: Output) -> None:
        if value not in _OUTPUTS:
            raise ParameterError(f"output must be one of {_OUTPUTS}, got {value!r}")
        if value == "logits" and not self.classes:
            raise ParameterError(
                "output='logits' needs a backbone with classes; "
                f"{self.name or type(self).__name__!r} has none (it only produces embeddings)"
            )
        self._output = value

    @property
    def clip_samples(self) -> int:
        """Number of samples in one input clip (``sample_rate * clip_duration``)."""
        return int(round(self.sample_rate * self.clip_duration))

    @property
    def output_size(self) -> int:
        """Length of one `forward` output row (embedding size or number of classes)."""
        return self.embedding_size if self.output == "embedding" else len(self.classes)

    # ------------------------------------------------------------------ inference
    def embed(self, waveforms: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Embeddings of a batch of clips.

        Parameters
        ----------
        waveforms : torch.Tensor or numpy.ndarray
            Float samples, shape ``(batch, clip_samples)``, at `sample_rate`.

        Returns
        -------
        torch.Tensor
            float32, shape ``(batch, embedding_size)``, on the input's device.
        """
        return self.embed_and_logits(waveforms, logits=False)[0]

    def logits(self, waveforms: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Per-class logits of a batch of clips, columns in the order of `classes`.

        Parameters
        ----------
        waveforms : torch.Tensor or numpy.ndarray
            Float samples, shape ``(batch, clip_samples)``, at `sample_rate`.

        Returns
        -------
        torch.Tensor
            float32, shape ``(batch, len(classes))``, on the input's device.
        """
        self._check_has_classes()
        return self.embed_and_logits(waveforms, logits=True)[1]

    def embed_and_logits(
        self, waveforms: torch.Tensor | np.ndarray, logits: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embeddings and logits from one pass over the batch.

        Parameters
        ----------
        waveforms : torch.Tensor or numpy.ndarray
            Float samples, shape ``(batch, clip_samples)``, at `sample_rate`.
        logits : bool
            Also compute the logits (needs `classes`); else the second item is None.

        Returns
        -------
        (torch.Tensor, torch.Tensor or None)
            ``(batch, embedding_size)`` and ``(batch, len(classes))`` float32 tensors.
        """
        if logits:
            self._check_has_classes()
        batch, device = self._check_waveforms(waveforms)
        if len(batch) == 0:
            emb = np.zeros((0, self.embedding_size), np.float32)
            log = np.zeros((0, len(self.classes)), np.float32) if logits else None
        else:
            with self._runtime_lock():
                emb, log = self._infer(batch, logits)
        return _to_tensor(emb, device), None if log is None else _to_tensor(log, device)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """`embed` or `logits` of the batch, per the `output` attribute."""
        return self.embed(waveforms) if self.output == "embedding" else self.logits(waveforms)

    def _infer(self, waveforms: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the model on a checked ``(batch, clip_samples)`` float32 C-contiguous array.

        Returns ``(embeddings, logits or None)`` as float32 arrays.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _check_has_classes(self) -> None:
        if not self.classes:
            raise ParameterError(
                f"backbone {self.name or type(self).__name__!r} has no classes, so it has no "
                "logits; use embed()"
            )

    def _check_waveforms(self, waveforms: Any) -> tuple[np.ndarray, torch.device]:
        """The batch as a float32 numpy array, and the device to return results on."""
        device = torch.device("cpu")
        if isinstance(waveforms, torch.Tensor):
            device = waveforms.device
            if not waveforms.is_floating_point():
                raise ParameterError(
                    f"waveforms must hold float samples in [-1, 1], got dtype {waveforms.dtype}"
                )
            array = waveforms.detach().to("cpu", torch.float32).numpy()
        elif isinstance(waveforms, np.ndarray):
            if not np.issubdtype(waveforms.dtype, np.floating):
                raise ParameterError(
                    f"waveforms must hold float samples in [-1, 1], got dtype {waveforms.dtype}"
                )
            array = waveforms.astype(np.float32, copy=False)
        else:
            raise ParameterError(
                f"waveforms must be a torch.Tensor or numpy array, got {type(waveforms).__name__}"
            )
        if array.ndim != 2 or array.shape[1] != self.clip_samples:
            hint = " (one clip? pass waveforms[None])" if array.ndim == 1 else ""
            raise ParameterError(
                f"waveforms must have shape (batch, {self.clip_samples}) for backbone "
                f"{self.name!r} ({self.clip_duration:g} s at {self.sample_rate} Hz), "
                f"got {tuple(array.shape)}{hint}"
            )
        if not np.isfinite(array).all():
            raise ParameterError("waveforms contain NaN or infinite samples")
        return np.ascontiguousarray(array), device

    # ------------------------------------------------------------------ runtime state
    def _runtime_lock(self) -> threading.Lock:
        if self._lock is None:
            self._lock = threading.Lock()
        return self._lock

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for attribute in self._runtime_attributes:
            if attribute in state:
                state[attribute] = None
        return state

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, sample_rate={self.sample_rate}, "
            f"clip_duration={self.clip_duration:g}, embedding_size={self.embedding_size}, "
            f"classes={len(self.classes)}, output={self.output!r}"
        )


def _to_tensor(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return tensor if device.type == "cpu" else tensor.to(device)


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[..., Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Class decorator: make a `Backbone` subclass (or factory) buildable by name.

    Parameters
    ----------
    name : str
        Registry name, used by `get_backbone`; must not be taken already.

    Examples
    --------
    >>> @register_backbone("my-model")          # doctest: +SKIP
    ... class MyModel(Backbone): ...
    """
    if not isinstance(name, str) or not name:
        raise ParameterError(f"backbone name must be a non-empty string, got {name!r}")

    def decorate(factory: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ParameterError(
                f"backbone name {name!r} is already registered (by {_REGISTRY[name]!r})"
            )
        _REGISTRY[name] = factory
        return factory

    return decorate


def backbones() -> list[str]:
    """Names of the registered backbones, sorted."""
    return sorted(_REGISTRY)


def get_backbone(name_or_obj: str | Backbone, **kwargs: Any) -> Backbone:
    """A backbone built by registry name, or the given `Backbone` itself.

    Parameters
    ----------
    name_or_obj : str or Backbone
        A name from `backbones()`, or an already built backbone (returned unchanged).
    **kwargs
        Passed to the backbone's constructor (only with a name).

    Returns
    -------
    Backbone

    Raises
    ------
    soundscape.errors.ParameterError
        Unknown name, or keyword arguments given with an object.
    soundscape.pretrained.MissingExtraError
        The backbone needs an optional package that is not installed.
    """
    if isinstance(name_or_obj, Backbone):
        if kwargs:
            raise ParameterError(
                f"get_backbone got a built backbone and keyword arguments {sorted(kwargs)}; "
                "pass keyword arguments only with a backbone name"
            )
        return name_or_obj
    if not isinstance(name_or_obj, str):
        raise ParameterError(
            f"backbone must be a name from {backbones()} or a Backbone, "
            f"got {type(name_or_obj).__name__}"
        )
    if name_or_obj not in _REGISTRY:
        raise ParameterError(f"unknown backbone {name_or_obj!r}; known backbones: {backbones()}")
    return _REGISTRY[name_or_obj](**kwargs)
