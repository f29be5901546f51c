# Fine-tuning: one job per (task, variant, seed), each a one-thread `gptpipe finetune` process
# (several run side by side; on a GPU node the profile gives each a GPU). Every job depends on
# the pre-trained model folder (variant lstm: the LSTM branch's, rules/lstm.smk) and on all
# declared task data (dvc.yaml's templated stages cannot give each job its own data list, and
# the two tools must agree). A change to a `finetune` knob
# reruns the fine-tuning jobs (and what reads them), never `pretrain`; adding a task or a seed
# only adds jobs (gptpipe.workflow.JOB_LIST_KEYS).

import re

FINETUNE_JOBS = gw.finetune_jobs(CFG["finetune"])
FINETUNE_OUTPUTS = [gw.finetune_dir(t, v, s) for t, v, s in FINETUNE_JOBS]
# Fails here, naming the task and file, when a job would read data no source provides.
FINETUNE_DATA = gw.finetune_data(CFG["finetune"], CFG["fetch"])


wildcard_constraints:
    task="|".join(re.escape(t) for t, _, _ in FINETUNE_JOBS) or "^$",
    variant="full|no_aux|no_pretrain|lstm|transfer-?[0-9]+",
    seed=r"\d+",


rule finetune:
    input:
        model=lambda w: gw.pretrain_dir(w.variant),  # variant lstm: the LSTM branch
        data=FINETUNE_DATA,
        code=code("finetune"),
    output:
        directory("results/finetune/{task}/{variant}/seed{seed}"),
    log:
        "results/logs/finetune/{task}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{task}/{variant}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=0,
    params:
        knobs=knobs("finetune"),
        extra=overrides("finetune"),
    shell:
        "python -m gptpipe finetune --params params.yaml --task {wildcards.task}"
        " --variant {wildcards.variant} --seed {wildcards.seed} --model {input.model}"
        " --data data --output {output} {params.extra} 2> {log}"
