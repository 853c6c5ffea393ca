"""What every pipeline run shares: its report on disk, reusing a finished run, the optimizers, the outputs.

A run writes its settings (`args`) beside its result in one JSON report
(`report.json` for pruning, `results.json` for fine-tuning). With `resume`, a
run that finished in the same folder with the same settings is reused as it
is; one with other settings is refused before any work starts.

Example:

```python
write_report(config.out, "results.json", config, result)
again = reuse_finished(config, "results.json", FinetuneResult, not_learned=("out", "resume", "verbose"))
```
"""

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow_model_optimization as tfmot

from tf_rpp import export
from tf_rpp._console import BACKENDS
from tf_rpp._files import atomic_write
from tf_rpp.callback import RPPCallback
from tf_rpp.masks import SparsityMask
from tf_rpp.optimizers import GroupMagnitudeOptimizer
from tf_rpp.optimizers import GroupRPPOptimizer
from tf_rpp.optimizers import MaskedOptimizer
from tf_rpp.optimizers import RPPOptimizer
from tf_rpp.pipeline import options
from tf_rpp.structured import groups
from tf_rpp.structured import shrink

# Settings that do not change what a run learns (`out` too: a moved or copied run is the same run).
NOT_LEARNED = ("out", "resume", "verbose", "strategy")


def check_backend(config):
    """Raises ValueError when `config` asks for what Keras's current backend cannot run, before any work.

    The pipeline runs on TensorFlow, JAX and PyTorch (`KERAS_BACKEND`, or
    `tf-rpp --backend`); TensorFlow reads the data (`tf.data`) and writes the
    `.tflite` files on every backend. `tf.distribute` strategies
    (`strategy="mirrored"` or `"tpu"`) are TensorFlow's own.

    Example:

    >>> from tf_rpp.pipeline import PruneConfig
    >>> check_backend(PruneConfig())   # the default settings run on every backend
    """
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(f"tf_rpp.pipeline runs on Keras's {', '.join(BACKENDS)} backends; this process runs on "
                         f"{backend!r} (KERAS_BACKEND).")
    strategy = getattr(config, "strategy", "default")
    if backend != "tensorflow" and strategy != "default":
        instead = ("call keras.distribution.set_distribution(keras.distribution.DataParallel()) before "
                   "tf_rpp.pipeline.prune to use every local device" if backend == "jax" else
                   "run on one device, or on KERAS_BACKEND=jax with keras.distribution.DataParallel")
        raise ValueError(f"strategy {strategy!r} is a tf.distribute strategy, which runs on Keras's TensorFlow "
                         f"backend; this process runs on {backend!r}. Run with KERAS_BACKEND=tensorflow, or "
                         f"{instead}.")


def jit_compile(config):
    """Whether to compile the train step: `config.jit_compile` on TensorFlow (XLA) and JAX (jax.jit), never on PyTorch.

    On PyTorch Keras's `jit_compile` means `torch.compile`, which does not
    trace the pruning optimizers' host-side steps; PyTorch runs eagerly.

    Example:

    >>> model.compile(optimizer=optimizer, loss=loss, jit_compile=jit_compile(config))  # doctest: +SKIP
    """
    return bool(config.jit_compile) and keras.backend.backend() != "torch"


def write_report(out, name, config, result):
    """Writes `out/name`: `result`, under "args" the settings (what `reuse_finished` compares), and the backend.

    Example:

    ```python
    write_report(config.out, "results.json", config, result)
    ```
    """
    written = {"args": dataclasses.asdict(config), **result.to_dict(), "backend": keras.backend.backend()}
    atomic_write(os.path.join(out, name), json.dumps(written, indent=2).encode())


def reuse_finished(config, name, result_class, required=(), paths=(), complete_field=None):
    """The result of a run that finished in `config.out` with these settings, or None.

    Args:
        config: the run's settings; a finished run with other settings raises ValueError.
        name: the report's file name in `config.out`.
        result_class: the result dataclass the report holds.
        required: files in `config.out` a finished run has (else None: train again).
        paths: result fields holding paths; re-based on `config.out`, so a moved
            or copied run is reused where it is now (a missing file: None).
        complete_field: a field only a finished report has (a partial report
            written along the way lacks it).

    Example:

    ```python
    result = reuse_finished(config, "report.json", PruneResult, required=("mask.npz",), complete_field="mask_path")
    ```
    """
    path = os.path.join(config.out, name)
    if not os.path.exists(path) or not all(os.path.exists(os.path.join(config.out, f)) for f in required):
        return None
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    if "args" not in report or (complete_field and complete_field not in report):
        return None
    options.check_same_settings(config.out, report["args"], config, ignore=NOT_LEARNED)
    known = {f.name for f in dataclasses.fields(result_class)}
    result = result_class(**{k: v for k, v in report.items() if k in known})
    for field in paths:
        recorded = getattr(result, field)
        if recorded:
            here = os.path.join(config.out, os.path.basename(recorded))
            if not os.path.exists(here):
                print(f"{config.out}: {here} is missing: training again")
                return None
            setattr(result, field, here)
    print(f"{config.out}: finished before with these settings, reusing it ({name})")
    return result


def pruning_optimizer(method, inner, **kwargs):
    """`RPPOptimizer` (method "rpp") or `MaskedOptimizer`, the magnitude baseline ("magnitude"), around `inner`.

    Example:

    ```python
    optimizer = pruning_optimizer("rpp", keras.optimizers.AdamW(1e-4), reweight_every=10)
    ```
    """
    if method == "rpp":
        return RPPOptimizer(inner, **kwargs)
    kwargs.pop("l1_strength", None)
    kwargs.pop("reweight_every", None)
    return MaskedOptimizer(inner, **kwargs)


