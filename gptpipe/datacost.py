"""What the data half (ingest, bpe, shard) costs on a full Wikipedia dump: CPU-hours, peak memory
and disk, from rates measured by `benchmarks/scale.py`. Pure functions; `gptpipe plan` prints
`plan_lines(data_half())`.

ingest and shard stream (their memory does not grow with the corpus), so their costs are rates
times sizes. BPE is the stage whose memory grows: the trainer holds every distinct pre-token
("word") with its count and the pair statistics of its symbols, so its memory is a base plus a
cost per distinct word. Distinct words follow Heaps' law, V = K n^beta (n: words read), fitted
on the sample's ingested text; extrapolating that fit from ~10^6 to ~10^10 words is rough (a
factor of two either way), which is why `bpe.max_chars` exists: BPE on a sample of the corpus
needs far less memory and learns nearly the same merges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Corpus:
    """A dump's published sizes."""

    name: str
    parts: int
    articles: int
    bz2_bytes: float
    words: float  # words of prose after cleaning (rough, published)


# Published figures: 59 `pages-articles-multistream` parts, ~18 GB of bz2 (their sizes:
# gptpipe/fetch/corpora/enwiki-20200501.yaml); 6,078,422 articles (Hugging Face's 20200501.en);
# words of prose: BERT (Devlin et al. 2018, section 3.1) counts 2,500 M words of text passages
# in the English Wikipedia of 2018; two years later, with ~6% more articles, call it 3.0e9
# (rough: our cleaning keeps somewhat different text).
ENWIKI_20200501 = Corpus("enwiki-20200501", parts=59, articles=6_078_422, bz2_bytes=18.0e9,
                         words=3.0e9)
# `iter_articles` (bpe and shard read through it) keeps every page id in a Python set, to skip
# pages two parts share: a set of 6,078,422 ints takes ~463 MB (CPython 3.11, 64-bit).
SEEN_ID_BYTES = 76


@dataclass(frozen=True)
class Rates:
    """Rates measured by benchmarks/scale.py. Defaults: its run of 2026-12-03 (09:58-10:14 UTC)
    on the shared 2-core, 23 GB development VM with a load average of 3-6 from other jobs (CPU
    seconds include some contention), `scale: gpt1` (BPE 40,478, context 512), 1x = one 100 MB
    (XML) part, 8x = eight; ingest with 2 processes, shard with 1 (auto on 2 cores)."""

    xml_per_bz2: float = 3.59  # XML bytes per bz2 byte (multistream, level 9, the sample's pages)
    ingest_cpu_s_per_xml_mb: float = 0.098  # CPU seconds (all processes) per MB of XML
    # One part job's summed PSS: 244 MB on one part, 258 MB on eight parts' pages in one job
    # (before gptpipe/ingest/run.py bounded its work items: 230 and 409 MB).
    ingest_peak_bytes: float = 258e6
    ingest_processes: int = 2  # the processes that peak was measured with
    parquet_per_char: float = 0.402  # Parquet (zstd) bytes per prose character
    chars_per_word: float = 6.35  # prose characters per whitespace-separated word
    pretokens_per_word: float = 1.22  # byte-level pre-tokens (what BPE counts) per word
    words_per_article_sample: float = 4485.0  # the sample's 98 articles (early, long ones)
    heaps_k: float = 3.82  # V = K n^beta, n in pre-tokens: 9 prefixes, 2,094..536,069
    heaps_beta: float = 0.712
    bpe_cpu_s_per_char: float = 2.24e-7  # counting words: (bpe 8x - bpe 1x) / extra chars
    bpe_cpu_s_per_distinct: float = 2.4e-5  # the rest, per distinct pre-token (two-size probe)
    bpe_base_bytes: float = 386e6  # bpe 8x's peak less the distinct words' share
    bpe_bytes_per_distinct: float = 1138.0  # trainer on 10,735 vs 42,900 distinct: 70 vs 106 MB
    chars_per_token: float = 4.99  # with the gpt1-scale tokenizer trained on the sample
    shard_cpu_s_per_token: float = 3.53e-6  # (shard 8x - shard 1x) / extra tokens, 1 process
    shard_peak_bytes: float = 414e6  # shard 8x (1x: 387 MB)
    shard_bytes_per_token: float = 4.0  # uint16 ids in tar: a 512-byte header + padding each


@dataclass(frozen=True)
class Heaps:
    """Heaps' law: V = k n^beta distinct words among n."""

    k: float
    beta: float

    def distinct(self, n: float) -> float:
        return self.k * n ** self.beta if n > 0 else 0.0


