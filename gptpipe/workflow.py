"""Helpers the Snakefile calls (kept here so they are importable and unit-tested).

Snakemake loads `params.yaml` as its config and merges `--config` overrides into it, but its
`--config` parser reads nested values with YAML's BaseLoader, so `--config bpe='{vocab_size:
1000}'` arrives as the *string* '1000'. `effective_params` re-types such leaves, and
`cli_overrides` turns every difference from the file into `--scale`/`--set` flags, so the stage
processes see exactly what Snakemake saw, while a run without overrides has the very same
command lines as `dvc.yaml`.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from .config import merge, resolve_section, to_dict, validate_params
from .errors import ConfigError


def _retype(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value
    if isinstance(value, Mapping):
        return {k: _retype(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_retype(v) for v in value]
    return value


def _diff(file_value: Any, config_value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, new value) for every leaf where `config_value` differs from the file."""
    if isinstance(file_value, Mapping) and isinstance(config_value, Mapping):
        for key in sorted(config_value):
            yield from _diff(file_value.get(key), config_value[key], f"{prefix}{key}.")
    elif file_value != config_value:
        yield prefix.rstrip("."), config_value


def effective_params(file_params: Mapping, config: Mapping) -> dict:
    """The params Snakemake runs with: the file, plus `--config` overrides re-typed."""
    overrides = {k: _retype(v) for k, v in config.items() if file_params.get(k) != v}
    return merge(file_params, overrides)


# Keys that say which jobs exist, not what a job computes: adding a seed or a task adds jobs
# and must not rerun the others, so they stay out of a rule's `knobs` and its `--set` flags.
JOB_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "finetune": ("tasks", "variants", "ablation_tasks", "ablation_variants", "seeds",
                 "manual_sources", "transfer_tasks", "transfer_layers"),
}


def cli_overrides(file_params: Mapping, config: Mapping, section: str) -> str:
    """Shell-quoted `--scale`/`--set` flags for one stage; empty when nothing is overridden."""
    params = effective_params(file_params, config)
    args: list[str] = []
    if params.get("scale", "tiny") != file_params.get("scale", "tiny"):
        args += ["--scale", str(params["scale"])]
    for key, value in _diff(file_params.get(section) or {}, params.get(section) or {}):
        if key.split(".")[0] not in JOB_LIST_KEYS.get(section, ()):  # no job reads them
            args += ["--set", f"{key}={json.dumps(value)}"]
    return " ".join(shlex.quote(a) for a in args)


def knobs(file_params: Mapping, config: Mapping, section: str, job: str | None = None) -> str:
    """The resolved section as canonical JSON: a rule's `params:`, so a change reruns it (less
    the keys `job` does not read, JOB_IGNORES)."""
    cfg = to_dict(resolve_section(effective_params(file_params, config), section))
    for key in (*JOB_LIST_KEYS.get(section, ()), *ignored_keys(job, section)):
        cfg.pop(key)
    return json.dumps(cfg, sort_keys=True)


def validate(file_params: Mapping, config: Mapping) -> dict:
    """Validate every section before any job runs (raises ConfigError naming the key)."""
    cfg = validate_params(effective_params(file_params, config))
    check_transfer(cfg)
    return cfg


def check_transfer(cfg: Mapping) -> None:
    """Every k of `finetune.transfer_layers` fits `model.n_layer` (the DAG's pre-trained model),
    so a bad k stops the workflow before pre-training rather than after it."""
    n_layer = cfg["model"].n_layer
    for k in cfg["finetune"].transfer_layers if cfg["finetune"].transfer_tasks else ():
        if k > n_layer:
            raise ConfigError(f"finetune.transfer_layers: k={k} exceeds model.n_layer "
                              f"{n_layer} (k = n_layer already transfers every block)")


# The params sections a stage reads, when not just its own: its DVC `params` (with `scale`) and
# its rule's `knobs`, so that changing any of them reruns it and nothing else does.
# `fetch_dump` (one job per part of a packaged corpus, `fetch.corpus`) reads no section: what
# it writes is fixed by the part's declaration in the corpus file (its dep); where it downloads
# from (`fetch.dump_base_url`) does not change the verified bytes, so it must not rerun 18 GB.
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {"pretrain": ("model", "pretrain"),
                                              "fetch_dump": ()}
# Jobs that run another stage's code, with its sections: Table 5's LSTM branch pre-trains.
JOB_STAGE = {"pretrain_lstm": "pretrain"}
STAGE_SECTIONS["pretrain_lstm"] = STAGE_SECTIONS["pretrain"]


