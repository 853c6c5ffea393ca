"""Counting exact zeros: the one place tf_rpp measures sparsity.

Example:

>>> import numpy as np
>>> counts = {"a": zero_count(np.array([0.0, 1.0])), "b": zero_count(np.zeros(2))}
>>> counts
{'a': (1, 2), 'b': (2, 2)}
>>> total_sparsity(counts)
0.75
"""

import numpy as np
import tensorflow as tf


def total_zeros(tensor):
    """Number of entries of `tensor` equal to 0.0, as a Python int.

    Counted where the tensor lives (one pass, no host copy of the weight).

    Example:

    >>> import numpy as np
    >>> total_zeros(np.array([0.0, 1.0, 0.0]))
    2
    """
    return int(tf.size(tensor)) - int(tf.math.count_nonzero(tensor))


def zero_count(tensor):
    """`(zeros, size)` of a tensor.

    Example:

    >>> import numpy as np
    >>> zero_count(np.array([[0.0, 3.0], [0.0, 0.0]]))
    (3, 4)
    """
    return total_zeros(tensor), int(np.prod(np.shape(tensor)))


def total_sparsity(zero_counts):
    """Fraction of zeros over all weights of a dict of `(zeros, size)` (0.0 when empty).

    Example:

    >>> total_sparsity({"a": (1, 4), "b": (3, 4)})
    0.5
    """
    zeros = sum(z for z, _ in zero_counts.values())
    return zeros / max(sum(n for _, n in zero_counts.values()), 1)


def layer_sparsity(zero_counts):
    """Fraction of zeros of each weight of a dict of `(zeros, size)`.

    Example:

    >>> layer_sparsity({"a": (1, 4), "b": (0, 0)})
    {'a': 0.25, 'b': 0.0}
    """
    return {key: zeros / max(size, 1) for key, (zeros, size) in zero_counts.items()}
