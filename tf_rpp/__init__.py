"""tf_rpp: Reweighted Proximal Pruning for Keras 3 BERT models.

    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4))
    model.compile(optimizer=optimizer, ...)
    model.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 2000))])
    optimizer.get_mask().save("mask.npz")

The whole flow as Python calls: `tf_rpp.pipeline.prune(PruneConfig(...))` and
`tf_rpp.pipeline.finetune(FinetuneConfig(...))`; on the command line: `tf-rpp`.
README.md's module table says where every piece lives.
"""

from tf_rpp import console

if console.running_as_command():
    console.load_tensorflow_quietly()  # `tf-rpp`, recipes/ and bench/ only: a library import changes nothing

from tf_rpp import controller
from tf_rpp import distill
from tf_rpp import groups
from tf_rpp import hardening
from tf_rpp import optimizers
from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp import sparsity
from tf_rpp.callback import RPPCallback
from tf_rpp.mask import SparsityMask
from tf_rpp.optimizers import GroupMagnitudeOptimizer
from tf_rpp.optimizers import GroupRPPOptimizer
from tf_rpp.optimizers import MaskedOptimizer
from tf_rpp.optimizers import RPPOptimizer
from tf_rpp.saving import load_model
from tf_rpp.selection import select_weights

__version__ = "0.1.0"

# Modules that pull in keras-hub, tfds or matplotlib load on first use, so
# `import tf_rpp` stays light and `tf_rpp.export.export_tflite(...)` still works.
_LAZY_MODULES = ("cli", "data", "export", "metadata", "models", "pipeline", "quantization", "shrink", "tasks", "viz")


def __getattr__(name):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"tf_rpp.{name}")
    raise AttributeError(f"module 'tf_rpp' has no attribute {name!r}")

__all__ = [
    "GroupMagnitudeOptimizer",
    "GroupRPPOptimizer",
    "MaskedOptimizer",
    "RPPCallback",
    "RPPOptimizer",
    "SparsityMask",
    "console",
    "controller",
    "distill",
    "groups",
    "hardening",
    "load_model",
    "optimizers",
    "proximal",
    "select_weights",
    "selection",
    "sparsity",
]
