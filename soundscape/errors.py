"""Exception classes shared by the whole package.

Callers (and the CLI) catch these to tell user mistakes from bugs. Every message
names the file, row, column, parameter or config key at fault and what would be valid.
"""


class SoundscapeError(Exception):
    """Base class of all soundscape errors."""


class AudioFileError(SoundscapeError, ValueError):
    """An audio file exists but cannot be used: unreadable, empty, corrupt or truncated."""


class ParameterError(SoundscapeError, ValueError):
    """A function argument has an invalid value."""


class AnnotationError(SoundscapeError, ValueError):
    """An annotation / selection table is malformed (names file, row and column)."""


class ConfigError(SoundscapeError, ValueError):
    """A declarative config is invalid (names the key path and what is allowed)."""


class ModelFileError(SoundscapeError, ValueError):
    """A model file is missing, corrupt, or from an unsupported format version."""


class WeightsNotFoundError(SoundscapeError, FileNotFoundError):
    """Pretrained weights were asked for but are not available offline."""


class TrainingError(SoundscapeError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


class OutputError(SoundscapeError, OSError):
    """A file or folder cannot be written: a read-only place, no permission, a full disk.

    The message names the path and what was being written; ``errno`` is that of the
    underlying failure when there is one. An OSError, so ``except OSError`` still catches it.
    """

    def __str__(self) -> str:  # the message itself, whatever errno / filename are set to
        return str(self.args[0]) if self.args else super().__str__()
