"""Errors that mvmr reports to the user as one line (the CLI prints them and exits with code 2)."""


class MVMRError(Exception):
    """Base class: a user-facing problem with a clear, one-line message naming the thing and the fix."""


class RegistryError(MVMRError, LookupError):
    """Unknown or duplicate provider name, or a provider that could not be loaded."""


class ProviderParamError(MVMRError, ValueError):
    """A provider was given a parameter it does not accept, or a bad value."""


class ConfigError(MVMRError, ValueError):
    """A recipe has an unknown key, a wrong type, or an impossible value."""


class DataError(MVMRError, FileNotFoundError):
    """A dataset is missing or malformed on disk."""


class WeightsError(MVMRError, FileNotFoundError):
    """Pretrained weights could not be found or loaded."""
