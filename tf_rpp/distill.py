"""Knowledge distillation from the dense model, while pruning and while fine-tuning.

Upstream, while the mask is learned: `MaskedLMDistiller` adds to the MLM loss
the error between the pruned encoder's layer outputs and the dense
pretrained one's, so the universal mask keeps the dense model's
representations (Zafrir et al. 2021, "Prune Once for All").

    distiller = tf_rpp.distill.MaskedLMDistiller(masked_lm, dense_backbone, alpha=10.0)
    distiller.compile(optimizer=tf_rpp.RPPOptimizer(...), loss=...)

Downstream, while a pruned model fine-tunes with its mask fixed: it recovers
faster when it also matches the dense fine-tuned teacher's softened outputs
(Hinton et al. 2015; Sanh et al. 2020 use it with movement pruning). The
teacher's logits are computed once, before training, and travel with the
labels, so a step costs no teacher forward pass and any Keras model can be the
student.

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


def encoder_outputs(backbone):
    """A model giving every transformer layer's output of a keras-hub backbone.

    It shares the backbone's weights (no copy), so training through it trains
    the backbone.

    Example:

    ```python
    features = encoder_outputs(masked_lm.backbone)
    hidden = features(inputs)  # a list, one [batch, length, hidden] tensor per layer
    ```
    """
    names = [layer.name for layer in backbone.layers if layer.name.startswith("transformer_layer_")]
    if not names:
        raise ValueError(f"{backbone.name} has no `transformer_layer_*` layers; pass a keras-hub BERT backbone.")
    return keras.Model(backbone.input, [backbone.get_layer(n).output for n in names], name=f"{backbone.name}_layers")


@keras.saving.register_keras_serializable(package="tf_rpp")
class MaskedLMDistiller(keras.Model):
    """A masked LM that also matches a frozen teacher's hidden states while it is pruned.

    Upstream distillation (Sanh et al. 2019; Zafrir et al. 2021, "Prune Once
    for All"): the loss is the compiled MLM loss plus `alpha` times the mean
    over transformer layers of the relative squared error between the
    student's and the teacher's layer outputs at the non-padding positions
    (`sum (s - t)^2 / sum t^2`, so every layer counts alike). The pruned encoder then keeps the dense model's
    representations, not only its token predictions; the mask stays
    task-agnostic (universal). The teacher (usually the dense pretrained
    backbone) is frozen and runs in inference mode.

    Calling the model returns the MLM logits, like `BertMaskedLM`; the
    distillation term is added (`add_loss`) and logged as `distill_loss`
    while training.

    Args:
        masked_lm: the student, a `keras_hub.models.BertMaskedLM` (without
            preprocessor; feed it preprocessed batches).
        teacher: a keras-hub backbone with the same number of layers and
            hidden size; made non-trainable.
        alpha: weight of the distillation term (>= 0).

    Example:

    ```python
    student = tf_rpp.models.masked_lm("minilm", sequence_length=64)
    distiller = MaskedLMDistiller(student, tf_rpp.models.backbone("minilm"), alpha=1.0)
    distiller.compile(optimizer=tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(preprocessed_batches, callbacks=[tf_rpp.RPPCallback(schedule)])
    student.backbone.save_to_preset("pruned")
    ```
    """

    def __init__(self, masked_lm, teacher, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if not float(alpha) >= 0.0:
            raise ValueError(f"`alpha` must be >= 0; received {alpha}.")
        self.masked_lm = masked_lm
        self.teacher = teacher
        self.alpha = float(alpha)
        teacher.trainable = False
        self._student_layers = encoder_outputs(masked_lm.backbone)
        self._teacher_layers = encoder_outputs(teacher)
        student_shape = [tuple(t.shape[1:]) for t in self._student_layers.outputs]
        teacher_shape = [tuple(t.shape[1:]) for t in self._teacher_layers.outputs]
        if student_shape != teacher_shape:
            raise ValueError(f"Student and teacher layer outputs differ: {student_shape} vs {teacher_shape}; "
                             "the teacher must have the student's depth and hidden size.")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")
        self.built = True  # its parts are built functional models; fit's callbacks need a built model

    def call(self, inputs, training=False):
        features = {name: inputs[name] for name in self.masked_lm.backbone.input}
        student = self._student_layers(features, training=training)
        logits = self.masked_lm.masked_lm_head(student[-1], inputs["mask_positions"])
        if training and self.alpha > 0:
            teacher = self._teacher_layers(features, training=False)
            weights = ops.cast(features["padding_mask"], student[-1].dtype)[..., None]
            terms = []
            for s, t in zip(student, teacher):
                t = ops.stop_gradient(t)
                terms.append(ops.sum(weights * ops.square(s - t)) / (ops.sum(weights * ops.square(t)) + 1e-6))
            distill = ops.mean(ops.stack(terms))
            self.distill_tracker.update_state(distill)
            self.add_loss(self.alpha * distill)
        return logits

    def get_config(self):
        config = super().get_config()
        config.update(masked_lm=keras.saving.serialize_keras_object(self.masked_lm),
                      teacher=keras.saving.serialize_keras_object(self.teacher), alpha=self.alpha)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        masked_lm = keras.saving.deserialize_keras_object(config.pop("masked_lm"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        return cls(masked_lm, teacher, **config)