# Keys of its sections that a job does not read. The transformer's `pretrain` leaves out the
# LSTM branch's own knobs (only `pretrain_lstm` reads them): tuning the LSTM must not rerun the
# transformer's pre-training (days at gpt1) and every fine-tuning job that starts from it.
# Its rule's knobs and `--set` flags, and its DVC params (key by key), leave them out.
JOB_IGNORES: dict[str, dict[str, tuple[str, ...]]] = {
    "pretrain": {"model": ("lstm_units",),
                 "pretrain": ("lstm_tokens", "lstm_updates", "lstm_warmup_updates", "lstm_lr")},
}


def stage_sections(stage: str) -> tuple[str, ...]:
    return STAGE_SECTIONS.get(stage, (stage,))


def ignored_keys(job: str | None, section: str) -> tuple[str, ...]:
    return JOB_IGNORES.get(job or "", {}).get(section, ())


def job_params(job: str) -> list[str]:
    """A job's DVC `params`: `scale` and each section it reads, whole, or key by key when the
    job ignores some of its keys (JOB_IGNORES)."""
    from .config import SECTIONS

    out = ["scale"]
    for section in stage_sections(job):
        ignored = ignored_keys(job, section)
        if not ignored:
            out.append(section)
            continue
        out += [f"{section}.{f.name}" for f in dataclasses.fields(SECTIONS[section])
                if f.name not in ignored]
    return out


def cli_overrides_sections(file_params: Mapping, config: Mapping, sections: tuple[str, ...],
                           job: str | None = None) -> str:
    """`--scale`/`--set SECTION.key=value` flags for a stage that reads several sections (less
    the keys `job` does not read, so that overriding them leaves its command line alone)."""
    params = effective_params(file_params, config)
    args: list[str] = []
    if params.get("scale", "tiny") != file_params.get("scale", "tiny"):
        args += ["--scale", str(params["scale"])]
    for section in sections:
        old, new = file_params.get(section) or {}, params.get(section) or {}
        for key, value in _diff(old, new, f"{section}."):
            if key.split(".")[1] not in ignored_keys(job, section):
                args += ["--set", f"{key}={json.dumps(value)}"]
    return " ".join(shlex.quote(a) for a in args)


RDZV_PORT = 29_500  # c10d rendezvous port on the job's first node (torchrun's default)


def _int_resource(resources: Any, name: str, default: int | None) -> int | None:
    """`resources[name]` as a whole number (`default` when unset); anything else: ConfigError."""
    value = resources.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"pretrain: resource {name}={value!r}: expected a whole number") from None


def slurm_resource_problems(resources: Any, nodes: int) -> list[str]:
    """What keeps the SLURM executor from running a `nodes`-node pretrain job as it must.

    Our command starts its own `srun`, so the job must be an `mpi` job (snakemake-executor-
    plugin-slurm-jobstep then runs it without an `srun -n1` wrapper of its own) with
    `tasks == nodes` (the plugin turns `mpi` + `tasks` into `sbatch --ntasks`, one slot per
    node) and `tasks_per_gpu: 0` (else the plugin also passes `tasks` as `--ntasks-per-gpu`).
    `tasks_per_node` must be unset: the plugin refuses an `mpi` job with both.
    """
    problems = []
    if not resources.get("mpi"):
        problems.append("mpi is unset")
    tasks = _int_resource(resources, "tasks", None)
    if tasks != nodes:
        problems.append(f"tasks is {'unset' if tasks is None else tasks}, not {nodes}")
    if resources.get("tasks_per_node"):  # the plugin ignores a 0
        problems.append(f"tasks_per_node={resources.get('tasks_per_node')!r} must be unset")
    if _int_resource(resources, "tasks_per_gpu", None) != 0:
        problems.append(f"tasks_per_gpu is {resources.get('tasks_per_gpu', 'unset')}, not 0")
    return problems


