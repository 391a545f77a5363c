"""soundscape: train and run animal-sound detectors on field recordings."""

__version__ = "0.1.0"
