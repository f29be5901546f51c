"""The pre-training loader: disjoint equal shares per rank and worker, seeded order, resume."""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from gptpipe.shard import reader
from gptpipe.config import ShardConfig
from gptpipe.errors import GptpipeError
from gptpipe.pretrain.loader import ShardLoader, buffer_shuffle, plan_epoch
from gptpipe.shard import cli as stage
from test_shards import make_corpus

CONTEXT = 16
WINDOW = CONTEXT + 1


@pytest.fixture(scope="module")
def out(sample_texts, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("loader")
    corpus = make_corpus(sample_texts, folder, max_chars=200_000)
    stage.run(ShardConfig(context=CONTEXT, samples_per_shard=200), [corpus.ingest],
              corpus.tokenizer, folder / "shards")
    return folder / "shards"


def split_windows(out: Path, split: str) -> list[np.ndarray]:
    """Every shard's windows, in manifest order."""
    m = reader.read_manifest(out)
    return [reader.read_shard(p, WINDOW, m.dtype, n) for p, n in m.shards(split)]


def rows(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> list[bytes]:
    """The windows of `batches` (x plus the last target), as bytes for counting."""
    out = []
    for x, y in batches:
        w = torch.cat([x[:, :1], y], dim=1).numpy().astype("<u2")
        out += [r.tobytes() for r in w]
    return out


def counter_of(blocks: list[np.ndarray]) -> Counter:
    return Counter(r.tobytes() for b in blocks for r in b)


def take(it, n: int) -> list:
    return list(itertools.islice(it, n))


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])
                                    for p, q in zip(a, b))


def test_batches_are_shifted_windows_of_the_split(out: Path) -> None:
    loader = ShardLoader(out, "train", 8)
    x, y = next(iter(loader))
    assert x.shape == y.shape == (8, CONTEXT) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert not Counter(rows([(x, y)])) - counter_of(split_windows(out, "train"))
    assert loader.state_dict()["batch"] == 1


def test_two_ranks_two_workers_take_disjoint_equal_shares(out: Path) -> None:
    blocks = split_windows(out, "train")
    counts = [len(b) for b in blocks]
    assert len(counts) >= 4  # whole-shard mode: at least one shard per stream
    batch, ranks, workers = 32, 2, 2  # big batches: each one crosses a process boundary
    plan = plan_epoch(counts, ranks * workers, batch, epoch=0, seed=3, shuffle=True,
                      drop_last=True)
    sizes = [sum(counts[k] for k in s) for s in plan.streams]
    assert sorted(k for s in plan.streams for k in s) == list(range(len(counts)))
    assert max(sizes) - min(sizes) <= max(counts)
    per_rank, seen = [], Counter()
    for rank in range(ranks):
        loader = ShardLoader(out, "train", batch, rank=rank, world_size=ranks,
                             num_workers=workers, seed=3)
        got = list(loader)
        per_rank.append(len(got))
        assert len(got) == loader.batches_per_epoch == loader.epoch_info()["batches"]
        for w in range(workers):  # batch i of a rank comes from worker i mod W
            mine = Counter(rows(got[w::workers]))
            stream_shards = plan.streams[rank * workers + w]
            assert not mine - counter_of([blocks[k] for k in stream_shards])
        seen += Counter(rows(got))
    assert per_rank[0] == per_rank[1] > 0
    assert not seen - counter_of(blocks)  # no window more often than the split has it
    quota = min(sizes) // batch * batch
    dropped = sum(counts) - ranks * workers * quota
    assert sum(seen.values()) == sum(counts) - dropped
    assert loader.epoch_info()["dropped_samples"] == plan.dropped == dropped


