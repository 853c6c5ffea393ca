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


def export_tflite(model, path, sequence_length=128, sparse=True, quantize=None, batch_size=1, tokenizer=None,
                  labels=None):
    """Converts a keras-hub BERT classifier (or any model with BERT inputs) to `.tflite`.

    Args:
        model: a `keras_hub.models.BertTextClassifier` (its preprocessor is
            not exported) or a Keras model taking the three BERT inputs.
        path: where to write the `.tflite`; written atomically.
        sequence_length: the fixed input length.
        sparse: let the converter store sparse weights in a sparse encoding
            (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`).
        quantize: None, or `"dynamic"` for dynamic-range int8 weights.
        batch_size: the fixed batch size of the exported signature.
        tokenizer: the keras-hub tokenizer to write beside the model (default:
            the model's preprocessor's, if it has one).
        labels: class names to store with the tokenizer.

    Returns:
        The size of the file in bytes.
    """
    if quantize not in (None, "dynamic"):
        raise ValueError(f"`quantize` must be None or 'dynamic'; received {quantize!r}.")
    optimizations = []
    if sparse:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    if quantize == "dynamic":
        optimizations.append(tf.lite.Optimize.DEFAULT)
    signature = [{n: tf.TensorSpec([batch_size, sequence_length], tf.int32, name=n) for n in INPUT_NAMES}]
    path = os.fspath(path)
    with atomic_path(path) as tmp:
        model.export(
            tmp, format="litert", input_signature=signature, verbose=False, optimizations=optimizations,
            # Builtin ops only: a phone's TFLite runtime has no Flex (TF ops) delegate.
            target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
        )
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = tokenizer or getattr(preprocessor, "tokenizer", None)
    if tokenizer is not None:
        write_tokenizer(tokenizer, tokenizer_path(path), labels)
    return os.path.getsize(path)