def _srun_torchrun(nodes: int, per_node: int) -> str:
    """`srun` starting one `torchrun` per node of the job's allocation, meeting on its first.

    The SLURM jobstep plugin strips every SLURM_* variable but the job's id before it runs the
    command, so the node list comes from `squeue`; `srun` finds the allocation through
    $SLURM_JOB_ID, which it reads like `--jobid`. `sed -n 1p` rather than `head -n 1`: it reads
    all of scontrol's output, so a long node list cannot kill scontrol with SIGPIPE; and
    `|| true`, so that under Snakemake's `set -e -o pipefail` a failed look-up ends with the
    check's message rather than silently.
    """
    # Outside an allocation, srun would ask for a new one: stop first, saying why.
    need_job = (': "${SLURM_JOB_ID:?multi-node pretrain runs inside a SLURM allocation: '
                'submit it with the SLURM profile}"; ')
    first = ('rdzv_host="$(scontrol show hostnames "$(squeue --noheader --jobs "$SLURM_JOB_ID" '
             '--format %N)" | sed -n 1p)" || true; '
             ': "${rdzv_host:?cannot find the first node of SLURM job $SLURM_JOB_ID '
             'with squeue and scontrol}"; ')
    return (f"{need_job}{first}srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 "
            f"--kill-on-bad-exit=1 torchrun --nnodes={nodes} --nproc_per_node={per_node} "
            f'--rdzv_backend=c10d --rdzv_endpoint="$rdzv_host":{RDZV_PORT} '
            '--rdzv_id="$SLURM_JOB_ID"')