def test_fewer_shards_than_streams_split_samples(out: Path) -> None:
    blocks = split_windows(out, "val")
    total, ranks, batch = sum(map(len, blocks)), len(blocks) + 1, 4
    seen, lengths = Counter(), []
    for rank in range(ranks):
        loader = ShardLoader(out, "val", batch, rank=rank, world_size=ranks, seed=1)
        got = list(loader)
        lengths.append(len(got))
        seen += Counter(rows(got))
        assert loader.epoch_info()["whole_shards"] is False
    assert set(lengths) == {total // ranks // batch}
    assert not seen - counter_of(blocks)
    assert sum(seen.values()) == ranks * (total // ranks // batch * batch)


@pytest.mark.parametrize("workers, batch", [(0, 16), (2, 64)])
def test_resume_continues_the_same_sequence(out: Path, workers: int, batch: int) -> None:
    kw = dict(rank=1, world_size=2, num_workers=workers, seed=5)
    ref_loader = ShardLoader(out, "train", batch, **kw)
    per_epoch = ref_loader.batches_per_epoch
    n = per_epoch + per_epoch // 2 + 3
    ref = take(ref_loader.iter_batches(), n)
    assert ref_loader.state_dict()["epoch"] == 1
    for cut in (3, per_epoch - 1, per_epoch, per_epoch + 5):
        first = ShardLoader(out, "train", batch, **kw)
        head = take(first.iter_batches(), cut)  # endless iterator, abandoned after `cut`
        assert same(head, ref[:cut])
        state = first.state_dict()
        assert (state["epoch"], state["batch"]) == divmod(cut, per_epoch)
        resumed = ShardLoader(out, "train", batch, **kw)
        resumed.load_state_dict(state)
        assert same(take(resumed.iter_batches(), n - cut), ref[cut:]), cut


def test_epoch_iteration_ends_at_the_epoch_and_moves_on(out: Path) -> None:
    loader = ShardLoader(out, "train", 16, seed=2)
    first = list(loader)
    assert len(first) == loader.batches_in_epoch(0)
    assert (loader.epoch, loader.batch) == (1, 0)
    again = ShardLoader(out, "train", 16, seed=2, epoch=1)
    assert same(take(iter(loader), 4), take(iter(again), 4))


def test_order_depends_on_seed_and_epoch(out: Path) -> None:
    def head(**kw) -> list:
        return take(iter(ShardLoader(out, "train", 8, **kw)), 3)

    base = head(seed=0)
    assert same(base, head(seed=0))
    assert not same(base, head(seed=1))
    assert not same(base, head(seed=0, epoch=1))
    assert not same(base, head(seed=0, shuffle_buffer=0))


def test_unshuffled_order_is_manifest_order(out: Path) -> None:
    blocks = split_windows(out, "val")
    got = rows(list(ShardLoader(out, "val", 4, shuffle=False)))
    want = [r.tobytes() for r in np.concatenate(blocks)]
    assert got == want[: len(got)] and len(want) - len(got) < 4


def test_buffer_shuffle() -> None:
    ids = np.arange(1000)
    a = buffer_shuffle(ids, 64, np.random.default_rng(7))
    assert sorted(a.tolist()) == ids.tolist() and not np.array_equal(a, ids)
    assert np.array_equal(a, buffer_shuffle(ids, 64, np.random.default_rng(7)))
    assert np.array_equal(buffer_shuffle(ids, 1, np.random.default_rng(7)), ids)
    # A buffer holds at most 64 ids, so no id leaves before 63 arrivals after it.
    assert (np.flatnonzero(a == 500)[0] >= 500 - 63)


def test_lingering_samples_do_not_keep_whole_shards(out: Path, monkeypatch) -> None:
    """With a small buffer, memory holds about the buffer plus the shard being read."""
    from gptpipe.pretrain import loader as loader_mod

    kept = []
    release = loader_mod._RowCache.release

    def spy(self, k, next_pos):
        release(self, k, next_pos)
        kept.append(sum(len(w) for _, w in self.kept.values()))

    monkeypatch.setattr(loader_mod._RowCache, "release", spy)
    got = list(ShardLoader(out, "train", 8, shuffle_buffer=64, seed=4))
    assert len(got) > 100 and kept[-1] == 0
    assert max(kept) <= 64 + 2 * 200, max(kept)


def test_state_from_other_settings_is_refused(out: Path) -> None:
    state = ShardLoader(out, "train", 8, num_workers=2).state_dict()
    with pytest.raises(GptpipeError, match="saved with num_workers=2, this loader has 0"):
        ShardLoader(out, "train", 8).load_state_dict(state)
    with pytest.raises(GptpipeError, match="batch 10000 is outside epoch 0"):
        ShardLoader(out, "train", 8, num_workers=2).load_state_dict({**state, "batch": 10_000})


def test_bad_shard_folders_are_refused(out: Path, tmp_path: Path) -> None:
    with pytest.raises(GptpipeError, match="shard manifest not found"):
        ShardLoader(tmp_path, "train", 8)
    with pytest.raises(GptpipeError, match="no split 'test' \\(has: train, val\\)"):
        ShardLoader(out, "test", 8)
    with pytest.raises(GptpipeError, match=r"give no batch of 100000"):
        ShardLoader(out, "val", 100_000)
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "train-000001.tar").unlink()
    with pytest.raises(GptpipeError, match="train-000001.tar: shard listed in .* is missing"):
        ShardLoader(copy, "train", 8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_batches(out: Path) -> None:
    x, y = next(iter(ShardLoader(out, "train", 8, num_workers=2, pin_memory=True)))
    assert x.is_pinned() and y.is_pinned()
