"""Shared fixtures. `shared_data` is the real sample data, reached the way CI reaches it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]


def _mirror() -> Path:
    env = os.environ.get("GPTPIPE_MIRROR")
    return Path(env) if env else (REPO.parent / "shared" / "data")


def unavailable(why: str) -> NoReturn:
    """What a test does when something it needs is missing: fail under CI (CI=true), where
    everything must be there, and skip, saying why, everywhere else."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The mirror folder with the real sample data (`GPTPIPE_MIRROR`, else ../shared/data).

    Missing data fails under CI (CI=true) and skips, with the reason, everywhere else.
    """
    path = _mirror()
    if not (path / "wikipedia").is_dir():
        unavailable(f"real sample data not found at {path} (set GPTPIPE_MIRROR to the shared "
                    "data folder)")
    return path


@pytest.fixture(scope="session")
def sample_texts(shared_data) -> list[str]:
    """Raw wikitext of the sample's articles (ns 0, no redirects): real text for units that
    need some, without depending on `ingest`."""
    import bz2
    import xml.etree.ElementTree as ET

    path = shared_data / "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
    texts = []
    with bz2.open(path) as f:
        for _, elem in ET.iterparse(f):
            if elem.tag.endswith("}page"):
                ns = elem.find("{*}ns").text
                text = elem.find("{*}revision/{*}text").text or ""
                if ns == "0" and elem.find("{*}redirect") is None:
                    texts.append(text)
                elem.clear()
    return texts


def write_ingest_dir(path: Path, rows: list[dict]) -> Path:
    """An `ingest`-format folder (Parquet with id, title, text, n_chars, split) for unit tests."""
    import polars as pl

    path.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        rows, schema={"id": pl.Int64, "title": pl.Utf8, "text": pl.Utf8, "split": pl.Utf8}
    ).with_columns(pl.col("text").str.len_chars().cast(pl.Int64).alias("n_chars"))
    frame.write_parquet(path / "part-00000.parquet")
    return path


@pytest.fixture(scope="session")
def micro(sample_texts, tmp_path_factory):
    """(shard folder, tokenizer.json) at micro scale, made once for every pre-training test."""
    from pretrain_data import micro_shards

    return micro_shards(tmp_path_factory.mktemp("micro"), sample_texts)


# ------------------------------------------------------------------ the micro reproduction
# One baseline run of the whole DAG at the `micro` scale per tool and test session; the rerun
# tests work in clones of it (tests/workflow_projects.py), so none of them changes the baseline.


@pytest.fixture(scope="session")
def mirror_env(shared_data) -> dict:
    """The environment a user of the sample mirror runs the workflow in."""
    return {"GPTPIPE_MIRROR": str(shared_data)}


@pytest.fixture(scope="session")
def micro_smk(tmp_path_factory, mirror_env) -> Path:
    """A project where `snakemake --cores 2` has run the micro DAG to the report."""
    import time

    from workflow_projects import WALL_SECONDS, project_copy, snakemake

    proj = project_copy(tmp_path_factory.mktemp("micro-smk"), scale="micro")
    t0 = time.monotonic()
    snakemake(proj, "all", env=mirror_env)
    WALL_SECONDS["micro_smk"] = time.monotonic() - t0
    return proj


@pytest.fixture(scope="session")
def micro_dvc(tmp_path_factory, mirror_env) -> Path:
    """A git + DVC project where `dvc repro` has run the micro DAG, lock committed (what
    `dvc exp run` starts from). As README says, dvc.yaml is regenerated for the new `scale`
    first; what `dvc repro` printed is kept in workflow_projects.DVC_REPRO_OUTPUT."""
    import sys

    from workflow_projects import DVC, DVC_REPRO_OUTPUT, project_copy, run

    proj = project_copy(tmp_path_factory.mktemp("micro-dvc"), scale="micro")
    git = ["git", "-c", "user.name=gptpipe tests", "-c", "user.email=tests@gptpipe.invalid"]
    run(["git", "init", "-q"], proj)
    run([sys.executable, "-m", "gptpipe", "dvc-yaml"], proj)
    DVC_REPRO_OUTPUT["micro_dvc"] = run([*DVC, "repro"], proj, env=mirror_env).stdout
    run(["git", "add", "-A"], proj)
    run([*git, "commit", "-q", "-m", "micro baseline"], proj)
    return proj


# ------------------------------------------------------------------ a real SLURM on localhost


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster on this machine, up for the session (tests/slurm/cluster.sh):
    one already up is used as it is; one this fixture starts is stopped at the end. Where none
    can be started (not root, no apt), it fails under CI and skips elsewhere, saying why."""
    from slurm_runs import ensure_cluster, stop_cluster

    started, why = ensure_cluster()
    if why:
        unavailable(why)
    yield
    if started:
        stop_cluster()
