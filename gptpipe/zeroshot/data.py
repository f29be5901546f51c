"""The examples each zero-shot task scores, read from `data/` (as `fetch` laid it out).

SST-2, CoLA and RACE come through the fine-tuning task registry (`gptpipe.tasks`). DPRD (the
Definite Pronoun Resolution set of Rahman & Ng, 2012) is read here: it is never fine-tuned. Its
files hold one example per block of four lines (sentence, pronoun, the two candidates joined
by a comma, the correct one) and a blank line.

A cap (`zeroshot.max_examples`) keeps the examples whose sha256(salt, id) is smallest, in file
order, so the subset never depends on file order or a seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import ZeroshotConfig
from ..errors import GptpipeError
from ..tasks import Example, get
from ..tasks.loaders import load_split

SALT = "gptpipe-zeroshot"
# task -> (splits read, the split scored). CoLA's threshold is chosen on train. None of the
# heuristics fits anything to the scored split, and test stays untouched where dev exists.
SPLITS: dict[str, tuple[tuple[str, ...], str]] = {
    "SST-2": (("dev",), "dev"),
    "CoLA": (("train", "dev"), "dev"),
    "RACE": (("dev",), "dev"),
    "DPRD": (("test",), "test"),
}
METRICS = {"SST-2": "accuracy", "CoLA": "mcc", "RACE": "accuracy", "DPRD": "accuracy"}
DPRD_DIR = "other/DPRD"
DPRD_FILES = {"train": "train.c.txt", "test": "test.c.txt"}


def cap_key(ex_id: str) -> bytes:
    return hashlib.sha256(f"{SALT}\0{ex_id}".encode("utf-8")).digest()


def files_read(cfg: ZeroshotConfig) -> list[str]:
    """Paths under `data/` of every file the configured tasks read (RACE: its split folders)."""
    paths = []
    for task in cfg.tasks:
        for split in SPLITS[task][0]:
            if task == "DPRD":
                paths.append(f"{DPRD_DIR}/{DPRD_FILES[split]}")
            else:
                spec = get(task)
                paths.append(f"{spec.data_dir}/{spec.files[split]}")
    return paths


def load(task: str, data_root: Path, limit: int) -> dict[str, list[Example]]:
    """Split -> examples (at most `limit` each; 0: all) of the splits `task` reads."""
    out = {}
    for split in SPLITS[task][0]:
        if task == "DPRD":
            examples = read_dprd(Path(data_root) / DPRD_DIR / DPRD_FILES[split])
            if limit:
                keep = set(sorted((ex.id for ex in examples), key=cap_key)[:limit])
                examples = [ex for ex in examples if ex.id in keep]
        else:
            examples, _ = load_split(get(task), data_root, split, limit=limit, rank=cap_key)
        out[split] = examples
    return out


def read_dprd(path: Path) -> list[Example]:
    """Every example of one DPRD file; a block that is not four lines, or whose answer is not
    one of its candidates, fails naming its line."""
    if not path.is_file():
        raise GptpipeError(f"{path}: DPRD file not found (source dprd-test in fetch.sources)")
    lines = path.read_text(encoding="utf-8").splitlines()
    examples, block, first = [], [], 0
    for n, raw in enumerate([*lines, ""], 1):
        line = raw.strip()
        if line:
            first = first or n
            block.append(line)
            continue
        if block:
            examples.append(_dprd_example(block, path, first))
        block, first = [], 0
    if not examples:
        raise GptpipeError(f"{path}: no DPRD examples")
    return examples


def _dprd_example(block: list[str], path: Path, line: int) -> Example:
    if len(block) != 4:
        raise GptpipeError(f"{path}:{line}: expected 4 lines (sentence, pronoun, candidates, "
                           f"answer), got {len(block)}")
    sentence, pronoun, candidates, answer = block
    choices = tuple(c.strip() for c in candidates.split(","))
    if len(choices) != 2 or answer.strip() not in choices:
        raise GptpipeError(f"{path}:{line + 3}: answer {answer!r} is not one of the two "
                           f"candidates {candidates!r}")
    return Example(f"{path.stem}:{line}", (sentence, pronoun), choices,
                   choices.index(answer.strip()))
