"""Quantization-aware fine-tuning for full-integer int8 TFLite export.

Full-integer int8 rounds every activation to 256 levels between a per-tensor
min and max calibrated on real text. Fine-tuned BERT classifiers lose several
accuracy points to that rounding, most of it at the inputs of the
fully-connected layers (`docs/tflite.md`). `simulate_int8(model)` makes
training see the same rounding: while training, the inputs and outputs of
every `Dense` and `EinsumDense` layer go through fake quantization
(`tf.quantization.fake_quant_with_min_max_vars`, 8 bits, ranges tracked as an
exponential moving average of each tensor's min and max, gradients passed
straight through inside the range), as tfmot's quantization-aware training
does for Keras 2 models (`tfmot.quantization.keras.quantize_model` does not
take Keras 3 models). Inference (`training=False`, `predict`, `export`) is
untouched, so the fine-tuned model is an ordinary Keras model, exported with
post-training calibration as usual (`tf_rpp.export.export_tflite(...,
quantize="int8")`).

Example:

```python
with tf_rpp.quantization.simulate_int8(classifier):
    classifier.fit(train, steps_per_epoch=200)
tf_rpp.export.export_tflite(classifier, "model_int8.tflite", quantize="int8", representative_data=texts[:200])
```
"""

import contextlib

import keras
import tensorflow as tf


class _RangeTracker:
    """A tensor's int8 range: EMA of its batch min and max, started at the first batch."""

    def __init__(self, name, decay):
        self.decay = decay
        self.minimum = keras.Variable(0.0, trainable=False, name=f"{name}_min")
        self.maximum = keras.Variable(0.0, trainable=False, name=f"{name}_max")
        self.started = keras.Variable(False, trainable=False, dtype="bool", name=f"{name}_started")

    def __call__(self, x):
        x32 = tf.cast(x, tf.float32)
        batch_min = tf.minimum(tf.reduce_min(x32), 0.0)  # int8 ranges always contain 0
        batch_max = tf.maximum(tf.reduce_max(x32), 0.0)
        started = tf.convert_to_tensor(self.started)
        new_min = tf.where(started, self.decay * self.minimum + (1 - self.decay) * batch_min, batch_min)
        new_max = tf.where(started, self.decay * self.maximum + (1 - self.decay) * batch_max, batch_max)
        self.minimum.assign(new_min)
        self.maximum.assign(new_max)
        self.started.assign(True)
        return tf.cast(tf.quantization.fake_quant_with_min_max_vars(x32, new_min, new_max, num_bits=8), x.dtype)


def quantized_layers(model):
    """The layers whose inputs and outputs `simulate_int8` rounds: every `Dense` and `EinsumDense`.

    Example:

    >>> import keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.ReLU()])
    >>> [layer.name for layer in quantized_layers(model)] == [model.layers[0].name]
    True
    """
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))]


@contextlib.contextmanager
def simulate_int8(model, decay=0.99):
    """Within the block, training rounds `model`'s fully-connected inputs and outputs to int8.

    Args:
        model: any Keras model (a keras-hub `BertTextClassifier`, ...).
        decay: EMA decay of the tracked ranges (tfmot uses 0.999 for long
            runs; 0.99 follows a few hundred fine-tuning steps).

    Yields the list of affected layers. On exit the layers are restored and
    the model's compiled train function is dropped, so training outside the
    block is plain float again.

    Example:

    ```python
    with simulate_int8(classifier) as layers:
        print(f"{len(layers)} layers see int8 rounding while training")
        classifier.fit(train, steps_per_epoch=200)
    ```
    """
    if not 0.0 <= float(decay) < 1.0:
        raise ValueError(f"`decay` must be in [0, 1); received {decay}.")
    layers = quantized_layers(model)
    if not layers:
        raise ValueError(f"{model.name} has no Dense or EinsumDense layers to simulate int8 for.")
    for layer in layers:
        inputs, outputs = _RangeTracker(f"{layer.name}_in", decay), _RangeTracker(f"{layer.name}_out", decay)
        original = layer.call

        def call(x, *args, _original=original, _inputs=inputs, _outputs=outputs, training=None, **kwargs):
            if not training:
                return _original(x, *args, training=training, **kwargs)
            return _outputs(_original(_inputs(x), *args, training=training, **kwargs))

        # An instance attribute shadows the class's `call`; Keras's `__call__` dispatches to it.
        layer.call = call
    model.train_function = None
    try:
        yield layers
    finally:
        for layer in layers:
            del layer.call
        model.train_function = None
