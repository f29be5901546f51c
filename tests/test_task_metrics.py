"""Task metrics in numpy against scikit-learn and scipy on the same predictions."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from gptpipe import tasks
from gptpipe.errors import GptpipeError
from gptpipe.tasks import metrics as m


def _cases(rng: np.random.Generator):
    """Binary and 3-class label/prediction pairs: random, skewed, perfect, inverted, constant."""
    for n_classes in (2, 3):
        for n in (1, 7, 200):
            y = rng.integers(0, n_classes, n)
            yield y, rng.integers(0, n_classes, n)
            noisy = y.copy()
            flip = rng.random(n) < 0.2
            noisy[flip] = rng.integers(0, n_classes, int(flip.sum()))
            yield y, noisy
            yield y, y
            yield y, (n_classes - 1) - y
            yield y, np.zeros_like(y)  # constant predictions
            yield np.ones_like(y), y  # constant gold labels


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on undefined precision/recall
        for y, p in _cases(rng):
            assert m.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p), abs=1e-12)
            assert m.mcc(y, p) == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-12)
            assert m.f1(y, p) == pytest.approx(
                skm.f1_score(y, p, pos_label=1, average="binary", labels=[0, 1], zero_division=0)
                if set(np.r_[y, p]) <= {0, 1} else
                skm.f1_score(y, p, labels=[1], average="macro", zero_division=0), abs=1e-12)


def test_edge_cases_spelled_out():
    assert m.mcc([0, 1, 1, 0], [1, 1, 1, 1]) == 0.0  # constant predictions, like sklearn
    assert m.mcc([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
    assert m.mcc([0, 1, 1, 0], [1, 0, 0, 1]) == -1.0
    assert m.f1([0, 0, 0], [0, 0, 0]) == 0.0  # no positives anywhere
    assert m.f1([1, 0, 1, 0], [1, 1, 0, 0]) == 0.5
    assert m.accuracy([2, 1, 0], [2, 0, 0]) == pytest.approx(2 / 3)


def test_correlations_match_scipy_including_ties():
    rng = np.random.default_rng(1)
    for n in (3, 10, 500):
        x = rng.normal(size=n)
        y = x + rng.normal(scale=0.7, size=n)
        for a, b in ((x, y), (np.round(x), np.round(y * 2) / 2), (rng.integers(0, 3, n), y)):
            assert m.pearson(a, b) == pytest.approx(stats.pearsonr(a, b)[0], abs=1e-10)
            assert m.spearman(a, b) == pytest.approx(stats.spearmanr(a, b)[0], abs=1e-10)
    ties = [1.0, 2.0, 2.0, 3.0, 3.0, 3.0]
    np.testing.assert_array_equal(m.rank_average(ties), stats.rankdata(ties))
    assert m.spearman([1, 2, 2, 3], [1, 3, 3, 4]) == pytest.approx(1.0)


def test_constant_input_correlations_are_nan_like_scipy():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(stats.pearsonr([1, 2, 3], [2, 2, 2])[0])
    assert math.isnan(m.pearson([1, 2, 3], [2, 2, 2]))
    assert math.isnan(m.spearman([5, 5, 5], [1, 2, 3]))


def test_compute_uses_a_tasks_metric_names_and_groups():
    mrpc = tasks.get("MRPC")
    scores = m.compute(mrpc.metrics, [1, 1, 0, 0], [1, 0, 0, 0])
    assert scores == {"f1": pytest.approx(2 / 3), "accuracy": 0.75}
    race = tasks.get("RACE")
    got = m.compute(race.metrics, [0, 1, 2, 3], [0, 1, 0, 0], groups=["middle", "middle",
                                                                        "high", "high"])
    assert got == {"accuracy": 0.5, "accuracy@middle": 1.0, "accuracy@high": 0.0}
    assert m.as_percent({"mcc": 0.454}) == {"mcc": pytest.approx(45.4)}
    stsb = m.compute(tasks.get("STS-B").metrics, [0.0, 2.5, 5.0], [0.5, 2.0, 4.0])
    assert set(stsb) == {"pearson", "spearman"} and stsb["spearman"] == pytest.approx(1.0)


def test_bad_calls():
    with pytest.raises(ValueError, match="one length"):
        m.accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="no predictions"):
        m.mcc([], [])
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        m.compute(["bleu"], [0], [0])
    with pytest.raises(ValueError, match="needs one group per example"):
        m.compute(["accuracy@high"], [0], [0])
    with pytest.raises(GptpipeError, match="no example of group 'high'"):
        m.compute(["accuracy@high"], [0], [0], groups=["middle"])
