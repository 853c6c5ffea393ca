"""Shared fixtures: tiny keras-hub BERT models and synthetic masked-LM data.

The CPU is split into two logical devices before TensorFlow starts, so
`tf.distribute.MirroredStrategy` can be tested on this 2-core machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

VOCAB = 64
SEQ = 16


def tiny_backbone(hidden=16, layers=2):
    """A 2-layer keras-hub BERT small enough for a unit test step in ~10 ms."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=layers, num_heads=2, hidden_dim=hidden,
        intermediate_dim=2 * hidden, max_sequence_length=SEQ, dropout=0.0,
    )


def mlm_arrays(n=128, seed=0):
    """Masked-LM batches with learnable structure: odd tokens follow even ones."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    tokens[:, 1::2] = (tokens[:, 0::2] + 1) % VOCAB
    positions = np.tile(np.arange(1, SEQ, 4, dtype="int32"), (n, 1))
    labels = np.take_along_axis(tokens, positions, 1)
    masked = tokens.copy()
    np.put_along_axis(masked, positions, 4, 1)
    x = {
        "token_ids": masked,
        "segment_ids": np.zeros_like(tokens),
        "padding_mask": np.ones_like(tokens),
        "mask_positions": positions,
    }
    return x, labels, np.ones_like(labels, dtype="float32")


def mlm_dataset(n=128, batch=16, seed=0):
    return tf.data.Dataset.from_tensor_slices(mlm_arrays(n, seed)).batch(batch)


def classification_dataset(n=128, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    labels = (tokens[:, 1] > VOCAB // 2).astype("int32")
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens)}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch)


def tiny_masked_lm(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertMaskedLM(backbone=tiny_backbone(**kwargs), preprocessor=None)


def tiny_classifier(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertTextClassifier(backbone=tiny_backbone(**kwargs), num_classes=2, preprocessor=None)


def compile_mlm(model, optimizer, jit_compile=False):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def compile_classifier(model, optimizer, jit_compile=False):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    A second MirroredStrategy in the same process reuses collective instance
    keys and its all-reduces abort with shape mismatches (plain Keras too).
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def tmp_mask_path(tmp_path):
    return str(tmp_path / "mask.npz")
