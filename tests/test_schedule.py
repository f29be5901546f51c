"""The run's length and batch layout (the learning-rate schedules: test_optim.py)."""

from __future__ import annotations

import pytest

from gptpipe.config import ConfigError, resolve_section
from gptpipe.pretrain.schedule import run_shape


def _shape(**kwargs):
    args = {"tokens": 0, "updates": 10, "batch_tokens": 8 * 64, "slots": 4, "micro_batch": 2,
            "context": 64, "world_size": 1} | kwargs
    return run_shape(**args)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8, 16, 32])
def test_gpt1_recipe_runs_on_any_power_of_two_up_to_32(world_size):
    cfg = resolve_section({"scale": "gpt1"}, "pretrain")
    shape = run_shape(tokens=cfg.tokens, updates=cfg.updates, batch_tokens=cfg.batch_tokens,
                      slots=cfg.slots, micro_batch=cfg.micro_batch, context=512,
                      world_size=world_size)
    assert shape.batch_seqs == 64 and shape.batch_tokens == 32_768
    assert (shape.slots, shape.seqs_per_slot) == (64, 1)  # the same data whatever the count
    assert shape.slots_per_rank == shape.rank_seqs == 64 // world_size
    assert shape.pass_sizes == (64 // world_size,)  # micro_batch 64: one pass on any count
    # ~0.96 petaflop/s-days of 6N + attention FLOPs: a few million updates of 32,768 tokens
    assert 700_000 <= shape.updates <= 3_600_000


def test_slots_spread_over_processes_without_changing_the_data():
    one, two = _shape(world_size=1), _shape(world_size=2)
    assert one.slots == two.slots == 4 and one.seqs_per_slot == two.seqs_per_slot == 2
    assert (one.slots_per_rank, two.slots_per_rank) == (4, 2)
    assert list(one.rank_slots(0)) == [0, 1, 2, 3]
    assert [list(two.rank_slots(r)) for r in (0, 1)] == [[0, 1], [2, 3]]


@pytest.mark.parametrize("micro_batch, world_size, sizes", [
    (2, 1, (2, 2, 2, 2)),  # 8 sequences on one process, 2 per pass
    (3, 1, (3, 3, 2)),  # a micro-batch that does not divide: the last pass is shorter
    (3, 2, (3, 1)),
    (8, 1, (8,)),
    (64, 4, (2,)),  # a micro-batch larger than a process's share: one pass
])
def test_passes_cover_a_process_share_in_micro_batches(micro_batch, world_size, sizes):
    shape = _shape(micro_batch=micro_batch, world_size=world_size)
    assert shape.pass_sizes == sizes and shape.passes == len(sizes)
    assert sum(sizes) * world_size == shape.batch_seqs


def test_micro_batch_never_changes_the_slots():
    shapes = [_shape(micro_batch=m) for m in (1, 2, 3, 8)]
    assert {(s.slots, s.seqs_per_slot) for s in shapes} == {(4, 2)}


def test_tokens_round_up_to_whole_updates():
    shape = _shape(tokens=1000, updates=0, batch_tokens=256)
    assert shape.updates == 4 and shape.total_tokens == 1024


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_tokens": 100}, "not a whole number of 64-token sequences"),
    ({"slots": 3}, r"holds 8 sequences, not a multiple of pretrain.slots 3"),
    ({"world_size": 3}, r"pretrain.slots 4 .* do not split evenly over 3 processes"),
    ({"world_size": 8}, r"pretrain.slots 4 .* over 8 processes"),
])
def test_bad_layouts_say_which_knob(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        _shape(**kwargs)


def test_slots_must_be_positive():
    with pytest.raises(ConfigError, match="slots"):
        resolve_section({"pretrain": {"slots": 0}}, "pretrain")


def test_run_length_must_be_set():
    with pytest.raises(ConfigError, match="set a run length"):
        resolve_section({"pretrain": {"tokens": 0, "updates": 0}}, "pretrain")
