"""Errors a user can cause and fix, each rendered by the CLI as one line without a traceback.

Anything that is *not* a subclass of :class:`TextlstmError` is a bug and keeps its traceback.
"""


class TextlstmError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class DataError(TextlstmError):
    """Bad training or input data: names the file, line and problem."""


class BundleError(TextlstmError):
    """A model bundle that is missing, incomplete, tampered with or inconsistent."""


class ConfigError(TextlstmError):
    """An invalid option or setting."""
