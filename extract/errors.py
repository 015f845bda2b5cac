"""The one exception type users see.

Raise :class:`UserError` with one sentence that names the problem and the fix; the CLI
prints it without a traceback and exits with status 2.
"""


class UserError(Exception):
    """Bad input or environment, explained in one sentence for the user."""
