# Zero-shot behaviour during pre-training (paper §5, Figure 2 right): the `zeroshot` stage scores
# every weight snapshot in the pretrain output (`pretrain.snapshot_every`) with the paper's four
# heuristics, without fine-tuning. It reads the declared pretrain output, never the checkpoints
# (rotated away, outside both DAGs), and the task data of `zeroshot.tasks` (fetched only when
# listed there: the tiny demo's SST-2 and CoLA; DPRD and RACE at gpt1 scale).

ZEROSHOT_DATA = gw.zeroshot_data(CFG["zeroshot"], CFG["fetch"])


rule zeroshot:
    input:
        pretrain="results/pretrain",
        data=ZEROSHOT_DATA,
        code=code("zeroshot"),
    output:
        directory("results/zeroshot"),
    log:
        "results/logs/zeroshot.log",
    benchmark:
        "results/benchmarks/zeroshot.tsv"
    threads: 1
    resources:
        gpu=0,
    params:
        knobs=knobs("zeroshot"),
        extra=overrides("zeroshot"),
    shell:
        "python -m gptpipe zeroshot --params params.yaml --pretrain {input.pretrain}"
        " --data data --output {output} {params.extra} 2> {log}"
