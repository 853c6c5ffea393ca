"""tf_rpp: Reweighted Proximal Pruning for Keras 3 BERT encoders, shipped as phone-ready TFLite.

    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4))
    model.compile(optimizer=optimizer, ...)
    model.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 2000))])
    optimizer.get_mask().save("mask.npz")

The whole flow as Python calls: `tf_rpp.pipeline.compress(...)`, or its parts
`tf_rpp.pipeline.prune(...)` and `tf_rpp.pipeline.finetune(...)`; on the
command line: `tf-rpp`. The subpackages follow the data: `optimizers` and
`RPPCallback` make a mask (`masks`), `structured` removes whole heads and
neurons, `data` feeds the pipeline, `export` writes the phone's `.tflite`.
"""

from tf_rpp import _console

if _console.running_as_command():  # `tf-rpp` or TF_RPP_QUIET=1 only: a library import changes nothing
    _console.select_backend()  # `--backend jax`: Keras reads KERAS_BACKEND once, when first imported
    _console.load_tensorflow_quietly()

from tf_rpp import controller
from tf_rpp import distill
from tf_rpp import hardening
from tf_rpp import masks
from tf_rpp import optimizers
from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp.callback import RPPCallback
from tf_rpp.masks import SparsityMask
from tf_rpp.optimizers import GroupMagnitudeOptimizer
from tf_rpp.optimizers import GroupRPPOptimizer
from tf_rpp.optimizers import MaskedOptimizer
from tf_rpp.optimizers import RPPOptimizer
from tf_rpp.saving import load_model
from tf_rpp.selection import select_weights

__version__ = "0.1.0"

# Subpackages that pull in keras-hub, tfds or matplotlib load on first use, so
# `import tf_rpp` stays light and `tf_rpp.export.export_tflite(...)` still works.
_LAZY_MODULES = ("cli", "data", "export", "models", "pipeline", "significance", "structured", "viz")


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
    "controller",
    "distill",
    "hardening",
    "load_model",
    "masks",
    "optimizers",
    "proximal",
    "select_weights",
    "selection",
]
