"""A user's own ONNX audio-embedding model as a frozen backbone, run with onnxruntime.

The model must take one float32 input of raw samples, shape ``(batch, samples)`` or
``(batch, 1, samples)``, and return ``(batch, embedding_size)`` embeddings (and,
optionally, ``(batch, classes)`` logits from a second named output). The ONNX file's
bytes are kept in a uint8 buffer (``model_bytes``), so ``state_dict()`` - and hence a
saved soundscape model - carries the whole ONNX model; `OnnxBackbone.from_state_dict`
rebuilds the backbone without the original file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..errors import ModelFileError, ParameterError
from ._extras import require
from .backbone import Backbone, Output, register_backbone

_EXTRA_KEY = "_extra_state"


def _onnxruntime():
    return require("onnxruntime", "onnx", "The 'onnx' backbone")


@register_backbone("onnx")
class OnnxBackbone(Backbone):
    """Embeddings (and optional logits) from an ONNX model file.

    Parameters
    ----------
    path : path or bytes
        The ``.onnx`` file, or its contents.
    sample_rate : int
        Sample rate (Hz) the model expects.
    clip_duration : float
        Clip length (s) the model expects; ``round(sample_rate * clip_duration)`` samples.
    output_name : str, optional
        Graph output holding the embeddings; default the first output.
    logits_name : str, optional
        Graph output holding per-class logits (needs `classes`).
    classes : sequence of str, optional
        Labels of the `logits_name` columns.
    output : {"embedding", "logits"}
        What `forward` returns.
    num_threads : int
        onnxruntime intra-op threads.

    Notes
    -----
    The backbone's `embedding_size` is read from the output's static shape or, when
    that is symbolic, from one run on a silent clip. Its `license` is left empty: it is
    the user's model.
    """

    name = "onnx"
    _runtime_attributes = ("_lock", "_session")

    def __init__(
        self,
        path: str | os.PathLike | bytes,
        sample_rate: int,
        clip_duration: float,
        output_name: str | None = None,
        logits_name: str | None = None,
        classes: Sequence[str] | None = None,
        output: Output = "embedding",
        num_threads: int = 1,
    ) -> None:
        super().__init__()
        if isinstance(path, (bytes, bytearray)):
            content, self.source = bytes(path), "<ONNX bytes>"
        else:
            file = Path(path).expanduser()
            if not file.is_file():
                raise ModelFileError(f"ONNX model file {str(file)!r} does not exist")
            content, self.source = file.read_bytes(), str(file)
        self.register_buffer("model_bytes", torch.frombuffer(bytearray(content), dtype=torch.uint8))
        self._configure(
            {
                "sample_rate": sample_rate,
                "clip_duration": clip_duration,
                "output_name": output_name,
                "logits_name": logits_name,
                "classes": list(classes or []),
                "num_threads": num_threads,
            }
        )
        self.output = output

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, Any], output: Output = "embedding"
    ) -> "OnnxBackbone":
        """Rebuild a backbone from its ``state_dict()`` (no ONNX file needed)."""
        if "model_bytes" not in state_dict or _EXTRA_KEY not in state_dict:
            raise ModelFileError(
                f"not an OnnxBackbone state_dict: keys 'model_bytes' and {_EXTRA_KEY!r} are "
                f"needed, got {sorted(state_dict)}"
            )
        content = state_dict["model_bytes"].cpu().numpy().tobytes()
        config = dict(state_dict[_EXTRA_KEY])
        return cls(content, output=output, **config)

    # ------------------------------------------------------------------ configuration
    def _configure(self, config: Mapping[str, Any]) -> None:
        rate, duration = config["sample_rate"], config["clip_duration"]
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ParameterError(f"sample_rate must be a positive integer (Hz), got {rate!r}")
        if not isinstance(duration, (int, float)) or not np.isfinite(duration) or duration <= 0:
            raise ParameterError(
                f"clip_duration must be a positive number of seconds, got {duration!r}"
            )
        threads = config["num_threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParameterError(f"num_threads must be a positive integer, got {threads!r}")
        self.sample_rate, self.clip_duration = int(rate), float(duration)
        self.output_name, self.logits_name = config["output_name"], config["logits_name"]
        self.classes, self.num_threads = list(config["classes"]), threads
        self._session = None
        session = self._ready_session()
        outputs = [o.name for o in session.get_outputs()]
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelFileError(
                f"{self.source} has {len(inputs)} inputs ({[i.name for i in inputs]}); an "
                "embedding model takes one input of raw samples"
            )
        self._input_name, self._input_rank = inputs[0].name, len(inputs[0].shape)
        if self._input_rank not in (2, 3):
            raise ModelFileError(
                f"{self.source}: input {self._input_name!r} has shape {inputs[0].shape}; "
                "expected (batch, samples) or (batch, 1, samples)"
            )
        if self.output_name is None:
            self.output_name = outputs[0]
        for label, value in (("output_name", self.output_name), ("logits_name", self.logits_name)):
            if value is not None and value not in outputs:
                raise ParameterError(
                    f"{label}={value!r} is not an output of {self.source}; outputs: {outputs}"
                )
        if (self.logits_name is None) != (not self.classes):
            raise ParameterError("logits_name and classes must be given together (or neither)")
        embeddings, logits = self._run(
            np.zeros((1, self.clip_samples), np.float32), bool(self.classes)
        )
        self.embedding_size = embeddings.shape[1]
        if logits is not None and logits.shape[1] != len(self.classes):
            raise ParameterError(
                f"{self.source}: output {self.logits_name!r} has {logits.shape[1]} columns but "
                f"{len(self.classes)} classes were given"
            )

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "clip_duration": self.clip_duration,
            "output_name": self.output_name,
            "logits_name": self.logits_name,
            "classes": list(self.classes),
            "num_threads": self.num_threads,
        }

    def set_extra_state(self, state: Mapping[str, Any]) -> None:
        self._pending_config = dict(state)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        key = prefix + "model_bytes"
        if key in state_dict and state_dict[key].shape != self.model_bytes.shape:
            self.model_bytes = torch.empty_like(state_dict[key], device=self.model_bytes.device)
        self._pending_config = None
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        config = self._pending_config or self.get_extra_state()
        self._pending_config = None
        self.source = "<ONNX bytes from state_dict>"
        self._configure(config)  # a new model: new session, re-checked outputs

    # ------------------------------------------------------------------ inference
    def _ready_session(self):
        if self._session is None:
            ort = _onnxruntime()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.num_threads
            options.inter_op_num_threads = 1
            content = self.model_bytes.cpu().numpy().tobytes()
            try:
                self._session = ort.InferenceSession(
                    content, options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types
                raise ModelFileError(f"onnxruntime cannot load {self.source}: {exc}") from exc
        return self._session

    def _run(self, waveforms: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        session = self._ready_session()
        feed = waveforms[:, None, :] if self._input_rank == 3 else waveforms
        names = [self.output_name] + ([self.logits_name] if logits else [])
        results = session.run(names, {self._input_name: feed})
        embeddings = np.asarray(results[0], dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(waveforms):
            raise ModelFileError(
                f"{self.source}: output {self.output_name!r} has shape {embeddings.shape} for "
                f"{len(waveforms)} clips; expected (batch, embedding_size)"
            )
        return embeddings, (np.asarray(results[1], dtype=np.float32) if logits else None)

    def _infer(self, waveforms: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        return self._run(waveforms, logits)
