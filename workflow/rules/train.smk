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
    threads: all_cores()
    resources:
        gpu=0,
        nodes=1,
    params:
        launch=pretrain_launch,
        model=knobs("model"),
        knobs=knobs("pretrain"),
        # --scale/--set SECTION.key=... for Snakemake --config overrides of either section
        extra=gw.cli_overrides_sections(
            FILE_PARAMS, config, gw.stage_sections("pretrain")
        ),
    shell:
        "{params.launch} -m gptpipe pretrain"
        " --params params.yaml --shards {input.shard}"
        " --tokenizer {input.bpe}/tokenizer.json --checkpoints results/checkpoints/pretrain"
        " --output {output} {params.extra} 2>&1 | tee {log} >&2"
