"""The one exception type a stage raises for bad input or bad config.

The CLI turns it into a one-line message (no traceback) and a non-zero exit, so every message
must stand alone: name the file, and the line, byte offset, page or key where it is known.
"""

from __future__ import annotations


class GptpipeError(Exception):
    """Bad input, bad config or a failed check: the message is shown to the user as is."""


class ConfigError(GptpipeError):
    """An invalid `params.yaml` (unknown key, wrong type, impossible value)."""
