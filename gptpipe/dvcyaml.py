"""`gptpipe dvc-yaml`: write dvc.yaml, the DVC pipeline, from the same functions the Snakefile
calls, so that the two tools run the same stages with the same command lines, deps and outs.

The jobs come from `params.yaml` at its own `scale` (DVC's templating cannot resolve presets);
each stage's code deps are `gptpipe.deps.stage_code`. tests/test_workflow_sync.py checks that the
committed dvc.yaml is what this writes, so after a change to the DAG or to any stage's imports:

    gptpipe dvc-yaml            # rewrite dvc.yaml
    gptpipe dvc-yaml --check    # exit 1, naming the difference, when dvc.yaml is stale
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import workflow as gw
from .atomic import write_text
from .cli import run_cli
from .config import load_params
from .deps import stage_code
from .errors import ConfigError

HEADER = """\
# Written by `gptpipe dvc-yaml` from params.yaml and the stages' imports: do not edit by hand.
# The same stages and command lines as the Snakefile (tests/test_workflow_sync.py checks both,
# and that this file is current). Each stage tracks its own params section (plus `scale`, which
# picks presets; key by key where it ignores some keys, gptpipe/workflow.py JOB_IGNORES) and its
# code: every module its package imports (gptpipe/deps.py).
"""


def _params(stage: str) -> list[str]:
    return gw.job_params(stage)


def _ingest(cfg: Mapping[str, Any]) -> dict:
    parts = cfg["fetch"].dump_parts
    indexed = {s.index_path is not None for s in parts}
    if len(indexed) > 1:
        raise ConfigError("fetch: some dump parts have an index and some do not; dvc.yaml's "
                          "`foreach` needs one command line for all of them")
    has_index = indexed == {True}
    items = {s.name: {"dump": f"data/{s.path}", **({"index": f"data/{s.index_path}"}
                                                  if has_index else {})} for s in parts}
    index = " --index ${item.index}" if has_index else ""
    return {"foreach": items, "do": {
        "cmd": ("python -m gptpipe ingest --params params.yaml --input ${item.dump}"
                f"{index} --output results/ingest/${{key}}"),
        "deps": ["${item.dump}", *(["${item.index}"] if has_index else []),
                 *stage_code("ingest")],
        "params": _params("ingest"),
        "outs": ["results/ingest/${key}"],
    }}


def _fetch_dump(fetch: Any) -> dict[str, dict]:
    """`fetch_dump`: one job per part of a packaged corpus (nothing for `sample`)."""
    dumps = gw.corpus_dumps(fetch)
    if not dumps:
        return {}
    return {"fetch_dump": {"foreach": {name: {"dump": f"data/{path}"}
                                       for name, path in dumps.items()}, "do": {
        "cmd": "python -m gptpipe fetch --params params.yaml --output data --only ${key}",
        "deps": [str(gw.corpus_file(fetch)), *stage_code("fetch")],
        "params": _params("fetch_dump"),
        "outs": ["${item.dump}"],
    }}}


def _pretrain_lstm(ft: Any) -> dict[str, dict]:
    """`pretrain_lstm`: Table 5's LSTM branch, when a fine-tuning job has variant `lstm`."""
    if not gw.lstm_branch(ft):
        return {}
    return {"pretrain_lstm": {
        "cmd": ("python -m gptpipe pretrain --arch lstm --params params.yaml --shards results/shard"
                " --tokenizer results/bpe/tokenizer.json"
                " --checkpoints results/checkpoints/pretrain_lstm --output " + gw.PRETRAIN_LSTM),
        "deps": ["results/shard", "results/bpe", *stage_code("pretrain")],
        "params": _params("pretrain_lstm"),
        "outs": [gw.PRETRAIN_LSTM],
    }}


