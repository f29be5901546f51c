"""The pre-training data loader: (x, y) batches of one split for one DDP rank, from `shard`'s tars.

Every epoch is dealt out by pure functions of the manifest's per-shard counts, `seed` and the
epoch, so all ranks and workers agree on it without talking to each other:

1. The split's shards are permuted from (seed, epoch).
2. There are S = world_size x max(1, num_workers) streams; stream (rank, worker). With at least S
   shards, whole shards are dealt to streams (each to the one with the fewest samples so far),
   so a worker reads only its own shards: at paper scale every rank reading everything would
   move the whole corpus through every node. With fewer shards, every stream reads all of
   them and takes every S-th sample.
3. Every stream is cut to the same quota, the smallest stream's samples in whole batches, so
   every worker yields the same number of batches and every rank takes the same number of
   steps (unequal counts hang DDP). The cut is reported by `epoch_info`; which samples it
   drops changes with each epoch's permutation.
4. Each stream is shuffled through a buffer of `shuffle_buffer` samples seeded from (seed,
   epoch, rank, worker).

Shuffling works on sample ids, not on data: resuming at batch b skips ids without reading
anything, and each shard is read once, whole and sequentially, when its first sample is due.

With DataLoader workers, batch i of a rank's epoch comes from worker i mod W (torch returns
worker batches round-robin, in order). A resumed loader rotates the workers so that its first
batch comes from the right one: the batches after a resume are exactly those of a run that
never stopped. All ranks must use the same batch_size, num_workers, seed and shuffle settings.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import GptpipeError
from ..shard.reader import Manifest, read_manifest, read_shard

log = logging.getLogger(__name__)

# Settings a saved position is only valid under: another value would deal other samples.
_STATE_KEYS = ("split", "batch_size", "world_size", "num_workers", "seed", "shuffle",
               "shuffle_buffer", "drop_last")


@dataclass(frozen=True)
class EpochPlan:
    """How one epoch's samples are dealt to the S streams (the same on every rank and worker)."""

    epoch: int
    order: tuple[int, ...]  # shard indices (manifest order) in this epoch's reading order
    streams: tuple[tuple[int, ...], ...]  # the shards of each stream; () when splitting samples
    samples_per_stream: int  # the quota every stream yields
    batches_per_stream: int
    dropped: int  # samples of the split no stream yields this epoch (all ranks together)


