"""The one exception family for user errors.

Anything raised as a :class:`UserError` is the user's to fix (a bad file, field, value or line).
The CLI prints its message — which names the file, field or line and what to do — and exits
non-zero without a traceback. Library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class UserError(ValueError):
    """Bad input: the message names the file, field or line at fault and the fix."""


def section_errors(raw: object, section: str, source: str) -> Callable[[str, str], UserError]:
    """For validating a scenario's ``[section]`` table: a :class:`UserError` at once if ``raw``
    is not a table; else ``fail(key, msg)``, which makes the error for field ``section.key``
    (``"{source}: field 'section.key': msg"``)."""
    if not isinstance(raw, Mapping):
        raise UserError(f"{source}: field '{section}': must be a table ([{section}])")

    def fail(key: str, msg: str) -> UserError:
        return UserError(f"{source}: field '{section}.{key}': {msg}")

    return fail
