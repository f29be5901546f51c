# The data half: fetch (and fetch_dump{part}) -> ingest{part} -> bpe -> shard. Thin shell rules
# over `gptpipe <stage>`.
# Stages use every core they are given (CPU affinity), so `threads:` only tells the scheduler;
# command lines stay identical to dvc.yaml's.


rule fetch:
    input:
        code("fetch"),
    output:
        fetch_outputs(),
    log:
        "results/logs/fetch.log",
    params:
        knobs=gw.fetch_knobs(FILE_PARAMS, config),
        extra=fetch_extra(),
    shell:
        "python -m gptpipe fetch --params params.yaml --output data {params.extra} 2> {log}"


# One job per part of a packaged corpus (`fetch.corpus`), none with the sample (whose one part
# the `fetch` job fetches). An interrupted download resumes from data/<path>.part on the rerun.
rule fetch_dump:
    input:
        fetch_dump_inputs(),
    output:
        f"data/{DUMP_FOLDER}/{{part}}.bz2",
    log:
        "results/logs/fetch/{part}.log",
    wildcard_constraints:
        part="|".join(map(re.escape, CORPUS_DUMPS)) if CORPUS_DUMPS else "(?!)",
    params:
        extra=fetch_dump_extra(),
    shell:
        "python -m gptpipe fetch --params params.yaml --output data --only {wildcards.part}"
        " {params.extra} 2> {log}"


rule ingest:
    input:
        dump_inputs,
        code("ingest"),
    output:
        directory("results/ingest/{part}"),
    log:
        "results/logs/ingest/{part}.log",
    benchmark:
        "results/benchmarks/ingest/{part}.tsv"
    threads: all_cores()
    params:
        knobs=knobs("ingest"),
        extra=overrides("ingest"),
        dump=dump_file,
        index=dump_index_flag,
    shell:
        "python -m gptpipe ingest --params params.yaml --input {params.dump} {params.index}"
        " --output {output} {params.extra} 2> {log}"


rule bpe:
    input:
        ingest=expand("results/ingest/{part}", part=PARTS),
        code=code("bpe"),
    output:
        directory("results/bpe"),
    log:
        "results/logs/bpe.log",
    benchmark:
        "results/benchmarks/bpe.tsv"
    params:
        knobs=knobs("bpe"),
        extra=overrides("bpe"),
    shell:
        "python -m gptpipe bpe --params params.yaml --ingest {input.ingest} --output {output}"
        " {params.extra} 2> {log}"


rule shard:
    input:
        ingest=expand("results/ingest/{part}", part=PARTS),
        bpe="results/bpe",
        code=code("shard"),
    output:
        directory("results/shard"),
    log:
        "results/logs/shard.log",
    benchmark:
        "results/benchmarks/shard.tsv"
    threads: all_cores()
    params:
        knobs=knobs("shard"),
        extra=overrides("shard"),
    shell:
        "python -m gptpipe shard --params params.yaml --ingest {input.ingest}"
        " --tokenizer {input.bpe}/tokenizer.json --output {output} {params.extra} 2> {log}"
