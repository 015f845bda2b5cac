"""The one exception type users see.

Raise :class:`UserError` with one sentence that names the problem and the fix; the CLI
prints it without a traceback and exits with status 2.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# A name between single backticks, alone or with a value: `n_jobs`, `grid.targets`, `keep='newest'`.
MARKED_NAME = re.compile(r"(?<!`)`([A-Za-z_][A-Za-z0-9_.]*)(?:=([^`]+))?`(?!`)")


class UserError(Exception):
    """Bad input or environment, explained in one sentence for the user.

    **Library code names what its caller passed, never a command-line flag.** A parameter, a
    grid key or a recipe key that the message asks to change is written between single
    backticks, alone or with the value to give it::

        raise UserError(f"`n_jobs` must be a positive integer, got {n_jobs!r}.")
        raise UserError("... pass `keep='newest'` to keep the newest record.")

    A Python caller reads exactly that. The command line reads the same sentence in its own
    words: its entry points print :meth:`with_flags` of the error with the verb's table
    ``{parameter: flag}`` (:func:`extract.cli.parser.flag_table`: every option's ``dest`` names
    its flag, plus the verb's own entries where a library parameter is spelled differently), so
    `` `n_jobs` `` reads ``--n-jobs`` and `` `keep='newest'` `` reads ``--keep newest``.

    Only a marked name that the table holds is rewritten, and only as a whole: the marker
    makes the rewrite exact where blind text replacement would also change the ``n`` of
    "n_train" or the word "out" in a sentence. A marked name the verb has no flag for (a grid
    key only a TOML file sets) stays as it is, backticks included, and reads as code.
    """

    def with_flags(self, flags: Mapping[str, str]) -> str:
        """The message with each marked name that ``flags`` maps replaced by its flag."""
        return with_flags(str(self), flags)


class OutputError(UserError):
    """An output could not be written (a full disk, an unwritable folder).

    Steps that carry on past a :class:`UserError` about their inputs (a report leaves out a
    figure whose data are missing) stop at this one: nothing after it could be written either,
    and a partial output must not read as complete.
    """


def with_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with every `` `name` `` and `` `name=value` `` whose ``name`` is in ``flags``
    written as that flag: `` `n_jobs` `` -> ``--n-jobs``, `` `keep='newest'` `` -> ``--keep newest``
    (a one-word value loses its quotes; a value with spaces keeps them for the shell),
    `` `overwrite=True` `` -> ``--overwrite`` (a boolean value is said by the flag itself, so the
    table maps ``resume`` to ``--no-resume``). A key of ``flags``
    may hold ``*`` for one dotted part of a grid key, which its flag repeats: with
    ``{"backbones.*.store": "--store *=PATH"}``, `` `backbones.control.store` `` reads
    ``--store control=PATH``; a flag that ends in ``=`` takes the value without a space
    (``{"subsets.*.*": "--set subsets.*.*="}``). Other text is left as it is."""

    def lookup(name: str) -> str | None:
        if name in flags:
            return flags[name]
        for key, flag in flags.items():
            if "*" in key:
                parts = re.fullmatch(r"\.".join("([^.]+)" if part == "*" else re.escape(part)
                                                 for part in key.split(".")), name)
                if parts:
                    for part in parts.groups():
                        flag = flag.replace("*", part, 1)
                    return flag
        return None

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        flag = lookup(name)
        if flag is None:
            return match.group(0)
        if value is None or value in ("True", "False"):
            return flag
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"" and not re.search(r"\s", value):
            value = value[1:-1]
        return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"

    return MARKED_NAME.sub(flag, message)
