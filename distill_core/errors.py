"""Errors a user can act on. Each message names the problem and what to do about it."""


class DistillError(Exception):
    """Base class: the command line prints these as one line, the app as an error box."""


class ConfigError(DistillError):
    """A setting is out of range, unknown or contradicts another."""


class DataError(DistillError):
    """A dataset cannot be read or does not have the shape a session needs."""


class ModelError(DistillError):
    """A model cannot be loaded, or cannot do what the session asks of it (e.g. return attention)."""


class RunStoreError(DistillError):
    """A run id is invalid, unknown, or its folder is damaged."""


class NonFiniteLossError(DistillError):
    """A training loss became NaN or infinite."""


class OfflineError(DistillError):
    """A hub model or dataset was named while the machine cannot reach the hub."""
