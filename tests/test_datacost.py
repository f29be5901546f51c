"""The data half's cost model (`gptpipe.datacost`): Heaps' law fit and the stage costs."""

from __future__ import annotations

import math

import pytest

from gptpipe import datacost


def test_fit_heaps_recovers_k_and_beta():
    ns = [1e3, 1e4, 1e5, 1e6]
    fit = datacost.fit_heaps(ns, [7.0 * n ** 0.62 for n in ns])
    assert fit.k == pytest.approx(7.0) and fit.beta == pytest.approx(0.62)
    assert fit.distinct(1e8) == pytest.approx(7.0 * 1e8 ** 0.62)
    noisy = datacost.fit_heaps([1e3, 1e4], [100.0, 400.0])
    assert noisy.beta == pytest.approx(math.log10(4.0))
    with pytest.raises(ValueError, match="at least two"):
        datacost.fit_heaps([1e3], [10.0])
    with pytest.raises(ValueError, match="two different n"):
        datacost.fit_heaps([1e3, 1e3], [10.0, 12.0])


def test_data_half_follows_the_rates():
    corpus = datacost.Corpus("toy", parts=4, articles=1000, bz2_bytes=2e9, words=1e8)
    r = datacost.Rates(xml_per_bz2=4.0, ingest_cpu_s_per_xml_mb=0.9, chars_per_word=6.0,
                       pretokens_per_word=1.25, heaps_k=2.0, heaps_beta=0.5, chars_per_token=5.0,
                       bpe_base_bytes=1e8, bpe_bytes_per_distinct=1000.0,
                       bpe_cpu_s_per_char=1e-7, bpe_cpu_s_per_distinct=1e-5,
                       shard_cpu_s_per_token=2e-6, shard_bytes_per_token=4.0,
                       parquet_per_char=0.5)
    d = datacost.data_half(corpus, r)
    ingest, bpe, shard = d.stages
    assert ingest.cpu_hours == pytest.approx(8e9 / 1e6 * 0.9 / 3600)
    assert d.chars == pytest.approx(6e8) and d.tokens == pytest.approx(1.2e8)
    distinct = 2.0 * (1e8 * 1.25) ** 0.5  # every word BPE reads
    assert d.distinct_words == pytest.approx(distinct)
    ids = 1000 * datacost.SEEN_ID_BYTES
    assert bpe.peak_bytes == pytest.approx(1e8 + 1000.0 * distinct + ids)
    assert bpe.cpu_hours == pytest.approx((6e8 * 1e-7 + distinct * 1e-5) / 3600)
    assert shard.output_bytes == pytest.approx(4.8e8) and shard.peak_bytes == r.shard_peak_bytes + ids
    assert d.disk_bytes == pytest.approx(2e9 + 3e8 + 4.8e8)

    # bpe.max_chars: BPE reads less, so fewer distinct words; the other stages do not change.
    sampled = datacost.data_half(corpus, r, bpe_max_chars=6_000_000)
    assert sampled.bpe_chars == 6e6
    assert sampled.distinct_words == pytest.approx(2.0 * (1e6 * 1.25) ** 0.5)
    assert sampled.stages[1].peak_bytes < bpe.peak_bytes
    assert sampled.stages[0] == ingest and sampled.stages[2] == shard
    assert datacost.data_half(corpus, r, bpe_max_chars=10**12).bpe_chars == d.chars


def test_plan_lines_name_every_stage_and_the_knob():
    lines = datacost.plan_lines(datacost.data_half())
    assert lines[0].startswith("data half on enwiki-20200501: 59 parts, 6,078,422 articles")
    assert [line.split()[0] for line in lines[1:4]] == ["ingest", "bpe", "shard"]
    assert any("set bpe.max_chars" in line for line in lines)
    sampled = datacost.plan_lines(datacost.data_half(bpe_max_chars=2 * 10**9))
    assert any("bpe trains on 2.0 G of the" in line for line in sampled)
