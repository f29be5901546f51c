"""`gptpipe sample`: generate text from a model folder, as a quick look at what it learned.

    gptpipe sample --model results/pretrain --prompt "The history of" --tokens 60
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from . import vocab
from .cli import run_cli
from .errors import GptpipeError
from .model import GPT
from .modeldir import TOKENIZER, load_model_dir, model_folder

NAME = "sample"
log = logging.getLogger(__name__)


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, generator: torch.Generator | None = None,
             stop: int | None = None) -> torch.Tensor:
    """Extend token ids `idx` (1, T) by up to `new_tokens` sampled tokens; (1, T + n).

    Each step sees at most the model's context (the oldest tokens drop out); `temperature` 0
    picks the most likely token; `top_k` keeps only the k most likely; `stop` ends early.
    """
    model.eval()
    for _ in range(new_tokens):
        window = idx[:, -model.cfg.context:]  # (1, <= context)
        logits, _ = model(window)
        logits = logits[:, -1, :].float()  # (1, vocab)
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)  # (1, 1)
        idx = torch.cat([idx, nxt], dim=1)
        if stop is not None and int(nxt) == stop:
            break
    return idx


def run(model_dir: Path, prompt: str, tokens: int = 50, temperature: float = 0.8,
        top_k: int | None = 40, seed: int = 0) -> str:
    """The prompt followed by the sampled continuation, decoded."""
    if tokens < 0 or temperature < 0 or (top_k is not None and top_k < 0):
        raise GptpipeError("--tokens, --temperature and --top-k must be >= 0")
    folder = model_folder(Path(model_dir))
    model, cfg = load_model_dir(folder)
    tok, ids = vocab.load(folder / TOKENIZER)
    prompt_ids = tok.encode(prompt).ids or [ids.eod]  # an empty prompt starts a new document
    if len(prompt_ids) > cfg.context:
        log.warning("the prompt has %d tokens; the model sees the last %d", len(prompt_ids),
                    cfg.context)
    idx = torch.tensor([prompt_ids], dtype=torch.long)
    out = generate(model, idx, tokens, temperature=temperature, top_k=top_k or None,
                   generator=torch.Generator().manual_seed(seed), stop=ids.eod)
    new = [i for i in out[0, len(prompt_ids):].tolist() if i != ids.eod]
    return prompt + tok.decode(new, skip_special_tokens=True)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"gptpipe {NAME}", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, type=Path, metavar="MODEL_DIR",
                   help="model folder (model.safetensors, model.json, tokenizer.json)")
    p.add_argument("--prompt", default="", help="text to continue (default: a new document)")
    p.add_argument("--tokens", type=int, default=50, help="tokens to generate (default 50)")
    p.add_argument("--temperature", type=float, default=0.8,
                   help="softmax temperature; 0 = always the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=40,
                   help="sample among the k most likely tokens; 0 = all (default 40)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    def body(args: argparse.Namespace) -> None:
        text = run(args.model, args.prompt, args.tokens, args.temperature, args.top_k, args.seed)
        sys.stdout.write(text + "\n")

    return run_cli(NAME, argv, parser(), body)
