"""Errors that mvmr reports to the user as one line (the CLI prints them and exits with ``exit_code``, 2 unless
said otherwise)."""


class MVMRError(Exception):
    """Base class: a user-facing problem with a clear, one-line message naming the thing and the fix."""

    exit_code = 2


class RegistryError(MVMRError, LookupError):
    """Unknown or duplicate provider name, or a provider that could not be loaded."""


class ProviderParamError(MVMRError, ValueError):
    """A provider was given a parameter it does not accept, or a bad value."""


class ConfigError(MVMRError, ValueError):
    """A recipe has an unknown key, a wrong type, or an impossible value."""


class DataError(MVMRError, FileNotFoundError):
    """A dataset is missing or malformed on disk."""


class MissingDataError(DataError):
    """No dataset at the configured place (a labelled split may legitimately be absent)."""


class WeightsError(MVMRError, FileNotFoundError):
    """Pretrained weights could not be found or loaded."""


class CheckpointError(MVMRError, ValueError):
    """A checkpoint is missing, unreadable, not mvmr's, unsafe to unpickle, or holds non-finite weights."""


class NonFiniteError(MVMRError, FloatingPointError):
    """A provider's features, a loss or the weights became NaN or infinite."""


class Interrupted(MVMRError):
    """SIGINT or SIGTERM stopped a run after it saved its checkpoint; exit 128 + the signal number."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number
