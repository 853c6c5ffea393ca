"""What the int8 benches share: a calibrated full-integer converter, and logits of converted bytes.

    with int8_converter(model, calibration_texts) as converter:
        content = converter.convert()
    logits = file_logits(content, model.preprocessor.tokenizer, dev_texts)
"""

import contextlib
import os
import shutil
import tempfile

import tensorflow as tf

import tf_rpp_lite
from tf_rpp import export

SEQUENCE_LENGTH = 128


@contextlib.contextmanager
def int8_converter(model, calibration_texts, sequence_length=SEQUENCE_LENGTH):
    """A `TFLiteConverter` (SavedModel, batch 1) set for int8 activations calibrated on real texts.

    The settings of `export_tflite(quantize="int8")`, but the converter itself is handed out so a
    bench can give it to `QuantizationDebugger` or calibrate only. It converts only inside the
    `with` block: the converter reads its SavedModel at each `convert()`.
    """
    calibration = export.representative_inputs(calibration_texts, model.preprocessor.tokenizer, sequence_length)
    signature = [{n: tf.TensorSpec([1, sequence_length], tf.int32, name=n) for n in export.INPUT_NAMES}]
    saved = tempfile.mkdtemp()
    try:
        model.export(saved, format="tf_saved_model", input_signature=signature, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: iter(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        yield converter
    finally:
        shutil.rmtree(saved, ignore_errors=True)


def file_logits(content, tokenizer, texts, num_threads=2):
    """Logits of a `.tflite` given as bytes on raw texts, through `tf_rpp_lite` (as a device runs it)."""
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, "model.tflite")
        with open(path, "wb") as f:
            f.write(content)
        export.write_tokenizer(tokenizer, export.tokenizer_path(path))
        return tf_rpp_lite.TFLiteClassifier(path, num_threads=num_threads).logits(texts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
