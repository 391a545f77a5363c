"""Tables -> in-memory tensors (audio features computed once), batches, losses and probabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from .audio_input import check_failures, load_features
from .data import Table, audio_paths
from .encoding import encode_inputs, encode_targets
from .model import ConfigModel

__all__ = ["Prepared", "prepare", "batches", "loss_and_probabilities", "run"]


@dataclass
class Prepared:
    """One split, ready for the network: rows whose audio loaded, their inputs and targets."""

    frame: pd.DataFrame  # the rows kept
    features: dict[str, torch.Tensor]
    categories: torch.Tensor | None
    scalars: torch.Tensor | None
    targets: torch.Tensor | None
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.frame)


def prepare(
    network: ConfigModel,
    table: Table,
    frame: pd.DataFrame,
    with_targets: bool = True,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "audio",
    strict: bool = False,
) -> Prepared:
    """Load and featurise ``frame``'s audio and encode its other inputs (and targets)."""
    config, meta = network.config, network.metadata
    sub = Table(frame.reset_index(drop=True), table.base_dir, table.source)
    paths = {name: audio_paths(sub, name) for name in network.audio_names}
    loaded = load_features(
        network.frontend_by_name, paths, device=device, progress=progress, desc=desc
    )
    check_failures(loaded, f"{table.source} ({desc})", strict=strict)
    kept = sub.frame[loaded.keep].reset_index(drop=True)
    cats, nums = encode_inputs(meta, config, kept, table.source)
    targets = None
    if with_targets:
        targets = torch.from_numpy(np.array(encode_targets(meta, config, kept, table.source)))
    return Prepared(
        kept,
        loaded.features,
        None if cats is None else torch.from_numpy(np.array(cats)),
        None if nums is None else torch.from_numpy(np.array(nums)),
        targets,
        skipped=int((~loaded.keep).sum()),
    )


def batches(
    data: Prepared, batch_size: int, device, shuffle: bool = False, generator=None
) -> Iterator[tuple[dict, torch.Tensor | None]]:
    """``(inputs, targets)`` batches of a prepared split, moved to ``device``."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        inputs = {name: x[idx].to(device) for name, x in data.features.items()}
        if data.categories is not None:
            inputs["__categories__"] = data.categories[idx].to(device)
        if data.scalars is not None:
            inputs["__scalars__"] = data.scalars[idx].to(device)
        targets = None if data.targets is None else data.targets[idx].to(device)
        yield inputs, targets


def loss_and_probabilities(
    output_type: str, logits: torch.Tensor, targets: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Mean loss (None without targets) and probabilities for an output type.

    category: cross-entropy and softmax; binary: BCE on the single logit and its sigmoid
    (shape (batch,)); set: BCE per class and sigmoids.
    """
    if output_type == "category":
        probs = logits.softmax(dim=1)
        loss = None if targets is None else torch.nn.functional.cross_entropy(logits, targets.long())
    elif output_type == "binary":
        logits = logits[:, 0]
        probs = logits.sigmoid()
        loss = (None if targets is None
                else torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float()))
    else:
        probs = logits.sigmoid()
        loss = (None if targets is None
                else torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float()))
    return loss, probs


def run(network: ConfigModel, data: Prepared, batch_size: int, device) -> tuple[float, np.ndarray]:
    """(mean loss or NaN, probabilities) of the network over a prepared split, in eval mode."""
    output_type = network.config["output_features"][0]["type"]
    network.eval()
    total, probs = 0.0, []
    with torch.no_grad():
        for inputs, targets in batches(data, batch_size, device):
            loss, p = loss_and_probabilities(output_type, network.forward_features(inputs), targets)
            if loss is not None:
                total += float(loss) * len(p)
            probs.append(p.float().cpu())
    if not probs:
        return float("nan"), np.zeros((0,))
    out = torch.cat(probs).numpy()
    return (total / len(out) if data.targets is not None else float("nan")), out
