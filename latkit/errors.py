"""The one user-facing error type: the CLI prints it as a single line and exits 2."""
from __future__ import annotations


class LatkitError(Exception):
    """A user error (bad input, missing runtime, corrupt file) with a one-line message."""


class LatkitWarning(UserWarning):
    """Something the user should know that does not stop the command; the CLI prints it as one line."""


def one_line(text: object, limit: int | None = 300) -> str:
    """``text`` with its whitespace (newlines included) folded to single spaces, cut at ``limit`` characters: a
    third-party message fit for a one-line error."""
    folded = " ".join(str(text).split())
    return folded if limit is None else folded[:limit]
