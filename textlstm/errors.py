"""Errors a user can cause and fix, each rendered by the CLI as one line without a traceback.

Anything that is *not* a subclass of :class:`TextlstmError` is a bug and keeps its traceback.
"""

#: Exit status of a process whose settings are unusable (sysexits.h EX_CONFIG): a worker
#: process exits with it, and `textlstm-admin worker` then stops instead of restarting it
#: (a restart would fail the same way).
EX_CONFIG = 78


class TextlstmError(Exception):
    """Base class: the message alone must tell the user what is wrong and where."""


class DataError(TextlstmError):
    """Bad training or input data: names the file, line and problem."""


class BundleError(TextlstmError):
    """A model bundle that is missing, incomplete, tampered with or inconsistent."""


class ConfigError(TextlstmError):
    """An invalid option or setting."""


class SettingsError(ConfigError, ValueError):
    """`TEXTLSTM_*` settings (or the `.env` file) that cannot be used: one line per problem,
    each naming its variable, with no secret in it (textlstm.settings builds it).

    Also a ValueError, as pydantic's ValidationError was, so code that caught that still works.
    """

    def __init__(self, problems: list[str] | str) -> None:
        # A str too, so that copy and pickle (which pass the message back) round-trip.
        lines = problems.splitlines() if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(lines))
        self.problems = lines


class NotFoundError(TextlstmError):
    """A job, model, version or alias that does not exist (names what was looked for)."""


class ValidationError(TextlstmError):
    """A job or message that breaks the schema or a limit; raised before anything is enqueued.

    `field` names the part of the job at fault where the validator knows it (`model`,
    `metadata`, `items[3]`, ...), so the HTTP gateway can answer with the field in its JSON
    error body without parsing the message; None where no single field is at fault.
    """

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StoreError(TextlstmError):
    """The database is unreachable, not migrated, or refused a write (URL shown masked)."""


class BrokerError(TextlstmError):
    """The message broker is unreachable or refused a message (URL shown masked)."""


class QueueFullError(BrokerError):
    """The target queue holds more pending messages than TEXTLSTM_QUEUE_MAX_PENDING allows."""
