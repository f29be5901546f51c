"""`gptpipe <stage> ...` / `python -m gptpipe <stage> ...`: one dispatch table over stage mains."""

from __future__ import annotations

import importlib
import sys

# Command name -> `module` or `module:function` whose function (default `main`) takes argv and
# returns the exit status. Imported lazily so that `gptpipe fetch` does not
# pay for importing torch.
COMMANDS: dict[str, tuple[str, str]] = {
    "fetch": ("gptpipe.fetch.cli", "resolve every declared source (mirror or download)"),
    "ingest": ("gptpipe.ingest.cli", "one Wikipedia dump part -> clean prose in Parquet"),
    "bpe": ("gptpipe.bpe.cli", "train the BPE tokenizer on the ingested text"),
    "shard": ("gptpipe.shard.cli", "encode text into WebDataset shards of token windows"),
    "pretrain": ("gptpipe.pretrain.cli", "pre-train the language model on the shards"),
    "finetune": ("gptpipe.finetune.cli", "fine-tune a model on one task (variant, seed)"),
    "zeroshot": ("gptpipe.zeroshot.cli", "score pre-training's snapshots zero-shot (Fig. 2)"),
    "report": ("gptpipe.report.cli", "HTML/Markdown report: curves, paper tables, provenance"),
    "plan": ("gptpipe.plan", "what a run will cost (GPU-hours, disk), before it runs"),
    "mirror": ("gptpipe.mirror", "download every declared source into a mirror folder"),
    "sample": ("gptpipe.sample", "generate text from a model folder"),
    "export-hf": ("gptpipe.hf:export_main", "a model folder -> a Hugging Face OpenAIGPT folder"),
    "import-hf": ("gptpipe.hf:import_main", "a Hugging Face GPT-1 folder -> a model folder"),
    "dvc-yaml": ("gptpipe.dvcyaml", "write dvc.yaml from params.yaml and the stages' imports"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: gptpipe <command> [options]   (gptpipe <command> --help for its options)", ""]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gptpipe: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, _, function = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)


if __name__ == "__main__":
    sys.exit(main())