def build_optimizer(config, classifier):
    """The optimizer, callbacks and fixed mask (None when dense or structured) of a fine-tuning run.

    Example:

    ```python
    optimizer, callbacks, mask = build_optimizer(FinetuneConfig(mask="runs/prune/mask.npz"), classifier)
    ```
    """
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, config.steps - int(config.warmup_fraction * config.steps)),
        warmup_target=config.learning_rate, warmup_steps=int(config.warmup_fraction * config.steps))
    inner = keras.optimizers.AdamW(schedule, weight_decay=0.01)
    if config.structured is not None or config.sparsity is not None:
        if config.structured is not None:
            optimizer = (GroupRPPOptimizer(inner, group_strength=config.group_strength, **group_kinds(config))
                         if config.method == "rpp" else GroupMagnitudeOptimizer(inner, **group_kinds(config)))
            target = config.structured
        else:
            optimizer = pruning_optimizer(config.method, inner)
            target = config.sparsity
        callback = RPPCallback(
            tfmot.sparsity.keras.PolynomialDecay(0.0, target, 0, config.prune_steps, frequency=10),
            log_dir=os.path.join(config.out, "logs"), rewind=config.rewind)
        return optimizer, [callback], None
    if config.mask:
        mask = SparsityMask.load(config.mask)
        mask.check_compatible(classifier)
        return MaskedOptimizer(inner, mask), [], mask
    return inner, [], None


def group_kinds(config):
    """`GroupRPPOptimizer`'s `kinds` and `relative_targets` for `config.structured_heads` and `_blocks`.

    Example:

    >>> from tf_rpp.pipeline import FinetuneConfig
    >>> group_kinds(FinetuneConfig(structured=0.6, structured_heads=0.3))
    {'kinds': ('heads', 'neurons'), 'relative_targets': {'heads': 0.5}}
    >>> group_kinds(FinetuneConfig(structured=0.5, structured_blocks=0.25))["relative_targets"]
    {'attention': 0.5, 'feedforward': 0.5}
    """
    kinds, relative = ["heads", "neurons"], {}
    if config.structured_heads == 0:
        kinds.remove("heads")
    elif config.structured_heads is not None:
        relative["heads"] = config.structured_heads / config.structured
    if config.structured_blocks is not None:
        kinds += list(groups.BLOCK_KINDS)
        relative.update(dict.fromkeys(groups.BLOCK_KINDS, config.structured_blocks / config.structured))
    return {"kinds": tuple(kinds), "relative_targets": relative or None}


def learned_mask(config, optimizer, given=None):
    """The mask `--sparsity` or `--structured` learned while fine-tuning, saved as `mask.npz`; else `given`.

    Example:

    ```python
    mask = learned_mask(config, optimizer, given=mask)   # the --mask passed in when nothing was learned
    ```
    """
    if config.structured is None and config.sparsity is None:
        return given
    if not optimizer.frozen:
        raise RuntimeError("The mask was not hardened: --pruning-steps exceeds the steps run.")
    mask = optimizer.get_mask()
    mask.save(os.path.join(config.out, "mask.npz"))
    return mask


def check_mask_held(result, mask, model):
    """Records in `result` that every weight `mask` prunes is still exactly zero in `model`; raises if not.

    Example:

    ```python
    check_mask_held(result, SparsityMask.load("runs/prune/mask.npz"), classifier)   # result.mask_held is True
    ```
    """
    after = SparsityMask.from_model(model, prune=mask.keys)
    still_zero = all(bool(np.all(~after[k] | mask[k])) for k in mask.keys)
    result.mask_sparsity, result.pruned_weights = mask.sparsity, mask.num_pruned
    result.zero_weights_after, result.mask_held = after.num_pruned, still_zero
    print(f"mask held: {still_zero} ({mask.num_pruned:,} pruned weights, {after.num_pruned:,} zeros after)")
    if not still_zero:
        raise RuntimeError("A pruned weight became nonzero during fine-tuning.")


def write_models(config, model, result, **export_settings):
    """Writes `model.keras`, with `config.shrink` `model_shrunk.keras`, with `config.export_tflite` `model.tflite`.

    `export_settings` go to `tf_rpp.export.export_tflite` (labels, metadata,
    scores, tokenizer); the paths and sizes go into `result`.

    Example:

    ```python
    write_models(config, classifier, result, labels=["negative", "positive"])
    ```
    """
    if config.save_model:
        result.model_path = os.path.join(config.out, "model.keras")
        model.save(result.model_path)
    exported = model
    if config.shrink:
        exported = shrink.shrink_classifier(model)
        exported.save(os.path.join(config.out, "model_shrunk.keras"))
        result.shrunk = shrink.parameter_counts(exported.backbone)
        result.dense_parameters = int(model.backbone.count_params())
        print(f"shrunk: heads per layer {result.shrunk['heads']}, feed-forward units per layer "
              f"{result.shrunk['intermediate']}; backbone parameters {result.dense_parameters:,} -> "
              f"{result.shrunk['total_parameters']:,}")
    if config.export_tflite:
        result.tflite_path = os.path.join(config.out, "model.tflite")
        result.tflite_bytes = export.export_tflite(exported, result.tflite_path, sequence_length=config.sequence_length,
                                                   **export_settings)
