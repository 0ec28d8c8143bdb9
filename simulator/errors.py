"""The one exception family for user errors.

Anything raised as a :class:`UserError` is the user's to fix (a bad file, field, value or line).
The CLI prints its message — which names the file, field or line and what to do — and exits
non-zero without a traceback. Library callers get an ordinary ``ValueError`` subclass.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message names the file, field or line at fault and the fix."""
