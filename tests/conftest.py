"""Shared fixtures: tiny keras-hub BERT models and synthetic masked-LM data.

The CPU is split into two logical devices before TensorFlow starts, so
`tf.distribute.MirroredStrategy` can be tested on this 2-core machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

from tiny import SEQ  # noqa: E402,F401
from tiny import VOCAB  # noqa: E402,F401
from tiny import classification_dataset  # noqa: E402,F401
from tiny import compile_classifier  # noqa: E402,F401
from tiny import compile_mlm  # noqa: E402,F401
from tiny import mlm_arrays  # noqa: E402,F401
from tiny import mlm_dataset  # noqa: E402,F401
from tiny import tiny_backbone  # noqa: E402,F401
from tiny import tiny_classifier  # noqa: E402,F401
from tiny import tiny_masked_lm  # noqa: E402,F401


@pytest.fixture(scope="session")
def mirrored():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    A second MirroredStrategy in the same process reuses collective instance
    keys and its all-reduces abort with shape mismatches (plain Keras too).
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture(scope="session")
def small_preset(tmp_path_factory):
    """A local preset folder: a 2-layer BERT with MiniLM's tokenizer (see `tiny.save_small_preset`)."""
    from tiny import save_small_preset

    return save_small_preset(tmp_path_factory.mktemp("small_preset"))


@pytest.fixture
def tmp_mask_path(tmp_path):
    return str(tmp_path / "mask.npz")
