"""Typed, frozen config: one dataclass per `params.yaml` section, validated before any job runs.

How a stage's knobs are resolved (later wins):

1. the dataclass defaults, which are the paper's values (GPT-1, `scale: gpt1`);
2. the preset named by the top-level `scale` key (`gptpipe/presets.py`);
3. the stage's own section in `params.yaml` (deliberate overrides only);
4. `--set key=value` on the command line (Snakemake passes `--config` overrides this way).

Unknown keys and wrong types are errors that name the key's full path, e.g.
`params.yaml: bpe.vocab_sise: unknown key (known: min_frequency, style, vocab_size)`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from .declared import declared_sources
from .errors import ConfigError
from .io import read_yaml
from .presets import PRESETS

SCALES = tuple(PRESETS)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_CHECKSUM_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha1:[0-9a-f]{40}|md5:[0-9a-f]{32})$")


# `kind: build` builders -> (the split of GLUE's MRPC they write, the inputs they read from the
# sources in `build_from`, in this order): train/dev read msr_paraphrase_train.txt and GLUE's
# dev id list, test reads msr_paraphrase_test.txt (gptpipe.fetch.build).
BUILDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "glue-mrpc-train": ("train", ("msr_train", "dev_ids")),
    "glue-mrpc-dev": ("dev", ("msr_train", "dev_ids")),
    "glue-mrpc-test": ("test", ("msr_test",)),
}


@dataclass(frozen=True)
class Source:
    """One input file declared in `fetch.sources`, found in the mirror or downloaded."""

    name: str  # unique; also the `ingest` wildcard for dump parts
    path: str  # relative path under `data/` and under the mirror folder
    checksum: str  # "sha256:<hex>" (or sha1:/md5:, as Wikimedia publishes) of the file at `path`
    size: int | None = None  # bytes of the file at `path`, when known: checked before its checksum
    kind: Literal["file", "archive", "manual", "build"] = "file"
    role: Literal["dump", "task", "other"] = "other"  # dump parts become `ingest` jobs
    url: str | None = None
    url_checksum: str | None = None  # checksum of the download when `repack` transforms it
    repack: Literal["multistream"] | None = None  # URL serves one bz2 stream: split it
    pages_per_stream: int = 100  # with `repack: multistream`, as Wikimedia's dumps
    index_path: str | None = None  # multistream index (`offset:page_id:title` lines, bz2)
    index_checksum: str | None = None
    index_url: str | None = None
    instructions: str | None = None  # `kind: manual`: where to get the file by hand
    strip_components: int = 0  # `kind: archive`: leading folders dropped from member paths
    # `kind: build`: made by `builder` (gptpipe.fetch.build) from the sources named in
    # `build_from` (downloaded and verified first), unless data/ or the mirror already has it;
    # the result must match `checksum`. `instructions`, if set, say how to get it by hand.
    builder: Literal["glue-mrpc-train", "glue-mrpc-dev", "glue-mrpc-test"] | None = None
    build_from: tuple[str, ...] = ()
    # A second record that agrees with `checksum` for the same URL (or, for a built or sample
    # file, the independent copy it was compared with), named so a reader can look it up, e.g.
    # "huggingface/datasets cf0523d datasets/glue/dataset_infos.json". None: unchecked, so the
    # declared checksum is this project's word alone. fetch ignores it; the report shows it.
    checked: str | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r}: use letters, digits, '_', '.', '-'")
        for key in ("checksum", "url_checksum", "index_checksum"):
            value = getattr(self, key)
            if value is not None and not _CHECKSUM_RE.match(value):
                raise ValueError(f"{key} {value!r}: expected 'sha256:<hex>', 'sha1:' or 'md5:'")
        for key in ("path", "index_path"):
            value = getattr(self, key)
            if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
                raise ValueError(f"{key} {value!r}: must be relative, without '..'")
        if self.kind == "manual" and not self.instructions:
            raise ValueError("kind 'manual' needs 'instructions' (where to get the file)")
        if (self.kind == "build") != bool(self.builder and self.build_from):
            raise ValueError("kind 'build' needs 'builder' and 'build_from', and only it has them")
        if self.builder and len(self.build_from) != len(BUILDERS[self.builder][1]):
            raise ValueError(f"builder {self.builder!r} takes {len(BUILDERS[self.builder][1])} "
                             f"source(s) in build_from, got {len(self.build_from)}")
        if self.kind not in ("manual", "build") and not self.url:
            raise ValueError(f"kind {self.kind!r} needs a 'url'")
        if self.repack and not self.url_checksum:
            raise ValueError("'repack' needs 'url_checksum' (the download's own checksum)")
        if (self.index_path is None) != (self.index_checksum is None):
            raise ValueError("'index_path' and 'index_checksum' go together")
        if self.repack == "multistream" and self.index_path is None:
            raise ValueError("'repack: multistream' writes an index: set 'index_path'")
        if self.pages_per_stream < 1:
            raise ValueError("pages_per_stream must be >= 1")
        if self.kind != "file" and (self.repack or self.index_path):
            raise ValueError("'repack' and 'index_path' need kind 'file'")
        if self.index_path and not self.repack and not self.index_url:
            raise ValueError("'index_path' without 'repack' needs 'index_url' to download it from")
        if self.strip_components < 0 or (self.strip_components and self.kind != "archive"):
            raise ValueError("strip_components must be >= 0 and needs kind 'archive'")
        if self.checked is not None and not self.checked.strip():
            raise ValueError("'checked' names the record that agrees; leave it out if none")
        if self.size is not None and (self.size < 0 or self.kind == "archive" or self.repack):
            raise ValueError("size must be >= 0, for a file stored as it is (not an archive, "
                             "not repacked)")


@dataclass(frozen=True)
class FetchConfig:
    """`fetch`: every input of the pipeline, with its checksum.

    The pre-training corpus is `corpus`: `sample` is the `role: dump` entries of `sources` (the
    demo's 206-page part); any other name is a corpus file of the package
    (`gptpipe/fetch/corpora/<name>.yaml`: `enwiki-20200501`, the 59 parts of English Wikipedia
    of 2020-05-01, 18 GB), whose parts then replace those entries. Only the selected corpus's
    parts are fetched, mirrored and ingested; its parts can be named in `fetch --only`.
    """

    # Resolved params get gptpipe/fetch/sources.yaml's list (gptpipe/declared.py) unless they
    # give their own; built directly, a config without sources declares none.
    sources: tuple[Source, ...] = ()
    # The preset chooses it (tiny, micro: sample; gpt1: enwiki-20200501). `sample` here, so that
    # fetch.sources alone says what a config without a preset fetches.
    corpus: Literal["sample", "enwiki-20200501"] = "sample"
    # Where a corpus file's parts are downloaded from: part URL = dump_base_url + "/" + its
    # file name. null: the URL the corpus file records (Wikimedia's, which no longer serves
    # 2020 dumps: point this at a copy that does). The sha256 verifies whatever serves them.
    dump_base_url: str | None = None

    def __post_init__(self) -> None:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate source names: {', '.join(dup)}")
        for s in self.sources:
            bad = [n for n in s.build_from
                   if n not in names or self.source(n).kind not in ("file", "manual")]
            if bad:
                raise ValueError(f"source {s.name}: build_from {bad[0]!r} is not a declared "
                                 "source of kind 'file' or 'manual'")
        if self.dump_base_url is not None and not re.match(r"^(https?|file)://\S+$",
                                                           self.dump_base_url):
            raise ValueError(f"dump_base_url {self.dump_base_url!r}: expected an http(s):// "
                             "or file:// URL")
        clash = sorted({s.name for s in self.corpus_parts} & set(names))
        if clash:
            raise ValueError(f"source {clash[0]}: also a part of corpus {self.corpus}")

    @functools.cached_property
    def corpus_parts(self) -> tuple[Source, ...]:
        """The parts of a packaged corpus (none for `sample`)."""
        if self.corpus == "sample":
            return ()
        from .corpora import part_specs  # reads the package data: only when chosen

        specs = part_specs(self.corpus, self.dump_base_url)
        return tuple(build(Source, spec, f"corpus {self.corpus}: {spec['name']}")
                     for spec in specs)

    @property
    def dump_parts(self) -> tuple[Source, ...]:
        """The selected corpus's parts: each is one fetch job and one `ingest` job."""
        if self.corpus == "sample":
            return tuple(s for s in self.sources if s.role == "dump")
        return self.corpus_parts

    @property
    def active_sources(self) -> tuple[Source, ...]:
        """What this configuration fetches and mirrors: `sources`, the selected corpus's parts
        in place of the `role: dump` entries when the corpus is not `sample`."""
        if self.corpus == "sample":
            return self.sources
        return (*self.corpus_parts, *(s for s in self.sources if s.role != "dump"))

    def source(self, name: str) -> Source:
        """A declared source or a part of the selected corpus, by name."""
        for s in (*self.sources, *self.corpus_parts):
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r} in fetch.sources"
                          + (f" or corpus {self.corpus}" if self.corpus != "sample" else ""))


