"""The declarative (Ludwig-style) workflow: a YAML config + a CSV -> a trained model and its statistics.

>>> from soundscape.workflow import train, evaluate, predict, DeclarativeModel   # doctest: +SKIP
>>> results = train("config.yaml", "data.csv", output_directory="results")       # doctest: +SKIP
>>> stats, preds, _ = evaluate(results.model_directory, "data.csv", split="test") # doctest: +SKIP
>>> preds, _ = predict(results.model_directory, "new_audio.csv")                 # doctest: +SKIP

Importing this package registers the ``config_model`` architecture, so
:func:`soundscape.model_file.load_model` can read config-driven model files.
"""

from .api import DeclarativeModel
from .inference import evaluate, predict, predict_folder
from .kfold import KFoldResults, kfold_cross_validate
from .model import ARCHITECTURE, ConfigModel, load_detector
from .training import TrainResults, train

__all__ = [
    "ARCHITECTURE",
    "ConfigModel",
    "DeclarativeModel",
    "KFoldResults",
    "TrainResults",
    "evaluate",
    "kfold_cross_validate",
    "load_detector",
    "predict",
    "predict_folder",
    "train",
]
