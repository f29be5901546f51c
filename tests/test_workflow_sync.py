"""The Snakefile and dvc.yaml describe the same DAG: stage names, commands, deps, outs, params."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from gptpipe.config import SECTIONS
from gptpipe.deps import stage_code
from gptpipe.errors import ConfigError
from gptpipe.workflow import JOB_STAGE, pretrain_launcher, stage_sections

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _snakemake_jobs() -> dict[str, dict]:
    """Every job of a forced dry run: name (`rule@values` for wildcards) -> cmd, deps, outs."""
    out = subprocess.run(
        # dvc.yaml holds every configured job; Snakemake leaves out a task whose manual source
        # is missing here (`finetune.manual_sources: optional`): compare with none left out.
        [*SNAKEMAKE, "-n", "-p", "--forceall", "--cores", "1",
         "--config", "finetune={manual_sources: required}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    jobs = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", out):
        m = re.search(r"^rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        cmd = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        # The log redirect is Snakemake's own (pretrain's also copies it to the terminal).
        cmd = re.sub(r"\s+(2>\s+\S+|2>&1 \| tee \S+ >&2)\s*$", "", cmd)
        # The rule starts torchrun with its GPU count; DVC's `python -m gptpipe pretrain`
        # launches itself (one process per visible GPU). Nothing else may differ.
        cmd = re.sub(r"^torchrun --standalone --nproc_per_node=\d+ -m gptpipe ",
                     "python -m gptpipe ", cmd)
        name = m.group(1)
        if "wildcards" in fields:  # DVC's names: values joined by "-" (`finetune@SST-2-full-0`)
            name += "@" + "-".join(w.split("=", 1)[1] for w in fields["wildcards"].split(", "))
        jobs[name] = {
            "cmd": " ".join(cmd.split()),
            "deps": set(fields.get("input", "").split(", ")) - {""},
            "outs": set(fields["output"].split(", ")),
        }
    return jobs


def _dvc_stages() -> dict[str, dict]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = {}
    with Repo(str(REPO)) as repo:
        for stage in repo.index.stages:
            params = [d for d in stage.deps if isinstance(d, ParamsDependency)]
            stages[stage.addressing] = {
                "cmd": " ".join(stage.cmd.split()),
                "deps": {str(d.def_path) for d in stage.deps if not isinstance(d, ParamsDependency)},
                "outs": {str(o.def_path) for o in stage.outs},
                "params": {p for d in params for p in d.params},
            }
    return stages


@pytest.fixture(scope="module")
def both():
    return _snakemake_jobs(), _dvc_stages()


def test_same_stages(both):
    smk, dvc = both
    assert sorted(smk) == sorted(dvc)
    assert {JOB_STAGE.get(n, n) for n in (name.split("@")[0] for name in dvc)} <= set(SECTIONS)


@pytest.mark.parametrize("field", ["cmd", "deps", "outs"])
def test_same_commands_deps_outs(both, field):
    smk, dvc = both
    diffs = {n: (smk[n][field], dvc[n][field]) for n in smk if smk[n][field] != dvc[n][field]}
    assert not diffs, f"Snakefile and dvc.yaml disagree on {field}: {diffs}"


def test_each_stage_code_is_its_import_closure_in_both_tools(both):
    """closure = rule inputs = DVC deps, for every job of every stage."""
    smk, dvc = both
    for name in smk:
        job = name.split("@")[0]
        want = set(stage_code(JOB_STAGE.get(job, job)))
        assert {d for d in smk[name]["deps"] if d.startswith("gptpipe/")} == want, name
        assert {d for d in dvc[name]["deps"] if d.startswith("gptpipe/")} == want, name


def test_each_dvc_stage_tracks_only_its_own_section(both):
    """Its own section, or the ones `gptpipe.workflow.STAGE_SECTIONS` says it reads."""
    _, dvc = both
    for name, stage in dvc.items():
        assert stage["params"] == {"scale", *stage_sections(name.split("@")[0])}, name


@pytest.mark.parametrize("rules", ["data.smk", "train.smk", "lstm.smk", "finetune.smk",
                                   "report.smk"])
def test_each_rule_reruns_on_its_own_section_only(rules):
    text = (REPO / "workflow/rules" / rules).read_text()
    blocks = [b for b in re.split(r"\n(?=rule )", text) if re.match(r"rule (\w+):", b)]
    assert blocks, rules
    for block in blocks:
        name = re.match(r"rule (\w+):", block).group(1)
        if name == "fetch":  # its section, less the sources this configuration does not read
            assert "knobs=gw.fetch_knobs(FILE_PARAMS, config)" in block
            continue
        assert sorted(re.findall(r'knobs\("(\w+)"\)', block)) == sorted(stage_sections(name))


def test_snakemake_lint_is_clean():
    """`snakemake --lint`, less its advice to give each rule a conda env or container: every rule
    runs `python -m gptpipe` from the environment the package is installed in (README), which a
    per-rule conda env could not contain without installing the package into it again."""
    res = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True)
    text = res.stdout + res.stderr
    lints = [
        f"{where.strip()}: {title}"
        for where, body in re.findall(r"Lints for (.*?):\n(.*?)(?=\nLints for|\Z)", text, re.S)
        for title in re.findall(r"^\s+\* (.*?):?$", body, re.M)
        if "conda environment or container" not in title
    ]
    assert "Lints for" in text or res.returncode == 0, text
    assert not lints, lints


def _pretrain_command(*resources: str) -> str:
    extra = ["--set-resources", *(f"pretrain:{r}" for r in resources)] if resources else []
    out = subprocess.run(
        [*SNAKEMAKE, "-n", "-p", "--forceall", "--cores", "1", "results/pretrain", *extra],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    cmds = re.findall(r"^Shell command: (.* -m gptpipe pretrain .*)$", out, re.M)
    assert len(cmds) == 1, out[-3000:]
    return cmds[0]


@pytest.mark.parametrize("resources, nproc", [((), 1), (("gpu=0",), 1), (("gpu=1",), 1),
                                              (("gpu=8",), 8), (("nodes=1", "gpu=8"), 8)])
def test_one_node_pretrain_starts_one_process_per_gpu(resources, nproc):
    """What a profile (or `--set-resources`) gives the job is what torchrun starts."""
    cmd = _pretrain_command(*resources)
    assert cmd.startswith(f"torchrun --standalone --nproc_per_node={nproc} -m gptpipe pretrain ")


SLURM_4X8 = ("nodes=4", "gpu=32", "mpi=srun", "tasks=4", "tasks_per_gpu=0")


@pytest.fixture(scope="module")
def multi_node_command():
    return _pretrain_command(*SLURM_4X8)


def test_multi_node_pretrain_starts_one_torchrun_per_node(multi_node_command):
    """4 nodes x 8 GPUs: srun starts one torchrun per node, which meet at a c10d rendezvous on
    the allocation's first node; 8 processes each."""
    cmd = multi_node_command
    assert cmd.startswith(
        ': "${SLURM_JOB_ID:?multi-node pretrain runs inside a SLURM allocation: submit it with '
        'the SLURM profile}"; rdzv_host="$(scontrol show hostnames "$(squeue --noheader --jobs '
        '"$SLURM_JOB_ID" --format %N)" | sed -n 1p)" || true; : "${rdzv_host:?cannot find the '
        'first node of SLURM job $SLURM_JOB_ID with squeue and scontrol}"; '
        "srun --nodes=4 --ntasks=4 --ntasks-per-node=1 --kill-on-bad-exit=1 torchrun --nnodes=4 "
        '--nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint="$rdzv_host":29500 '
        '--rdzv_id="$SLURM_JOB_ID" -m gptpipe pretrain --params params.yaml '), cmd
    # Outside an allocation it stops before srun could ask for one, saying why.
    res = subprocess.run(["/bin/bash", "-c", "set -euo pipefail; " + cmd.split(" -m gptpipe")[0]],
                         capture_output=True, text=True, env={"PATH": "/nonexistent"})
    assert res.returncode == 1, res
    assert "multi-node pretrain runs inside a SLURM allocation" in res.stderr
    assert "srun" not in res.stderr and "squeue" not in res.stderr  # never reached


