"""The pre-training loop: updates with gradient accumulation, clipping, validation, checkpoints.

It knows nothing of files beyond what `Trainer` is given: the model (plain, or wrapped by DDP /
torch.compile), its optimizer, the `pretrain` config (of which it reads the learning rate, the
warm-up, the clipping and how often to validate, log and checkpoint), one batch stream per data
slot this process owns, an `evaluate` callable, the checkpoint store and the metric sinks.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol

import torch
import torch.nn.functional as F

from ..config import PretrainConfig
from ..device import Autocast
from ..errors import GptpipeError
from ..optim import cosine_lr, set_lr
from ..tblog import EventLog
from . import distributed as dd
from .checkpoint import Checkpoints, Restored
from .deadline import NEVER, Deadline, TimeLimitStop, stop_now
from .metrics import MetricsLog, Progress, mfu
from .schedule import RunShape

log = logging.getLogger(__name__)


class BatchStream(Protocol):
    """An endless source of (x, y) LongTensor batches (seqs_per_slot, context) with a position."""

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class Clock:
    """Cumulative figures that survive a resume (saved in every checkpoint)."""

    train_seconds: float = 0.0  # time inside updates, all runs of this training together
    mfu_seconds: float = 0.0  # sum of MFU x seconds, for a time-weighted mean

    def as_dict(self) -> dict:
        return {"train_seconds": self.train_seconds, "mfu_seconds": self.mfu_seconds}


@dataclass
class Window:
    """Since the last metric line: updates' time and the losses to average."""

    seconds: float = 0.0
    tokens: int = 0
    losses: list[float] = field(default_factory=list)


class NonFiniteLoss(GptpipeError):
    """The loss or gradient norm became NaN/inf; the last good checkpoint is left intact."""


