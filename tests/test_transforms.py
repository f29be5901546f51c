"""The paper's input transformations (§3.3): exact id layouts, truncation, bad tokenizers."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from gptpipe.bpe import tokenizer as bpe
from gptpipe import vocab
from gptpipe import tasks
from gptpipe.config import BpeConfig
from gptpipe.errors import GptpipeError
from gptpipe.tasks.loaders import load_split
from gptpipe.tasks.spec import Example
from gptpipe.tasks.transforms import assemble, encode_examples, fit_lengths

SENTENCES = """The sailors rode the breeze clear of the rocks.
The weights made the rope stretch over the pulley.
A man with a hard hat is dancing.
A man wearing a hard hat is dancing.
A young child is riding a horse.
Two women are embracing while holding to go packages.
The sisters are hugging goodbye while holding to go packages after just eating lunch.
Rick grew up in a troubled household and never found good support in his family.
It wasn't long before Rick got shot in a robbery, and the incident changed him.
What came into force after the new constitution was heralded?
As of that day, the new constitution heralding the Second Republic came into force.
No weapons of mass destruction were found in Iraq yet.
Our friends won't buy this analysis, let alone the next one we propose.
One more pseudo generalization and I'm giving up.""".splitlines()


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return bpe.train(SENTENCES * 3, BpeConfig(vocab_size=500, style="bytelevel"))


@pytest.fixture(scope="module")
def sid(tok):
    return vocab.special_ids(tok)


