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
    >>> np.asarray(soft_threshold(np.array([-2.0, 0.5, 3.0], "float32"), 1.0))
    array([-1.,  0.,  2.], dtype=float32)
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
    array([ 0.        , -0.48003992], dtype=float32)
    """
    return soft_threshold(x, ops.multiply(step_size, gamma))


def apply_mask(x, mask):
    """Zeros the entries of `x` where the boolean `mask` is False.

    Example:

    >>> import numpy as np
    >>> np.asarray(apply_mask(np.array([1.0, 2.0]), np.array([True, False])))
    array([1., 0.])
    """
    x = ops.convert_to_tensor(x)  # a variable too, on every backend
    return ops.where(ops.convert_to_tensor(mask), x, ops.cast(0, x.dtype))  # a scalar: no zeros to allocate


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


# Group (structured) RPP: the same scheme over groups of weights, such as an
# attention head (its query/key/value columns and output rows) or a
# feed-forward neuron (its intermediate column and output row). A group spans
# slices of several tensors; each member tensor names the axis that indexes
# the groups, and all members of one group set have the same count along it.


def group_norms(members):
    """L2 norm of every group, over all of its members' slices.

    Args:
        members: a list of `(tensor, axis)`: `tensor`'s slices along `axis`
            belong to groups 0, 1, ... in order. All members have the same
            length along their axis. An axis of `None` makes the whole tensor
            part of one group (a block).

    Returns:
        A float32 vector with one norm per group.

    Example:

    >>> import numpy as np
    >>> q = np.array([[3.0, 0.0], [0.0, 0.0]], "float32")  # groups along axis 1
    >>> o = np.array([[4.0], [0.0]], "float32")             # groups along axis 0
    >>> np.asarray(group_norms([(q, 1), (o, 0)]))
    array([5., 0.], dtype=float32)
    """
    total = None
    for tensor, axis in members:
        if axis is None:
            squares = ops.reshape(ops.sum(ops.square(ops.cast(tensor, "float32"))), (1,))
            total = squares if total is None else ops.add(total, squares)
            continue
        axis = axis % len(ops.shape(tensor))
        others = tuple(i for i in range(len(ops.shape(tensor))) if i != axis)
        squares = ops.sum(ops.square(ops.cast(tensor, "float32")), axis=others)
        total = squares if total is None else ops.add(total, squares)
    return ops.sqrt(total)


def group_shrink_factors(norms, thresholds):
    """Factors of the group soft threshold: `max(0, 1 - threshold / ||w_g||)`.

    Multiplying a group's weights by its factor is the proximal operator of
    `threshold * ||w_g||_2` (the group lasso); a group whose norm is at most its
    threshold gets factor 0.0 and becomes exactly zero. A zero group stays zero.

    Example:

    >>> import numpy as np
    >>> np.asarray(group_shrink_factors(np.array([5.0, 0.5, 0.0], "float32"), 1.0))
    array([0.8, 0. , 0. ], dtype=float32)
    """
    safe = ops.where(ops.greater(norms, 0), norms, ops.ones_like(norms))
    factors = ops.maximum(ops.subtract(1.0, ops.divide(thresholds, safe)), 0.0)
    return ops.where(ops.greater(norms, 0), factors, ops.zeros_like(norms))


def scale_groups(tensor, factors, axis):
    """Multiplies every slice of `tensor` along `axis` by its group's factor (all of it, for `axis=None`).

    Example:

    >>> import numpy as np
    >>> np.asarray(scale_groups(np.ones((2, 3), "float32"), np.array([0.0, 0.5, 1.0], "float32"), 1))
    array([[0. , 0.5, 1. ],
           [0. , 0.5, 1. ]], dtype=float32)
    """
    rank = len(ops.shape(tensor))
    shape = [1] * rank
    if axis is not None:
        shape[axis % rank] = -1
    return ops.multiply(tensor, ops.cast(ops.reshape(factors, shape), tensor.dtype))


def group_reweighted_prox(members, gamma, step_size, norms=None):
    """One group RPP step: `w_g <- w_g * max(0, 1 - step_size * gamma_g / ||w_g||)`.

    With `step_size = learning_rate * lambda` and `gamma = reweight(norms, epsilon)`
    this is the reweighted group-lasso step of structured RPP
    (`tf_rpp.GroupRPPOptimizer` runs it after every inner step).

    Args:
        members: a list of `(tensor, axis)` as in `group_norms`.
        gamma: the per-group reweighting, one value per group.
        step_size: a non-negative scalar.
        norms: `group_norms(members)`, when the caller has them already.

    Returns:
        The list of new member tensors, in order.

    Example:

    >>> import numpy as np
    >>> q = np.array([[3.0, 0.1]], "float32")
    >>> o = np.array([[4.0], [0.1]], "float32")
    >>> [np.round(np.asarray(t), 4) for t in group_reweighted_prox([(q, 1), (o, 0)], np.ones(2, "float32"), 0.5)]
    [array([[2.7, 0. ]], dtype=float32), array([[3.6],
           [0. ]], dtype=float32)]
    """
    if norms is None:
        norms = group_norms(members)
    factors = group_shrink_factors(norms, ops.multiply(step_size, gamma))
    return [scale_groups(tensor, factors, axis) for tensor, axis in members]
