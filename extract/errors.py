"""The one exception type users see.

Raise :class:`UserError` with one sentence that names the problem and the fix; the CLI
prints it without a traceback and exits with status 2.
"""


class UserError(Exception):
    """Bad input or environment, explained in one sentence for the user."""


class OutputError(UserError):
    """An output could not be written (a full disk, an unwritable folder).

    Steps that carry on past a :class:`UserError` about their inputs (a report leaves out a
    figure whose data are missing) stop at this one: nothing after it could be written either,
    and a partial output must not read as complete.
    """
