"""The one user-facing error type: the CLI prints it as a single line and exits 2."""


class LatkitError(Exception):
    """A user error (bad input, missing runtime, corrupt file) with a one-line message."""
