"""Argument checks shared by the tf_rpp optimizers: clear errors at construction.

Example:

>>> check_strength(2e-3, "l1_strength")
0.002
>>> check_strength(-1.0, "l1_strength")
Traceback (most recent call last):
...
ValueError: `l1_strength` must be a finite number >= 0; received -1.0. Use 0 to disable that penalty, or e.g. 2e-3.
"""

import math

import numpy as np

_NUMBER = (int, float, np.floating, np.integer)


def check_strength(value, name):
    """A penalty weight: finite and >= 0. Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"`{name}` must be a finite number >= 0; received {value!r}. "
            "Use 0 to disable that penalty, or e.g. 2e-3."
        )
    return float(value)


def check_epsilon(value, name):
    """A reweighting bound: finite and > 0. Returns it as a float.

    Example:

    >>> check_epsilon(1e-3, "epsilon")
    0.001
    """
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"`{name}` must be a finite number > 0; received {value!r}. It bounds "
            "the reweighting 1 / (|w| + epsilon); use e.g. 1e-3."
        )
    return float(value)


def check_period(value):
    """`reweight_every`: an integer >= 1.

    Example:

    >>> check_period(100)
    100
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"`reweight_every` must be an integer >= 1; received {value!r}. "
            "Use e.g. 100 to reweight every 100 steps."
        )
    return int(value)


def reject_base_optimizer_kwargs(cls_name, kwargs):
    """The wrappers take no base-optimizer arguments: those belong on the inner optimizer.

    Example:

    >>> reject_base_optimizer_kwargs("RPPOptimizer", {})
    """
    if kwargs:
        raise ValueError(
            f"{cls_name} does not take {sorted(kwargs)}: set learning rate, weight decay, "
            "clipping, EMA and loss scaling on the inner optimizer."
        )
