"""Gradient preparation shared by the tf_rpp optimizer wrappers.

Example:

>>> import tensorflow as tf
>>> g = tf.IndexedSlices(tf.ones((3, 2)), tf.constant([0, 0, 1]), tf.constant([4, 2]))
>>> exact = exact_sparse_gradient(g, densify=False)
>>> exact.indices.numpy().tolist(), exact.values.numpy().tolist()
([0, 1], [[2.0, 2.0], [1.0, 1.0]])
"""

import keras
import tensorflow as tf

from tf_rpp import proximal


def exact_sparse_gradient(gradient, densify):
    """Sums the repeated rows of an `IndexedSlices` gradient (other gradients pass through).

    Keras 3's Adam, AdamW and Adafactor update `IndexedSlices` gradients with
    repeated indices wrongly (0.09 off the dense update after 3 steps in
    tests/test_optimizer.py); BERT's token-embedding gradient always repeats
    indices. Summing repeated rows fixes it, as tf.keras's OptimizerV2 did.

    Args:
        gradient: a gradient tensor or `tf.IndexedSlices`.
        densify: sum the rows into a dense gradient instead of `tf.unique`.
            Needed where `tf.unique` is wrong or slow: under a multi-replica
            strategy the all-reduce concatenates the replicas' slices and
            repeats indices again; inside an XLA-compiled step `tf.unique`
            lowers to a sort plus a sequential loop with a dynamically sized
            result, and the step around it compiles several times slower
            (bench/results/step_overhead.json). Keras's own sparse update is
            dense work anyway (it decays every row's moments).

    Example: see the module docstring.
    """
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    if densify:
        return tf.convert_to_tensor(gradient)
    unique, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(unique)[0])
    return tf.IndexedSlices(values, unique, gradient.dense_shape)


def mask_gradient(gradient, mask):
    """Zeros a gradient (tensor or `IndexedSlices`) where the boolean `mask` is False.

    Example:

    >>> import numpy as np
    >>> mask_gradient(tf.constant([1.0, 2.0]), tf.constant([True, False])).numpy()
    array([1., 0.], dtype=float32)
    """
    if isinstance(gradient, tf.IndexedSlices):
        rows = tf.cast(tf.gather(mask, gradient.indices), gradient.values.dtype)
        return tf.IndexedSlices(gradient.values * rows, gradient.indices, gradient.dense_shape)
    return proximal.apply_mask(gradient, mask)


# Optimizers whose update of each coordinate reads only that coordinate's
# gradient, slots and weight. For these, a pruned position's gradient can only
# reach its own slots and its weight, and the weight is re-masked after every
# step, so masking gradients changes no weight and costs a pass over them.
ELEMENTWISE_OPTIMIZERS = tuple(
    getattr(keras.optimizers, name)
    for name in ("SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta", "Ftrl", "Lion")
    if hasattr(keras.optimizers, name)
)


def needs_gradient_masking(optimizer):
    """Whether pruned positions' gradients must be zeroed before `optimizer`'s step.

    Example:

    >>> needs_gradient_masking(keras.optimizers.AdamW(1e-4))
    False
    >>> needs_gradient_masking(keras.optimizers.AdamW(1e-4, clipnorm=1.0))
    True
    """
    # Exact types only: a subclass may couple coordinates in its update_step. Keras's PyTorch
    # backend swaps in its own subclass of the same name (a fused multi-tensor step, still
    # elementwise), so Keras's own classes count by name.
    cls = type(optimizer)
    elementwise = cls in ELEMENTWISE_OPTIMIZERS or (cls.__module__.startswith("keras.") and any(
        issubclass(cls, known) and cls.__name__ == known.__name__ for known in ELEMENTWISE_OPTIMIZERS))
    return not elementwise or bool(optimizer.clipnorm) or bool(optimizer.global_clipnorm)