def stages(params: Mapping[str, Any]) -> dict[str, dict]:
    """dvc.yaml's `stages` for `params` (a params.yaml's contents), in DAG order."""
    cfg = gw.validate(params, params)
    fetch, ft = cfg["fetch"], cfg["finetune"]
    needed = gw.needed_sources(ft, fetch, cfg["zeroshot"])
    ingested = [f"results/ingest/{s.name}" for s in fetch.dump_parts]
    jobs = gw.finetune_jobs(ft)
    job_dirs = [gw.finetune_dir(t, v, s) for t, v, s in jobs]
    only = gw.fetch_only_flags(ft, fetch, cfg["zeroshot"])
    return {
        "fetch": {
            "cmd": f"python -m gptpipe fetch --params params.yaml --output data {only}".strip(),
            "deps": stage_code("fetch"),
            "params": _params("fetch"),
            "outs": [f"data/{p}" for p in gw.fetch_outputs(fetch, needed)],
        },
        **_fetch_dump(fetch),
        "ingest": _ingest(cfg),
        "bpe": {
            "cmd": (f"python -m gptpipe bpe --params params.yaml --ingest {' '.join(ingested)}"
                    " --output results/bpe"),
            "deps": [*ingested, *stage_code("bpe")],
            "params": _params("bpe"),
            "outs": ["results/bpe"],
        },
        "shard": {
            "cmd": (f"python -m gptpipe shard --params params.yaml --ingest {' '.join(ingested)}"
                    " --tokenizer results/bpe/tokenizer.json --output results/shard"),
            "deps": [*ingested, "results/bpe", *stage_code("shard")],
            "params": _params("shard"),
            "outs": ["results/shard"],
        },
        # The rule starts torchrun with its GPU count; `python -m gptpipe pretrain` re-launches
        # itself under torchrun with one process per visible GPU.
        "pretrain": {
            "cmd": ("python -m gptpipe pretrain --params params.yaml --shards results/shard"
                    " --tokenizer results/bpe/tokenizer.json"
                    " --checkpoints results/checkpoints/pretrain --output results/pretrain"),
            "deps": ["results/shard", "results/bpe", *stage_code("pretrain")],
            "params": _params("pretrain"),
            "outs": ["results/pretrain"],
        },
        **_pretrain_lstm(ft),
        # `foreach` over named jobs, not `matrix`: the ablation variants run on a few tasks
        # only. Every job depends on all the task data the jobs read, as under Snakemake, and
        # on the pre-training its variant starts from (`lstm`: the LSTM branch's).
        "finetune": {
            "foreach": {f"{t}-{v}-{s}": {"task": t, "variant": v, "seed": s,
                                         "model": gw.pretrain_dir(v)} for t, v, s in jobs},
            "do": {
                "cmd": ("python -m gptpipe finetune --params params.yaml --task ${item.task}"
                        " --variant ${item.variant} --seed ${item.seed} --model ${item.model}"
                        " --data data --output "
                        + gw.finetune_dir("${item.task}", "${item.variant}", "${item.seed}")),
                "deps": ["${item.model}", *gw.finetune_data(ft, fetch),
                         *stage_code("finetune")],
                "params": _params("finetune"),
                "outs": [gw.finetune_dir("${item.task}", "${item.variant}", "${item.seed}")],
            },
        },
        "zeroshot": {
            "cmd": ("python -m gptpipe zeroshot --params params.yaml --pretrain results/pretrain"
                    " --data data --output results/zeroshot"),
            "deps": ["results/pretrain", *gw.zeroshot_data(cfg["zeroshot"], fetch),
                     *stage_code("zeroshot")],
            "params": _params("zeroshot"),
            "outs": ["results/zeroshot"],
        },
        "report": {
            "cmd": (f"python -m gptpipe report --params params.yaml --pretrain results/pretrain"
                    f" --finetune {' '.join(job_dirs)} --bpe results/bpe --shard results/shard"
                    f" --ingest {' '.join(ingested)} --zeroshot results/zeroshot"
                    " --output results/report"),
            "deps": ["results/pretrain", *job_dirs, "results/bpe", "results/shard", *ingested,
                     "results/zeroshot", *stage_code("report")],
            "params": _params("report"),
            "outs": ["results/report"],
        },
    }


# `dvc metrics show/diff` and `exp show` read these (files inside the stages' outputs, so
# declared at the top level): pre-training's final figures and one fine-tuning score per task
# and variant (mean and spread over seeds, written by the report from its scores table).
METRICS = ["results/pretrain/metrics.json", "results/report/scores.json"]
# `dvc plots show/diff`: the pre-training curves (CSV tables the pretrain stage writes beside
# metrics.jsonl, one per curve since validation is logged on fewer updates) and the scores.
_TRAIN, _VAL = "results/pretrain/curves/train.csv", "results/pretrain/curves/val.csv"
PLOTS = [
    {"Pre-training loss (nats per token)": {
        "x": "tokens", "y": {_TRAIN: "loss", _VAL: "val_loss"}, "x_label": "tokens seen",
        "y_label": "loss"}},
    {"Pre-training learning rate": {"x": "tokens", "y": {_TRAIN: "lr"},
                                    "x_label": "tokens seen", "y_label": "lr"}},
    {"Fine-tuning scores (percent, mean over seeds)": {
        "template": "bar_horizontal", "x": "mean", "y": {"results/report/scores.csv": "job"},
        "x_label": "score", "y_label": "task, variant"}},
]


def render(params: Mapping[str, Any]) -> str:
    """The text of dvc.yaml for `params`."""
    jobs = stages(params)
    # the LSTM branch's pre-training figures too, when the DAG has it (Table 5's LSTM row)
    lstm = [f"{gw.PRETRAIN_LSTM}/metrics.json"] if "pretrain_lstm" in jobs else []
    body = yaml.safe_dump({"stages": jobs, "metrics": [METRICS[0], *lstm, *METRICS[1:]],
                           "plots": PLOTS},
                          sort_keys=False, width=100_000, allow_unicode=True)
    # a blank line between stages and before `metrics` and `plots`, as a person would write it
    lines = body.splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        top = not line.startswith((" ", "-"))
        if top or line.startswith("  ") and not line.startswith("   ") and out[-1] != "stages:":
            out.append("")
        out.append(line)
    return HEADER + "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gptpipe dvc-yaml", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", metavar="FILE",
                        help="params file whose jobs dvc.yaml runs (default: params.yaml)")
    parser.add_argument("--output", type=Path, default=Path("dvc.yaml"), metavar="FILE",
                        help="where to write (default: dvc.yaml)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the file differs from what it would be")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    def body(args: argparse.Namespace) -> None:
        text = render(load_params(args.params))
        if not args.check:
            write_text(args.output, text)
            return
        old = args.output.read_text(encoding="utf-8") if args.output.is_file() else ""
        if old != text:
            diff = difflib.unified_diff(old.splitlines(), text.splitlines(), str(args.output),
                                        "gptpipe dvc-yaml", lineterm="", n=1)
            sys.stderr.write("\n".join(diff) + "\n")
            raise ConfigError(f"{args.output} is stale: run `gptpipe dvc-yaml` to rewrite it")

    return run_cli("dvc-yaml", argv, parser, body)
