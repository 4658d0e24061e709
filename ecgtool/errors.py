"""The one exception type that the CLI turns into a one-line error message."""


class EcgtoolError(Exception):
    """A failure the user can act on: the message names the file, record or option at fault.

    The CLI prints it as one line on stderr and exits with status 1; anything else
    that escapes a command is a bug and is reported the same way, with the hint to
    rerun with ``--debug`` for the traceback.
    """
