"""Pre-training ablation at tiny scale on a CPU: `full` vs `no_pretrain` on SST-2 and CoLA.

    python benchmarks/ablation_tiny.py [--model DIR] [--data DIR] [--seeds 0 1 2]

The pre-trained model is `--model` (a model folder or a `pretrain` output), else the project's
`results/pretrain`, else it is made first with `snakemake results/pretrain` on the shared
sample (the tiny preset: a few minutes on 2 cores). Each (task, variant, seed) then fine-tunes
with the tiny preset's recipe on a capped training subset (the same subset for every run) and
is scored on the whole dev split; runs go two at a time, one thread each. Prints the dev score
(MCC for CoLA, accuracy for SST-2, in %) per run and the mean ± sample std over seeds.

The paper's Table 5 sees pre-training add 26.5 MCC points on CoLA and 7.3 accuracy points on
SST-2; at this scale (a 5 M parameter model pre-trained for minutes on ~100 articles) no such
benefit is expected, so this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pretrained(args: argparse.Namespace) -> Path:
    if args.model is not None:
        return args.model
    out = REPO / "results/pretrain"
    if not out.is_dir():
        print(f"no {out}: running `snakemake results/pretrain` on the shared sample", flush=True)
        subprocess.run([sys.executable, "-m", "snakemake", "--cores", "all", "results/pretrain",
                        "--config", f"mirror={args.data}"], cwd=REPO, check=True)
    return out


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _one(job: tuple[str, str, int], model: str, data: str, out: str, train_examples: int,
         epochs: int) -> dict:
    """One fine-tuning run in a worker process; returns the figures of its metrics.json."""
    from gptpipe.config import load_params, resolve_section
    from gptpipe.finetune.cli import Job, run

    task, variant, seed = job
    params = load_params(REPO / "params.yaml") | {"scale": "tiny"}
    cfg = resolve_section(params, "finetune", {
        "max_train_examples": train_examples, "max_eval_examples": 0, "epochs": epochs,
        "overrides": {task: {"submit": False}},
    })
    return run(cfg, Job(task, variant, seed), Path(model), Path(data),
               Path(out) / task / variant / f"seed{seed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder or pretrain output to use")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get(
        "GPTPIPE_MIRROR", REPO.parent / "shared" / "data")), help="task files (the mirror)")
    parser.add_argument("--out", type=Path, default=REPO / "results/benchmarks/ablation_tiny")
    parser.add_argument("--tasks", nargs="+", default=["SST-2", "CoLA"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--train-examples", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    model = _pretrained(args)
    jobs = [(t, v, s) for t in args.tasks for v in ("full", "no_pretrain") for s in args.seeds]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_worker_init) as pool:
        futures = {job: pool.submit(_one, job, str(model), str(args.data), str(args.out),
                                    args.train_examples, args.epochs) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    wall = time.perf_counter() - t0
    print(f"model {model}; {args.train_examples} train examples x {args.epochs} epochs, "
          f"whole dev split, seeds {args.seeds}; {len(jobs)} runs in {wall:.0f} s")
    print(f"{'task':<6} {'variant':<12} {'metric':<9} {'mean':>7} {'std':>6}   per seed")
    for task in args.tasks:
        for variant in ("full", "no_pretrain"):
            runs = [results[(task, variant, s)] for s in args.seeds]
            values = [r["headline"]["percent"] or 0.0 for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{task:<6} {variant:<12} {runs[0]['headline']['metric']:<9} "
                  f"{statistics.mean(values):7.2f} {std:6.2f}   "
                  + " ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
