"""tf_rpp: Reweighted Proximal Pruning for Keras 3 BERT models.

    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4))
    model.compile(optimizer=optimizer, ...)
    model.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 2000))])
    optimizer.get_mask().save("mask.npz")

Modules: `proximal` (the math, pure functions), `selection` (which weights),
`optimizer` (`RPPOptimizer`, `GroupRPPOptimizer`,
`MaskedOptimizer`), `groups` (heads and neurons for structured pruning), `shrink`
(a group-pruned model made physically smaller), `callback` (`RPPCallback`),
`mask` (`SparsityMask`), `saving` (`load_model`), `distill` (matching the dense
model while pruning and while fine-tuning), `export` (TFLite), `viz` (figures),
`data`, `tasks`, `models` (packaged data, GLUE metrics, the embedded MiniLM).
"""

from tf_rpp import distill
from tf_rpp import groups
from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp.callback import RPPCallback
from tf_rpp.mask import SparsityMask
from tf_rpp.optimizer import GroupRPPOptimizer
from tf_rpp.optimizer import MaskedOptimizer
from tf_rpp.optimizer import RPPOptimizer
from tf_rpp.saving import load_model
from tf_rpp.selection import select_weights

__version__ = "0.1.0"

# Modules that pull in keras-hub, tfds or matplotlib load on first use, so
# `import tf_rpp` stays light and `tf_rpp.export.export_tflite(...)` still works.
_LAZY_MODULES = ("data", "export", "models", "shrink", "tasks", "viz")


def __getattr__(name):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"tf_rpp.{name}")
    raise AttributeError(f"module 'tf_rpp' has no attribute {name!r}")

__all__ = [
    "GroupRPPOptimizer",
    "MaskedOptimizer",
    "RPPCallback",
    "RPPOptimizer",
    "SparsityMask",
    "distill",
    "groups",
    "load_model",
    "proximal",
    "select_weights",
    "selection",
]