def test_readme_shows_the_multi_node_command_the_dry_run_prints(multi_node_command):
    readme = (REPO / "README.md").read_text()
    assert "--set-resources pretrain:nodes=4\npretrain:gpu=32 pretrain:mpi=srun pretrain:tasks=4 " \
        "pretrain:tasks_per_gpu=0" in readme
    assert f"\n{multi_node_command}\n" in readme


def _fake_slurm(bin_dir: Path, squeue_out: str) -> None:
    """squeue, scontrol and srun stand-ins: the node list of job 4242, its expansion, and an
    srun that prints the command it was given, one word a line."""
    scripts = {
        "squeue": f'[ "$*" = "--noheader --jobs 4242 --format %N" ] || exit 1\n'
                  f'echo "{squeue_out}"',
        "scontrol": '[ "$*" = "show hostnames gpu[07-10]" ] || { echo "bad: $*" >&2; exit 1; }\n'
                    "printf 'gpu07\\ngpu08\\ngpu09\\ngpu10\\n'",
        "srun": "printf '%s\\n' srun \"$@\"",
    }
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)


def _run_in_job(cmd: str, bin_dir: Path) -> subprocess.CompletedProcess:
    """The command as Snakemake's shell runs it in SLURM job 4242, with the SLURM_* variables
    the jobstep plugin removes (the node list among them) absent."""
    prefix = cmd.split(" -m gptpipe")[0]
    return subprocess.run(
        ["/bin/bash", "-c", f"set -euo pipefail; {prefix} -m gptpipe pretrain"],
        capture_output=True, text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "4242"},
    )


