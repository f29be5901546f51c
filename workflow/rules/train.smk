# The training half. `pretrain` runs under torchrun, one process per GPU the job's resources give
# it (`gpu`, GPUs in all, which the SLURM profile also asks the scheduler for, so SLURM makes
# exactly those visible); without GPUs, one CPU process. With `nodes` > 1 it starts one torchrun
# per node through `srun` (gptpipe.workflow.pretrain_launcher). dvc.yaml runs the same stage as `python -m gptpipe
# pretrain`, which re-launches itself under torchrun with one process per visible GPU: the two
# command lines differ only in that launcher prefix (tests/test_workflow_sync.py).
# Its progress lines (update, loss, tokens/s, ETA) go to the terminal as well as to the log: it is
# the one long job of the demo. (Snakemake runs shell commands with pipefail, so a failure of
# the stage still fails the job.)
# Checkpoints live outside the declared output, because Snakemake and DVC remove a job's outputs
# before running it again: a rerun resumes from them.
# Time limits: a cluster caps a job's runtime, and paper-scale pre-training on a few GPUs runs
# longer. Inside a SLURM job the stage stops `pretrain.time_limit_margin` seconds before the
# limit, after a checkpoint, with a non-zero status; a job that SLURM kills at the limit fails too
# (TIMEOUT). `retries` resubmits the job either way, and each attempt resumes from the newest
# checkpoint. Capped, so that a real bug is not resubmitted onto GPUs again and again: 3 retries
# give 4 time limits in all, after which the same command again resumes (or raise it here; the
# directive wins over `--retries`). It applies to local runs too, where a failure is retried 3
# times, each from the last checkpoint. dvc.yaml has no retries: `dvc repro` again resumes.


rule pretrain:
    input:
        shard="results/shard",
        bpe="results/bpe",
        code=code("pretrain"),
    output:
        directory("results/pretrain"),
    log:
        "results/logs/pretrain.log",
    benchmark:
        "results/benchmarks/pretrain.tsv"
    # Before the LSTM branch's one-thread job when both are ready: on a small machine that one
    # then runs beside the fine-tuning jobs instead of leaving cores idle that this one wants.
    priority: 1
    # Only where jobs are submitted: inside a job (Snakemake's `--mode remote` job step) the
    # directive would override the `--retries 0` the executor passes there, and the job would
    # rerun within its own allocation, into the same time limit
    # (snakemake-executor-plugin-slurm#284).
    retries: 0 if workflow.remote_exec else 3
    threads: all_cores()
    resources:
        gpu=0,
        nodes=1,
    params:
        launch=pretrain_launch,
        # less the LSTM branch's own knobs (gptpipe.workflow.JOB_IGNORES)
        model=knobs("model", "pretrain"),
        knobs=knobs("pretrain", "pretrain"),
        # --scale/--set SECTION.key=... for Snakemake --config overrides of either section
        extra=gw.cli_overrides_sections(
            FILE_PARAMS, config, gw.stage_sections("pretrain"), "pretrain"
        ),
    shell:
        "{params.launch} -m gptpipe pretrain"
        " --params params.yaml --shards {input.shard}"
        " --tokenizer {input.bpe}/tokenizer.json --checkpoints results/checkpoints/pretrain"
        " --output {output} {params.extra} 2>&1 | tee {log} >&2"