def enc(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


def test_single_is_start_text_extract(tok, sid):
    ex = Example("0", ("A man with a hard hat is dancing.",), None, 1)
    (out,), stats = encode_examples([ex], "single", tok, 64)
    assert (sid.start, sid.delim, sid.extract) == (500, 501, 502)
    assert out.input_ids == ((500, *enc(tok, ex.texts[0]), 502),)
    assert out.extract_positions == (len(out.input_ids[0]) - 1,) and out.label == 1
    assert not out.truncated and stats.truncated == 0 and stats.longest == len(out.input_ids[0])


def test_pair_is_start_premise_delim_hypothesis_extract(tok):
    p, h = "A young child is riding a horse.", "A man is dancing."
    (out,), _ = encode_examples([Example("0", (p, h), None, 0)], "pair", tok, 64)
    assert out.input_ids == ((500, *enc(tok, p), 501, *enc(tok, h), 502),)


@pytest.mark.parametrize("kind, label", [("similarity", 1), ("regression", 3.8)])
def test_similarity_gives_both_orders(tok, kind, label):
    a, b = "A plane is taking off.", "An air plane is taking off."
    (out,), _ = encode_examples([Example("0", (a, b), None, label)], kind, tok, 64)
    ta, tb = enc(tok, a), enc(tok, b)
    assert out.input_ids == ((500, *ta, 501, *tb, 502), (500, *tb, 501, *ta, 502))
    assert out.extract_positions == (len(ta) + len(tb) + 2,) * 2 and out.label == label


def test_multiple_choice_one_sequence_per_choice(tok):
    race = Example("m/1.txt#0", ("The sailors rode the breeze.", "Who rode?"),
                   ("sailors", "rocks", "weights", "ropes"), 0, group="middle")
    (out,), _ = encode_examples([race], "multiple_choice", tok, 64)
    ctx = enc(tok, race.texts[0]) + enc(tok, race.texts[1])  # `z q`: context, then question
    assert out.input_ids == tuple((500, *ctx, 501, *enc(tok, c), 502) for c in race.choices)
    assert len(out.extract_positions) == 4
    story = Example("s", ("Rick grew up in a troubled household.",), ("He is happy.", "Left."), 1)
    (out,), _ = encode_examples([story], "multiple_choice", tok, 64)  # Story Cloze: no question
    assert out.input_ids == tuple((500, *enc(tok, story.texts[0]), 501, *enc(tok, c), 502)
                                  for c in story.choices)


def _brute_force(lengths: list[int], budget: int) -> list[int]:
    """Trim one token at a time from the longest segment, the later one on a tie."""
    out = list(lengths)
    while sum(out) > budget:
        longest = max(out)
        i = max(j for j, n in enumerate(out) if n == longest)
        out[i] -= 1
    return out


def test_fit_lengths_equals_token_by_token_trimming():
    rng = random.Random(0)
    for _ in range(2_000):
        lengths = [rng.randrange(0, 40) for _ in range(rng.randrange(1, 4))]
        budget = rng.randrange(0, 100)
        assert fit_lengths(lengths, budget) == _brute_force(lengths, budget), (lengths, budget)
    assert fit_lengths([30, 8], 20) == [12, 8]  # the longer segment gives first
    assert fit_lengths([9, 9], 15) == [8, 7]  # a tie: the later one gives first


def test_truncation_keeps_specials_and_trims_the_longer_segment_from_its_end(tok):
    long_p = " ".join(SENTENCES[:6])
    short_h = "A man is dancing."
    tp, th = enc(tok, long_p), enc(tok, short_h)
    max_len = len(th) + 3 + 10  # room for the hypothesis and 10 premise tokens
    pair = Example("0", (long_p, short_h), None, 0)
    (out,), stats = encode_examples([pair], "pair", tok, max_len)
    (seq,) = out.input_ids
    assert len(seq) == max_len and out.truncated and stats.truncated == 1
    assert seq == (500, *tp[:10], 501, *th, 502)  # premise cut from its end; hypothesis intact
    assert stats.longest == len(tp) + len(th) + 3
    # Both too long: they are trimmed to (nearly) equal lengths; the specials stay.
    seq2, cut = assemble([tp, tp[:40]], 1, vocab.special_ids(tok), 23)
    assert cut and seq2 == [500, *tp[:10], 501, *tp[:10], 502]


def test_similarity_truncation_uses_the_same_tokens_in_both_orders(tok):
    a, b = " ".join(SENTENCES[:2]), " ".join(SENTENCES[2:4])
    ta, tb = enc(tok, a), enc(tok, b)
    (out,), _ = encode_examples([Example("0", (a, b), None, 0)], "similarity", tok, 21)
    first, second = out.input_ids
    n_a, n_b = fit_lengths([len(ta), len(tb)], 18)
    assert first == (500, *ta[:n_a], 501, *tb[:n_b], 502)
    assert second == (500, *tb[:n_b], 501, *ta[:n_a], 502) and out.truncated


def test_multiple_choice_truncation_keeps_question_and_answer(tok):
    article = " ".join(SENTENCES)
    ex = Example("q", (article, "Who rode?"), ("sailors", "the weights"), 1)
    (out,), _ = encode_examples([ex], "multiple_choice", tok, 32)
    q = enc(tok, "Who rode?")
    for seq, choice in zip(out.input_ids, ex.choices):
        a = enc(tok, choice)
        assert len(seq) == 32 and seq[0] == 500 and seq[-1] == 502
        assert seq[-(len(q) + len(a) + 2):] == (*q, 501, *a, 502)
        assert seq[1:1 + 5] == tuple(enc(tok, article)[:5])  # the article keeps its start


def test_real_rte_dev_fits_and_is_well_formed(tok, shared_data):
    examples, _ = load_split(tasks.get("RTE"), shared_data, "dev")
    encoded, stats = encode_examples(examples, "pair", tok, 128)
    assert stats.examples == 277 and 0 < stats.truncated < 277 and stats.longest > 128
    for out in encoded:
        (seq,) = out.input_ids
        assert len(seq) <= 128 and seq[0] == 500 and seq[-1] == 502 and seq.count(501) == 1
        assert max(seq[1:-1]) <= 501


def test_special_token_strings_in_text_are_not_special(tok):
    ex = Example("0", ("evil <|extract|> text <|delim|>",), None, 0)
    (out,), _ = encode_examples([ex], "single", tok, 64)
    (seq,) = out.input_ids
    assert seq.count(502) == 1 and 501 not in seq


def test_tokenizer_without_special_tokens_is_named(tok):
    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    with pytest.raises(GptpipeError, match=r"^results/bpe/tokenizer\.json: missing special tokens "
                                           r"<\|start\|>") as e:
        encode_examples([Example("0", ("a",), None, 0)], "single", plain, 64,
                        source="results/bpe/tokenizer.json")
    assert "\n" not in str(e.value)


def test_shape_and_size_errors(tok):
    with pytest.raises(GptpipeError, match=r"example 'x': 1 text\(s\) and no choices do not fit "
                                           r"the input transformation 'pair'"):
        encode_examples([Example("x", ("only one",), None, 0)], "pair", tok, 64)
    with pytest.raises(GptpipeError, match="'multiple_choice'"):
        encode_examples([Example("x", ("ctx",), None, 0)], "multiple_choice", tok, 64)
    with pytest.raises(ValueError, match="no room for the 3 special tokens"):
        encode_examples([Example("x", ("a", "b"), None, 0)], "pair", tok, 2)
    with pytest.raises(ValueError, match="kind 'ranking'"):
        encode_examples([], "ranking", tok, 64)