def test_multi_node_pretrain_finds_the_first_node_without_the_node_list(
        multi_node_command, tmp_path):
    _fake_slurm(tmp_path, "gpu[07-10]")
    res = _run_in_job(multi_node_command, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "srun", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1",
        "torchrun", "--nnodes=4", "--nproc_per_node=8", "--rdzv_backend=c10d",
        "--rdzv_endpoint=gpu07:29500", "--rdzv_id=4242", "-m", "gptpipe", "pretrain"]


def test_multi_node_pretrain_stops_when_the_first_node_is_unknown(multi_node_command, tmp_path):
    _fake_slurm(tmp_path, "")  # squeue has nothing: scontrol fails, and so must the job, clearly
    res = _run_in_job(multi_node_command, tmp_path)
    assert res.returncode == 1, res
    assert "cannot find the first node of SLURM job 4242 with squeue and scontrol" in res.stderr
    assert res.stdout == ""  # srun never ran


@pytest.mark.parametrize("resources, problems", [
    ({}, "mpi is unset; tasks is unset, not 4; tasks_per_gpu is unset, not 0"),
    ({"mpi": "srun", "tasks": 4}, "tasks_per_gpu is unset, not 0"),
    ({"mpi": "srun", "tasks": 32, "tasks_per_gpu": 0}, "tasks is 32, not 4"),
    ({"mpi": "srun", "tasks_per_node": 2, "tasks_per_gpu": 1},
     "tasks is unset, not 4; tasks_per_node=2 must be unset; tasks_per_gpu is 1, not 0"),
])
def test_multi_node_pretrain_names_the_slurm_resources_it_lacks(resources, problems):
    with pytest.raises(ConfigError) as err:
        pretrain_launcher({"nodes": 4, "gpu": 32, **resources})
    msg = str(err.value)
    assert f"({problems}):" in msg
    assert ("--set-resources pretrain:mpi=srun pretrain:tasks=4 pretrain:tasks_per_gpu=0"
            in msg)


def test_multi_node_pretrain_without_slurm_resources_fails_before_any_job():
    res = subprocess.run(
        [*SNAKEMAKE, "-n", "--forceall", "--cores", "1", "results/pretrain", "--set-resources",
         "pretrain:nodes=4", "pretrain:gpu=32", "pretrain:mpi=srun"],
        cwd=REPO, capture_output=True, text=True)
    text = res.stdout + res.stderr
    assert res.returncode != 0 and "tasks is unset, not 4; tasks_per_gpu is unset, not 0" in text
    assert "--set-resources pretrain:mpi=srun pretrain:tasks=4 pretrain:tasks_per_gpu=0" in text


