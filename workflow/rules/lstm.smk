# Table 5's LSTM row as its own branch of the DAG: the same `pretrain` stage on the same shards
# and tokenizer, training the single-layer LSTM (`--arch lstm`: model.arch lstm and the run
# length of pretrain.lstm_*), into its own output and checkpoints. Fine-tuning variant `lstm`
# starts from it (gptpipe.workflow.pretrain_dir); the job is in the DAG only when a fine-tuning
# job has that variant (finetune.ablation_variants lists `lstm`). Launch, retries and time
# limits as for `pretrain` (rules/train.smk); on a GPU the profile's `gpu` resource applies.

PRETRAIN_LSTM = [gw.PRETRAIN_LSTM] if gw.lstm_branch(CFG["finetune"]) else []


rule pretrain_lstm:
    input:
        shard="results/shard",
        bpe="results/bpe",
        code=code("pretrain"),
    output:
        directory(gw.PRETRAIN_LSTM),
    log:
        "results/logs/pretrain_lstm.log",
    benchmark:
        "results/benchmarks/pretrain_lstm.tsv"
    retries: 0 if workflow.remote_exec else 3
    # One thread on CPU (the stage sets it: a 2-core machine runs it beside a fine-tuning job).
    threads: 1
    resources:
        gpu=0,
        nodes=1,
    params:
        launch=pretrain_launch,
        model=knobs("model"),
        knobs=knobs("pretrain"),
        extra=gw.cli_overrides_sections(
            FILE_PARAMS, config, gw.stage_sections("pretrain")
        ),
    shell:
        "{params.launch} -m gptpipe pretrain --arch lstm"
        " --params params.yaml --shards {input.shard}"
        " --tokenizer {input.bpe}/tokenizer.json --checkpoints results/checkpoints/pretrain_lstm"
        " --output {output} {params.extra} 2>&1 | tee {log} >&2"
