"""The shared device and precision policy (gptpipe.device), used by both training stages."""

from __future__ import annotations

import contextlib

import pytest
import torch

from gptpipe.device import autocast_for, resolve_device
from gptpipe.errors import GptpipeError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cpu_and_auto_without_a_gpu(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("section", ["pretrain", "finetune"])
def test_cuda_without_a_gpu_names_the_sections_knob(no_gpu, section):
    with pytest.raises(GptpipeError, match=rf"^{section}\.device is 'cuda' but no CUDA device "
                       r"is visible.*use device: auto or cpu"):
        resolve_device("cuda", section=section)


def test_each_process_gets_its_own_gpu(two_gpus):
    assert resolve_device("auto", 1) == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cpu", 1) == torch.device("cpu")
    with pytest.raises(GptpipeError, match="process 2 of this node has no GPU of its own"):
        resolve_device("auto", 2)


def test_fp32_unless_asked_or_on_a_bf16_gpu(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_for(cpu, "auto") == (contextlib.nullcontext, "fp32")
    assert autocast_for(cpu, "fp32") == (contextlib.nullcontext, "fp32")
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert autocast_for(gpu, "auto")[1] == "fp32"
    assert autocast_for(gpu, "fp32")[1] == "fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert autocast_for(gpu, "auto")[1] == "bf16"


def test_bf16_autocast_applies_to_each_forward_pass():
    factory, name = autocast_for(torch.device("cpu"), "bf16")
    assert name == "bf16"
    a = torch.ones(4, 4)
    for _ in range(2):  # a fresh context every time
        with factory():
            assert (a @ a).dtype == torch.bfloat16
    assert (a @ a).dtype == torch.float32
