"""Export to TFLite (`.tflite`) for phones.

The exported graph takes token ids (`token_ids`, `segment_ids`,
`padding_mask`, int32, shape `[batch, sequence_length]`) and returns logits;
tokenization happens outside, with the vocabulary written next to the file.
Conversion goes through Keras's own `model.export(format="litert")`
(ExportArchive -> SavedModel -> `tf.lite.TFLiteConverter`), which freezes
Keras 3 variables; converting a `tf.function` of the model directly keeps them
as uninitialised TFLite resource variables and the file computes NaN.

Example:

```python
tf_rpp.export.export_tflite(classifier, "model.tflite", sequence_length=64)
```
"""

import json
import os

import tensorflow as tf

from tf_rpp.files import atomic_path
from tf_rpp.files import atomic_write

INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")


def tokenizer_path(model_path):
    """Where the tokenizer of `model.tflite` lives: `model.tokenizer.json`."""
    return os.path.splitext(os.fspath(model_path))[0] + ".tokenizer.json"


def write_tokenizer(tokenizer, path, labels=None):
    """Writes a keras-hub WordPiece tokenizer's settings and vocabulary as JSON.

    `tf_rpp_lite` reads it to go from raw text to token ids without TensorFlow.

    Example:

    ```python
    write_tokenizer(classifier.preprocessor.tokenizer, "model.tokenizer.json", labels=["negative", "positive"])
    ```
    """
    config = {
        "format": "tf_rpp.tokenizer/1",
        "lowercase": bool(tokenizer.lowercase),
        "strip_accents": bool(tokenizer.strip_accents),
        "split_on_cjk": bool(tokenizer.split_on_cjk),
        "oov_token": tokenizer.oov_token,
        "labels": list(labels) if labels else None,
        "vocabulary": list(tokenizer.get_vocabulary()),
    }
    atomic_write(path, json.dumps(config, ensure_ascii=False).encode("utf-8"))


QUANTIZATIONS = (None, "dynamic", "int8", "float16")


def representative_inputs(texts, tokenizer, sequence_length, batch_size=1):
    """Packs raw texts into the exported signature's inputs, for int8 calibration.

    Returns a list of dicts (`token_ids`, `segment_ids`, `padding_mask`, int32
    `[batch_size, sequence_length]`), what `representative_data` takes.

    Example:

    ```python
    inputs = representative_inputs(["a fine film", "dull"], classifier.preprocessor.tokenizer, 128)
    ```
    """
    import keras_hub

    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if len(texts) < batch_size:
        raise ValueError(f"representative data needs at least {batch_size} non-empty texts; received {len(texts)}.")
    packer = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    batches = []
    for i in range(0, len(texts) - batch_size + 1, batch_size):
        x = packer(tf.constant(texts[i:i + batch_size]))
        batches.append({n: tf.cast(x[n], tf.int32).numpy() for n in INPUT_NAMES})
    return batches


def export_tflite(model, path, sequence_length=128, sparse=True, quantize=None, batch_size=1, tokenizer=None,
                  labels=None, representative_data=None):
    """Converts a keras-hub BERT classifier (or any model with BERT inputs) to `.tflite`.

    Args:
        model: a `keras_hub.models.BertTextClassifier` (its preprocessor is
            not exported) or a Keras model taking the three BERT inputs.
        path: where to write the `.tflite`; written atomically.
        sequence_length: the fixed input length.
        sparse: let the converter store sparse weights in a sparse encoding
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`; it only considers
            rank-2 fully-connected and rank-4 conv weights, which is what
            keras-hub's attention kernels become after conversion).
        quantize: None (float32); `"dynamic"`: int8 weights, float activations;
            `"int8"`: int8 weights and activations calibrated on
            `representative_data`, float fallback for ops without an int8
            kernel; `"float16"`: float16 weights.
        batch_size: the fixed batch size of the exported signature.
        tokenizer: the keras-hub tokenizer to write beside the model (default:
            the model's preprocessor's, if it has one).
        labels: class names to store with the tokenizer.
        representative_data: for `"int8"`, a list of raw texts (a few hundred
            real sentences) or of input dicts as `representative_inputs` makes.

    Returns:
        The size of the file in bytes.

    Example:

    ```python
    export_tflite(classifier, "model.tflite", sequence_length=128)
    export_tflite(classifier, "model_int8.tflite", quantize="int8", representative_data=dev_texts[:200])
    ```
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; received {quantize!r}.")
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = tokenizer or getattr(preprocessor, "tokenizer", None)
    optimizations = []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize is not None:
        optimizations.append(tf.lite.Optimize.DEFAULT)
    # Builtin ops only: a phone's TFLite runtime has no Flex (TF ops) delegate.
    target_spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    converter_settings = {}
    if quantize == "float16":
        target_spec["supported_types"] = [tf.float16]
    if quantize == "int8":
        if representative_data is None:
            raise ValueError("quantize='int8' needs representative_data: a few hundred real texts "
                             "(or input dicts from representative_inputs) to calibrate activations.")
        batches = list(representative_data)
        if batches and isinstance(batches[0], str):
            if tokenizer is None:
                raise ValueError("Raw-text representative_data needs a tokenizer (pass tokenizer=).")
            batches = representative_inputs(batches, tokenizer, sequence_length, batch_size)
        if not batches:
            raise ValueError("representative_data is empty.")
        target_spec["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter_settings["representative_dataset"] = lambda: iter(batches)
    signature = [{n: tf.TensorSpec([batch_size, sequence_length], tf.int32, name=n) for n in INPUT_NAMES}]
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        model.export(tmp, format="litert", input_signature=signature, verbose=False,
                     optimizations=optimizations, target_spec=target_spec, **converter_settings)
    if tokenizer is not None:
        write_tokenizer(tokenizer, tokenizer_path(path), labels)
    return os.path.getsize(path)
