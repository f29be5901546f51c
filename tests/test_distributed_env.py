"""Joining the process group: a process not started by torchrun, or one that cannot reach the
rendezvous, stops with a one-line GptpipeError saying which and where, not a torch traceback."""

from __future__ import annotations

import socket

import pytest
import torch.distributed as dist

from gptpipe.errors import GptpipeError
from gptpipe.pretrain import distributed as dd


@pytest.fixture
def busy_port():
    """A local port something already listens on, so a TCPStore server there fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def launched(monkeypatch):
    """The variables torchrun sets for rank 0 of 2 (less MASTER_*; each test sets its own)."""
    for var, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(var, value)
    for var in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    # init() would otherwise ask the kernel to kill this test process with its parent.
    monkeypatch.setattr(dd, "die_with_launcher", lambda: None)


def _never(*args, **kwargs):
    raise AssertionError("init_process_group must not be reached")


@pytest.mark.parametrize("unset", ["MASTER_ADDR", "MASTER_PORT"])
def test_missing_rendezvous_variable_names_it_and_torchrun(launched, monkeypatch, unset):
    for var, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        if var != unset:
            monkeypatch.setenv(var, value)
    monkeypatch.setattr(dist, "init_process_group", _never)
    with pytest.raises(GptpipeError, match=rf"WORLD_SIZE=2 but \${unset} is unset.*torchrun"):
        dd.init("cpu")


def test_empty_rendezvous_variable_counts_as_missing(launched, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setattr(dist, "init_process_group", _never)
    with pytest.raises(GptpipeError, match=r"\$MASTER_ADDR is unset"):
        dd.init("cpu")


def test_one_process_needs_no_rendezvous(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(dist, "init_process_group", _never)
    env = dd.init("cpu")
    assert (env.rank, env.world_size, env.distributed) == (0, 1, False)


def test_failed_gloo_rendezvous_says_where_and_who(launched, monkeypatch, busy_port):
    """A real gloo init whose store cannot listen (the port is taken): fails in well under 1 s."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(busy_port))
    with pytest.raises(GptpipeError) as err:
        dd.init("cpu")
    msg = str(err.value)
    assert f"rank 0 of 2 could not join the gloo process group at " \
           f"MASTER_ADDR:MASTER_PORT=127.0.0.1:{busy_port}: " in msg
    assert "\n" not in msg and "NCCL" not in msg
    assert isinstance(err.value.__cause__, RuntimeError)  # torch's own error, kept as the cause
    assert not dist.is_initialized()


def test_failed_nccl_rendezvous_hints_at_the_network(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "node07")
    monkeypatch.setenv("MASTER_PORT", "29500")

    def fail(*args, **kwargs):
        raise dist.DistNetworkError("timed out after 1800s\ntraceback-ish detail")

    monkeypatch.setattr(dist, "init_process_group", fail)
    with pytest.raises(GptpipeError) as err:
        dd.join_group("nccl", 5, 32)
    assert str(err.value) == (
        "rank 5 of 32 could not join the nccl process group at MASTER_ADDR:MASTER_PORT="
        "node07:29500: timed out after 1800s (NCCL: set NCCL_SOCKET_IFNAME to the interface "
        "between the nodes; NCCL_DEBUG=INFO shows what it tried)"
    )
