"""Encoders for the config-driven workflow, and the combiner that joins every input.

Every encoder maps one audio feature's front-end output to a fixed-size vector and exposes
``output_size``. Sequence encoders take ``(batch, frames, features)``; ``resnet18`` takes
images ``(batch, channels, H, W)``. Each also accepts the other layout: an image is read as a
sequence of its columns (``(batch, W, channels * H)``), a sequence as a one-channel image
with frequency upwards and time across.

- ``stacked_cnn``: 1-D convolutions over frames (conv, batch norm, ReLU, max-pool per layer),
  then mean and max over time and a dense layer.
- ``parallel_cnn``: 1-D convolutions of several widths side by side, each max-pooled over
  time, concatenated, then a dense layer.
- ``rnn``: a (bidirectional) LSTM or GRU; the last layer's final states.
- ``transformer``: a linear projection to ``hidden_size``, sinusoidal positions, self-attention
  layers, mean over frames.
- ``resnet18``: torchvision's ResNet18 without its classifier (512 outputs).

The :class:`Combiner` concatenates the audio encodings with embedded category inputs and
already-normalised number / binary inputs and maps them to output logits.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..errors import ParameterError
from . import resnet18 as _resnet18

__all__ = [
    "ENCODERS",
    "StackedCNN",
    "ParallelCNN",
    "RNNEncoder",
    "TransformerEncoder",
    "ResNet18Encoder",
    "Combiner",
    "build_encoder",
]


def _as_sequence(x: torch.Tensor) -> torch.Tensor:
    """(B, T, F) stays; an image (B, C, H, W) becomes (B, W, C * H)."""
    if x.ndim == 4:
        b, c, h, w = x.shape
        return x.permute(0, 3, 1, 2).reshape(b, w, c * h)
    if x.ndim != 3:
        raise ParameterError(f"expected (batch, frames, features) input, got {tuple(x.shape)}")
    return x


def _sequence_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(input_shape) == 3:
        c, h, w = input_shape
        return w, c * h
    if len(input_shape) != 2:
        raise ParameterError(f"input_shape must be (frames, features) or (C, H, W), got {input_shape}")
    return tuple(input_shape)  # type: ignore[return-value]


class StackedCNN(nn.Module):
    """1-D convolutions stacked over frames."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_filters: int = 64,
        filter_size: int = 3,
        num_layers: int = 3,
        pool_size: int = 2,
        output_size: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        _, features = _sequence_shape(input_shape)
        layers, width = [], features
        for _ in range(num_layers):
            layers.append(
                nn.Sequential(
                    nn.Conv1d(width, num_filters, filter_size, padding=filter_size // 2),
                    nn.BatchNorm1d(num_filters),
                    nn.ReLU(),
                )
            )
            width = num_filters
        self.layers = nn.ModuleList(layers)
        self.pool_size = pool_size
        self.dense = nn.Sequential(
            nn.Linear(2 * num_filters, output_size), nn.ReLU(), nn.Dropout(dropout)
        )
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_sequence(x).transpose(1, 2)  # (B, F, T)
        for layer in self.layers:
            x = layer(x)
            if self.pool_size > 1 and x.shape[-1] >= self.pool_size:
                x = nn.functional.max_pool1d(x, self.pool_size)
        return self.dense(torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1))


