"""Knowledge distillation from the dense model while a pruned one fine-tunes.

A pruned student recovers faster when it also matches the dense fine-tuned
teacher's softened outputs (Hinton et al. 2015; Sanh et al. 2020 use it with
movement pruning). The teacher's logits are computed once, before training,
and travel with the labels, so a step costs no teacher forward pass and any
Keras model can be the student.

    teacher_logits = teacher.predict(train.map(lambda x, y: (x,)).batch(64))
    train = tf_rpp.distill.with_teacher_logits(train, teacher_logits)
    student.compile(optimizer=..., loss=tf_rpp.distill.DistillationLoss(alpha=0.5, temperature=2.0))
"""

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="tf_rpp")
class DistillationLoss(keras.losses.Loss):
    """`(1 - alpha) * CE(label, student) + alpha * T^2 * KL(teacher_T || student_T)`.

    `y_true` is `[label, teacher_logit_0, ..., teacher_logit_{C-1}]` per
    example (float32), what `with_teacher_logits` builds; `y_pred` are the
    student's logits.

    Args:
        alpha: weight of the distillation term, in [0, 1].
        temperature: softening temperature (> 0); the term is scaled by T^2
            so its gradients keep their size as T changes.

    Example:

    >>> import numpy as np
    >>> loss = DistillationLoss(alpha=1.0, temperature=1.0)
    >>> y_true = np.array([[1.0, 0.0, 2.0]], "float32")  # label 1, teacher logits [0, 2]
    >>> round(float(loss(y_true, np.array([[0.0, 2.0]], "float32"))), 6)  # student = teacher
    0.0
    """

    def __init__(self, alpha=0.5, temperature=2.0, name="distillation", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"`alpha` must be in [0, 1]; received {alpha}.")
        if not float(temperature) > 0.0:
            raise ValueError(f"`temperature` must be > 0; received {temperature}.")
        self.alpha = float(alpha)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        labels = ops.cast(y_true[:, 0], "int32")
        teacher = y_true[:, 1:]
        hard = keras.losses.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        t = self.temperature
        teacher_probs = ops.softmax(teacher / t, axis=-1)
        soft = ops.sum(teacher_probs * (ops.log_softmax(teacher / t, axis=-1) - ops.log_softmax(y_pred / t, axis=-1)),
                       axis=-1)
        return (1.0 - self.alpha) * hard + self.alpha * t * t * soft

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, temperature=self.temperature)
        return config


def with_teacher_logits(dataset, teacher_logits):
    """Zips an unbatched `(x, label)` dataset with precomputed teacher logits.

    Returns `(x, [label, logits...])` elements for `DistillationLoss`; the
    order of `teacher_logits` must be the dataset's order (compute them on the
    same dataset, unshuffled).

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> ds = tf.data.Dataset.from_tensor_slices((["good", "bad"], [1, 0]))
    >>> next(iter(with_teacher_logits(ds, np.array([[0., 3.], [2., 0.]]))))[1].numpy().tolist()
    [1.0, 0.0, 3.0]
    """
    logits = tf.data.Dataset.from_tensor_slices(tf.constant(teacher_logits, tf.float32))
    if dataset.cardinality() >= 0 and int(dataset.cardinality()) != len(teacher_logits):
        raise ValueError(f"The dataset has {int(dataset.cardinality())} examples but {len(teacher_logits)} "
                         "teacher logits were given; compute them on the same, unshuffled dataset.")
    return tf.data.Dataset.zip(dataset, logits).map(
        lambda xy, t: (xy[0], tf.concat([[tf.cast(xy[1], tf.float32)], t], axis=0)))
