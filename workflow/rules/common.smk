# Helpers for the rules: paths from the declared sources, per-stage knobs and overrides.
# The logic lives in gptpipe.workflow (unit-tested); this file only binds it to `config`.

import os
import re
import sys

from gptpipe import workflow as gw
from gptpipe.deps import stage_code
from gptpipe.config import load_params

PARAMS_FILE = "params.yaml"
FILE_PARAMS = load_params(PARAMS_FILE)
# Fails here, naming the key, before any job runs.
CFG = gw.validate(FILE_PARAMS, config)
PARTS = [s.name for s in CFG["fetch"].dump_parts]
# The parts of a packaged corpus (`fetch.corpus` other than sample): one `fetch_dump` job each,
# all in one folder. With `sample`, none: the `fetch` job fetches the sample's part.
CORPUS_DUMPS = gw.corpus_dumps(CFG["fetch"])
CORPUS_FILE = gw.corpus_file(CFG["fetch"])
DUMP_FOLDERS = {os.path.dirname(p) for p in CORPUS_DUMPS.values()}
assert len(DUMP_FOLDERS) <= 1, DUMP_FOLDERS
DUMP_FOLDER = DUMP_FOLDERS.pop() if DUMP_FOLDERS else "wikipedia"


wildcard_constraints:
    part="|".join(map(re.escape, PARTS)) if PARTS else "^$",


def all_cores():
    """`threads` of the stages that use every core they get: all of `--cores` on one machine.
    A cluster executor runs without `--cores` (each job asks for its own CPUs), so there the
    profile's `set-threads` decides, and without it such a job asks for one CPU."""
    return workflow.resource_settings.cores or 1


def knobs(section, job=None):
    """The resolved section: as a rule's params it reruns the rule when a knob changes (less
    the keys `job` does not read: gptpipe.workflow.JOB_IGNORES)."""
    return gw.knobs(FILE_PARAMS, config, section, job)


def overrides(section):
    """`--scale/--set` flags for Snakemake `--config` overrides (empty without them)."""
    return gw.cli_overrides(FILE_PARAMS, config, section)


def code(stage):
    """The modules a stage runs, computed from its package's imports: editing one reruns it."""
    return stage_code(stage)


# The mirror fetch will read (`--config mirror=DIR`, else $GPTPIPE_MIRROR), and the tasks left
# out because a source handed out on request is in neither data/ nor the mirror (only with
# `finetune.manual_sources: optional`, the tiny demo): said once here, by fetch in its log,
# and by the report.
MIRROR = config.get("mirror") or os.environ.get("GPTPIPE_MIRROR") or None
LEFT_OUT = gw.missing_manual(CFG["finetune"], CFG["fetch"], MIRROR)
if LEFT_OUT:
    CFG["finetune"] = gw.without_tasks(CFG["finetune"], LEFT_OUT)
    for task, sources in LEFT_OUT.items():
        print(f"gptpipe: {task}: {gw.why_left_out(sources)}", file=sys.stderr)


# The declared sources this configuration reads (the dump parts, the configured tasks' data).
NEEDED_SOURCES = gw.needed_sources(CFG["finetune"], CFG["fetch"], CFG["zeroshot"])


def fetch_extra():
    flags = " ".join(
        f
        for f in (
            gw.fetch_only_flags(CFG["finetune"], CFG["fetch"], CFG["zeroshot"]),
            gw.skip_flags(LEFT_OUT),
            overrides("fetch"),
        )
        if f
    )
    mirror = config.get("mirror")
    return f"--mirror {mirror} {flags}".strip() if mirror else flags


def fetch_dump_extra():
    """`--mirror` and `--scale/--set` flags of a `fetch_dump` job (as `fetch_extra`, without
    the `--only` and `--skipped` of the `fetch` job)."""
    mirror = config.get("mirror")
    return " ".join(
        f for f in (f"--mirror {mirror}" if mirror else "", overrides("fetch")) if f
    )


def fetch_dump_inputs():
    """The corpus file the parts are declared in, and the fetch code."""
    return [CORPUS_FILE, *code("fetch")] if CORPUS_FILE else code("fetch")


# What `fetch` writes under data/ for those sources.
FETCHED = gw.fetch_outputs(CFG["fetch"], NEEDED_SOURCES)


def fetch_outputs():
    """Files, and the folders `kind: archive` sources unpack into (`directory()`), of the
    sources this configuration reads."""
    folders = {s.path for s in CFG["fetch"].sources if s.kind == "archive"}
    return [directory(f"data/{p}") if p in folders else f"data/{p}" for p in FETCHED]


def pretrain_launch(wildcards, resources):
    """torchrun (one node) or srun + torchrun (several) for the job's `nodes` and `gpu`;
    several nodes also need the SLURM resources `mpi`, `tasks` and `tasks_per_gpu`."""
    return gw.pretrain_launcher(resources)


def fetched_files():
    """The same paths as `fetch_outputs`, as plain inputs (of the `all` rule)."""
    return [f"data/{p}" for p in FETCHED]


def dump_file(wildcards):
    return f"data/{CFG['fetch'].source(wildcards.part).path}"


def dump_index_flag(wildcards):
    index = CFG["fetch"].source(wildcards.part).index_path
    return f"--index data/{index}" if index else ""


def dump_inputs(wildcards):
    src = CFG["fetch"].source(wildcards.part)
    return [f"data/{p}" for p in (src.path, src.index_path) if p]


def report_extra():
    """`--set` overrides of `report`, and `--not-run` for the tasks left out (see LEFT_OUT)."""
    return " ".join(f for f in (overrides("report"), gw.not_run_flags(LEFT_OUT)) if f)
