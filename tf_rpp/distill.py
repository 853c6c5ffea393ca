"""Knowledge distillation from the dense model, while pruning and while fine-tuning.

Layer outputs: `LayerDistiller` adds to a task's loss the error between the
student's layer outputs and a frozen teacher's. Upstream, while the mask is
learned on MLM with the dense pretrained backbone as teacher, the universal
mask keeps the dense model's representations (Zafrir et al. 2021, "Prune Once
for All"); downstream the teacher can be the dense fine-tuned classifier.

    distiller = tf_rpp.distill.LayerDistiller(masked_lm, dense_backbone, alpha=50.0)
    distiller.compile(optimizer=tf_rpp.RPPOptimizer(...), loss=...)

Logits, while a pruned model fine-tunes with its mask fixed: it recovers
faster when it also matches the dense fine-tuned teacher's softened outputs
(Hinton et al. 2015; Sanh et al. 2020 use it with movement pruning). The
teacher's logits are computed once, before training, and travel with the
labels, so a step costs no teacher forward pass and any Keras model can be the
student.

    stream = tf_rpp.distill.teacher_stream(train, teacher, num_drawn=steps * batch_size)
    student.compile(optimizer=..., loss=tf_rpp.distill.DistillationLoss(alpha=0.5, temperature=2.0))
    student.fit(stream.batch(batch_size), steps_per_epoch=steps)
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


def teacher_stream(dataset, teacher, num_drawn, seed=0, shuffle_buffer=20_000):
    """The shuffled, repeated training stream of `(x, [label, teacher logits...])`.

    What `model.fit(stream.batch(b), steps_per_epoch=s)` reads with `DistillationLoss`,
    with the teacher run once, before training, only where needed: on the
    `num_drawn` examples the steps will draw (`s * b`), or on the whole
    dataset once when the steps go through it. The order is the one
    `dataset.shuffle(shuffle_buffer, seed).repeat()` gives without a teacher.
    On SNLI, 300 steps x 32 draw a tenth of the 99,890 pairs.

    Args:
        dataset: unbatched `(x, label)` of raw inputs the teacher accepts.
        teacher: a Keras model (e.g. the dense fine-tuned classifier).
        num_drawn: examples training will read (steps x batch size).
        seed: shuffle seed.
        shuffle_buffer: `tf.data` shuffle buffer size.

    Example:

    >>> import keras, numpy as np, tensorflow as tf
    >>> teacher = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> ds = tf.data.Dataset.from_tensor_slices((np.ones((10, 3), "float32"), np.zeros(10, "int32")))
    >>> stream = teacher_stream(ds, teacher, num_drawn=4)
    >>> x, y = next(iter(stream.batch(4)))
    >>> y.shape  # label and 2 teacher logits
    TensorShape([4, 3])
    """
    if int(num_drawn) < 1:
        raise ValueError(f"`num_drawn` is the number of examples training reads (steps x batch size), >= 1; "
                         f"received {num_drawn}.")
    size = int(dataset.cardinality())
    if 0 <= size <= num_drawn:
        logits = teacher.predict(dataset.batch(64).map(lambda x, y: (x,)), verbose=0)
        return with_teacher_logits(dataset, logits).shuffle(shuffle_buffer, seed=seed).repeat()
    # Drawn into memory, in order: a second pass over a shuffled dataset need not repeat the first.
    drawn = next(iter(dataset.shuffle(shuffle_buffer, seed=seed).repeat().batch(num_drawn)))
    drawn = tf.data.Dataset.from_tensor_slices(drawn)
    logits = teacher.predict(drawn.batch(64).map(lambda x, y: (x,)), verbose=0)
    return with_teacher_logits(drawn, logits).repeat()


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
    layers = _layer_tensors(backbone)
    return keras.Model(backbone.input, layers, name=f"{backbone.name}_layers")


def _layer_tensors(backbone):
    names = [layer.name for layer in backbone.layers if layer.name.startswith("transformer_layer_")]
    if not names:
        raise ValueError(f"{backbone.name} has no `transformer_layer_*` layers; pass a keras-hub BERT backbone.")
    return [backbone.get_layer(n).output for n in names]


def layer_error(student, teacher, batches):
    """Mean over layers and batches of the relative squared error of `student`'s layer outputs.

    The quantity `LayerDistiller` minimises (`sum (s - t)^2 / sum t^2` at the
    non-padding positions), measured on held-out feature batches: 0 for a
    copy of the teacher.

    Example:

    ```python
    error = layer_error(pruned_backbone, dense_backbone, held_out_batches)   # e.g. 0.05
    ```
    """
    student_layers, teacher_layers = encoder_outputs(student), encoder_outputs(teacher)
    errors = []
    for x in batches:
        x = x[0] if isinstance(x, tuple) else x
        features = {name: x[name] for name in ("token_ids", "segment_ids", "padding_mask")}
        weights = ops.cast(features["padding_mask"], "float32")[..., None]
        terms = [ops.sum(weights * ops.square(s - t)) / (ops.sum(weights * ops.square(t)) + 1e-6)
                 for s, t in zip(student_layers(features, training=False), teacher_layers(features, training=False))]
        errors.append(float(ops.mean(ops.stack(terms))))
    return sum(errors) / max(1, len(errors))


@keras.saving.register_keras_serializable(package="tf_rpp")
class LayerDistiller(keras.Model):
    """A keras-hub BERT task model that also matches a frozen teacher's layer outputs.

    The loss is the compiled loss of the task (MLM, or classification, with
    or without `DistillationLoss`) plus `alpha` times the mean over
    transformer layers of the relative squared error between the student's
    and the teacher's layer outputs at the non-padding positions
    (`sum (s - t)^2 / sum t^2`, so every layer counts alike).

    - While pruning on MLM (upstream; Sanh et al. 2019, Zafrir et al. 2021
      "Prune Once for All"), with the dense pretrained backbone as teacher,
      the pruned encoder keeps the dense model's representations, not only
      its token predictions; the mask stays task-agnostic (universal).
    - While fine-tuning a pruned classifier (downstream; Jiao et al. 2020,
      TinyBERT), with the dense fine-tuned classifier's backbone as teacher.

    Calling the model returns the task's logits; the distillation term is
    added (`add_loss`) and logged as `distill_loss` while training. Feed it
    preprocessed batches (the task's own preprocessor is not applied).

    Args:
        task: the student, a `keras_hub.models.BertMaskedLM` or
            `BertTextClassifier` (or any task with a keras-hub BERT
            `backbone` and the same heads), or a bare BERT backbone: then
            the layer term is the whole objective (task-agnostic
            distillation; compile with `loss=None` and feed features only).
        teacher: a keras-hub backbone with the same number of layers and
            hidden size; made non-trainable and run in inference mode.
        alpha: weight of the layer term (>= 0).
        teacher_task: the teacher's classifier (whose backbone `teacher` is),
            to distil its logits too, computed in the same teacher pass: the
            labels `y` become `[label, teacher logits...]` for
            `DistillationLoss` inside the step, so the data carries labels
            only and the teacher needs no pass of its own before training
            (`teacher_stream`). A classifier student only.
        teacher_layer_indices: the teacher layer each student layer matches,
            for a student with fewer layers (a layer-dropped model matches
            the layers it kept: `tf_rpp.structured.layer_drop`); default:
            layer for layer, same depth.

    Example:

    ```python
    student = tf_rpp.models.masked_lm("minilm", sequence_length=64)
    distiller = LayerDistiller(student, tf_rpp.models.backbone("minilm"), alpha=50.0)
    distiller.compile(optimizer=tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4)),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    distiller.fit(preprocessed_batches, callbacks=[tf_rpp.RPPCallback(schedule)])
    student.backbone.save_to_preset("pruned")
    ```

    Fine-tuning a pruned classifier from a dense fine-tuned one, its layers and logits:

    ```python
    distiller = LayerDistiller(pruned_classifier, dense.backbone, alpha=10.0, teacher_task=dense)
    distiller.compile(optimizer=..., loss=DistillationLoss(alpha=0.5, temperature=2.0))
    distiller.fit(preprocessed_batches_with_labels)
    ```
    """

    def __init__(self, task, teacher, alpha=1.0, teacher_task=None, teacher_layer_indices=None, **kwargs):
        super().__init__(**kwargs)
        if not float(alpha) >= 0.0:
            raise ValueError(f"`alpha` must be >= 0; received {alpha}.")
        backbone = getattr(task, "backbone", task)
        if backbone is not task and not (hasattr(task, "masked_lm_head") or hasattr(task, "output_dense")):
            raise ValueError(f"{task.name} is neither a BertMaskedLM nor a BertTextClassifier: it has no "
                             "`masked_lm_head` or `output_dense` to put on the distilled backbone.")
        if teacher_task is not None and not hasattr(task, "output_dense"):
            raise ValueError("`teacher_task` distils a classifier's logits; the student is not a classifier.")
        if teacher_task is not None and getattr(teacher_task, "backbone", None) is not teacher:
            raise ValueError("`teacher` must be `teacher_task.backbone`: one teacher pass gives both.")
        self.task = task
        self.teacher = teacher
        self.teacher_task = teacher_task
        self.alpha = float(alpha)
        teacher.trainable = False
        self._teacher_logits = None
        self._distill_value = None
        # One graph over the backbone's own tensors, so the encoder runs once for both the head and the term.
        layers = _layer_tensors(backbone)
        self._student = keras.Model(backbone.input, {"layers": layers, **backbone.output},
                                    name=f"{backbone.name}_distilled")
        teacher_layers = _layer_tensors(teacher)
        self.teacher_layer_indices = None
        if teacher_layer_indices is not None:
            indices = [int(i) for i in teacher_layer_indices]
            if len(indices) != len(layers) or not all(0 <= i < len(teacher_layers) for i in indices):
                raise ValueError(f"`teacher_layer_indices` must name one of the teacher's {len(teacher_layers)} "
                                 f"layers for each of the student's {len(layers)}; received {indices}.")
            teacher_layers = [teacher_layers[i] for i in indices]
            self.teacher_layer_indices = indices
        elif len(teacher_layers) != len(layers):
            raise ValueError(f"The student has {len(layers)} encoder layers and the teacher {len(teacher_layers)}; "
                             "give `teacher_layer_indices` (the teacher layer each student layer matches).")
        if teacher_task is not None:
            teacher_task.trainable = False
            teacher_layers = [*teacher_layers, teacher_task.output_dense(teacher.output["pooled_output"])]
        self._teacher_layers = keras.Model(teacher.input, teacher_layers, name=f"{teacher.name}_layers"
                                           + ("_and_logits" if teacher_task is not None else ""))
        student_shape = [tuple(t.shape[1:]) for t in layers]
        teacher_shape = [tuple(t.shape[1:]) for t in self._teacher_layers.outputs[:len(layers)]]
        if student_shape != teacher_shape:
            raise ValueError(f"Student and teacher layer outputs differ: {student_shape} vs {teacher_shape}; "
                             "the teacher must have the student's depth and hidden size (or give "
                             "`teacher_layer_indices`).")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")
        self.built = True  # its parts are built functional models; fit's callbacks need a built model

    def _head(self, outputs, inputs, training):
        if not hasattr(self.task, "backbone"):  # a bare backbone: the layer term is the whole objective
            return outputs["sequence_output"]
        if hasattr(self.task, "masked_lm_head"):
            return self.task.masked_lm_head(outputs["sequence_output"], inputs["mask_positions"])
        pooled = self.task.output_dropout(outputs["pooled_output"], training=training)
        return self.task.output_dense(pooled)

    def call(self, inputs, training=False):
        features = {name: inputs[name] for name in self._student.input}
        outputs = self._student(features, training=training)
        logits = self._head(outputs, inputs, training)
        if training and (self.alpha > 0 or self.teacher_task is not None):
            student = outputs["layers"]
            teacher = self._teacher_layers(features, training=False)
            if self.teacher_task is not None:  # read by compute_loss, in the same traced step
                self._teacher_logits = ops.stop_gradient(teacher[-1])
                teacher = teacher[:-1]
        if training and self.alpha > 0:
            weights = ops.cast(features["padding_mask"], student[-1].dtype)[..., None]
            terms = []
            for s, t in zip(student, teacher):
                t = ops.stop_gradient(t)
                terms.append(ops.sum(weights * ops.square(s - t)) / (ops.sum(weights * ops.square(t)) + 1e-6))
            distill = ops.mean(ops.stack(terms))
            # Logged by compute_loss: on JAX, only there are the metrics' variables part of the traced step.
            self._distill_value = distill
            self.add_loss(self.alpha * distill)
        return logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._distill_value is not None:
            self.distill_tracker.update_state(self._distill_value)
            self._distill_value = None
        if self.teacher_task is not None and y is not None and len(y.shape) == 1:
            # Outside training there is no teacher pass (and Keras builds the loss on JAX with labels alone):
            # the student's own logits stand in, so only the label term counts.
            teacher = self._teacher_logits if training else ops.stop_gradient(y_pred)
            labels = ops.reshape(ops.cast(y, "float32"), (-1, 1))
            y = ops.concatenate([labels, ops.cast(teacher, "float32")], axis=-1)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(task=keras.saving.serialize_keras_object(self.task),
                      teacher=keras.saving.serialize_keras_object(self.teacher), alpha=self.alpha,
                      teacher_layer_indices=self.teacher_layer_indices)
        if self.teacher_task is not None:
            config["teacher_task"] = keras.saving.serialize_keras_object(self.teacher_task)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        task = keras.saving.deserialize_keras_object(config.pop("task"))
        teacher = keras.saving.deserialize_keras_object(config.pop("teacher"))
        teacher_task = config.pop("teacher_task", None)
        if teacher_task is not None:
            teacher_task = keras.saving.deserialize_keras_object(teacher_task)
            teacher = teacher_task.backbone
        return cls(task, teacher, teacher_task=teacher_task, **config)