@dataclass
class Trainer:
    model: torch.nn.Module  # what the forward pass runs (maybe DDP- and compile-wrapped)
    optimizer: torch.optim.Optimizer
    shape: RunShape
    cfg: PretrainConfig
    env: dd.DistEnv
    streams: dict[int, BatchStream]  # this process's slots by slot id, in slot order
    evaluate: Callable[[bool], dict]  # full split? -> {"val_loss", "val_bpb", ...} on every rank
    checkpoints: Checkpoints
    metrics: MetricsLog | None  # rank 0 only
    progress: Progress
    flops_per_token: int
    peak_flops: float | None  # per device; None: no MFU
    autocast: Autocast = contextlib.nullcontext
    clock: Clock = field(default_factory=Clock)
    last_checkpoint: str | None = None
    deadline: Deadline = NEVER  # rank 0's: when to checkpoint and stop before the job's limit
    events: EventLog | None = None  # rank 0's TensorBoard view of the metric records
    # rank 0's: called with the update count after every update (weight snapshots for zeroshot)
    after_update: Callable[[int], None] | None = None

    # ----------------------------------------------------------------- state

    def rank_state(self) -> dict:
        state = {"rng_cpu": torch.get_rng_state(),
                 "slots": {str(i): s.state_dict() for i, s in self.streams.items()}}
        if self.env.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.env.device)
        return state

    def resume(self, restored: Restored) -> int:
        """Put back RNG and data positions from `restored`; the update to continue from."""
        slots = {k: v for r in restored.rank_states for k, v in r["slots"].items()}
        for i, stream in self.streams.items():
            stream.load_state_dict(slots[str(i)])
        if restored.world_size == self.env.world_size:
            own = restored.rank_states[self.env.rank]
            torch.set_rng_state(own["rng_cpu"])
            if self.env.device.type == "cuda" and "rng_cuda" in own:
                torch.cuda.set_rng_state(own["rng_cuda"], self.env.device)
        else:
            log.warning("resuming on %d processes a run saved by %d: same data order, but the "
                        "dropout masks differ from an uninterrupted run",
                        self.env.world_size, restored.world_size)
        self.clock = Clock(**restored.trainer["clock"])
        self.last_checkpoint = str(restored.path)
        return restored.step

    # ----------------------------------------------------------------- the loop

    def run(self, start: int) -> dict:
        """Train from update `start` to the end; the last validation's figures."""
        window = Window()
        self.model.train()
        final: dict = {}
        for step in range(start, self.shape.updates):
            t0 = time.perf_counter()
            loss, grad_norm, lr = self._update(step)
            dt = time.perf_counter() - t0
            window.seconds += dt
            self.clock.train_seconds += dt
            window.tokens += self.shape.batch_tokens
            window.losses.append(loss)
            done = step + 1
            last = done == self.shape.updates
            record = {"step": done, "tokens": done * self.shape.batch_tokens, "lr": lr,
                      "loss": loss, "grad_norm": grad_norm}
            # Time to stop for the job's limit? Asked (by all ranks together) only where a
            # metric line falls anyway, so that the resumed run logs the same curve.
            stop = (not last and done % self.cfg.log_every == 0
                    and stop_now(self.deadline, self.env.device))
            save = done % self.cfg.checkpoint_every == 0 or last or stop
            if done % self.cfg.eval_every == 0 or last:
                final = self._validate(record, full=last)
            # A window never spans a checkpoint, so a resumed run logs the same lines.
            if done % self.cfg.log_every == 0 or save or "val_loss" in record:
                self._log(record, window)
                window = Window()
            self.progress.update(done, record["loss"], lr, record.get("tokens_per_s"))
            if self.after_update is not None:
                self.after_update(done)
            if save:
                self._checkpoint(done)
            if stop:
                self.progress.close()
                raise TimeLimitStop.at(done, self.shape.updates, self.deadline,
                                       self.last_checkpoint, self.env.is_main)
        self.progress.close()
        return final

    def _update(self, step: int) -> tuple[float, float, float]:
        """One optimizer update over this process's slots; (mean loss, grad norm, lr)."""
        lr = cosine_lr(step, self.cfg.lr, self.cfg.warmup_updates, self.shape.updates)
        set_lr(self.optimizer, lr)
        loss_sum = torch.zeros((), device=self.env.device)
        x_all, y_all = self._rank_batch()
        sizes = self.shape.pass_sizes
        start = 0
        for i, n in enumerate(sizes):
            x = x_all[start:start + n].to(self.env.device, non_blocking=True)
            y = y_all[start:start + n].to(self.env.device, non_blocking=True)
            start += n
            # Each pass's mean loss counts by its share of this process's sequences, and DDP
            # averages the processes' gradients: the update follows the whole batch's mean.
            weight = n / self.shape.rank_seqs
            # DDP all-reduces gradients on the last pass only.
            sync = i == len(sizes) - 1 or not hasattr(self.model, "no_sync")
            with (contextlib.nullcontext() if sync else self.model.no_sync()), self.autocast():
                _, loss = self.model(x, y)
            (loss * weight).backward()
            loss_sum += loss.detach().float() * weight
        clip = self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        mean_loss = dd.all_reduce_sum(loss_sum).item() / self.env.world_size
        norm = float(grad_norm)
        if not (math.isfinite(mean_loss) and math.isfinite(norm)):
            raise NonFiniteLoss(self._nonfinite_message(step + 1, mean_loss, norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return mean_loss, norm, lr

    def _rank_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's sequences of the next update: its slots' batches, in slot order."""
        batches = [next(stream) for stream in self.streams.values()]
        if len(batches) == 1:
            return batches[0]
        return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])

    def _nonfinite_message(self, update: int, loss: float, norm: float) -> str:
        where = self.last_checkpoint or "none yet (the run starts afresh next time)"
        return (f"update {update}: the loss is {loss} and the gradient norm {norm}; stopped "
                f"before applying it. Last good checkpoint: {where}. Lower pretrain.lr or "
                "lengthen pretrain.warmup_updates, or check the shards")

    def _validate(self, record: dict, full: bool) -> dict:
        """Every figure `evaluate` returns joins the metric line (room for zero-shot probes)."""
        figures = self.evaluate(full)
        record.update({k: v for k, v in figures.items() if k != "val_tokens"})
        self.progress.note(f"update {record['step']}: val_loss {figures['val_loss']:.4f} "
                           f"val_bpb {figures['val_bpb']:.4f}")
        return figures

    def _log(self, record: dict, window: Window) -> None:
        tps = window.tokens / window.seconds if window.seconds > 0 else 0.0
        util = mfu(self.flops_per_token, tps, self.peak_flops, self.env.world_size)
        self.clock.mfu_seconds += (util or 0.0) * window.seconds
        record.update(loss=sum(window.losses) / len(window.losses), tokens_per_s=tps, mfu=util)
        if self.metrics is not None:
            self.metrics.write(record)
        if self.events is not None:  # flushed, as the JSONL: a checkpoint covers its events
            self.events.write(record, record["step"])
            self.events.flush()

    def _checkpoint(self, done: int) -> None:
        trainer = {"clock": self.clock.as_dict(), "tokens": done * self.shape.batch_tokens}
        path = self.checkpoints.save(done, self.model, self.optimizer, trainer, self.rank_state())
        self.last_checkpoint = str(path)


def mean_mfu(clock: Clock) -> float | None:
    return clock.mfu_seconds / clock.train_seconds if clock.train_seconds > 0 else None


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                token_bytes: torch.Tensor, device: torch.device,
                autocast: Autocast = contextlib.nullcontext,
                ) -> dict:
    """Validation loss (nats per token) and bits per UTF-8 byte over this process's `batches`,
    summed over all processes.

    `token_bytes[id]` is the number of text bytes token `id` stands for, so bits per byte
    compares across tokenizers where per-token loss does not.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with autocast():
            logits, _ = model(x)  # (B, T, vocab)
        nats = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        sums += torch.stack([nats.double(), torch.tensor(y.numel(), device=device).double(),
                             token_bytes[y].sum().double()])
    model.train(was_training)
    nats, tokens, nbytes = dd.all_reduce_sum(sums).tolist()
    if tokens == 0:
        raise GptpipeError("the validation split has no windows to score")
    return {"val_loss": nats / tokens, "val_bpb": nats / math.log(2) / max(nbytes, 1.0),
            "val_tokens": int(tokens)}
