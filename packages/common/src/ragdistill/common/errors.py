"""The one exception type users see: a message that names the file, line and fix."""

from __future__ import annotations


class RagdistillError(Exception):
    """A user-facing error: bad input, a missing artifact or a bad config.

    The CLI prints its message without a traceback and exits with status 2, so the message
    itself must say what is wrong, where (file and line when there is one) and how to fix it.
    """
