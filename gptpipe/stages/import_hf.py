"""`gptpipe import-hf`: a Hugging Face GPT-1 folder -> a gptpipe model folder, ready to fine-tune.

    gptpipe import-hf --input openai-gpt/ --output results/pretrain/model

Reads `config.json`, `model.safetensors` (or `pytorch_model.bin`, tensors only) and the
tokenizer (`vocab.json` + `merges.txt`); appends gptpipe's 5 special tokens and, when the
checkpoint lacks them, 5 embedding rows drawn from N(0, 0.02) with `--seed` (paper §3.3).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..hf import import_hf
from .common import run_cli

NAME = "import-hf"
log = logging.getLogger(__name__)


def run(input_dir: Path, output_dir: Path, seed: int = 0) -> dict:
    """Import `input_dir` into `output_dir` (model.safetensors, model.json, tokenizer.json)."""
    figures = import_hf(input_dir, output_dir, seed=seed)
    log.info("wrote %s: %d parameters, %d embedding rows (%d added)", output_dir,
             figures["parameters"], figures["vocab_size"], figures["special_rows_added"])
    return figures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"gptpipe {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, type=Path, metavar="HF_DIR",
                   help="Hugging Face OpenAIGPT folder (config.json, weights, vocab.json, "
                   "merges.txt)")
    p.add_argument("--output", required=True, type=Path, metavar="MODEL_DIR",
                   help="gptpipe model folder to write (replaced atomically if it exists)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the new special-token embedding rows (default: 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(NAME, argv, parser(), lambda args: run(args.input, args.output, args.seed))
