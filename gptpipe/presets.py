"""Scale presets: what `scale: NAME` in params.yaml sets before the file's own overrides.

The dataclass defaults in `config.py` are the paper's values, so `gpt1` only adds what the
dataclasses cannot know. `tiny` runs the whole DAG on a laptop CPU in minutes on the shared
Wikipedia sample; `micro` is smaller still, for the workflow tests.
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, dict]] = {
    "gpt1": {},
    "tiny": {
        # ~100 articles: hold out ~10% so validation has a few whole articles to score.
        "ingest": {"val_fraction": 0.1, "rows_per_file": 2_000},
        # 8,192 base tokens on 2.65 M characters (see PAPER.md, "Seen on this machine").
        "bpe": {"vocab_size": 8_192},
        # ~0.6 M tokens / 129 per window = ~4,700 windows: 16 shards of 256 give several ranks
        # x workers something to split.
        "shard": {"context": 128, "samples_per_shard": 256},
    },
    "micro": {
        "ingest": {"val_fraction": 0.1, "rows_per_file": 2_000},
        "bpe": {"vocab_size": 1_024},
        "shard": {"context": 64, "samples_per_shard": 512},
    },
}
