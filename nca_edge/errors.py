"""The one exception type the command line turns into a one-line message (never a traceback)."""


class NCAEdgeError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""