def test_one_node_pretrain_can_be_forced_through_srun():
    """The path a one-node SLURM cluster can test: srun + torchrun, one node, its GPUs."""
    cmd = pretrain_launcher({"nodes": 1, "gpu": 2}, via_srun=True)
    assert ("srun --nodes=1 --ntasks=1 --ntasks-per-node=1 --kill-on-bad-exit=1 torchrun "
            "--nnodes=1 --nproc_per_node=2 --rdzv_backend=c10d") in cmd
    assert pretrain_launcher({"nodes": 1, "gpu": 2}) == "torchrun --standalone --nproc_per_node=2"
    with pytest.raises(ConfigError, match="several nodes need srun"):
        pretrain_launcher({"nodes": 2, "gpu": 2}, via_srun=False)


def test_uneven_gpus_over_nodes_fail_before_any_job():
    res = subprocess.run(
        [*SNAKEMAKE, "-n", "--forceall", "--cores", "1", "results/pretrain", "--set-resources",
         "pretrain:nodes=3", "pretrain:gpu=8"], cwd=REPO, capture_output=True, text=True)
    assert res.returncode != 0 and "do not split evenly over nodes=3" in res.stdout + res.stderr


def test_snakefiles_are_snakefmt_formatted():
    res = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "workflow"], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# ------------------------------------------------------------------------------ profiles


def _rules() -> set[str]:
    text = "".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk"))
    return set(re.findall(r"^rule (\w+):", text, re.M))


@pytest.mark.parametrize("name", ["default", "slurm"])
def test_profiles_name_only_rules_that_exist(name):
    """A typo in a profile's per-rule entry would silently give that rule nothing."""
    import yaml

    profile = yaml.safe_load((REPO / f"workflow/profiles/{name}/config.yaml").read_text())
    for key in ("set-threads", "set-resources", "groups", "group-components"):
        assert set(profile.get(key) or {}) <= _rules(), key


def test_slurm_profile_asks_for_gpus_where_the_stages_use_them():
    import yaml

    profile = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    res = profile["set-resources"]
    assert profile["executor"] == "slurm"
    assert res["pretrain"]["gpu"] >= 1 and res["finetune"]["gpu"] == 1
    assert all("gpu" not in res.get(r, {}) for r in ("fetch", "ingest", "bpe", "shard", "report"))
    # A bundle of fine-tuning jobs adds its jobs' requests up: per-CPU memory would multiply.
    assert not any("mem_mb_per_cpu" in r for r in [profile["default-resources"], *res.values()])
    assert profile["groups"] == {"finetune": "finetune"}


def test_default_profile_is_read_without_a_flag_and_the_slurm_one_replaces_it():
    """README's plain `snakemake --cores all` runs under workflow/profiles/default (a crashed
    job reruns, all cores); `--workflow-profile workflow/profiles/slurm` takes its place."""
    import yaml

    profile = yaml.safe_load((REPO / "workflow/profiles/default/config.yaml").read_text())
    assert profile["cores"] == "all" and profile["rerun-incomplete"] is True
    assert "resources" not in profile  # a gpu cap here would cut --set-resources pretrain:gpu=N
    assert not (REPO / "workflow/profiles/local").exists()
    res = subprocess.run([*SNAKEMAKE, "-n", "-p", "--forceall", "results/pretrain"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert "workflow specific profile workflow/profiles/default" in res.stderr, res.stderr[-2000:]
    assert "torchrun --standalone --nproc_per_node=1 -m gptpipe pretrain" in res.stdout
    res = subprocess.run([*SNAKEMAKE, "-n", "--workflow-profile", "workflow/profiles/slurm",
                          "results/bpe"], cwd=REPO, capture_output=True, text=True, check=True)
    out = res.stdout + res.stderr
    assert "workflow specific profile workflow/profiles/slurm" in out, out[-2000:]
    assert "profiles/default" not in out
