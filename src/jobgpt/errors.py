"""User-facing errors: a message and a fix, printed by the CLI without a traceback."""

from __future__ import annotations


class JobGPTError(Exception):
    """An error the user can act on.

    ``message`` says what is wrong (naming the file or value); ``hint`` says how to fix it.
    The CLI prints both as one paragraph and exits with status 1 — never a raw traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class InputError(JobGPTError):
    """A corpus file that cannot be read as documents (missing, binary, bad UTF-8, empty...)."""


class DataError(JobGPTError):
    """Token bins or their meta.json that do not fit the tokenizer or the requested settings."""


class CheckpointError(JobGPTError):
    """A checkpoint that is missing, unreadable, or built for another tokenizer/vocab."""


class ConfigError(JobGPTError):
    """A flag or setting with an invalid value."""
