"""Export to TFLite (`.tflite`) for phones.

The exported graph takes token ids (`token_ids`, `segment_ids`,
`padding_mask`, int32, shape `[batch, sequence_length]`) and returns class
probabilities (a softmax in the graph; `scores="logits"` leaves it out).
By default the file carries TFLite metadata (`tf_rpp.export.metadata`): the input
roles, the WordPiece vocabulary and the label names, so MediaPipe Tasks'
`TextClassifier` and `tf_rpp_lite` run the one file as is. With
`metadata=False` the tokenizer goes to a JSON file beside it instead.
Conversion goes through Keras's own `model.export(format="litert")`
(ExportArchive -> SavedModel -> `tf.lite.TFLiteConverter`), which freezes
Keras 3 variables; converting a `tf.function` of the model directly keeps them
as uninitialised TFLite resource variables and the file computes NaN.

Example:

```python
tf_rpp.export.export_tflite(classifier, "model.tflite", sequence_length=64, labels=["negative", "positive"])
```
"""

import json
import os
import tempfile

import keras
import tensorflow as tf

from tf_rpp.export import metadata as metadata_lib
from tf_rpp._files import atomic_path
from tf_rpp._files import atomic_write
from tf_rpp_lite.formats import INPUT_NAMES
from tf_rpp_lite.formats import TOKENIZER_FORMAT



def tokenizer_path(model_path):
    """Where the tokenizer of `model.tflite` lives: `model.tokenizer.json`."""
    return os.path.splitext(os.fspath(model_path))[0] + ".tokenizer.json"


def write_tokenizer(tokenizer, path, labels=None, scores="probabilities"):
    """Writes a keras-hub WordPiece tokenizer's settings and vocabulary as JSON.

    `tf_rpp_lite` reads it to go from raw text to token ids without TensorFlow.

    Example:

    ```python
    write_tokenizer(classifier.preprocessor.tokenizer, "model.tokenizer.json", labels=["negative", "positive"])
    ```
    """
    config = {
        "format": TOKENIZER_FORMAT,
        **tokenizer_settings(tokenizer),
        "labels": list(labels) if labels else None,
        "scores": scores,
        "vocabulary": list(tokenizer.get_vocabulary()),
    }
    atomic_write(path, json.dumps(config, ensure_ascii=False).encode("utf-8"))


QUANTIZATIONS = (None, "dynamic", "float16", "int8", "a16w8", "int8-converter")
CALIBRATED = ("int8", "a16w8", "int8-converter")


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


def tokenizer_settings(tokenizer):
    """What a WordPiece tokenizer does beyond its vocabulary, as `tf_rpp_lite` reads it.

    Example:

    ```python
    tokenizer_settings(classifier.preprocessor.tokenizer)   # {'lowercase': True, 'strip_accents': False, ...}
    ```
    """
    return {"lowercase": bool(tokenizer.lowercase), "strip_accents": bool(tokenizer.strip_accents),
            "split_on_cjk": bool(tokenizer.split_on_cjk), "oov_token": tokenizer.oov_token}


def input_names(model):
    """The token inputs a text model takes, in the order of `INPUT_NAMES`; `None` for other models.

    BERT, ALBERT and ELECTRA take `token_ids`, `segment_ids` and `padding_mask`;
    RoBERTa, XLM-RoBERTa, DistilBERT and DeBERTaV3 take no `segment_ids`.

    Example:

    >>> import keras
    >>> inputs = {n: keras.Input((8,), dtype="int32", name=n) for n in ("padding_mask", "token_ids")}
    >>> model = keras.Model(inputs, keras.ops.cast(inputs["token_ids"], "float32"))
    >>> input_names(model)
    ('token_ids', 'padding_mask')
    """
    spec = getattr(model, "input", None)
    names = list(spec) if isinstance(spec, dict) else [t.name for t in getattr(model, "inputs", None) or []]
    if "token_ids" not in names:
        return None
    known = tuple(n for n in INPUT_NAMES if n in names)
    return known + tuple(sorted(n for n in names if n not in known))


def input_signature(model, sequence_length, batch_size=1):
    """The fixed-shape signature the `.tflite` gets: int32 token inputs, or the model's own inputs.

    Example:

    >>> import keras
    >>> mlp = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> [tuple(s.shape) for s in input_signature(mlp, 64)]
    [(1, 4)]
    """
    names = input_names(model)
    if names is not None:
        return [{n: tf.TensorSpec([batch_size, sequence_length], tf.int32, name=n) for n in names}]
    specs = [tf.TensorSpec([batch_size, *t.shape[1:]], t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
    if any(d is None for s in specs for d in s.shape):
        raise ValueError(f"{model.name}: export needs fixed input shapes apart from the batch; received "
                         f"{[tuple(t.shape) for t in model.inputs]}.")
    return specs


def with_probabilities(model, sequence_length, batch_size=None):
    """The model with a softmax on its logits, over the model's inputs (what the export converts).

    Example:

    ```python
    probabilities = with_probabilities(classifier, 64)(inputs)   # rows sum to 1
    ```
    """
    names = input_names(model)
    if names is not None:
        inputs = {n: keras.Input((sequence_length,), dtype="int32", name=n) for n in names}
    else:
        inputs = [keras.Input(t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0]) for t in model.inputs]
        inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, keras.layers.Softmax(dtype="float32", name="probabilities")(model(inputs)),
                       name=f"{model.name}_probabilities")


