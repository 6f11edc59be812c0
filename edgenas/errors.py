"""User-facing errors.

Anything raised as :class:`EdgenasError` is a problem with the user's input (a bad arch string, an
unknown space, a missing file). The CLI prints its message on one line and exits with code 2; it never
shows a traceback for these.
"""

from __future__ import annotations


class EdgenasError(Exception):
    """A problem with user input: one line saying what is wrong and how to fix it."""


class ArchParseError(EdgenasError, ValueError):
    """An architecture string or JSON object that does not describe a member of the space."""


class UnknownNameError(EdgenasError, KeyError):
    """An unknown registry name (space, estimator, device, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