def fit_heaps(ns: Sequence[float], vs: Sequence[float]) -> Heaps:
    """Least-squares fit of log V = log k + beta log n over (n, V) points (at least two)."""
    if len(ns) != len(vs) or len(ns) < 2:
        raise ValueError("fit_heaps needs at least two (n, V) points, as many n as V")
    xs, ys = [math.log(n) for n in ns], [math.log(v) for v in vs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("fit_heaps needs at least two different n")
    beta = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return Heaps(math.exp(my - beta * mx), beta)


@dataclass(frozen=True)
class StageCost:
    stage: str
    cpu_hours: float
    peak_bytes: float  # one job's memory
    output_bytes: float
    note: str


@dataclass(frozen=True)
class DataHalf:
    corpus: Corpus
    stages: tuple[StageCost, ...]
    xml_bytes: float
    chars: float
    tokens: float
    bpe_chars: float  # characters BPE trains on (all, or bpe.max_chars)
    distinct_words: float  # distinct pre-tokens in them (Heaps' law)
    words_from_sample: float  # the sample's words per article times the articles: a bound

    @property
    def disk_bytes(self) -> float:
        """The dump, the Parquet and the shards, all kept (the tokenizer is negligible)."""
        return self.corpus.bz2_bytes + sum(s.output_bytes for s in self.stages)


def data_half(corpus: Corpus = ENWIKI_20200501, rates: Rates = Rates(),
              bpe_max_chars: int = 0) -> DataHalf:
    """The data half's costs on `corpus`; `bpe_max_chars` as the knob (0: all the text)."""
    r = rates
    xml = corpus.bz2_bytes * r.xml_per_bz2
    chars = corpus.words * r.chars_per_word
    tokens = chars / r.chars_per_token
    bpe_chars = min(chars, bpe_max_chars) if bpe_max_chars else chars
    distinct = Heaps(r.heaps_k, r.heaps_beta).distinct(
        bpe_chars / r.chars_per_word * r.pretokens_per_word)
    ids = corpus.articles * SEEN_ID_BYTES
    stages = (
        StageCost("ingest", xml / 1e6 * r.ingest_cpu_s_per_xml_mb / 3600,
                  r.ingest_peak_bytes, chars * r.parquet_per_char,
                  f"per part job, {r.ingest_processes} processes; {corpus.parts} jobs"),
        StageCost("bpe", (bpe_chars * r.bpe_cpu_s_per_char
                          + distinct * r.bpe_cpu_s_per_distinct) / 3600,
                  r.bpe_base_bytes + distinct * r.bpe_bytes_per_distinct + ids, 0.0,
                  f"one job; ~{distinct / 1e6:.1f} M distinct words in {bpe_chars / 1e9:.1f} G "
                  "chars"),
        StageCost("shard", tokens * r.shard_cpu_s_per_token / 3600, r.shard_peak_bytes + ids,
                  tokens * r.shard_bytes_per_token, f"one job; {tokens / 1e9:.2f} G tokens"),
    )
    return DataHalf(corpus, stages, xml, chars, tokens, bpe_chars, distinct,
                    r.words_per_article_sample * corpus.articles)


def plan_lines(d: DataHalf) -> list[str]:
    """What `gptpipe plan` prints about the data half."""
    c = d.corpus
    lines = [(
        f"data half on {c.name}: {c.parts} parts, {c.articles:,} articles, "
        f"{c.bz2_bytes / 1e9:.0f} GB bz2 (~{d.xml_bytes / 1e9:.0f} GB XML), ~{c.words / 1e9:.1f} G "
        f"words -> ~{d.chars / 1e9:.0f} G chars, ~{d.tokens / 1e9:.1f} G tokens "
        "(rates: benchmarks/scale.py)"
    )]
    for s in d.stages:
        out = f", writes {s.output_bytes / 1e9:.0f} GB" if s.output_bytes else ""
        lines.append(f"  {s.stage:6s} {s.cpu_hours:7.1f} CPU-h  peak {s.peak_bytes / 1e9:5.1f} GB"
                     f"{out}  ({s.note})")
    lines.append(f"  disk: {d.disk_bytes / 1e9:.0f} GB (dump, Parquet and shards); shards "
                 f"{d.stages[2].output_bytes / 1e9:.0f} GB")
    if d.bpe_chars >= d.chars:
        lines.append("  bpe memory grows with distinct words (Heaps' law, rough): set "
                     "bpe.max_chars to train on a spread-out sample of the articles")
    else:
        lines.append(f"  bpe trains on {d.bpe_chars / 1e9:.1f} G of the {d.chars / 1e9:.0f} G "
                     "chars (bpe.max_chars)")
    lines.append(f"  (the sample's articles average {d.words_from_sample / c.articles:,.0f} "
                 f"words: x {c.articles:,} = {d.words_from_sample / 1e9:.0f} G words, an upper "
                 "bound; its articles are long early ones)")
    return lines
