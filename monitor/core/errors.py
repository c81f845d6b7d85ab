"""Errors that the CLI turns into one-line messages (what was expected, what was found, the fix)."""


class FinpulseError(Exception):
    """Base class: the message is shown to the user as it is, on one line."""


class ConfigError(FinpulseError):
    """A setting or CLI argument is invalid."""


class DatabaseNotMigratedError(FinpulseError):
    """The database schema is behind the code."""


class ModelLoadError(FinpulseError):
    """A model directory is missing files, is not safetensors, or fails its smoke check."""


class DataError(FinpulseError):
    """An input data file is malformed; the message names the file and line."""