def shard_order(n_shards: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The epoch's shard reading order: a permutation from (seed, epoch), or manifest order."""
    if not shuffle:
        return np.arange(n_shards)
    return np.random.default_rng([seed, epoch, 0]).permutation(n_shards)


def deal_shards(counts: Sequence[int], order: Sequence[int], n_streams: int) -> list[list[int]]:
    """Each shard, in `order`, to the stream with the fewest samples so far (ties: lowest id)."""
    streams: list[list[int]] = [[] for _ in range(n_streams)]
    heap = [(0, s) for s in range(n_streams)]
    for k in order:
        size, s = heapq.heappop(heap)
        streams[s].append(int(k))
        heapq.heappush(heap, (size + counts[k], s))
    return streams


def plan_epoch(counts: Sequence[int], n_streams: int, batch_size: int, epoch: int, seed: int,
               shuffle: bool, drop_last: bool) -> EpochPlan:
    """The epoch's deal and the common quota (samples) that every stream is cut to."""
    order = shard_order(len(counts), seed, epoch, shuffle)
    total = sum(counts)
    if len(counts) >= n_streams:
        streams = deal_shards(counts, order, n_streams)
        smallest = min(sum(counts[k] for k in s) for s in streams)
    else:
        streams, smallest = [], total // n_streams
    batches = smallest // batch_size if drop_last else -(-smallest // batch_size)
    quota = batches * batch_size if drop_last else smallest
    return EpochPlan(epoch, tuple(int(k) for k in order), tuple(map(tuple, streams)), quota,
                     batches, total - n_streams * quota)


def stream_ids(plan: EpochPlan, counts: Sequence[int], n_streams: int, stream: int) -> np.ndarray:
    """Global sample ids of `stream` in reading order, cut to the quota (before shuffling).

    Sample `i` of shard `k` has id `sum(counts[:k]) + i`.
    """
    starts = np.concatenate([[0], np.cumsum(counts)])
    shards = plan.streams[stream] if plan.streams else plan.order
    ids = np.concatenate([np.arange(starts[k], starts[k + 1]) for k in shards])
    if not plan.streams:
        ids = ids[stream::n_streams]
    return ids[: plan.samples_per_stream]


def buffer_shuffle(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Shuffle through a buffer of `size` items: each arriving item replaces a random one, which
    is emitted; the rest is emitted in random order at the end. `size` <= 1: unchanged."""
    if size <= 1 or len(ids) <= 1:
        return ids.copy()
    u = rng.random(len(ids)).tolist()
    buf: list[int] = []
    out: list[int] = []
    for x, r in zip(ids.tolist(), u):
        if len(buf) < size:
            buf.append(x)
            continue
        j = int(r * size)
        out.append(buf[j])
        buf[j] = x
    out += rng.permutation(np.array(buf, dtype=np.int64)).tolist()
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True)
class _Spec:
    """Everything a worker needs to produce its batches (small, pickled into each worker)."""

    paths: tuple[str, ...]
    counts: tuple[int, ...]
    window: int
    dtype: str
    batch_size: int
    rank: int
    world_size: int
    workers: int  # streams per rank: max(1, num_workers)
    seed: int
    shuffle: bool
    shuffle_buffer: int
    drop_last: bool

    @property
    def n_streams(self) -> int:
        return self.world_size * self.workers

    def plan(self, epoch: int) -> EpochPlan:
        return plan_epoch(self.counts, self.n_streams, self.batch_size, epoch, self.seed,
                          self.shuffle, self.drop_last)

    def order(self, plan: EpochPlan, worker: int) -> np.ndarray:
        """The shuffled sample ids that (rank, worker) yields in `plan`'s epoch."""
        ids = stream_ids(plan, self.counts, self.n_streams, self.rank * self.workers + worker)
        if not self.shuffle:
            return ids
        rng = np.random.default_rng([self.seed, plan.epoch, 1, self.rank, worker])
        return buffer_shuffle(ids, self.shuffle_buffer, rng)

    def batches(self, ids: np.ndarray) -> Iterator[np.ndarray]:
        """Windows of `ids` in batches (B, window), reading each shard once, when first due."""
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        shard = np.searchsorted(starts, ids, side="right") - 1
        row = ids - starts[shard]
        cache = _RowCache(self, shard, row)
        for b in range(-(-len(ids) // self.batch_size)):
            sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
            sh, rw = shard[sl], row[sl]
            out = np.empty((len(sh), self.window), self.dtype)
            for k in np.unique(sh).tolist():
                sel = sh == k
                out[sel] = cache.get(k, rw[sel])
                cache.release(k, sl.stop)
            yield out


class _RowCache:
    """The windows a stream still needs, by shard: each shard is read once, whole, and only the
    rows still to come are kept as its uses pass.

    A buffer shuffle lets a few samples of a shard linger long after the rest have gone (about
    ln(samples per shard) buffer lengths); keeping whole shards for them would hold tens of
    shards per worker, keeping their rows holds about one buffer's worth.
    """

    def __init__(self, spec: _Spec, shard: np.ndarray, row: np.ndarray) -> None:
        self.spec, self.row = spec, row
        order = np.argsort(shard, kind="stable")  # positions grouped by shard, ascending
        bounds = np.searchsorted(shard[order], np.arange(len(spec.counts) + 1))
        self.uses = {k: order[bounds[k]: bounds[k + 1]] for k in np.unique(shard).tolist()}
        self.kept: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}  # (rows kept, windows)

    def get(self, k: int, rows: np.ndarray) -> np.ndarray:
        if k not in self.kept:
            spec = self.spec
            self.kept[k] = (None, read_shard(spec.paths[k], spec.window, spec.dtype,
                                             spec.counts[k]))
        keys, windows = self.kept[k]
        return windows[rows if keys is None else np.searchsorted(keys, rows)]

    def release(self, k: int, next_pos: int) -> None:
        """Drop what shard `k`'s uses before position `next_pos` needed."""
        uses = self.uses[k]
        self.uses[k] = uses = uses[np.searchsorted(uses, next_pos):]
        keys, windows = self.kept[k]
        if len(uses) == 0:
            del self.kept[k]
        elif len(uses) * 4 <= len(windows):
            need = np.unique(self.row[uses])
            self.kept[k] = (need, windows[need if keys is None else np.searchsorted(keys, need)])


def _to_xy(windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs window[:, :-1] and targets window[:, 1:] as contiguous int64 (B, T)."""
    x = torch.from_numpy(windows[:, :-1].astype(np.int64))
    y = torch.from_numpy(windows[:, 1:].astype(np.int64))
    return x, y


class _Stream(IterableDataset):
    """The rank's batches from position (epoch, batch) on, `limit` of them (None: endless).

    DataLoader worker k serves the logical worker (k + batch) mod W, so the round-robin
    order of DataLoader outputs continues the rank's batch sequence exactly.
    """

    def __init__(self, spec: _Spec, epoch: int, batch: int, limit: int | None) -> None:
        super().__init__()
        self.spec, self.epoch, self.batch, self.limit = spec, epoch, batch, limit

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        k = info.id if info is not None else 0
        w = self.spec.workers
        worker, skip = (k + self.batch) % w, (k + self.batch) // w
        quota = None if self.limit is None else max(0, -(-(self.limit - k) // w))
        produced, epoch = 0, self.epoch
        while quota is None or produced < quota:
            plan = self.spec.plan(epoch)
            if plan.batches_per_stream == 0:
                raise GptpipeError(f"epoch {epoch} deals no batch to each stream")
            ids = self.spec.order(plan, worker)[skip * self.spec.batch_size:]
            for windows in self.spec.batches(ids):
                if quota is not None and produced >= quota:
                    return
                produced += 1
                yield _to_xy(windows)
            epoch, skip = epoch + 1, 0


class ShardLoader:
    """(x, y) LongTensor batches of shape (B, T) of one split, for one rank; position resumable.

    `manifest` is a shard folder, its `manifest.json`, or a read `Manifest`. `shuffle=False`
    reads shards and samples in manifest order (validation); `shuffle_buffer=0` keeps the
    epoch's shard permutation but not the sample shuffle. With `pin_memory`, batches come in
    pinned memory for asynchronous copies to CUDA. The position is the same on every rank.
    """

    def __init__(self, manifest: Manifest | str | Path, split: str, batch_size: int, *,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, seed: int = 0,
                 shuffle: bool = True, shuffle_buffer: int = 8192, epoch: int = 0,
                 drop_last: bool = True, pin_memory: bool = False) -> None:
        if not (batch_size >= 1 and world_size >= 1 and 0 <= rank < world_size
                and num_workers >= 0 and seed >= 0 and shuffle_buffer >= 0 and epoch >= 0):
            raise ValueError("need batch_size >= 1, 0 <= rank < world_size, num_workers >= 0, "
                             "seed >= 0, shuffle_buffer >= 0, epoch >= 0")
        self.manifest = manifest if isinstance(manifest, Manifest) else read_manifest(manifest)
        self.split, self.batch_size = split, batch_size
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.seed, self.shuffle = num_workers, seed, shuffle
        self.shuffle_buffer, self.drop_last, self.pin_memory = shuffle_buffer, drop_last, pin_memory
        shards = self.manifest.shards(split)
        missing = [p for p, _ in shards if not p.is_file()]
        if missing:
            raise GptpipeError(f"{missing[0]}: shard listed in {self.manifest.path} is missing"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        self._spec = _Spec(tuple(str(p) for p, _ in shards), tuple(n for _, n in shards),
                           self.manifest.window, self.manifest.dtype.str, batch_size, rank,
                           world_size, max(1, num_workers), seed, shuffle, shuffle_buffer,
                           drop_last)
        self._plans: dict[int, EpochPlan] = {}
        self.epoch, self.batch = epoch, 0  # position: batches of `epoch` already handed out
        self._check_epoch(epoch)

    def _plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans[epoch] = self._spec.plan(epoch)
        return self._plans[epoch]

    def _check_epoch(self, epoch: int) -> None:
        plan, total = self._plan(epoch), sum(self._spec.counts)
        where = f"{self.manifest.path}: split {self.split!r}"
        if plan.batches_per_stream == 0:
            raise GptpipeError(
                f"{where}: {total} samples over {self._spec.n_streams} streams ({self.world_size} "
                f"ranks x {self._spec.workers} workers) give no batch of {self.batch_size}"
            )
        if plan.dropped > 0.1 * total:
            log.warning("%s: %d of %d samples (%.0f%%) left out of epoch %d to give %d streams "
                        "equal shares; more, smaller shards would lose fewer", where,
                        plan.dropped, total, 100 * plan.dropped / total, epoch,
                        self._spec.n_streams)

    def batches_in_epoch(self, epoch: int) -> int:
        """This rank's batches in `epoch` (every rank has the same number)."""
        return self._plan(epoch).batches_per_stream * self._spec.workers

    @property
    def batches_per_epoch(self) -> int:
        """This rank's batches in the current epoch (it may vary by a few between epochs)."""
        return self.batches_in_epoch(self.epoch)

    def epoch_info(self, epoch: int | None = None) -> dict:
        """Batches and samples per rank in `epoch`, and samples of the split left out of it."""
        plan = self._plan(self.epoch if epoch is None else epoch)
        return {"epoch": plan.epoch, "batches": plan.batches_per_stream * self._spec.workers,
                "samples": plan.samples_per_stream * self._spec.workers,
                "dropped_samples": plan.dropped, "whole_shards": bool(plan.streams)}

    def iter_batches(self, num_batches: int | None = None) -> Iterator[tuple[torch.Tensor,
                                                                             torch.Tensor]]:
        """The next `num_batches` batches (None: endless), running on into later epochs.

        The position advances as each batch is handed out. Use one iterator at a time.
        """
        if num_batches == 0:
            return
        stream = _Stream(self._spec, self.epoch, self.batch, num_batches)
        loader = DataLoader(stream, batch_size=None, num_workers=self.num_workers,
                            pin_memory=self.pin_memory)
        for x, y in loader:
            self.batch += 1
            if self.batch == self.batches_in_epoch(self.epoch):
                self.epoch, self.batch = self.epoch + 1, 0
            yield x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch; afterwards the position is the next epoch's start."""
        return self.iter_batches(self.batches_per_epoch - self.batch)

    def state_dict(self) -> dict:
        """The position (epoch, batches consumed) and the settings it is valid under."""
        return {"epoch": self.epoch, "batch": self.batch,
                **{key: getattr(self, key) for key in _STATE_KEYS}}

    def load_state_dict(self, state: Mapping) -> None:
        """Continue from a saved position; GptpipeError if it was saved under other settings."""
        for key in _STATE_KEYS:
            if state.get(key) != getattr(self, key):
                raise GptpipeError(
                    f"loader state was saved with {key}={state.get(key)!r}, this loader has "
                    f"{getattr(self, key)!r}: the batches after resuming would differ"
                )
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if not 0 <= batch < self.batches_in_epoch(epoch):
            raise GptpipeError(f"loader state: batch {batch} is outside epoch {epoch} "
                               f"({self.batches_in_epoch(epoch)} batches)")
        self._check_epoch(epoch)
        self.epoch, self.batch = epoch, batch
