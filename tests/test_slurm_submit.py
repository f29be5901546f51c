"""The SLURM resources the pretrain job needs, against snakemake-executor-plugin-slurm's own code.

No cluster: the sbatch command line is built by the plugin's `get_submit_command` (plus its
`set_gres_string`, which its `run_job` appends) for a stand-in job whose `resources` is
Snakemake's own `ResourceList`, typed as `--set-resources` gives them (numbers as ints, `mpi`
as a string). The recipe is the one `pretrain_launcher` demands for several nodes, so a recipe
it accepts must give the allocation its `srun` expects, and each it rejects must not.
"""

from __future__ import annotations

import shlex
from types import SimpleNamespace

import pytest
from snakemake.iocontainers import ResourceList
from snakemake_executor_plugin_slurm.submit_string import get_submit_command
from snakemake_executor_plugin_slurm.utils import set_gres_string
from snakemake_interface_common.exceptions import WorkflowError

from gptpipe.errors import ConfigError
from gptpipe.workflow import pretrain_launcher

# 4 nodes x 8 GPUs, as README's `--set-resources pretrain:...` and a SLURM profile give it.
MULTI_NODE = {"nodes": 4, "gpu": 32, "mpi": "srun", "tasks": 4, "tasks_per_gpu": 0}
PARAMS = {  # what the plugin's run_job passes (account and partition come pre-formatted)
    "run_uuid": "0b5e-run", "slurm_logfile": ".snakemake/slurm_logs/rule_pretrain/%j.log",
    "comment_str": "rule_pretrain", "account": "-A 'proj'", "partition": "-p 'gpu'",
    "workdir": "/scratch/gptpipe",
}


def sbatch_args(resources: dict, threads: int = 16) -> list[str]:
    """The sbatch words the plugin submits the pretrain job with (less its --wrap)."""
    job = SimpleNamespace(resources=ResourceList(fromdict=resources), threads=threads,
                          name="pretrain", is_group=lambda: False)
    return shlex.split(get_submit_command(job, PARAMS) + set_gres_string(job))


def test_multi_node_recipe_gives_one_task_per_node_and_all_gpus():
    pretrain_launcher(MULTI_NODE)  # the launcher accepts it ...
    args = sbatch_args(MULTI_NODE)
    # ... and the plugin asks for 4 nodes, 4 tasks (one per node: the step's srun starts one
    # torchrun on each), 32 GPUs, and no task geometry per GPU.
    assert args[0] == "sbatch"
    assert {"--nodes=4", "--ntasks=4", "--gpus=32", "--cpus-per-task=16"} <= set(args), args
    assert not [a for a in args if a.startswith("--ntasks-per-gpu")], args
    assert [a for a in args if a.startswith("--ntasks")] == ["--ntasks=4"], args


def test_one_node_gpu_job_needs_no_mpi():
    """1 node x 8 GPUs: torchrun --standalone under the jobstep's own `srun -n1`."""
    resources = {"nodes": 1, "gpu": 8}
    assert pretrain_launcher(resources) == "torchrun --standalone --nproc_per_node=8"
    args = sbatch_args(resources)
    assert {"--nodes=1", "--gpus=8", "--cpus-per-task=16"} <= set(args), args
    assert not [a for a in args if a.startswith("--ntasks")], args


@pytest.mark.parametrize("drop, add, wrong", [
    # Without tasks_per_gpu: 4 tasks *per GPU*, 128 in all.
    (("tasks_per_gpu",), {}, lambda args: "--ntasks-per-gpu=4" in args),
    # Without mpi: no --ntasks (and the jobstep would wrap the command in `srun -n1`).
    (("mpi",), {}, lambda args: not [a for a in args if a.startswith("--ntasks=")]),
    # A task per GPU instead of per node.
    ((), {"tasks": 32}, lambda args: "--ntasks=32" in args),
])
def test_each_recipe_the_launcher_rejects_gives_the_wrong_allocation(drop, add, wrong):
    resources = {k: v for k, v in MULTI_NODE.items() if k not in drop} | add
    with pytest.raises(ConfigError, match="--set-resources pretrain:mpi=srun"):
        pretrain_launcher(resources)
    assert wrong(sbatch_args(resources))


@pytest.mark.parametrize("drop, add", [(("tasks",), {}), ((), {"tasks_per_node": 2})])
def test_each_recipe_the_launcher_rejects_the_plugin_refuses(drop, add):
    resources = {k: v for k, v in MULTI_NODE.items() if k not in drop} | add
    with pytest.raises(ConfigError, match="--set-resources pretrain:mpi=srun"):
        pretrain_launcher(resources)
    with pytest.raises(WorkflowError, match="For MPI jobs"):
        sbatch_args(resources)