class ParallelCNN(nn.Module):
    """1-D convolutions of several widths in parallel, each max-pooled over time."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        filter_sizes: tuple[int, ...] = (2, 3, 4, 5),
        num_filters: int = 64,
        output_size: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        frames, features = _sequence_shape(input_shape)
        too_wide = [k for k in filter_sizes if k > frames]
        if too_wide:
            raise ParameterError(
                f"parallel_cnn filter_sizes {too_wide} are wider than the {frames} frames of "
                "the input; use smaller filters or longer audio"
            )
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv1d(features, num_filters, k), nn.BatchNorm1d(num_filters), nn.ReLU())
            for k in filter_sizes
        )
        self.dense = nn.Sequential(
            nn.Linear(num_filters * len(filter_sizes), output_size), nn.ReLU(), nn.Dropout(dropout)
        )
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _as_sequence(x).transpose(1, 2)
        return self.dense(torch.cat([b(x).amax(dim=-1) for b in self.branches], dim=1))


class RNNEncoder(nn.Module):
    """A (bidirectional) LSTM or GRU over frames; returns the last layer's final states."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        cell_type: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        if cell_type not in ("lstm", "gru"):
            raise ParameterError(f"cell_type must be 'lstm' or 'gru', got {cell_type!r}")
        _, features = _sequence_shape(input_shape)
        cls = nn.LSTM if cell_type == "lstm" else nn.GRU
        self.rnn = cls(
            features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.output_size = hidden_size * self.directions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, state = self.rnn(_as_sequence(x))
        h = state[0] if isinstance(state, tuple) else state  # (layers * dirs, B, H)
        return torch.cat(list(h[-self.directions :]), dim=1)


def _positions(frames: int, size: int, device) -> torch.Tensor:
    position = torch.arange(frames, dtype=torch.float32, device=device)[:, None]
    rate = torch.exp(
        torch.arange(0, size, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / size)
    )
    table = torch.zeros(frames, size, device=device)
    table[:, 0::2] = torch.sin(position * rate)
    table[:, 1::2] = torch.cos(position * rate[: size // 2])
    return table


class TransformerEncoder(nn.Module):
    """Self-attention over frames (pre-norm layers), mean-pooled."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_heads: int = 4,
        num_layers: int = 2,
        hidden_size: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ParameterError(
                f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
            )
        _, features = _sequence_shape(input_shape)
        self.project = nn.Linear(features, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            dim_feedforward=2 * hidden_size,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.output_size = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(_as_sequence(x))
        x = x + _positions(x.shape[1], x.shape[2], x.device)
        return self.norm(self.layers(x)).mean(dim=1)


class ResNet18Encoder(nn.Module):
    """torchvision ResNet18 without its classifier; 512 outputs.

    A ``(frames, features)`` input becomes a one-channel image; the first convolution then
    takes one channel (ImageNet weights are summed over their three input channels).
    """

    def __init__(
        self, input_shape: tuple[int, ...], weights: str | None = None, dropout: float = 0.0
    ):
        super().__init__()
        channels = input_shape[0] if len(input_shape) == 3 else 1
        net = _resnet18(num_classes=1, weights=weights)
        if channels != 3:
            old = net.conv1
            net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
            if weights is not None:
                with torch.no_grad():
                    net.conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True).expand_as(net.conv1.weight) / channels)
        net.fc = nn.Identity()
        self.net = net
        self.dropout = nn.Dropout(dropout)
        self.output_size = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:  # (B, T, F) -> (B, 1, F, T), low frequencies at the bottom
            x = torch.flip(x.transpose(1, 2), dims=[1])[:, None]
        return self.dropout(self.net(x))


ENCODERS = {
    "stacked_cnn": StackedCNN,
    "parallel_cnn": ParallelCNN,
    "rnn": RNNEncoder,
    "transformer": TransformerEncoder,
    "resnet18": ResNet18Encoder,
}


def build_encoder(spec: Mapping, input_shape: tuple[int, ...]) -> nn.Module:
    """Encoder for a validated ``encoder`` mapping (``{"type": ..., **params}``).

    Parameters
    ----------
    spec : mapping
        ``type`` is one of :data:`ENCODERS`; the other keys are that encoder's parameters.
    input_shape : tuple
        Shape of one example's input (without the batch axis).
    """
    spec = dict(spec)
    kind = spec.pop("type", "stacked_cnn")
    if kind not in ENCODERS:
        raise ParameterError(f"unknown encoder {kind!r}; known: {sorted(ENCODERS)}")
    if kind == "parallel_cnn" and "filter_sizes" in spec:
        spec["filter_sizes"] = tuple(spec["filter_sizes"])
    return ENCODERS[kind](tuple(input_shape), **spec)


class Combiner(nn.Module):
    """Concatenate every input's encoding and map it to output logits.

    Parameters
    ----------
    audio_sizes : list of int
        Output sizes of the audio encoders, in input order.
    category_sizes : list of (vocabulary size, embedding size)
        One embedding table per category input (index 0 is the unknown value).
    num_numeric : int
        Number of scalar inputs (normalised numbers and 0/1 binaries), given as one
        ``(batch, num_numeric)`` tensor.
    num_outputs : int
        Logits produced.
    hidden_size, dropout
        The hidden dense layer between the concatenation and the logits.
    """

    def __init__(
        self,
        audio_sizes: list[int],
        category_sizes: list[tuple[int, int]],
        num_numeric: int,
        num_outputs: int,
        hidden_size: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(v, e) for v, e in category_sizes)
        self.num_numeric = num_numeric
        width = sum(audio_sizes) + sum(e for _, e in category_sizes) + num_numeric
        self.head = nn.Sequential(
            nn.Linear(width, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, num_outputs)
        )

    def forward(
        self,
        audio: list[torch.Tensor],
        categories: torch.Tensor | None = None,
        numbers: torch.Tensor | None = None,
    ) -> torch.Tensor:
        parts = list(audio)
        if len(self.embeddings):
            if categories is None:
                raise ParameterError(f"this model needs {len(self.embeddings)} category input(s)")
            parts += [emb(categories[:, i]) for i, emb in enumerate(self.embeddings)]
        if self.num_numeric:
            if numbers is None:
                raise ParameterError(f"this model needs {self.num_numeric} number/binary input(s)")
            parts.append(numbers.float())
        return self.head(torch.cat(parts, dim=1))
