"""The paper's four zero-shot heuristics (§5, Figure 2 right): each turns a language model's
log-probabilities into task predictions without any training of the model.

- SST-2: append " very" to the review, then compare the log-probability of " positive" with
  that of " negative" (each summed over its tokens, where a word has several).
- CoLA: a sentence's mean token log-probability, thresholded; the threshold is the one that
  maximises MCC on the train sentences, and is then applied to dev.
- RACE: the answer with the highest mean token log-probability given the article and question.
- DPRD: replace the pronoun with each candidate; the candidate under which the rest of the
  sentence has the higher mean token log-probability is the antecedent.

Each function returns the predictions and a figure; `chance` gives the baseline beside it.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

import numpy as np

from ..errors import GptpipeError
from ..tasks import Example
from ..tasks.metrics import accuracy, mcc
from .score import Scorer, mean

POSITIVE, NEGATIVE = 1, 0  # SST-2's and CoLA's label indices ("1": positive / acceptable)


def sst2(scorer: Scorer, examples: Sequence[Example]) -> tuple[list[int], float]:
    """(predictions, accuracy): positive where p(" positive") > p(" negative") after "very"."""
    pairs = [(f"{ex.texts[0].rstrip()} very", word) for ex in examples
             for word in (" positive", " negative")]
    lp = scorer.logprobs(pairs)
    preds = [POSITIVE if sum(lp[2 * i]) > sum(lp[2 * i + 1]) else NEGATIVE
             for i in range(len(examples))]
    return preds, accuracy([ex.label for ex in examples], preds)


def sentence_scores(scorer: Scorer, examples: Sequence[Example]) -> list[float]:
    """Mean token log-probability of each sentence from the start of a document."""
    return [mean(lp) for lp in scorer.logprobs([(None, ex.texts[0]) for ex in examples])]


def best_threshold(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The threshold t maximising MCC of `score > t` (acceptable) against `labels`: tried
    below every score and midway between neighbours; the lowest of equally good ones."""
    points = np.unique(np.asarray(scores, dtype=np.float64))
    candidates = [points[0] - 1.0, *((points[:-1] + points[1:]) / 2)]
    best, best_mcc = candidates[0], -2.0
    for t in candidates:
        value = mcc(labels, [POSITIVE if s > t else NEGATIVE for s in scores])
        if value > best_mcc:
            best, best_mcc = float(t), value
    return best


def cola(scorer: Scorer, train: Sequence[Example], dev: Sequence[Example]
         ) -> tuple[list[int], float, float]:
    """(dev predictions, dev MCC, threshold chosen on train)."""
    threshold = best_threshold(sentence_scores(scorer, train), [ex.label for ex in train])
    preds = [POSITIVE if s > threshold else NEGATIVE for s in sentence_scores(scorer, dev)]
    return preds, mcc([ex.label for ex in dev], preds), threshold


def race(scorer: Scorer, examples: Sequence[Example]) -> tuple[list[int], float]:
    """(predictions, accuracy): the option with the highest mean log-probability after
    "article question"."""
    pairs = [(f"{ex.texts[0]} {ex.texts[1]}", f" {choice}") for ex in examples
             for choice in ex.choices or ()]
    lp = iter(scorer.logprobs(pairs))
    preds = []
    for ex in examples:
        means = [mean(next(lp)) for _ in ex.choices or ()]
        preds.append(int(np.argmax(means)))
    return preds, accuracy([ex.label for ex in examples], preds)


def substitute(sentence: str, pronoun: str, candidate: str) -> tuple[str, str]:
    """(the sentence up to the pronoun's first occurrence with `candidate` in its place, the
    rest after it). A whole-word match, case-sensitive first, else ignoring case."""
    pattern = rf"(?<!\w){re.escape(pronoun)}(?!\w)"
    match = re.search(pattern, sentence) or re.search(pattern, sentence, re.IGNORECASE)
    if match is None:
        raise GptpipeError(f"pronoun {pronoun!r} not found in {sentence!r}")
    return sentence[: match.start()] + candidate, sentence[match.end():]


def dprd(scorer: Scorer, examples: Sequence[Example]) -> tuple[list[int], float]:
    """(predictions, accuracy): the candidate after which the rest of the sentence is likelier
    (mean log-probability per token)."""
    pairs = [substitute(ex.texts[0], ex.texts[1], c) for ex in examples for c in ex.choices or ()]
    lp = iter(scorer.logprobs(pairs))
    preds = [int(np.argmax([mean(next(lp)) for _ in ex.choices or ()])) for ex in examples]
    return preds, accuracy([ex.label for ex in examples], preds)


def chance(metric: str, examples: Sequence[Example]) -> float:
    """The score of a predictor that ignores its input: 0 for MCC, the majority class's share
    for accuracy (1/k for a k-way choice with no class to favour)."""
    if metric == "mcc":
        return 0.0
    if examples and examples[0].choices is not None:
        return 1.0 / len(examples[0].choices)
    counts = Counter(ex.label for ex in examples)
    return max(counts.values()) / len(examples)