@dataclass(frozen=True)
class IngestConfig:
    """`ingest`: wikitext to clean prose, one job per dump part."""

    val_fraction: float = 0.005  # share of pages (by hash of page id) held out for validation
    split_salt: str = "gptpipe-v1"  # changing it reshuffles the train/val assignment
    min_chars: int = 200  # drop articles with less prose than this (stubs, lists)
    rows_per_file: int = 20_000  # articles per Parquet file
    max_bad_pages: int = 0  # pages whose wikitext cannot be converted before the job fails

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError("val_fraction must be in [0, 1)")
        if self.min_chars < 0 or self.rows_per_file < 1 or self.max_bad_pages < 0:
            raise ValueError("min_chars >= 0, rows_per_file >= 1, max_bad_pages >= 0")


GPT1_SYMBOLS = 478  # GPT-1's BPE base: <unk>, 238 characters, their `</w>` forms, `\n</w>`


@dataclass(frozen=True)
class BpeConfig:
    """`bpe`: the tokenizer. Special tokens follow the base vocabulary at fixed ids."""

    # Base vocabulary: GPT-1's 478 symbols + 40,000 merges. The gpt1 style with `exact_merges`
    # learns vocab_size - 478 merges on top of the symbols the text has (see `exact_merges`).
    vocab_size: int = 40_478
    # gpt1: the paper's lowercased BPE, `</w>` word ends (the tiny and micro presets use
    # bytelevel, GPT-2's byte-level BPE: no unknown tokens, exact round trip).
    style: Literal["bytelevel", "gpt1"] = "gpt1"
    min_frequency: int = 2  # a pair must occur this often to be merged
    # gpt1 style only: the most frequent characters kept (ties: lowest code point first). GPT-1
    # kept 238: with <unk>, their `</w>` forms and `\n</w>`, its 478 symbols.
    limit_alphabet: int = 238
    # Train on at most this many characters of the train split (0: all of it): the articles
    # whose page-id hash ranks lowest, so a deterministic sample spread evenly over every part
    # (parts are in page-id order; a prefix would be the oldest articles only). The trainer's
    # memory grows with distinct words; on the full English Wikipedia it needs tens of GB
    # (`gptpipe.datacost`), a few G characters need a few GB and learn nearly the same merges.
    max_chars: int = 0
    # gpt1 style only. true: exactly vocab_size - 478 merges, as GPT-1's 40,000 on its 478
    # symbols; the base vocabulary is then the symbols this text has plus the merges' tokens
    # (bpe.json records both). false: HF's count, vocab_size tokens in all, symbols included
    # (~39,800 merges at 40,478 with 238 characters kept, as the symbols are more than 478).
    exact_merges: bool = True

    def __post_init__(self) -> None:
        if self.style == "gpt1" and self.exact_merges and self.vocab_size <= GPT1_SYMBOLS:
            raise ValueError(f"vocab_size must exceed GPT-1's {GPT1_SYMBOLS} symbols with style "
                             "gpt1 and exact_merges (or set exact_merges: false)")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be >= 300 (the byte alphabet alone is 256)")
        if self.min_frequency < 1 or self.limit_alphabet < 1:
            raise ValueError("min_frequency and limit_alphabet must be >= 1")
        if self.max_chars < 0:
            raise ValueError("max_chars must be >= 0 (0: train on all the text)")


