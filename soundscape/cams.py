"""Class activation maps: where in time and frequency a detector looked.

`cams` runs Grad-CAM or Grad-CAM++ (through the ``grad-cam`` package, optional extra
``cams``) on the model input of each clip and maps the result back to seconds and Hz;
`plot_cam` overlays a map on the clip's spectrogram. It works for image-feature models
(ResNet18, the compact CNN, any network with 2-D convolutions; the default target layer
is ResNet's ``layer4``, the compact CNN's last activation, else the last ``Conv2d``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from . import dsp
from .audio import Audio
from .errors import ParameterError
from .model_file import Detector

__all__ = ["cams", "CAM", "plot_cam", "default_target_layer", "METHODS"]

METHODS = ("gradcam", "gradcam++")


@dataclass
class CAM:
    """Activation maps of a batch of clips.

    Attributes
    ----------
    maps : ndarray (clips, frequencies, times)
        Values in [0, 1]; row 0 is the lowest frequency.
    times : ndarray
        Seconds from each clip's start of the map's columns.
    frequencies : ndarray
        Hz of the map's rows (increasing).
    images : ndarray (clips, frequencies, times)
        The model input (first channel, low frequencies first), for plotting.
    targets : list of str
        Class explained for each clip.
    index : DataFrame
        ``file, start_time, end_time`` of each clip.
    """

    maps: np.ndarray
    times: np.ndarray
    frequencies: np.ndarray
    images: np.ndarray
    targets: list
    index: pd.DataFrame

    def box_fraction(self, i: int, start_time: float, end_time: float, low_f: float,
                     high_f: float) -> tuple[float, float]:
        """(share of map energy inside the box, share of the map's area the box covers)."""
        t = (self.times >= start_time) & (self.times <= end_time)
        f = (self.frequencies >= low_f) & (self.frequencies <= high_f)
        inside = self.maps[i][np.ix_(f, t)].sum()
        return float(inside / max(self.maps[i].sum(), 1e-12)), float(t.mean() * f.mean())


def default_target_layer(network: torch.nn.Module) -> torch.nn.Module:
    """The layer whose activations are explained (see the module docstring)."""
    if hasattr(network, "layer4"):
        return network.layer4[-1]
    features = getattr(network, "features", None)
    if isinstance(features, torch.nn.Sequential):
        acts = [m for m in features if isinstance(m, (torch.nn.ReLU, torch.nn.GELU, torch.nn.SiLU))]
        if acts:
            return acts[-1]
    convs = [m for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ParameterError(f"{type(network).__name__} has no Conv2d layer; pass target_layer=")
    return convs[-1]


def _axes(prep, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (s) of the image columns and frequencies (Hz, increasing) of its rows."""
    win, hop = prep.frame_grid
    n_frames = prep.n_frames
    frame_t = (np.arange(n_frames) * hop + win / 2) / prep.sample_rate
    cols = (np.arange(width) + 0.5) * n_frames / width - 0.5
    times = np.interp(cols, np.arange(n_frames), frame_t)
    if prep.n_mels:
        centres = dsp.mel_edges(prep.n_mels, prep.min_frequency or 0.0,
                                prep.max_frequency or prep.sample_rate / 2)[1:-1]
    else:
        freqs = np.fft.rfftfreq(prep.window_samples, 1 / prep.sample_rate)
        banded = prep.min_frequency is not None or prep.max_frequency is not None
        rows = (dsp.band_rows(prep.window_samples, prep.sample_rate, prep.min_frequency,
                              prep.max_frequency) if banded else slice(None))
        centres = freqs[rows]
    pos = (np.arange(height) + 0.5) * len(centres) / height - 0.5
    return times, np.interp(pos, np.arange(len(centres)), centres)


def _clips(detector: Detector, clips) -> tuple[list[Audio], pd.DataFrame]:
    prep = detector.preprocessing
    if isinstance(clips, Audio):
        clips = [clips]
    if isinstance(clips, pd.DataFrame):
        table = clips.reset_index() if "file" not in clips.columns else clips
        for col in ("file", "start_time", "end_time"):
            if col not in table.columns:
                raise ParameterError(f"a table of clips needs {col!r}; columns are "
                                     f"{list(table.columns)}")
        audio = [prep.load_audio(f, float(s), float(e) - float(s))
                 for f, s, e in zip(table["file"], table["start_time"], table["end_time"])]
        return audio, table[["file", "start_time", "end_time"]].reset_index(drop=True)
    audio = [prep.fit_audio(a) for a in clips]
    index = pd.DataFrame({"file": [str(a.metadata.get("path", "audio")) for a in audio],
                          "start_time": [float(a.metadata.get("offset", 0.0)) for a in audio]})
    index["end_time"] = index["start_time"] + prep.clip_duration
    return audio, index


def cams(detector: Detector, clips, method: str = "gradcam",
         target: str | Sequence[str] | None = None, target_layer: torch.nn.Module | None = None,
         device: str | torch.device | None = None) -> CAM:
    """Class activation maps of clips, mapped to time and frequency.

    Parameters
    ----------
    detector : Detector
        An image-feature model (``preprocessing.feature == "image"``).
    clips : Audio, list of Audio, or DataFrame
        Clips, or a score/detection table (``file, start_time, end_time``) to read them from.
    method : {"gradcam", "gradcam++"}
    target : str or list of str, optional
        Class to explain (one for all clips, or one per clip); default each clip's
        highest-scoring class.
    target_layer : torch.nn.Module, optional
        Layer to explain (default `default_target_layer`).
    device : optional
        Where to run (default: the model's device).

    Returns
    -------
    CAM
    """
    try:
        from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        raise ParameterError("class activation maps need grad-cam: "
                             "pip install soundscape[cams]") from None
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(detector, Detector):
        raise ParameterError("detector must be a soundscape Detector, got "
                             f"{type(detector).__name__}")
    prep = detector.preprocessing
    if prep.feature != "image" or prep.clip_duration is None:
        raise ParameterError("cams need an image-feature model with a clip_duration")
    audio, index = _clips(detector, clips)
    if not audio:
        raise ParameterError("no clips given")
    param = next(detector.parameters(), None)
    device = torch.device(device) if device is not None else (
        param.device if param is not None else torch.device("cpu"))
    waves = torch.from_numpy(np.stack([a.samples for a in audio]).astype(np.float32))
    x = prep.features(waves).to(device)
    network = detector.network.to(device).eval()
    with torch.no_grad():
        best = network(x).argmax(dim=1).tolist()
    if target is None:
        ids = best
    else:
        names = [target] * len(audio) if isinstance(target, str) else list(target)
        if len(names) != len(audio):
            raise ParameterError(f"target has {len(names)} names for {len(audio)} clips")
        unknown = [n for n in names if n not in detector.classes]
        if unknown:
            raise ParameterError(f"unknown target class(es) {unknown}; classes are "
                                 f"{detector.classes}")
        ids = [detector.classes.index(n) for n in names]
    layer = target_layer if target_layer is not None else default_target_layer(network)
    algorithm = GradCAM if method == "gradcam" else GradCAMPlusPlus
    with algorithm(model=network, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(i) for i in ids])
    times, freqs = _axes(prep, x.shape[-2], x.shape[-1])
    images = x[:, 0].detach().cpu().numpy()
    return CAM(maps=np.ascontiguousarray(maps[:, ::-1]), times=times, frequencies=freqs,
               images=np.ascontiguousarray(images[:, ::-1]),
               targets=[detector.classes[i] for i in ids], index=index)


def plot_cam(result: CAM, i: int = 0, fname: str | Path | None = None, alpha: float = 0.45,
             ax=None):
    """The model input of clip `i` (grey, loud = dark) with its map overlaid; returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.2))
    else:
        fig = ax.figure
    t, f = result.times, result.frequencies
    extent = (t[0], t[-1], f[0] / 1000, f[-1] / 1000)
    ax.imshow(result.images[i], origin="lower", aspect="auto", cmap="gray", extent=extent)
    shown = ax.imshow(result.maps[i], origin="lower", aspect="auto", cmap="jet", alpha=alpha,
                      extent=extent, vmin=0, vmax=1)
    row = result.index.iloc[i]
    ax.set(xlabel="time in clip (s)", ylabel="frequency (kHz)",
           title=f"{result.targets[i]}: {Path(str(row['file'])).name} @ {row['start_time']:.1f} s")
    fig.colorbar(shown, ax=ax, label="activation")
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=120)
    return fig
