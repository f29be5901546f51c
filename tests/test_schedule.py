"""The run's length and batch layout (the learning-rate schedules: test_optim.py)."""

from __future__ import annotations

import pytest

from gptpipe.config import ConfigError, resolve_section
from gptpipe.pretrain.schedule import run_shape


def test_gpt1_run_shape():
    cfg = resolve_section({"scale": "gpt1"}, "pretrain")
    shape = run_shape(tokens=cfg.tokens, updates=cfg.updates, batch_tokens=cfg.batch_tokens,
                      micro_batch=8, context=512, world_size=8)
    assert shape.batch_seqs == 64 and shape.batch_tokens == 32_768
    assert (shape.slots, shape.accum) == (8, 1)
    # ~0.96 petaflop/s-days of 6N + attention FLOPs: a few million updates of 32,768 tokens
    assert 700_000 <= shape.updates <= 3_600_000


def test_slots_spread_over_processes_without_changing_the_data():
    one = run_shape(tokens=0, updates=10, batch_tokens=8 * 64, micro_batch=2, context=64,
                    world_size=1)
    two = run_shape(tokens=0, updates=10, batch_tokens=8 * 64, micro_batch=2, context=64,
                    world_size=2)
    assert one.slots == two.slots == 4
    assert (one.accum, two.accum) == (4, 2)
    assert list(one.rank_slots(0)) == [0, 1, 2, 3]
    assert [list(two.rank_slots(r)) for r in (0, 1)] == [[0, 1], [2, 3]]


def test_tokens_round_up_to_whole_updates():
    shape = run_shape(tokens=1000, updates=0, batch_tokens=256, micro_batch=4, context=64,
                      world_size=1)
    assert shape.updates == 4 and shape.total_tokens == 1024


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_tokens": 100}, "not a whole number of 64-token sequences"),
    ({"micro_batch": 3}, "not a multiple of pretrain.micro_batch 3"),
    ({"world_size": 3}, "do not split evenly over 3 processes"),
])
def test_bad_layouts_say_which_knob(kwargs, message):
    args = {"tokens": 0, "updates": 10, "batch_tokens": 512, "micro_batch": 2, "context": 64,
            "world_size": 1} | kwargs
    with pytest.raises(ConfigError, match=message):
        run_shape(**args)


def test_run_length_must_be_set():
    with pytest.raises(ConfigError, match="set a run length"):
        resolve_section({"pretrain": {"tokens": 0, "updates": 0}}, "pretrain")