def export_tflite(model, path, sequence_length=128, sparse=False, quantize=None, batch_size=1, tokenizer=None,
                  labels=None, representative_data=None, metadata=True, scores="probabilities"):
    """Converts a keras-hub text classifier (or any Keras model) to `.tflite`.

    Args:
        model: a keras-hub text classifier (its preprocessor is not exported;
            BERT-style inputs `token_ids`, `segment_ids`, `padding_mask`, or
            the two of RoBERTa-style models), a bare backbone-based Keras
            model taking them, or any other Keras model with fixed input
            shapes apart from the batch (exported with its own inputs;
            `metadata=False`).
        path: where to write the `.tflite`; written atomically. On the JAX
            and PyTorch backends the model travels through a `.keras` file to
            a TensorFlow process that converts it (TensorFlow is installed with
            tf_rpp), so the file is the same whatever backend trained it.
        sequence_length: the fixed input length.
        sparse: float32 only: store pruned kernels in TFLite's sparse
            encoding (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`). A smaller
            file; the weights are densified when the interpreter is prepared
            (same speed), except at very high sparsity, where TFLite picks its
            sparse kernel (slower on CPU: docs/phone.md). Off by default.
            Refused with `quantize`: sparse int8 weights do not load in
            LiteRT's default interpreter (XNNPACK) nor in MediaPipe.
        quantize: None (float32); `"dynamic"`: int8 weights, float
            activations; `"float16"`: float16 weights. Full integer, calibrated
            on `representative_data` (`tf_rpp.export.quantization`, ai-edge-quantizer):
            `"a16w8"`: int16 activations, int8 weights; `"int8"`: int8
            activations and weights, with the recipe's selective float ops. Both
            keep float32 outputs and int32 inputs, and the dense weight
            encoding. `"int8-converter"`: the TFLite converter's own
            full-integer mode (float fallback for ops without an int8 kernel).
        batch_size: the fixed batch size of the exported signature.
        tokenizer: the keras-hub tokenizer whose vocabulary the file carries
            (default: the model's preprocessor's, if it has one).
        labels: class names, in output order (needed with `metadata=True`).
        representative_data: for the full-integer schemes, a list of raw texts
            (a few hundred real sentences) or of input dicts as
            `representative_inputs` makes.
        metadata: write TFLite metadata with the vocabulary and labels into the
            file, as MediaPipe Tasks needs (default); `False` writes the
            tokenizer to `<model>.tokenizer.json` beside it instead (e.g. for
            a regression model, which has no labels).
        scores: `"probabilities"` (softmax in the graph, default) or `"logits"`.

    Returns:
        The size of the file in bytes.

    Raises:
        ValueError: bad settings, or metadata without a tokenizer or labels;
            raised before any file is written.

    Example:

    ```python
    export_tflite(classifier, "model.tflite", sequence_length=128, labels=["negative", "positive"])
    export_tflite(classifier, "model_a16w8.tflite", quantize="a16w8", representative_data=train_texts[:200],
                  labels=["negative", "positive"])
    ```
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"`quantize` must be one of {QUANTIZATIONS}; received {quantize!r}.")
    if sparse and quantize is not None:
        raise ValueError(f"sparse=True applies to float32 only: with quantize={quantize!r} the sparse encoding does "
                         "not load in LiteRT's default interpreter (XNNPACK) nor in MediaPipe. Drop sparse, or "
                         "export float32 with sparse=True.")
    if scores not in metadata_lib.SCORES:
        raise ValueError(f"`scores` must be one of {metadata_lib.SCORES}; received {scores!r}.")
    if keras.backend.backend() != "tensorflow":
        return _export_in_tensorflow(model, path, sequence_length, sparse, quantize, batch_size, tokenizer, labels,
                                     representative_data, metadata, scores)
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = tokenizer or getattr(preprocessor, "tokenizer", None)
    if metadata and input_names(model) != INPUT_NAMES:
        raise ValueError(
            f"metadata=True writes MediaPipe's BERT text-classifier metadata, which needs the inputs {INPUT_NAMES}; "
            f"this model takes {input_names(model) or [t.name for t in model.inputs]}. Pass metadata=False.")
    if metadata:
        metadata_lib.check_classifier_inputs(tokenizer.get_vocabulary() if tokenizer is not None else None,
                                             labels, scores)
    batches = None
    if quantize in CALIBRATED:
        batches = _calibration_inputs(quantize, representative_data, tokenizer, sequence_length, batch_size)
    path = os.fspath(path)
    if quantize in ("int8", "a16w8"):
        from tf_rpp.export import quantization

        with tempfile.TemporaryDirectory() as folder:
            float_path = os.path.join(folder, "float.tflite")
            export_tflite(model, float_path, sequence_length, sparse=False, batch_size=batch_size,
                          metadata=False, scores=scores)
            rules = quantization.recipe(quantize, quantization.output_names(float_path))
            with atomic_path(path) as tmp:
                quantization.quantize_tflite(float_path, tmp, rules, batches)
                _finish(tmp, tokenizer, labels, metadata, scores)
        _finish_sidecar(path, tokenizer, labels, metadata, scores)
        return os.path.getsize(path)
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
    if quantize == "int8-converter":
        target_spec["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        converter_settings["representative_dataset"] = lambda: iter(batches)
    signature = input_signature(model, sequence_length, batch_size)
    exported = with_probabilities(model, sequence_length) if scores == "probabilities" else model
    with atomic_path(path) as tmp:
        exported.export(tmp, format="litert", input_signature=signature, verbose=False,
                        optimizations=optimizations, target_spec=target_spec, **converter_settings)
        _finish(tmp, tokenizer, labels, metadata, scores)
    _finish_sidecar(path, tokenizer, labels, metadata, scores)
    return os.path.getsize(path)


def _export_in_tensorflow(model, path, sequence_length, sparse, quantize, batch_size, tokenizer, labels,
                          representative_data, metadata, scores):
    """On JAX or PyTorch: the model goes through a `.keras` file to a TensorFlow process, which converts it."""
    import subprocess
    import sys

    if tokenizer is not None and tokenizer is not getattr(getattr(model, "preprocessor", None), "tokenizer", None):
        raise ValueError(f"On the {keras.backend.backend()} backend the exported vocabulary is the model's "
                         "preprocessor's; pass a model whose preprocessor holds the tokenizer instead of tokenizer=.")
    if representative_data is not None and not all(isinstance(t, str) for t in representative_data):
        raise ValueError(f"On the {keras.backend.backend()} backend representative_data must be raw texts.")
    with tempfile.TemporaryDirectory() as folder:
        model_path = os.path.join(folder, "model.keras")
        model.save(model_path)
        settings = {"path": os.fspath(path), "sequence_length": sequence_length, "sparse": sparse,
                    "quantize": quantize, "batch_size": batch_size, "labels": list(labels) if labels else None,
                    "representative_data": list(representative_data) if representative_data else None,
                    "metadata": metadata, "scores": scores}
        settings_path = os.path.join(folder, "settings.json")
        with open(settings_path, "w", encoding="utf-8") as f:
            json.dump(settings, f)
        code = ("import json, sys, tf_rpp; from tf_rpp import export; s = json.load(open(sys.argv[2])); "
                "p = s.pop('path'); export.export_tflite(tf_rpp.load_model(sys.argv[1], compile=False), p, **s)")
        done = subprocess.run([sys.executable, "-c", code, model_path, settings_path], capture_output=True,
                              text=True, env={**os.environ, "KERAS_BACKEND": "tensorflow"})
        if done.returncode != 0:
            raise RuntimeError(f"Exporting through TensorFlow failed: {done.stderr.strip()[-1500:]}")
    return os.path.getsize(path)


def _calibration_inputs(quantize, representative_data, tokenizer, sequence_length, batch_size):
    if representative_data is None:
        raise ValueError(f"quantize={quantize!r} needs representative_data: a few hundred real texts "
                         "(or input dicts from representative_inputs) to calibrate activations.")
    batches = list(representative_data)
    if batches and isinstance(batches[0], str):
        if tokenizer is None:
            raise ValueError("Raw-text representative_data needs a tokenizer (pass tokenizer=).")
        batches = representative_inputs(batches, tokenizer, sequence_length, batch_size)
    if not batches:
        raise ValueError("representative_data is empty.")
    return batches


def _finish(tmp, tokenizer, labels, metadata, scores):
    if metadata:
        metadata_lib.write_classifier_metadata(tmp, tokenizer.get_vocabulary(), list(labels),
                                               tokenizer_settings(tokenizer), scores=scores)


def _finish_sidecar(path, tokenizer, labels, metadata, scores):
    if tokenizer is not None and not metadata:
        write_tokenizer(tokenizer, tokenizer_path(path), labels, scores)
