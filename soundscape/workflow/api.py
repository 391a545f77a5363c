"""`DeclarativeModel`: the Python face of the config-driven workflow (Ludwig's LudwigModel shape).

>>> model = DeclarativeModel(config)                                   # doctest: +SKIP
>>> results = model.train(dataset="data.csv")                          # doctest: +SKIP
>>> test_stats, predictions, _ = model.evaluate(test_df, collect_predictions=True)  # doctest: +SKIP
>>> predictions, _ = model.predict(new_audio_df)                       # doctest: +SKIP
>>> model = DeclarativeModel.load("results/experiment_run/model")       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from ..config import Config, load_config
from ..model_file import Detector
from .inference import evaluate, predict
from .model import load_detector
from .training import TrainResults, train

__all__ = ["DeclarativeModel"]


class DeclarativeModel:
    """A model described by a config: train it, then evaluate and predict with it.

    Parameters
    ----------
    config : path, dict or Config
    """

    def __init__(self, config: str | os.PathLike | dict | Config, logging_level: int | None = None):
        self.config = load_config(config)
        if logging_level is not None:  # e.g. logging.INFO shows one line per epoch
            logger = logging.getLogger("soundscape")
            logger.setLevel(logging_level)
            if not logger.handlers:
                logger.addHandler(logging.StreamHandler())
        self.detector: Detector | None = None
        self.training_set_metadata: dict | None = None
        self.train_stats: dict | None = None
        self.output_directory: Path | None = None

    @classmethod
    def load(cls, model_path: str | os.PathLike) -> "DeclarativeModel":
        """Load a trained model from its folder (``results/experiment_run/model``) or file."""
        detector = load_detector(model_path)
        obj = cls(detector.network.config)
        obj.detector = detector
        obj.training_set_metadata = detector.network.metadata
        return obj

    def _trained(self) -> Detector:
        if self.detector is None:
            raise RuntimeError("the model is not trained yet: call train() or DeclarativeModel.load()")
        return self.detector

    def train(
        self,
        dataset=None,
        training_set=None,
        validation_set=None,
        test_set=None,
        output_directory: str | os.PathLike | None = "results",
        experiment_name: str = "experiment",
        **kwargs,
    ) -> TrainResults:
        """Train (see :func:`soundscape.workflow.train`); keeps the trained model on the object."""
        results = train(
            self.config, dataset, training_set=training_set, validation_set=validation_set,
            test_set=test_set, output_directory=output_directory, experiment_name=experiment_name,
            **kwargs,
        )
        self.detector = results.detector
        self.training_set_metadata = results.metadata
        self.train_stats = results.train_stats
        self.output_directory = results.run_directory
        return results

    def evaluate(
        self, dataset, split: str = "full", collect_predictions: bool = False,
        collect_overall_stats: bool = True, output_directory: str | os.PathLike | None = None,
        **kwargs,
    ) -> tuple[dict, pd.DataFrame | None, Path | None]:
        """``(test statistics, predictions or None, output directory)``.

        ``collect_overall_stats`` is accepted for Ludwig compatibility; the statistics are
        always computed.
        """
        return evaluate(self._trained(), dataset, split=split, collect_predictions=collect_predictions,
                        output_directory=output_directory, **kwargs)

    def predict(
        self, dataset, output_directory: str | os.PathLike | None = None, **kwargs
    ) -> tuple[pd.DataFrame, Path | None]:
        """``(predictions, output directory)`` for a table or a folder of recordings."""
        return predict(self._trained(), dataset, output_directory=output_directory, **kwargs)

    def __repr__(self) -> str:
        state = "trained" if self.detector is not None else "untrained"
        return f"<DeclarativeModel {state} {self.config!r}>"
