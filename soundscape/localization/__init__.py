"""Acoustic localization on synchronised recorder arrays (TDOA by GCC-PHAT).

``RecorderArray(positions)`` -> ``localize(detections, array)`` -> a table of positions
-> ``plot_localizations(table, array)``. `simulate_array` writes simulated recordings of a
known source for checks and tutorials, `simulated_detections` the detections to localize them.
"""

from .array import RecorderArray, lonlat_to_local, speed_of_sound
from .gcc import gcc_phat
from .estimate import QUALITY_FLAGS, localize
from .plot import plot_localizations
from .simulate import chirp, grid_positions, simulate_array, simulated_detections
from .solve import closed_form, solve_tdoa, tdoa_of

__all__ = [
    "RecorderArray",
    "localize",
    "plot_localizations",
    "speed_of_sound",
    "lonlat_to_local",
    "gcc_phat",
    "closed_form",
    "solve_tdoa",
    "tdoa_of",
    "simulate_array",
    "simulated_detections",
    "grid_positions",
    "chirp",
    "QUALITY_FLAGS",
]
