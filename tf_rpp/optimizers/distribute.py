"""Variable updates inside the train step that work the same with and without `tf.distribute`.

The wrappers' own work runs after the inner step, per weight, through
`distribution.extended.update` (as Keras's weight decay does), so mirrored
copies and TPU replicas get the same update.

Example:

>>> import keras
>>> tf_variable(keras.Variable(1.0)).dtype.name
'float32'
"""

import keras
import tensorflow as tf


def on_tensorflow():
    """Whether Keras runs on TensorFlow (`tf.distribute` and the TensorFlow fast paths apply).

    Example:

    >>> on_tensorflow() in (True, False)
    True
    """
    return keras.backend.backend() == "tensorflow"


def tf_variable(variable):
    """The `tf.Variable` behind a `keras.Variable` (a `tf.Variable` passes through)."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def update_each(strategy, variables, update_fn, per_variable_state=(), args=()):
    """Runs `update_fn(variable, *state, *args)` for every variable, on every replica.

    Args:
        strategy: the optimizer's distribution strategy.
        variables: the variables to update.
        update_fn: returns the assign op of its first argument.
        per_variable_state: lists of variables aligned with `variables`.
        args: tensors passed to every call.

    Example:

    ```python
    update_each(strategy, weights, lambda w, m: w.assign(tf.where(m, w, 0.0)), [masks])
    ```
    """
    items = [
        (tf_variable(v), [tf_variable(state[i]) for state in per_variable_state])
        for i, v in enumerate(variables)
    ]

    def update_all(distribution, items, args):
        for variable, state in items:
            distribution.extended.update(variable, update_fn, args=(*state, *args), group=False)

    tf.__internal__.distribute.interim.maybe_merge_call(update_all, strategy, items, args)
