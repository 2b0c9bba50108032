"""The few exception types the library raises; `cli/` turns each into one red line and exit 1.

Every message says what was wrong and what to type instead.
"""


class OlympError(Exception):
    """Base class: anything the user can fix from the command line."""


class InputError(OlympError):
    """Inputs (folders, listings, labels, embeddings) are missing, malformed or inconsistent."""


class ConfigError(OlympError):
    """A config file or option value is invalid (unknown key, wrong type, bad choice)."""


class WeightsError(OlympError):
    """Model weights cannot be found offline, or do not fit the architecture."""


class MismatchError(OlympError):
    """Two artefacts that must agree (backbone, preprocessing, weights, classes) do not."""


class TooManyErrors(OlympError):
    """A run stopped because most inputs were unreadable (`--max-error-rate`)."""


def first_line(error: Exception) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
