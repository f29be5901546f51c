"""The tasks' official metrics, in numpy (no scikit-learn or scipy at run time).

Each function takes gold labels and predictions of the same length and returns a fraction
(accuracy, F1) or a correlation in [-1, 1], not a percentage. Edge cases follow scikit-learn
and scipy, which the tests check against: Matthews correlation is 0 when either side is
constant; F1 is 0 when there are no true or predicted positives; Pearson/Spearman are NaN when
either side is constant; Spearman ranks ties by their average rank.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import GptpipeError

ArrayLike = Sequence[float] | np.ndarray


def _pair(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"labels and predictions must be 1-D of one length: {a.shape} vs "
                         f"{b.shape}")
    if a.size == 0:
        raise ValueError("no predictions to score")
    return a, b


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of exact matches."""
    a, b = _pair(y_true, y_pred)
    return float(np.mean(a == b))


def f1(y_true: ArrayLike, y_pred: ArrayLike, positive: int = 1) -> float:
    """F1 of the `positive` class (MRPC, QQP): 2·TP / (2·TP + FP + FN); 0 when undefined."""
    a, b = _pair(y_true, y_pred)
    tp = int(np.sum((a == positive) & (b == positive)))
    fp = int(np.sum((a != positive) & (b == positive)))
    fn = int(np.sum((a == positive) & (b != positive)))
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


def mcc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Matthews correlation (CoLA), multi-class form (Gorodkin 2004) as scikit-learn computes
    it from the confusion matrix; 0 when either side has a single class."""
    a, b = _pair(y_true, y_pred)
    classes, idx = np.unique(np.concatenate([a, b]), return_inverse=True)
    ti, pi = idx[: a.size], idx[a.size:]
    k = classes.size
    conf = np.zeros((k, k), dtype=np.float64)
    np.add.at(conf, (ti, pi), 1.0)
    t_sum, p_sum = conf.sum(axis=1), conf.sum(axis=0)
    n_correct, n = np.trace(conf), conf.sum()
    cov_tp = n_correct * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_tt = n * n - t_sum @ t_sum
    if cov_pp * cov_tt == 0:
        return 0.0
    return float(cov_tp / math.sqrt(cov_tt * cov_pp))


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation (STS-B); NaN when either side is constant."""
    a, b = _pair(x, y)
    a = a.astype(np.float64) - np.mean(a, dtype=np.float64)
    b = b.astype(np.float64) - np.mean(b, dtype=np.float64)
    denom = math.sqrt(float(a @ a) * float(b @ b))
    if denom == 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(a @ b) / denom))


def rank_average(x: ArrayLike) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy's `rankdata(method='average')`)."""
    v = np.asarray(x)
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    # Start of each run of equal values in sorted order; each run gets the mean of its ranks.
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], v.size]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1 .. ends, averaged
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (STS-B): Pearson of the average ranks."""
    a, b = _pair(x, y)
    return pearson(rank_average(a), rank_average(b))


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy, "mcc": mcc, "f1": f1, "pearson": pearson, "spearman": spearman,
}


def compute(names: Sequence[str], y_true: ArrayLike, y_pred: ArrayLike,
            groups: Sequence[str | None] | None = None) -> dict[str, float]:
    """Every metric in `names` (a `TaskSpec.metrics`), keyed by name.

    `"metric@group"` scores only the examples whose group is `group` (RACE's "accuracy@middle"),
    which needs `groups`, one entry per example.
    """
    a, b = _pair(y_true, y_pred)
    out = {}
    for name in names:
        base, _, group = name.partition("@")
        if base not in METRICS:
            raise ValueError(f"unknown metric {base!r} (known: {', '.join(METRICS)})")
        if not group:
            out[name] = METRICS[base](a, b)
            continue
        if groups is None or len(groups) != a.size:
            raise ValueError(f"metric {name!r} needs one group per example")
        mask = np.asarray([g == group for g in groups])
        if not mask.any():
            raise GptpipeError(f"metric {name!r}: no example of group {group!r}")
        out[name] = METRICS[base](a[mask], b[mask])
    return out


def as_percent(scores: Mapping[str, float]) -> dict[str, float]:
    """Scores as the paper prints them (x100, e.g. MCC 0.454 -> 45.4)."""
    return {k: 100.0 * v for k, v in scores.items()}


# Metrics whose chance level is 0 by construction: a constant (or label-blind) prediction has
# no correlation with the gold labels.
_ZERO_AT_CHANCE = ("mcc", "pearson", "spearman")


def majority(y_true: ArrayLike) -> int | float:
    """The most frequent label (ties: the smallest), e.g. a multiple-choice task's most frequent
    right answer position."""
    values, counts = np.unique(np.asarray(y_true), return_counts=True)
    return values[int(np.argmax(counts))].item()


def chance(names: Sequence[str], y_true: ArrayLike,
           groups: Sequence[str | None] | None = None) -> dict[str, float]:
    """Each metric in `names` for a label-blind baseline on these gold labels: always the
    majority class (accuracy, and F1: the F1 of always predicting that class; multiple choice:
    the most frequent right answer position), and 0 for MCC and correlations.

    The majority is taken on the labels scored (on each group for `"metric@group"`), so it is
    the best constant prediction for that split: a score at or below it has learnt nothing.
    """
    a = np.asarray(y_true)
    out = {}
    for name in names:
        base, _, group = name.partition("@")
        if base in _ZERO_AT_CHANCE:
            out[name] = 0.0
            continue
        subset = a
        if group:
            if groups is None or len(groups) != a.size:
                raise ValueError(f"metric {name!r} needs one group per example")
            subset = a[np.asarray([g == group for g in groups])]
        if subset.size == 0:
            raise GptpipeError(f"chance of {name!r}: no example to score")
        constant = np.full(subset.shape, majority(subset), dtype=subset.dtype)
        out[name] = compute([base], subset, constant)[base]
    return out
