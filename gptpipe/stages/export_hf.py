"""`gptpipe export-hf`: a gptpipe model folder -> a Hugging Face `OpenAIGPTLMHeadModel` folder.

    gptpipe export-hf --input results/pretrain --output results/hf/model

The output loads with `OpenAIGPTLMHeadModel.from_pretrained(HF_DIR)` and
`AutoTokenizer.from_pretrained(HF_DIR)`; see `gptpipe/hf.py` for the mapping.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..hf import export_hf
from .common import run_cli

NAME = "export-hf"
log = logging.getLogger(__name__)


def run(input_dir: Path, output_dir: Path) -> dict:
    """Export `input_dir` (a `pretrain` output or a model folder) to `output_dir`."""
    figures = export_hf(input_dir, output_dir)
    log.info("wrote %s: %d parameters, %d embedding rows, %s tokenizer", output_dir,
             figures["parameters"], figures["vocab_size"], figures["tokenizer_style"])
    return figures


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"gptpipe {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, type=Path, metavar="MODEL_DIR",
                   help="a `pretrain` output, or a model folder (model.safetensors, model.json, "
                   "tokenizer.json)")
    p.add_argument("--output", required=True, type=Path, metavar="HF_DIR",
                   help="Hugging Face folder to write (replaced atomically if it exists)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_cli(NAME, argv, parser(), lambda args: run(args.input, args.output))
