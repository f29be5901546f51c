"""The run's shape, in updates (optimizer steps), sequences and tokens.

GPT-1 (§4.1) trains on minibatches of 64 x 512-token sequences; the learning-rate schedule
(warm-up then cosine) is `gptpipe.optim.cosine_lr`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class RunShape:
    """How a run's updates split into sequences, micro-batch slots and processes.

    A *slot* is one micro-batch of `micro_batch` sequences; each update draws one micro-batch
    from every slot. Slots own disjoint slices of the shards, so the data of an update is the
    same whatever the number of processes: with `world_size` processes each owns
    `slots / world_size` of them and accumulates gradients over those (`accum` micro-steps).
    """

    updates: int  # optimizer steps in the whole run
    batch_seqs: int  # sequences per update, all processes together
    micro_batch: int  # sequences per forward pass
    context: int  # tokens per sequence
    world_size: int  # processes (DDP ranks)

    @property
    def slots(self) -> int:
        return self.batch_seqs // self.micro_batch

    @property
    def accum(self) -> int:
        """Micro-steps per update on each process (gradient accumulation)."""
        return self.slots // self.world_size

    @property
    def batch_tokens(self) -> int:
        return self.batch_seqs * self.context

    @property
    def total_tokens(self) -> int:
        return self.updates * self.batch_tokens

    def rank_slots(self, rank: int) -> range:
        """The slots process `rank` reads: a contiguous block, in slot order."""
        return range(rank * self.accum, (rank + 1) * self.accum)


def run_shape(
    *, tokens: int, updates: int, batch_tokens: int, micro_batch: int, context: int,
    world_size: int,
) -> RunShape:
    """Resolve the run length and batch layout; ConfigError says which knob to change.

    `updates` > 0 sets the length directly, else `tokens` is rounded up to whole updates.
    `batch_tokens` must be whole sequences of `context` tokens, split into micro-batches of
    `micro_batch` sequences, whose number divides evenly over `world_size` processes.
    """
    if batch_tokens % context:
        raise ConfigError(
            f"pretrain.batch_tokens {batch_tokens} is not a whole number of {context}-token "
            f"sequences (the shards' context); use a multiple of {context}"
        )
    batch_seqs = batch_tokens // context
    if batch_seqs % micro_batch:
        raise ConfigError(
            f"pretrain.batch_tokens holds {batch_seqs} sequences, not a multiple of "
            f"pretrain.micro_batch {micro_batch}"
        )
    slots = batch_seqs // micro_batch
    if slots % world_size:
        raise ConfigError(
            f"{slots} micro-batches of {micro_batch} sequences per update do not split evenly "
            f"over {world_size} processes; change pretrain.micro_batch or the process count"
        )
    n = updates if updates > 0 else -(-tokens // batch_tokens)
    return RunShape(n, batch_seqs, micro_batch, context, world_size)
