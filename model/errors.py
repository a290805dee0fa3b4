"""The one user-facing error type: a one-line message that says what is wrong and what to do."""
from __future__ import annotations


class StoryError(Exception):
    """An error meant for the user. ``str(err)`` is a single line; no traceback is shown."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
