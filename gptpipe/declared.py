"""The pipeline's declared inputs: `gptpipe/fetch/sources.yaml` (package data), the
`fetch.sources` of every configuration whose params do not give their own list.

They are declarations, not knobs: kept out of params.yaml so that its sections hold what an
experiment varies (DVC's `exp show` makes a column of every params key). The fetch stage
tracks the file itself, in both tools (`gptpipe.deps.STAGE_DATA`).
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import read_yaml

SOURCES_FILE = Path(__file__).resolve().parent / "fetch" / "sources.yaml"


@functools.cache
def _load() -> tuple[dict[str, Any], ...]:
    data = read_yaml(SOURCES_FILE, missing="declared sources not found", error=ConfigError)
    if not isinstance(data, dict) or set(data) != {"sources"} or not isinstance(
            data["sources"], list):
        raise ConfigError(f"{SOURCES_FILE}: expected one key, `sources`, holding a list")
    return tuple(data["sources"])


def declared_sources() -> list[dict[str, Any]]:
    """The declared sources as plain `fetch.sources` entries (a fresh copy each call)."""
    return copy.deepcopy(list(_load()))
