"""The run's shape, in updates (optimizer steps), sequences and tokens.

GPT-1 (§4.1) trains on minibatches of 64 x 512-token sequences; the learning-rate schedule
(warm-up then cosine) is `gptpipe.optim.cosine_lr`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class RunShape:
    """How a run's updates split into slots, processes and forward passes.

    A *slot* is a unit of the data order: it reads its own slice of the shards, and every update
    takes `seqs_per_slot` sequences from each of the `slots` slots. Which slots exist, and what
    each holds, never depends on the number of processes: with `world_size` processes each owns
    `slots / world_size` of them. A process concatenates its slots' sequences in slot order and
    runs them in forward passes of at most `micro_batch` sequences (gradient accumulation), so
    `micro_batch` bounds memory without changing which sequences an update trains on.
    """

    updates: int  # optimizer steps in the whole run
    batch_seqs: int  # sequences per update, all processes together
    slots: int  # data-order units per update
    micro_batch: int  # at most this many sequences per forward pass
    context: int  # tokens per sequence
    world_size: int  # processes (DDP ranks)

    @property
    def seqs_per_slot(self) -> int:
        return self.batch_seqs // self.slots

    @property
    def slots_per_rank(self) -> int:
        return self.slots // self.world_size

    @property
    def rank_seqs(self) -> int:
        """Sequences each process trains on per update."""
        return self.batch_seqs // self.world_size

    @property
    def pass_sizes(self) -> tuple[int, ...]:
        """Sequences in each forward pass of one process's update (the last may be smaller)."""
        full, rest = divmod(self.rank_seqs, self.micro_batch)
        return (self.micro_batch,) * full + ((rest,) if rest else ())

    @property
    def passes(self) -> int:
        """Forward/backward passes per update on each process (gradient accumulation)."""
        return len(self.pass_sizes)

    @property
    def batch_tokens(self) -> int:
        return self.batch_seqs * self.context

    @property
    def total_tokens(self) -> int:
        return self.updates * self.batch_tokens

    def rank_slots(self, rank: int) -> range:
        """The slots process `rank` reads: a contiguous block, in slot order."""
        n = self.slots_per_rank
        return range(rank * n, (rank + 1) * n)


def run_shape(
    *, tokens: int, updates: int, batch_tokens: int, slots: int, micro_batch: int, context: int,
    world_size: int,
) -> RunShape:
    """Resolve the run length and batch layout; ConfigError says which knob to change.

    `updates` > 0 sets the length directly, else `tokens` is rounded up to whole updates.
    `batch_tokens` must be whole sequences of `context` tokens, shared equally by `slots`
    slots, which divide evenly over `world_size` processes. `micro_batch` only sizes the
    forward passes: any value >= 1 works with any process count.
    """
    if batch_tokens % context:
        raise ConfigError(
            f"pretrain.batch_tokens {batch_tokens} is not a whole number of {context}-token "
            f"sequences (the shards' context); use a multiple of {context}"
        )
    batch_seqs = batch_tokens // context
    if slots < 1 or batch_seqs % slots:
        raise ConfigError(
            f"pretrain.batch_tokens holds {batch_seqs} sequences, not a multiple of "
            f"pretrain.slots {slots}; set pretrain.slots to a divisor of {batch_seqs}"
        )
    if slots % world_size:
        raise ConfigError(
            f"pretrain.slots {slots} (data-order units per update) do not split evenly over "
            f"{world_size} processes; use a process count that divides {slots}, or change "
            "pretrain.slots (which changes the data order)"
        )
    n = updates if updates > 0 else -(-tokens // batch_tokens)
    return RunShape(n, batch_seqs, slots, micro_batch, context, world_size)
