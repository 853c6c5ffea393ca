"""How sure a difference between two models on the same examples is: a paired bootstrap.

Two models scored on one dev set differ partly by chance: which sentences the
dev set happens to hold. `paired_bootstrap` resamples the examples (the same
draw for both models, which keeps their errors paired) and reports the metric's
difference with a percentile interval. It says nothing about the other source
of chance, the training seed: for that, train over seeds (`bench/`).

Example:

>>> labels = [1, 0, 1, 1, 0, 1, 0, 0]
>>> dense = [1, 0, 1, 1, 0, 1, 0, 1]
>>> pruned = [1, 0, 1, 0, 0, 1, 1, 1]
>>> from tf_rpp.data.tasks import accuracy
>>> result = paired_bootstrap(accuracy, labels, dense, pruned, resamples=1000)
>>> result["difference"], result["low"] <= result["difference"] <= result["high"]
(0.25, True)
"""

import numpy as np


def paired_bootstrap(metric, labels, first, second, resamples=2000, confidence=0.95, seed=0):
    """`metric(first) - metric(second)` on the examples, with its bootstrap interval.

    Args:
        metric: `metric(labels, predictions) -> float`, e.g. one of
            `tf_rpp.data.tasks.METRICS`.
        labels: the examples' labels (or targets).
        first, second: the two models' predictions of the same examples.
        resamples: bootstrap draws of the examples, with replacement.
        confidence: the interval's coverage (0.95: the 2.5th to 97.5th percentile).
        seed: of the draws, so that a report is reproducible.

    Returns:
        A dict: `difference` (on the examples as given), `low`, `high`,
        `resamples`, `confidence`, `examples`.

    Raises:
        ValueError: the three sequences differ in length or are empty, or
            `confidence` is not in (0, 1).

    Example:

    >>> from tf_rpp.data.tasks import accuracy
    >>> paired_bootstrap(accuracy, [1, 0], [1, 0], [1, 0])["high"]
    0.0
    """
    labels, first, second = np.asarray(labels), np.asarray(first), np.asarray(second)
    if not len(labels) or not len(labels) == len(first) == len(second):
        raise ValueError(f"Need as many predictions as labels, and some: {len(labels)} labels, "
                         f"{len(first)} and {len(second)} predictions.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    rng = np.random.default_rng(seed)
    # One draw at a time: all of them at once would hold resamples x examples indices (GBs for a large test set).
    draws = (rng.integers(0, len(labels), size=len(labels)) for _ in range(resamples))
    differences = np.array([metric(labels[d], first[d]) - metric(labels[d], second[d]) for d in draws])
    tail = 100 * (1.0 - confidence) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return {"difference": metric(labels, first) - metric(labels, second), "low": float(low), "high": float(high),
            "resamples": resamples, "confidence": confidence, "examples": int(len(labels))}
