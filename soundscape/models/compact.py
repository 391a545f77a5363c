"""A compact CNN for small mel-spectrogram images: trains in minutes on a laptop CPU.

`CompactCNN` is a plain VGG-style stack (3 x 3 convolutions, batch norm, ReLU, 2 x 2
average pooling) ending in frequency-mean / time-max+mean pooling and one linear layer.
It takes images of any size, so a spectrogram of 64 mel bands by about 100-200 frames
with one channel (``Preprocessing(n_mels=64, height=64, width=128, channels=1)``) is
enough; see `compact_preprocessing` for a ready-made description.

Compared with ResNet18 on 224 x 224 x 3 images it needs about 1/18 of the computation
per clip (0.1 instead of 1.8 GMAC on a 64 x 108 image) and 0.39 M instead of 11 M
parameters; it cannot use ImageNet weights, and on large, varied data sets a deeper
pretrained network usually ends up more accurate.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ParameterError
from ..preprocessing import Preprocessing

__all__ = ["CompactCNN", "compact_cnn", "compact_preprocessing", "ARCHITECTURE"]

#: registry name of the compact model (``soundscape.models.build("compact_cnn", n)``)
ARCHITECTURE = "compact_cnn"
DEFAULT_WIDTHS = (32, 64, 128, 256)


def _image_input(x: torch.Tensor) -> torch.Tensor:
    """`x`, checked to be a (batch, channels, H, W) batch."""
    if x.ndim != 4:
        raise ParameterError(
            f"input must be (batch, channels, H, W), got shape {tuple(x.shape)}")
    return x


# a leaf of FX graphs (torch.fx traces the network for int8 quantization): the check runs on
# the real input instead of being traced
torch.fx.wrap("_image_input")


class CompactCNN(nn.Module):
    """Small convolutional network for (batch, channels, mel bands, frames) images.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    in_channels : int
        Channels of the input image (1 for ``Preprocessing(channels=1)``; 3 also works).
    widths : sequence of int
        Filters of each block; every block halves both image sides.
    convs_per_block : int
        3 x 3 convolutions per block (2 is more accurate and about twice as slow).
    dropout : float
        Dropout before the final linear layer.
    """

    #: registry name, so model files rebuild it with its `init_kwargs`
    architecture_name = ARCHITECTURE

    def __init__(self, num_classes: int, in_channels: int = 1,
                 widths: Sequence[int] = DEFAULT_WIDTHS, convs_per_block: int = 1,
                 dropout: float = 0.3):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if int(num_classes) < 1:
            raise ParameterError(f"num_classes must be >= 1, got {num_classes!r}")
        if int(in_channels) < 1:
            raise ParameterError(f"in_channels must be >= 1, got {in_channels!r}")
        if not widths or min(widths) < 1:
            raise ParameterError(
                f"widths must be a non-empty list of positive ints, got {widths!r}")
        if int(convs_per_block) < 1:
            raise ParameterError(f"convs_per_block must be >= 1, got {convs_per_block!r}")
        if not 0 <= dropout < 1:
            raise ParameterError(f"dropout must be in [0, 1), got {dropout!r}")
        self.init_kwargs = {"in_channels": int(in_channels), "widths": list(widths),
                            "convs_per_block": int(convs_per_block), "dropout": float(dropout)}
        self.input_norm = nn.BatchNorm2d(int(in_channels))
        layers: list[nn.Module] = []
        previous = int(in_channels)
        for width in widths:
            for _ in range(int(convs_per_block)):
                layers += [nn.Conv2d(previous, width, 3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                previous = width
            layers.append(nn.AvgPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(previous, int(num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, widths[-1]) clip embeddings before the classifier."""
        x = _image_input(x)
        h = self.features(self.input_norm(x))
        h = h.mean(dim=2)  # average over frequency
        return h.amax(dim=2) + h.mean(dim=2)  # loudest moment plus overall level, over time

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(x)))


def compact_cnn(num_classes: int, weights: None = None, **kwargs) -> CompactCNN:
    """Build a `CompactCNN` (the registry's ``"compact_cnn"`` constructor).

    `weights` must be None: there are no pretrained weights for this network (train from
    scratch, or use ``resnet18(weights="imagenet")``).
    """
    if weights is not None:
        raise ParameterError(
            f"the compact model has no pretrained weights (got weights={weights!r}); use "
            "weights=None, or architecture 'resnet18' with weights='imagenet'"
        )
    return CompactCNN(num_classes, **kwargs)


def compact_preprocessing(sample_rate: int = 22050, clip_duration: float | None = 5.0,
                          n_mels: int = 64, frames: int | None = None,
                          window_samples: int = 1024, hop_samples: int | None = None,
                          decibel_limits: tuple[float, float] = (-100.0, 0.0),
                          **changes) -> Preprocessing:
    """A `Preprocessing` sized for `CompactCNN`: one channel, `n_mels` mel bands.

    Parameters
    ----------
    sample_rate, clip_duration
        As in `Preprocessing`.
    n_mels : int
        Mel bands; also the image height.
    frames : int, optional
        Image width; default: the spectrogram's own number of frames (no resizing).
    window_samples, hop_samples
        STFT window and hop (default hop: half the window).
    decibel_limits
        dB range mapped to the image; (-100, 0) keeps loud recordings from clipping.
    **changes
        Any other `Preprocessing` field (e.g. ``min_frequency``, ``short_clip``).
    """
    hop = window_samples // 2 if hop_samples is None else int(hop_samples)
    if not 0 < hop <= window_samples:
        raise ParameterError(f"hop_samples must be in (0, window_samples], got {hop_samples!r}")
    base = Preprocessing(sample_rate=sample_rate, clip_duration=clip_duration,
                         window_samples=int(window_samples),
                         overlap_samples=int(window_samples) - hop, n_mels=int(n_mels),
                         decibel_limits=decibel_limits, channels=1, **changes)
    width = changes.get("width", frames if frames is not None else (base.n_frames or 128))
    height = changes.get("height", int(n_mels))
    return base.replace(height=int(height), width=int(width))
