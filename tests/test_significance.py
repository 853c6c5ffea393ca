"""The paired bootstrap against what theory says of a difference in accuracy."""

import numpy as np
import pytest

from tf_rpp.significance import paired_bootstrap
from tf_rpp.data.tasks import METRICS, accuracy


def test_interval_matches_the_normal_approximation_of_a_paired_difference():
    # 1,000 examples: the first model right on all, the second wrong on 100. The difference is 0.1 and,
    # with 10% of the pairs discordant, its standard error sqrt(0.1 * 0.9 / 1000) = 0.0095: 95% within
    # 0.1 +- 0.0186.
    labels = np.zeros(1000, dtype=int)
    second = np.zeros(1000, dtype=int)
    second[np.random.default_rng(1).choice(1000, 100, replace=False)] = 1
    result = paired_bootstrap(accuracy, labels, labels, second)
    assert result["difference"] == pytest.approx(0.1)
    assert result["low"] == pytest.approx(0.1 - 0.0186, abs=0.005)
    assert result["high"] == pytest.approx(0.1 + 0.0186, abs=0.005)
    assert result["examples"] == 1000 and result["resamples"] == 2000


def test_pairing_keeps_shared_errors_out_of_the_interval():
    # Both models wrong on the same 300 examples, the second on 20 more: only those 20 move the difference.
    labels = np.zeros(1000, dtype=int)
    first = labels.copy()
    first[:300] = 1
    second = first.copy()
    second[300:320] = 1
    result = paired_bootstrap(accuracy, labels, first, second)
    assert result["difference"] == pytest.approx(0.02)
    assert result["high"] - result["low"] < 0.02  # unpaired, the 30% error rates would make it about 0.08
    same = paired_bootstrap(accuracy, labels, first, first)
    assert same["low"] == same["high"] == same["difference"] == 0.0


def test_other_metrics_and_bad_input():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    result = paired_bootstrap(METRICS["f1"], labels, labels, rng.integers(0, 2, 200), resamples=300)
    assert result["low"] <= result["difference"] <= result["high"] and result["low"] > 0
    with pytest.raises(ValueError, match="as many predictions as labels"):
        paired_bootstrap(accuracy, [1, 0], [1], [1, 0])
    with pytest.raises(ValueError, match="as many predictions as labels"):
        paired_bootstrap(accuracy, [], [], [])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(accuracy, [1], [1], [1], confidence=95)
