"""soundscape: train animal-sound detectors and run them over field recordings.

The classic API lives in submodules (`soundscape.audio.Audio`,
`soundscape.spectrogram.Spectrogram`, `soundscape.datasets`, `soundscape.torch.train`);
the names below are the ones most scripts need.
"""

__version__ = "0.2.0"

from .audio import Audio  # noqa: E402
from .model_file import Detector, load_model  # noqa: E402
from .preprocessing import Preprocessing  # noqa: E402
from .spectrogram import MelSpectrogram, Spectrogram  # noqa: E402
from .torch.predict import predict, predict_recordings, read_scores  # noqa: E402
from .pretrained import embed, fit_head  # noqa: E402

__all__ = [
    "Audio", "Spectrogram", "MelSpectrogram", "Preprocessing", "Detector", "load_model",
    "predict", "predict_recordings", "read_scores", "embed", "fit_head", "__version__",
]