def pretrain_launcher(resources: Any, via_srun: bool | None = None) -> str:
    """The command prefix that starts `-m gptpipe pretrain` for the job's `resources` (a dict
    or Snakemake's `resources`: anything with `.get`): `nodes` (default 1) and `gpu`, the GPUs
    in all (default 0: one CPU process), from the rule, a profile or `--set-resources`.

    One node: `torchrun --standalone`, one process per GPU. Several (or `via_srun`, for a test
    of that path on one node): one `torchrun` per node, started by `srun` inside the job's
    allocation, meeting at a c10d rendezvous on its first node with `gpu / nodes` processes
    each. Several nodes also need the SLURM resources of `slurm_resource_problems`; one node
    through `srun` leaves them to the caller (the plugin wants `tasks` > 1 for an `mpi` job).
    """
    nodes, gpus = _int_resource(resources, "nodes", 1), _int_resource(resources, "gpu", 0)
    if nodes < 1 or gpus < 0:
        raise ConfigError(f"pretrain: nodes={nodes}, gpu={gpus}: need nodes >= 1, gpu >= 0")
    via_srun = nodes > 1 if via_srun is None else via_srun
    if not via_srun:
        if nodes > 1:
            raise ConfigError(f"pretrain: nodes={nodes}: several nodes need srun")
        return f"torchrun --standalone --nproc_per_node={max(1, gpus)}"
    if nodes > 1 and (gpus < nodes or gpus % nodes):
        raise ConfigError(f"pretrain: gpu={gpus} GPUs in all do not split evenly over "
                          f"nodes={nodes} (give a multiple of the node count)")
    problems = slurm_resource_problems(resources, nodes) if nodes > 1 else []
    if problems:
        raise ConfigError(
            f"pretrain: nodes={nodes} runs its own srun, which the SLURM executor allows only "
            f"for an mpi job with one task per node ({'; '.join(problems)}): add "
            f"`--set-resources pretrain:mpi=srun pretrain:tasks={nodes} "
            f"pretrain:tasks_per_gpu=0` (in a profile: set-resources: {{pretrain: {{mpi: srun, "
            f"tasks: {nodes}, tasks_per_gpu: 0}}}})")
    return _srun_torchrun(nodes, max(1, gpus // nodes))


def corpus_dumps(fetch_cfg: Any) -> dict[str, str]:
    """Part name -> path under `data/` of each part of the selected packaged corpus (none for
    `sample`): each is one `fetch_dump` job (`gptpipe fetch --only PART`), so the parts download
    side by side and each part's ingest starts when its own download is done."""
    return {s.name: s.path for s in fetch_cfg.corpus_parts}


def corpus_file(fetch_cfg: Any) -> str | None:
    """The packaged corpus file (relative to the project) the parts are declared in."""
    if fetch_cfg.corpus == "sample":
        return None
    from .corpora import corpus_file as path_of

    return path_of(fetch_cfg.corpus).relative_to(Path(__file__).resolve().parents[1]).as_posix()


def fetch_outputs(fetch_cfg: Any, names: Any = None) -> list[str]:
    """Relative paths (under `data/`) of every file or folder `fetch` produces (of the sources
    in `names`, when given)."""
    from .fetch.sources import output_paths, select

    if names is None:
        return output_paths(fetch_cfg)
    wanted = {s.name for s in select(fetch_cfg, names)}  # a subset need not be a valid config
    return output_paths(fetch_cfg, wanted)


# --------------------------------------------------------------------------- finetune jobs


def finetune_jobs(cfg: Any) -> list[tuple[str, str, int]]:
    """(task, variant, seed) of every fine-tuning job of a FinetuneConfig, in a stable order:
    each task of `tasks` in each of `variants`, then the ablation variants of
    `ablation_tasks`, then `transfer<k>` of `transfer_tasks` for each k of `transfer_layers`
    (Figure 2), each for every seed."""
    runs = [(t, v) for t in cfg.tasks for v in cfg.variants]
    runs += [(t, v) for t in cfg.ablation_tasks for v in cfg.ablation_variants
             if (t, v) not in runs]
    runs += [(t, f"transfer{k}") for t in cfg.transfer_tasks for k in cfg.transfer_layers]
    return [(t, v, seed) for t, v in runs for seed in cfg.seeds]


def finetune_dir(task: str, variant: str, seed: int | str) -> str:
    """Output folder of one job (relative to the project)."""
    return f"results/finetune/{task}/{variant}/seed{seed}"


PRETRAIN_LSTM = "results/pretrain_lstm"  # the LSTM branch's pre-training (job pretrain_lstm)


def pretrain_dir(variant: str) -> str:
    """The pre-training output a fine-tuning variant starts from: `lstm` (Table 5's LSTM row)
    has its own branch of the DAG, every other variant the transformer's."""
    return PRETRAIN_LSTM if variant == "lstm" else "results/pretrain"


def lstm_branch(cfg: Any) -> bool:
    """Whether a FinetuneConfig's jobs need the LSTM branch (`pretrain_lstm`)."""
    return any(v == "lstm" for _, v, _ in finetune_jobs(cfg))


def _provides(source: Any, rel: str) -> bool:
    out = source.path.rstrip("/")
    return rel == out or rel.startswith(out + "/")


def needed_sources(ft_cfg: Any, fetch_cfg: Any, zs_cfg: Any = None) -> list[str]:
    """Names of the declared sources the `fetch` job fetches, in declaration order: the `other`
    ones, the `dump` ones when the corpus is `sample` (a packaged corpus's parts are `fetch_dump`
    jobs of their own, see `corpus_dumps`), and each task source a configured fine-tuning job
    reads a file of.

    `fetch.sources` declares every task of the paper; a run fetches only what its jobs use, so
    the demo never waits on (or fails for) data it does not touch. Raises ConfigError, before
    any job runs, when a job would read a file that no declared task source provides.
    """
    from .finetune.data import files_read

    tasks = [s for s in fetch_cfg.sources if s.role == "task"]
    used: set[str] = set()
    for task, variant, _ in finetune_jobs(ft_cfg):
        for rel in files_read(ft_cfg, task, variant):
            hits = [s.name for s in tasks if _provides(s, rel)]
            if not hits:
                raise ConfigError(
                    f"finetune: task {task} reads data/{rel}, which no `fetch.sources` entry "
                    "with role 'task' provides")
            used.update(hits)
    used.update(zeroshot_sources(zs_cfg, fetch_cfg))
    sample = fetch_cfg.corpus == "sample"
    return [s.name for s in fetch_cfg.sources
            if s.role == "other" or (s.role == "dump" and sample) or s.name in used]


MANUAL_NOT_RUN = "not run: source needs a manual download"


def missing_manual(ft_cfg: Any, fetch_cfg: Any, mirror: str | Path | None,
                   data_dir: str | Path = "data") -> dict[str, dict[str, tuple[str, str]]]:
    """Tasks left out because a source handed out on request is missing, when
    `finetune.manual_sources` is `optional`: {task: {source name: (instructions, path)}}.

    A `kind: manual` source counts as present when its file is in `data_dir` or in the mirror
    (fetch verifies it). With `required` (the default, paper scale) nothing is left out and
    `fetch` stops on the missing file with its instructions.
    """
    if ft_cfg.manual_sources != "optional":
        return {}
    from .finetune.data import files_read

    manual = [s for s in fetch_cfg.sources if s.role == "task" and s.kind == "manual"]
    roots = [Path(data_dir)] + ([Path(mirror)] if mirror else [])
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for task, variant, _ in finetune_jobs(ft_cfg):
        for rel in files_read(ft_cfg, task, variant):
            for src in manual:
                if _provides(src, rel) and not any((r / src.path).is_file() for r in roots):
                    out.setdefault(task, {})[src.name] = (" ".join(str(src.instructions).split()),
                                                          src.path)
    return out


def why_left_out(sources: Mapping[str, tuple[str, str]]) -> str:
    """"not run: ... (instructions -- put data/A, data/B there)" for one left-out task."""
    by_how: dict[str, list[str]] = {}
    for how, path in sources.values():
        by_how.setdefault(how, []).append(f"data/{path}")
    hows = "; ".join(f"{how} -- put {', '.join(paths)} there" for how, paths in by_how.items())
    return f"{MANUAL_NOT_RUN} ({hows})"


def without_tasks(ft_cfg: Any, left_out: Mapping[str, Any]) -> Any:
    """The finetune config with the tasks of `left_out` dropped from its job lists."""
    return dataclasses.replace(
        ft_cfg, tasks=tuple(t for t in ft_cfg.tasks if t not in left_out),
        ablation_tasks=tuple(t for t in ft_cfg.ablation_tasks if t not in left_out),
        transfer_tasks=tuple(t for t in ft_cfg.transfer_tasks if t not in left_out))


def not_run_flags(left_out: Mapping[str, Mapping[str, tuple[str, str]]]) -> str:
    """`--not-run TASK=WHY ...` for `gptpipe report` (empty when nothing was left out)."""
    args = []
    for task, sources in left_out.items():
        args += ["--not-run", f"{task}={why_left_out(sources)}"]
    return " ".join(shlex.quote(a) for a in args)


def skip_flags(left_out: Mapping[str, Mapping[str, tuple[str, str]]]) -> str:
    """`--skipped NAME ...` for `gptpipe fetch`: the missing manual sources it reports."""
    names = dict.fromkeys(n for sources in left_out.values() for n in sources)
    return " ".join(["--skipped", *map(shlex.quote, names)]) if names else ""


def fetch_only_flags(ft_cfg: Any, fetch_cfg: Any, zs_cfg: Any = None) -> str:
    """`--only NAME ...` for `gptpipe fetch` when some declared source is not needed (else '')."""
    names = needed_sources(ft_cfg, fetch_cfg, zs_cfg)
    if len(names) == len(fetch_cfg.sources):
        return ""
    return "--only " + " ".join(shlex.quote(n) for n in names)


def fetch_knobs(file_params: Mapping, config: Mapping) -> str:
    """`knobs` of `fetch`, less the sources this configuration does not read: declaring another
    task's source does not refetch (and so rerun) everything. Less `corpus` and
    `dump_base_url` too: they concern the `fetch_dump` jobs (the job list, and where from)."""
    cfg = validate(file_params, config)
    names = set(needed_sources(cfg["finetune"], cfg["fetch"], cfg["zeroshot"]))
    knob = json.loads(knobs(file_params, config, "fetch"))
    knob["sources"] = [s for s in knob["sources"] if s["name"] in names]
    knob.pop("corpus")
    knob.pop("dump_base_url")
    return json.dumps(knob, sort_keys=True)


def finetune_data(ft_cfg: Any, fetch_cfg: Any) -> list[str]:
    """The outputs (under `data/`) of the task sources the configured jobs read: the data inputs
    of each finetune job. All jobs depend on all of them, the same list under Snakemake and DVC
    (whose templated stages cannot give each job its own list of deps)."""
    names = set(needed_sources(ft_cfg, fetch_cfg))
    return [f"data/{s.path}" for s in fetch_cfg.sources if s.role == "task" and s.name in names]


# --------------------------------------------------------------------------- zeroshot job


def zeroshot_sources(zs_cfg: Any, fetch_cfg: Any) -> list[str]:
    """Names of the task sources the `zeroshot` job reads a file of (none without a config).
    Raises ConfigError when no declared task source provides one of its files."""
    if zs_cfg is None:
        return []
    from .zeroshot.data import files_read

    tasks = [s for s in fetch_cfg.sources if s.role == "task"]
    used: list[str] = []
    for rel in files_read(zs_cfg):
        hits = [s.name for s in tasks if _provides(s, rel)]
        if not hits:
            raise ConfigError(f"zeroshot: reads data/{rel}, which no `fetch.sources` entry with "
                              "role 'task' provides")
        used += hits
    return list(dict.fromkeys(used))


def zeroshot_data(zs_cfg: Any, fetch_cfg: Any) -> list[str]:
    """The outputs (under `data/`) of the task sources the `zeroshot` job reads: its data deps."""
    names = set(zeroshot_sources(zs_cfg, fetch_cfg))
    return [f"data/{s.path}" for s in fetch_cfg.sources if s.name in names]
