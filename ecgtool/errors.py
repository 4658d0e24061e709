"""The one exception type that the CLI turns into a one-line error message."""

from __future__ import annotations

import errno
import os


class EcgtoolError(Exception):
    """A failure the user can act on: the message names the file, record or option at fault.

    The CLI prints it as one line on stderr and exits with status 1; anything else
    that escapes a command is a bug and is reported the same way, with the hint to
    rerun with ``--debug`` for the traceback.
    """


class ConfigError(EcgtoolError, ValueError):
    """A parameter of a library call or configuration has a value it cannot take.

    The message speaks of the parameter, and ``parameter`` names it, so that the
    CLI can report the error as a usage error (exit 2) of the flag that set it.
    A ``ValueError`` too, for callers that catch that.

    The message may name one other parameter as ``{alternative}`` (e.g. the one that allows what was refused):
    the library's text writes the parameter's name there, and the CLI the flag that sets it
    (:meth:`worded`), so that neither speaks the other's words.
    """

    def __init__(self, message: str, parameter: str, *, alternative: str | None = None):
        super().__init__(message.replace("{alternative}", alternative) if alternative else message)
        self.parameter = parameter
        self.alternative = alternative
        self._template = message

    def worded(self, name_of) -> str:
        """The message with ``{alternative}`` written as ``name_of(alternative)`` (the CLI: its flag)."""
        # replace, not format: the message holds paths, which may hold braces
        return self._template.replace("{alternative}", name_of(self.alternative)) if self.alternative else str(self)


_REASONS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
            errno.EACCES: "permission denied", errno.EFBIG: "file too large for the file system"}


def output_error(path: str | os.PathLike, error: OSError) -> EcgtoolError:
    """An ``OSError`` met while writing the output ``path`` (a full disk, a quota, permissions) as one sentence naming it."""
    reason = _REASONS.get(error.errno) or (error.strerror or str(error)).lower()
    return EcgtoolError(f"{path}: cannot write the output: {reason} (nothing was left behind)")


def record_failure(error: BaseException, record: str) -> str:
    """Why one record failed, for a per-record report that names the record itself (prep and predict ``--on-error``):
    the message without a leading ``"record: "``, or the exception's type when it has no message."""
    return (str(error) or type(error).__name__).removeprefix(f"{record}: ")
