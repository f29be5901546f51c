"""Learning-rate schedule (linear warm-up, cosine to 0) and the run's batch layout."""

from __future__ import annotations

import math

import pytest

from gptpipe.config import ConfigError, resolve_section
from gptpipe.pretrain.schedule import lr_at, run_shape


def test_warmup_is_linear_from_zero_to_the_peak():
    peak, warm, total = 2.5e-4, 2000, 10_000
    assert lr_at(0, peak, warm, total) == pytest.approx(peak / warm)
    assert lr_at(999, peak, warm, total) == pytest.approx(peak * 1000 / warm)
    assert lr_at(1999, peak, warm, total) == pytest.approx(peak)
    rates = [lr_at(s, peak, warm, total) for s in range(warm)]
    assert all(b > a for a, b in zip(rates, rates[1:]))


def test_cosine_anneals_to_zero():
    peak, warm, total = 1.0, 10, 110
    assert lr_at(10, peak, warm, total) == pytest.approx(1.0)
    assert lr_at(60, peak, warm, total) == pytest.approx(0.5)  # half-way: cos(pi/2) = 0
    assert lr_at(35, peak, warm, total) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert 0 < lr_at(109, peak, warm, total) < 1e-3
    assert lr_at(110, peak, warm, total) == pytest.approx(0.0, abs=1e-12)
    rates = [lr_at(s, peak, warm, total) for s in range(warm, total)]
    assert all(b < a for a, b in zip(rates, rates[1:]))


def test_no_warmup_starts_at_the_peak():
    assert lr_at(0, 3e-4, 0, 100) == pytest.approx(3e-4)


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