@dataclass(frozen=True)
class ShardConfig:
    """`shard`: token windows in WebDataset tar shards."""

    context: int = 512  # tokens the model sees; windows hold context + 1 (inputs and targets)
    samples_per_shard: int = 2_000  # windows per tar shard

    def __post_init__(self) -> None:
        if self.context < 2 or self.samples_per_shard < 1:
            raise ValueError("context >= 2, samples_per_shard >= 1")


@dataclass(frozen=True)
class ModelConfig:
    """`model`: the network's shape (paper §4.1); defaults are the paper's. The vocabulary comes
    from the tokenizer and the context (position table) from the shards, so neither can disagree
    with the data: `gptpipe.model.GPTConfig` is this plus those two."""

    n_layer: int = 12
    n_head: int = 12  # d_model / n_head = 64 dimensions per head
    d_model: int = 768
    d_ff: int = 3072  # inner size of the position-wise MLP (4 x d_model)
    embd_dropout: float = 0.1  # on the embedding sum (the original drops out the matrix itself)
    attn_dropout: float = 0.1  # on the attention probabilities
    resid_dropout: float = 0.1  # on each sub-layer's output, before the residual sum
    layer_norm_eps: float = 1e-5
    # The network: GPT-1's `transformer`, or Table 5's `lstm` baseline (gptpipe/lstm.py): one
    # LSTM layer of `lstm_units` cells over the same d_model-wide tied token embedding, its
    # output projected back to d_model; n_layer, n_head, d_ff, attn_dropout and layer_norm_eps
    # then go unused. The pipeline's `pretrain_lstm` job sets it; leave it at transformer here.
    arch: Literal["transformer", "lstm"] = "transformer"
    lstm_units: int = 2_048  # LSTM cells: "a single layer 2048 unit LSTM" (paper §5, Table 5)

    def __post_init__(self) -> None:
        if self.arch not in ("transformer", "lstm"):
            raise ValueError(f"arch must be 'transformer' or 'lstm', got {self.arch!r}")
        if self.arch == "lstm" and self.lstm_units < self.d_model:
            raise ValueError(f"lstm_units {self.lstm_units} must be >= d_model {self.d_model} "
                             "(the LSTM's output is projected down to d_model)")
        for name in ("n_layer", "n_head", "d_model", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")
        for name in ("embd_dropout", "attn_dropout", "resid_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ValueError("layer_norm_eps must be > 0")


@dataclass(frozen=True)
class PretrainConfig:
    """`pretrain`: the language-model recipe (paper §4.1). Lengths are in tokens or updates."""

    lr: float = 2.5e-4  # peak learning rate
    warmup_updates: int = 2_000  # linear warm-up from 0, then cosine annealing to 0
    # Run length: `updates` if > 0, else `tokens` rounded up to whole updates. The default is
    # GPT-1's compute (~0.96 petaflop/s-days) over ~7.6e8 training FLOPs per token.
    tokens: int = 110_000_000_000
    updates: int = 0
    batch_tokens: int = 32_768  # tokens per update over all processes: 64 x 512 in the paper
    # Data-order units per update: each slot reads its own slice of the shards and gives
    # batch_tokens / context / slots sequences to every update. The data order depends on this
    # and the batch, never on the process count, which must divide it: 64 (one sequence per
    # slot) lets 1, 2, 4, ... 64 processes run the same run.
    slots: int = 64
    # At most this many sequences per forward pass (gradient accumulation over the rest): it
    # bounds GPU memory and does not change the data order or, beyond float rounding, updates.
    micro_batch: int = 64
    weight_decay: float = 0.01  # decoupled (AdamW), on matrices only
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    seed: int = 0  # initialisation, dropout and data order
    shuffle_buffer: int = 1_000  # windows held by each slot's seeded shuffle buffer
    eval_every: int = 1_000  # updates between validations (and one at the end)
    eval_tokens: int = 2_000_000  # val tokens per validation; 0 = whole split (as at the end)
    log_every: int = 10  # updates between metric lines
    checkpoint_every: int = 1_000  # updates between checkpoints (and one at the end)
    keep_checkpoints: int = 3  # newest checkpoints kept; older ones are removed
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA with bf16
    compile: bool = False  # torch.compile the model (GPU; minutes of compile time first)
    # Inside a SLURM job: seconds before the job's time limit at which training saves a
    # checkpoint and exits (status 75) for the rerun to resume; room for the updates up to the
    # next metric line and one checkpoint. 0: train on until SLURM kills the job at its limit.
    time_limit_margin: int = 600
    # The LSTM branch's run (job `pretrain_lstm`, model.arch lstm): these replace `tokens` and
    # `updates` (both, when either is set), `warmup_updates` and `lr`; None: the transformer's.
    # The paper gives the LSTM's recipe nowhere, so at gpt1 it is the transformer's.
    lstm_tokens: int | None = None
    lstm_updates: int | None = None
    lstm_warmup_updates: int | None = None
    lstm_lr: float | None = None

    # Updates between weight-only snapshots (and one of the untrained model at update 0) for the
    # `zeroshot` stage; 0: none. Figure 2 (right) traces the zero-shot scores over the whole of
    # pre-training, and PAPER.md gives no ticks for its x axis: 200,000 of our ~3.36 M updates
    # give 17 evenly spaced points beside update 0, ~0.47 GB each at 117 M float32 weights.
    snapshot_every: int = 200_000

    def for_lstm(self) -> "PretrainConfig":
        """This recipe with the LSTM branch's run length, warm-up and learning rate."""
        run: dict = {}
        if self.lstm_tokens is not None or self.lstm_updates is not None:
            run = {"tokens": self.lstm_tokens or 0, "updates": self.lstm_updates or 0}
        if self.lstm_warmup_updates is not None:
            run["warmup_updates"] = self.lstm_warmup_updates
        if self.lstm_lr is not None:
            run["lr"] = self.lstm_lr
        return dataclasses.replace(self, **run)

    def __post_init__(self) -> None:
        if self.snapshot_every < 0:
            raise ValueError("snapshot_every must be >= 0 (0: no snapshots)")
        if min(self.lstm_tokens or 0, self.lstm_updates or 0, self.lstm_warmup_updates or 0) < 0:
            raise ValueError("lstm_tokens, lstm_updates and lstm_warmup_updates must be >= 0")
        if self.lstm_lr is not None and self.lstm_lr <= 0:
            raise ValueError("lstm_lr must be > 0")
        if self.lr <= 0 or self.weight_decay < 0 or self.grad_clip < 0 or self.eps <= 0:
            raise ValueError("lr > 0, eps > 0, weight_decay >= 0, grad_clip >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("beta1 and beta2 must be in [0, 1)")
        if self.updates < 0 or self.tokens < 0 or max(self.updates, self.tokens) == 0:
            raise ValueError("set a run length: updates > 0 or tokens > 0")
        if min(self.batch_tokens, self.slots, self.micro_batch, self.shuffle_buffer) < 1:
            raise ValueError("batch_tokens, slots, micro_batch and shuffle_buffer must be >= 1")
        if self.warmup_updates < 0 or self.eval_tokens < 0:
            raise ValueError("warmup_updates and eval_tokens must be >= 0")
        if min(self.eval_every, self.log_every, self.checkpoint_every, self.keep_checkpoints) < 1:
            raise ValueError("eval_every, log_every, checkpoint_every, keep_checkpoints >= 1")
        if self.time_limit_margin < 0:
            raise ValueError("time_limit_margin must be >= 0 (seconds; 0 turns it off)")


VARIANTS = ("full", "no_aux", "no_pretrain", "lstm")  # the paper's Table 5 rows we reproduce


@dataclass(frozen=True)
class TaskOverride:
    """One task's departures from the `finetune` recipe; None keeps the section's value."""

    lr: float | None = None
    batch: int | None = None
    micro_batch: int | None = None  # e.g. RACE's 4 x 512-token examples on a small GPU
    epochs: int | None = None
    warmup_fraction: float | None = None
    lm_weight: float | None = None
    max_len: int | None = None
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    submit: bool | None = None  # write the GLUE submission file(s) of its hidden-label splits

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise ValueError("batch must be >= 1")
        if self.micro_batch is not None and self.micro_batch < 0:
            raise ValueError("micro_batch must be >= 0 (0: chosen from max_tokens_per_pass)")


@dataclass(frozen=True)
class Holdout:
    """Make split `to_split` from `fraction` of split `from_split` (chosen by a hash of each
    example id, so it never depends on the seed); the rest stays `from_split`. For a copy that
    lacks a split: QNLI's sample has no train file, QQP's no dev file."""

    from_split: str
    to_split: str
    fraction: float

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0 or self.from_split == self.to_split:
            raise ValueError("holdout: fraction in (0, 1) and two different splits")


_PAPER_TASKS = ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI", "RTE", "WNLI", "SNLI",
                "SciTail", "RACE", "StoryCloze")


@dataclass(frozen=True)
class FinetuneConfig:
    """`finetune`: the paper's fine-tuning recipe (§4.1) and which runs the DAG holds.

    Jobs: every task of `tasks` in every variant of `variants`, plus the variants of
    `ablation_variants` for the tasks of `ablation_tasks`, each once per seed of `seeds`.
    """

    lr: float = 6.25e-5  # peak learning rate
    batch: int = 32  # examples per update (a similarity/choice example is 2/k sequences)
    # Examples per forward pass: an update still averages over `batch` examples, accumulating
    # the gradients of ceil(batch / micro_batch) passes (the same update, less memory). 0: as
    # many as `max_tokens_per_pass` holds. A task's `overrides` may set its own.
    micro_batch: int = 0
    # With micro_batch 0: padded tokens per forward pass at most (examples x sequences per
    # example x max_len). 8,192 fits the paper's batch of 32 on a 24 GB GPU at gpt1 scale for
    # every task, RACE included, in passes of 4 to 16 (the estimate: gptpipe/finetune/passes.py).
    max_tokens_per_pass: int = 8_192
    epochs: int = 3  # fixed: no model selection, so no reported split ever picks a knob
    warmup_fraction: float = 0.002  # linear warm-up over 0.2% of the updates, then linear to 0
    lm_weight: float = 0.5  # λ of the auxiliary LM loss (variant `no_aux` uses 0)
    clf_dropout: float = 0.1  # dropout on the extract-token state before the classifier
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    weight_decay: float = 0.01  # decoupled (AdamW), on matrices only, as in pre-training
    max_len: int = 512  # tokens per input sequence, special tokens included (<= model context)
    tasks: tuple[str, ...] = _PAPER_TASKS
    variants: tuple[Literal["full", "no_aux", "no_pretrain", "lstm"], ...] = ("full",)
    ablation_tasks: tuple[str, ...] = ("CoLA", "SST-2", "MRPC", "STS-B", "QQP", "MNLI", "QNLI",
                                       "RTE")  # Table 5's columns
    # `lstm`: the `full` recipe on the LSTM branch's model (job `pretrain_lstm`), Table 5's row.
    ablation_variants: tuple[Literal["full", "no_aux", "no_pretrain", "lstm"], ...] = (
        "no_aux", "no_pretrain", "lstm")
    seeds: tuple[int, ...] = (0, 1, 2)  # small tasks vary a lot between seeds (report spread)
    max_train_examples: int = 0  # cap per task (a fixed hash-chosen subset); 0 = all
    max_eval_examples: int = 0  # cap per scored or predicted split; 0 = all
    overrides: dict[str, TaskOverride] = dataclasses.field(default_factory=dict)  # task -> knobs
    # task -> {split: file under the task's folder}, for copies laid out differently
    files: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    # task -> split carved out of another; Story Cloze: the original code trained on 1,497 of
    # the 1,871 val stories and held 374 out (scored here as an extra split, never for choices).
    # A preset or params.yaml that sets `holdout` replaces this mapping as a whole.
    holdout: dict[str, Holdout] = dataclasses.field(
        default_factory=lambda: {"StoryCloze": Holdout("val", "val_holdout", 0.2)})
    max_malformed_fraction: float = 0.001  # malformed rows / rows above which a load fails
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA with bf16
    # A task whose data is handed out on request (`kind: manual`, Story Cloze) and is neither in
    # data/ nor in the mirror: `required` stops the run with the instructions; `optional` (the
    # tiny demo) leaves the task out of the DAG, and the report says why it was not run.
    manual_sources: Literal["required", "optional"] = "required"
    # STS-B's target (the paper is silent; gptpipe/finetune/model.py). classes: as OpenAI's code,
    # the 0-5 score as a distribution over 6 classes (Tai et al.), predicted as the expected
    # score; regression: one output, squared error (Hugging Face's run_glue).
    stsb_target: Literal["classes", "regression"] = "classes"
    # Fine-tuning a pre-trained model: draw the rows of start, delimiter and extract afresh from
    # N(0, 0.02), as OpenAI's code does (pre-training never saw them); false: keep them.
    fresh_special_rows: bool = True
    # Figure 2 (left): variant `transfer<k>` of each task of `transfer_tasks` for each k of
    # `transfer_layers`: the embeddings and the first k blocks from pre-training, the other
    # blocks freshly initialised (the original's --n_transfer); k = -1 transfers nothing, 0 the
    # embeddings only, n_layer everything (as `full`). k <= model.n_layer is checked where the
    # model's depth is known (workflow.validate, the job's model.json).
    transfer_tasks: tuple[str, ...] = ("MNLI", "RACE")
    transfer_layers: tuple[int, ...] = tuple(range(13))

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch < 1 or self.epochs < 1 or self.max_len < 3:
            raise ValueError("lr > 0, batch >= 1, epochs >= 1, max_len >= 3")
        if self.micro_batch < 0 or self.max_tokens_per_pass < 1:
            raise ValueError("micro_batch >= 0 (0: from max_tokens_per_pass), "
                             "max_tokens_per_pass >= 1")
        if not 0.0 <= self.warmup_fraction < 1.0 or not 0.0 <= self.clf_dropout < 1.0:
            raise ValueError("warmup_fraction and clf_dropout must be in [0, 1)")
        if min(self.lm_weight, self.grad_clip, self.weight_decay) < 0:
            raise ValueError("lm_weight, grad_clip and weight_decay must be >= 0")
        if min(self.max_train_examples, self.max_eval_examples) < 0 or not self.seeds:
            raise ValueError("max_train_examples, max_eval_examples >= 0; at least one seed")
        if not 0.0 <= self.max_malformed_fraction < 1.0:
            raise ValueError("max_malformed_fraction must be in [0, 1)")
        from .tasks.names import canonical_tasks

        for name in ("tasks", "ablation_tasks"):
            object.__setattr__(self, name, canonical_tasks(getattr(self, name), name))
        if any(k < -1 for k in self.transfer_layers):
            raise ValueError("transfer_layers: each k >= -1 (-1: nothing transferred, "
                             "0: the embeddings only, k: the embeddings and k blocks)")
        if len(set(self.transfer_layers)) < len(self.transfer_layers):
            raise ValueError(f"transfer_layers: a k is listed twice in {self.transfer_layers}")
        object.__setattr__(self, "transfer_tasks",
                           canonical_tasks(self.transfer_tasks, "transfer_tasks"))
        for name in ("overrides", "files", "holdout"):
            keys = canonical_tasks(tuple(getattr(self, name)), name)
            object.__setattr__(self, name, dict(zip(keys, getattr(self, name).values())))


@dataclass(frozen=True)
class ReportConfig:
    """`report`: the HTML/Markdown report over every stage's outputs (nothing is recomputed)."""

    title: str = "gptpipe: GPT-1 reproduced"  # heading of index.html and report.md
    max_notes: int = 5  # malformed rows listed per file (the rest are counted)

    def __post_init__(self) -> None:
        if not self.title.strip() or self.max_notes < 0:
            raise ValueError("title must not be empty; max_notes >= 0")


ZEROSHOT_TASKS = ("SST-2", "CoLA", "RACE", "DPRD")  # the four heuristics of Figure 2 (right)


@dataclass(frozen=True)
class ZeroshotConfig:
    """`zeroshot`: the paper's zero-shot heuristics (§5, Figure 2 right) scored on every weight
    snapshot that pre-training wrote (`pretrain.snapshot_every`), without fine-tuning."""

    tasks: tuple[Literal["SST-2", "CoLA", "RACE", "DPRD"], ...] = ZEROSHOT_TASKS
    # Examples scored per task and split (a fixed hash-chosen subset; CoLA's threshold is chosen
    # on this many train sentences too); 0 = all.
    max_examples: int = 0
    batch_size: int = 16  # sequences per forward pass (memory, not results)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present, else CPU
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA with bf16

    def __post_init__(self) -> None:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError("tasks: list each of SST-2, CoLA, RACE, DPRD at most once, and one "
                             "at least")
        if self.max_examples < 0 or self.batch_size < 1:
            raise ValueError("max_examples >= 0 (0: all), batch_size >= 1")


SECTIONS: dict[str, type] = {
    "fetch": FetchConfig,
    "ingest": IngestConfig,
    "bpe": BpeConfig,
    "shard": ShardConfig,
    "model": ModelConfig,
    "pretrain": PretrainConfig,
    "finetune": FinetuneConfig,
    "report": ReportConfig,
    "zeroshot": ZeroshotConfig,
}
TOP_LEVEL = {"scale", "mirror", *SECTIONS}  # `mirror` arrives only through Snakemake --config


# --------------------------------------------------------------------------- building


def build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from plain data, naming `where` (a key path) in every error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required key is missing")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML 1.1 reads `2.5e-4` as a string; accept it as the number it is
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one `{"a.b.c": leaf}` mapping (to compare or report configs)."""
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out |= flatten(value, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): data}


def to_dict(obj: Any) -> Any:
    """Plain data (lists, dicts) for JSON/YAML, e.g. the resolved config saved beside outputs."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- resolving


def load_params(path: str | Path) -> dict:
    data = read_yaml(path, missing="params file not found", error=ConfigError)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def parse_set(items: list[str] | None) -> dict:
    """`["a.b=1", "c=[x, y]"]` -> `{"a": {"b": 1}, "c": ["x", "y"]}` (values parsed as YAML)."""
    out: dict = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def merge(base: Mapping, over: Mapping) -> dict:
    """Recursive dict merge; lists and scalars in `over` replace those in `base`."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_section(
    params: Mapping, section: str, overrides: Mapping | None = None, where: str = "params.yaml"
) -> Any:
    """The frozen config of one stage, from the whole params mapping plus `--set` overrides."""
    if section not in SECTIONS:
        raise ConfigError(f"unknown section {section!r} (known: {', '.join(SECTIONS)})")
    scale = params.get("scale", "tiny")
    if scale not in PRESETS:
        raise ConfigError(f"{where}: scale: {scale!r} is not one of {', '.join(SCALES)}")
    own = params.get(section) or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{where}: {section}: expected a mapping, got {type(own).__name__}")
    # A knob listed as `null` is not set here: the preset's value (else the default) stands.
    # params.yaml lists every knob that way, so that DVC's `-S section.key=...` finds it.
    own = {key: value for key, value in own.items() if value is not None}
    if section == "fetch" and "sources" not in own:  # not a knob: declared in the package
        own = {"sources": declared_sources(), **own}
    data = merge(merge(PRESETS[scale].get(section, {}), own), overrides or {})
    return build(SECTIONS[section], data, f"{where}: {section}")


def validate_params(params: Mapping, where: str = "params.yaml") -> dict[str, Any]:
    """Check every section at once (Snakemake calls this when it builds the DAG)."""
    unknown = sorted(set(params) - TOP_LEVEL)
    if unknown:
        raise ConfigError(
            f"{where}: {unknown[0]}: unknown top-level key (known: {', '.join(sorted(TOP_LEVEL))})"
        )
    return {name: resolve_section(params, name, where=where) for name in SECTIONS}
