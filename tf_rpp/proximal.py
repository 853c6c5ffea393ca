"""The proximal math of reweighted l1 pruning, as pure functions.

Everything here maps tensors to tensors with `keras.ops` and touches no
state, in the spirit of optax's transforms: `RPPOptimizer` composes these
inside the compiled train step, and the tests check them against NumPy.

The objective over the selected weights `w` is

    f(w) + l1_strength * sum_i gamma_i * |w_i|

and one RPP step is: the inner optimizer's step on `f`, then
`w <- reweighted_l1_prox(w, gamma, learning_rate * l1_strength)`, with
`gamma <- reweight(w, epsilon)` every `reweight_every` steps
(Candes, Wakin and Boyd, "Enhancing sparsity by reweighted l1 minimization").
"""

from keras import ops


def soft_threshold(x, threshold):
    """Proximal operator of `threshold * |x|`: shrinks `x` towards 0 by `threshold`.

    Equal to `sign(x) * max(|x| - threshold, 0)` for `threshold >= 0`;
    entries with `|x| <= threshold` become exactly 0.0.

    Args:
        x: a tensor.
        threshold: a non-negative scalar or a tensor broadcastable to `x`.

    Returns:
        A tensor like `x`.

    Example:

    >>> import numpy as np
    >>> np.asarray(soft_threshold(np.array([-2.0, 0.5, 3.0]), 1.0))
    array([-1.,  0.,  2.])
    """
    # `x - clip(x, -t, t)` is the same number as `sign(x) * max(|x| - t, 0)`
    # to the last bit (negation and rounding are symmetric), with one
    # elementwise pass fewer on the train step's hot path.
    return ops.subtract(x, ops.clip(x, ops.negative(threshold), threshold))


def reweight(x, epsilon):
    """Reweighted-l1 weights `1 / (|x| + epsilon)`.

    Small weights get large penalties (and are driven to exactly 0.0), large
    weights get small ones (and are left nearly alone). `epsilon` bounds the
    penalty of a zero weight at `1 / epsilon`.

    Example:

    >>> import numpy as np
    >>> np.asarray(reweight(np.array([0.0, 1.0], "float32"), 0.5))
    array([2.       , 0.6666667], dtype=float32)
    """
    return ops.reciprocal(ops.add(ops.abs(x), epsilon))


def reweighted_l1_prox(x, gamma, step_size):
    """Proximal operator of `step_size * sum_i gamma_i * |x_i|`.

    This is the step RPP applies after every inner-optimizer update, with
    `step_size = learning_rate * l1_strength`.

    Example:

    >>> import numpy as np
    >>> w = np.array([0.01, -0.5], "float32")
    >>> np.asarray(reweighted_l1_prox(w, reweight(w, 1e-3), 0.01))
    array([ 0.        , -0.49001998], dtype=float32)
    """
    return soft_threshold(x, ops.multiply(step_size, gamma))


def apply_mask(x, mask):
    """Zeros the entries of `x` where the boolean `mask` is False.

    Example:

    >>> import numpy as np
    >>> np.asarray(apply_mask(np.array([1.0, 2.0]), np.array([True, False])))
    array([1., 0.])
    """
    return ops.where(mask, x, ops.zeros_like(x))


def sparsity(x):
    """Fraction of entries of `x` that are exactly 0.0, as a float32 scalar.

    Example:

    >>> import numpy as np
    >>> float(sparsity(np.array([0.0, 1.0, 0.0, 2.0])))
    0.5
    """
    count = 1
    for dim in ops.shape(x):
        count *= int(dim)
    zeros = ops.sum(ops.cast(ops.equal(x, 0), "float32"))
    return ops.divide(zeros, float(max(count, 1)))
