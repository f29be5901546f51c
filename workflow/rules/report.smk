# The report: every stage's figures beside the paper's tables, in one self-contained HTML page
# (and Markdown). It reads only what the other stages wrote, so it reruns whenever any of them
# does, and on a change to the `report` section. Its figures also go into `snakemake --report`.


rule report:
    input:
        pretrain="results/pretrain",
        finetune=FINETUNE_OUTPUTS,
        bpe="results/bpe",
        shard="results/shard",
        ingest=expand("results/ingest/{part}", part=PARTS),
        zeroshot="results/zeroshot",
        code=code("report"),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Results",
        ),
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    params:
        knobs=knobs("report"),
        extra=report_extra(),
    shell:
        "python -m gptpipe report --params params.yaml --pretrain {input.pretrain}"
        " --finetune {input.finetune} --bpe {input.bpe} --shard {input.shard}"
        " --ingest {input.ingest} --zeroshot {input.zeroshot}"
        " --output {output} {params.extra} 2> {log}"
