"""Micro-scale shards of the real sample for the pre-training tests (test_pretrain, test_ddp,
test_resume): built once per test session through the real `bpe` and `shard` code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import write_ingest_dir
from gptpipe.bpe import tokenizer as bpe
from gptpipe.vocab import save as save_tokenizer
from gptpipe.config import BpeConfig, ShardConfig
from gptpipe.shard import cli as shard

REPO = Path(__file__).resolve().parents[1]
# Fixed threads make CPU runs bitwise repeatable; one thread is also the fastest for a micro
# model on a busy 2-core machine.
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GPTPIPE_NPROC": "1"}


def micro_shards(base: Path, texts: list[str], vocab: int = 1_024) -> tuple[Path, Path]:
    """(shard folder, tokenizer.json) from ~300,000 characters of real articles, every 5th one
    in val; 64-token windows in shards of 128, so two slots (or ranks) get disjoint shards."""
    folder = base / f"micro-shards-{vocab}"
    rows, chars = [], 0
    for i, text in enumerate(texts):
        if chars >= 300_000:
            break
        rows.append({"id": i + 1, "title": f"a{i}", "text": text[:30_000],
                     "split": "val" if i % 5 == 2 else "train"})
        chars += len(rows[-1]["text"])
    ingest = write_ingest_dir(folder / "ingest", rows)
    tok = bpe.train([r["text"] for r in rows if r["split"] == "train"],
                    BpeConfig(vocab_size=vocab, style="bytelevel"))
    save_tokenizer(tok, folder / "tokenizer.json")
    shard.run(ShardConfig(context=64, samples_per_shard=128), [ingest],
              folder / "tokenizer.json", folder / "shards")
    return folder / "shards", folder / "tokenizer.json"


def pretrain_cmd(shards: Path, tokenizer: Path, out: Path, *sets: str) -> list[str]:
    """The CLI at micro scale, writing checkpoints to OUT/ck and the model to OUT/out."""
    cmd = [sys.executable, "-m", "gptpipe", "pretrain", "--params", str(REPO / "params.yaml"),
           "--scale", "micro", "--shards", str(shards), "--tokenizer", str(tokenizer),
           "--checkpoints", str(out / "ck"), "--output", str(out / "out")]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def run(cmd: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ENV, **(env or {})}, **kwargs)
