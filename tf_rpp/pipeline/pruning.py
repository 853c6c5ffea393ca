"""Upstream pruning: learn a universal sparsity mask on the model's pre-training objective.

The objective is the paper's masked LM (`objective="mlm"`), or, for models
pretrained by distillation and without an MLM head like MiniLM, task-agnostic
distillation (`objective="distill"`): the pruned encoder matches the dense
preset's layer outputs on generic text, and no MLM head is involved. The
default, `objective="auto"`, picks MLM for a preset folder that holds a trained
keras-hub `MaskedLM` and distillation otherwise (`tf_rpp.models.has_mlm_head`).

Steps: (1) with MLM, warm up the MLM head with the backbone frozen (MiniLM
ships none), (2) prune the encoder kernels with RPP (or the magnitude
baseline) driven by a tfmot PolynomialDecay to `target_sparsity`, or with a
fixed `l1_strength`, optionally (`distill`) while matching the dense model's
layer outputs, (3) write the mask, the pruned backbone as a keras-hub preset,
a per-layer sparsity report, held-out MLM accuracy (or layer error) before
and after, and TensorBoard logs.

Interrupted? Run again with `resume=True` (`--resume`): the warm-up is kept and
pruning continues from the last completed epoch (BackupAndRestore); a run that
had finished is reused as it is (its `report.json`), and one that finished with
other settings is refused before any work starts.

Example:

```python
from tf_rpp import pipeline
result = pipeline.prune(pipeline.PruneConfig(out="runs/prune", target_sparsity=0.6))
print(result.sparsity, result.mask_path)
```
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tf_rpp import data
from tf_rpp import distill
from tf_rpp import models
from tf_rpp.callback import RPPCallback
from tf_rpp._files import atomic_write
from tf_rpp.pipeline import _runs
from tf_rpp.pipeline.configs import PruneConfig
from tf_rpp.pipeline.configs import PruneResult

REPORT = "report.json"


def mlm_accuracy(masked_lm, batches):
    """Accuracy at the masked positions of preprocessed `(x, y, weights)` batches.

    Example:

    ```python
    accuracy = mlm_accuracy(masked_lm, eval_batches)   # a float in [0, 1]
    ```
    """
    correct = total = 0.0
    for x, y, weights in batches:
        predictions = tf.argmax(masked_lm(x, training=False), axis=-1, output_type=tf.int32)
        weights = tf.cast(weights, tf.float32)
        correct += float(tf.reduce_sum(tf.cast(predictions == tf.cast(y, tf.int32), tf.float32) * weights))
        total += float(tf.reduce_sum(weights))
    return correct / max(total, 1.0)


def make_strategy(name):
    """The `tf.distribute` strategy a run uses: `"default"`, `"mirrored"` or `"tpu"`.

    Example:

    ```python
    with make_strategy("mirrored").scope():
        result = prune(config)
    ```
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def prune(config=None, **overrides):
    """Learns a universal mask on the model's pre-training objective (see the module docstring).

    Args:
        config: a `PruneConfig` (default: all defaults).
        **overrides: fields to change, e.g. `prune(out="runs/p", steps=100)`.

    Returns:
        A `PruneResult`; `out/report.json` holds it with the config.

    Raises:
        ValueError, FileNotFoundError: bad settings, before any work starts.
    """
    config = dataclasses.replace(config or PruneConfig(), **overrides)
    config.check()
    _runs.check_backend(config)
    if config.objective == "auto":
        config = dataclasses.replace(config, objective="mlm" if models.has_mlm_head(config.preset) else "distill")
        print(f"objective: {config.objective} (auto: the preset "
              f"{'ships' if config.objective == 'mlm' else 'ships no'} trained masked-LM head)")
    if config.resume:
        # The warm-up writes a partial report, and a mask may be left from an earlier run:
        # finished means the mask is there and the report is the full one.
        finished = _runs.reuse_finished(config, REPORT, PruneResult, required=("mask.npz",),
                                        complete_field="mask_path")
        if finished is not None:
            return dataclasses.replace(finished, out=config.out, mask_path=os.path.join(config.out, "mask.npz"),
                                       preset_dir=os.path.join(config.out, "preset"))
    strategy = make_strategy(config.strategy)
    if strategy.num_replicas_in_sync > 1:
        print(f"{config.strategy}: {strategy.num_replicas_in_sync} replicas, global batch {config.batch_size}")
    with strategy.scope():
        return _prune(config)


def _datasets(config, preprocessor):
    texts = data.mlm_corpus() if config.corpus == "packaged" else data.text_lines(config.corpus)
    order = np.random.default_rng(config.seed).permutation(len(texts))
    held_out = [texts[i] for i in order[: config.eval_texts]]
    train_texts = [texts[i] for i in order[config.eval_texts:]]
    print(f"corpus: {len(train_texts):,} training texts, {len(held_out):,} held out")
    # Masks are drawn once for the held-out texts, so before/after compare alike.
    eval_batches = tf.data.Dataset.from_tensor_slices(held_out).batch(config.batch_size).map(preprocessor).cache()
    train = (tf.data.Dataset.from_tensor_slices(train_texts).shuffle(len(train_texts), seed=config.seed)
             .repeat().batch(config.batch_size, drop_remainder=True)
             .map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    return train, eval_batches


def _warm_up(config, masked_lm, train, eval_batches, loss):
    """The MLM head's warm-up (kept across --resume); returns the accuracies measured."""
    report_path = os.path.join(config.out, "report.json")
    warm_path = os.path.join(config.out, "warmup.weights.h5")
    if config.resume and os.path.exists(warm_path):
        masked_lm.load_weights(warm_path)
        with open(report_path, encoding="utf-8") as f:
            accuracies = {k: v for k, v in json.load(f).items() if k.startswith("mlm_accuracy_")}
        print("resume: warm-up already done")
        return accuracies
    accuracies = {"mlm_accuracy_pretrained_head_untrained": mlm_accuracy(masked_lm, eval_batches)}
    if config.warmup_steps > 0:
        print(f"[1/3] warming up the MLM head for {config.warmup_steps} steps (backbone frozen)")
        masked_lm.backbone.trainable = False
        masked_lm.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, weighted_metrics=["accuracy"],
                          jit_compile=_runs.jit_compile(config))
        masked_lm.fit(train, steps_per_epoch=config.warmup_steps, epochs=1, verbose=config.verbose, shuffle=False)
        masked_lm.backbone.trainable = True
    accuracies["mlm_accuracy_before"] = mlm_accuracy(masked_lm, eval_batches)
    masked_lm.save_weights(warm_path)
    atomic_write(report_path, json.dumps({"args": dataclasses.asdict(config), **accuracies}, indent=2).encode())
    return accuracies


def _prune(config):
    os.makedirs(config.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    if config.objective == "mlm":
        model = models.masked_lm(config.preset, sequence_length=config.sequence_length)
        backbone = model.backbone
    else:  # task-agnostic distillation: the bare backbone, features without masking
        model = backbone = models.backbone(config.preset)
    preprocessor = model.preprocessor if config.objective == "mlm" else models.text_features(
        config.preset, config.sequence_length)
    train, eval_batches = _datasets(config, preprocessor)
    if config.objective == "mlm":
        model.preprocessor = None  # the pipeline above preprocesses
    optimizer, history, accuracies, teacher = _train(config, model, backbone, train, eval_batches)
    return _write(config, model, backbone, optimizer, history, accuracies, eval_batches, teacher, started)


def _train(config, model, backbone, train, eval_batches):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True) if config.objective == "mlm" else None
    accuracies = {}
    if config.objective == "mlm":
        accuracies = _warm_up(config, model, train, eval_batches, loss)
        print(f"held-out MLM accuracy before pruning: {accuracies['mlm_accuracy_before']:.4f}")

    frozen = [] if (config.train_embeddings or config.include_embeddings) else models.freeze_embeddings(backbone)
    if frozen:
        print(f"embeddings kept fixed while pruning: {', '.join(frozen)}")
    inner = keras.optimizers.AdamW(config.learning_rate, weight_decay=0.01)
    optimizer = _runs.pruning_optimizer(
        config.method, inner, l1_strength=config.l1_strength if config.l1_strength is not None else 2e-3,
        reweight_every=config.reweight_every, include_embeddings=config.include_embeddings)
    schedule = None
    if config.scheduled:
        end_step = max(1, int(config.steps * config.end_fraction))
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, config.target_sparsity, begin_step=0, end_step=end_step, frequency=config.frequency)
    trained, teacher = model, None
    if config.distill > 0 or config.objective == "distill":
        # A copy of the backbone is the preset as loaded (frozen during the warm-up; on --resume the
        # pruned weights come back only inside fit), so the preset is not read from disk twice.
        teacher = models.clone_backbone(backbone)
        alpha = config.distill if config.objective == "mlm" else 1.0
        trained = distill.LayerDistiller(model, teacher, alpha=alpha)
        print("distilling the dense preset's layer outputs while pruning"
              + (f" (weight {config.distill})" if config.objective == "mlm" else " (the whole objective)"))
    epochs = math.ceil(config.steps / config.steps_per_epoch)
    what = f"PolynomialDecay to {config.target_sparsity:.0%}" if schedule else f"fixed lambda {config.l1_strength}"
    print(f"[2/3] {config.method} on {config.objective} for {epochs * config.steps_per_epoch} steps, {what}")
    # The MLM objective never reads the pooler: frozen, Keras does not warn about its missing gradients.
    with models.pooler_frozen(backbone):
        trained.compile(optimizer=optimizer, loss=loss, jit_compile=_runs.jit_compile(config),
                        weighted_metrics=["accuracy"] if config.objective == "mlm" else None)
        rewind = False
        if config.rewind:
            # Taken now: a resumed fit begins from the backup's pruned weights, not the preset's.
            optimizer.build(trained.trainable_variables)
            rewind = optimizer.weights_by_key()
        history = trained.fit(
            train, steps_per_epoch=config.steps_per_epoch, epochs=epochs, verbose=config.verbose, shuffle=False,
            callbacks=[
                keras.callbacks.BackupAndRestore(os.path.join(config.out, "backup"), save_freq="epoch"),
                RPPCallback(schedule, log_dir=os.path.join(config.out, "logs"), log_every=config.frequency,
                            rewind=rewind),
            ],
        )
    if not optimizer.frozen:
        raise RuntimeError("Pruning ended before the mask was final; raise --steps or lower --end-fraction.")
    return optimizer, history, accuracies, teacher


def _write(config, model, backbone, optimizer, history, accuracies, eval_batches, teacher, started):
    print("[3/3] writing the mask, the pruned preset and the report")
    mask = optimizer.get_mask()
    mask.metadata.update(preset=str(config.preset), method=config.method, steps=config.steps)
    mask_path = os.path.join(config.out, "mask.npz")
    mask.save(mask_path)
    preset_dir = os.path.join(config.out, "preset")
    backbone.save_to_preset(preset_dir)
    models.tokenizer(config.preset).save_to_preset(preset_dir)
    summary = mask.summary(print_fn=False)
    atomic_write(os.path.join(config.out, "sparsity_report.txt"), (summary + "\n").encode())
    distill_loss = history.history.get("distill_loss") if teacher is not None else None
    result = PruneResult(
        out=config.out, mask_path=mask_path, preset_dir=preset_dir,
        sparsity=mask.sparsity, weight_sparsity=optimizer.sparsity(), layer_sparsity=mask.layer_sparsity(),
        pruned_weights=mask.num_pruned, masked_weights=mask.num_weights,
        objective=config.objective, sparsity_before_hardening=optimizer.sparsity_before_hardening,
        trace={k: [float(v) for v in history.history[k]] for k in ("sparsity", "target_sparsity", "l1_strength")
               if k in history.history},
        mlm_accuracy_before=accuracies.get("mlm_accuracy_before"),
        mlm_accuracy_after=mlm_accuracy(model, eval_batches) if config.objective == "mlm" else None,
        mlm_accuracy_pretrained_head_untrained=accuracies.get("mlm_accuracy_pretrained_head_untrained"),
        # Relative squared error of the layer outputs against the dense model, mean of the last epoch.
        distill_loss_last_epoch=float(distill_loss[-1]) if distill_loss else None,
        layer_error_after=distill.layer_error(backbone, teacher, eval_batches) if teacher is not None else None,
        wall_time_s=time.time() - started,
    )
    _runs.write_report(config.out, REPORT, config, result)
    print(summary)
    measured = (f"held-out MLM accuracy {result.mlm_accuracy_before:.4f} -> {result.mlm_accuracy_after:.4f}"
                if config.objective == "mlm" else "")
    if result.layer_error_after is not None:
        measured += ("; " if measured else "") + f"held-out layer error vs dense {result.layer_error_after:.4f}"
    if result.sparsity_before_hardening is not None:
        print(f"sparsity {result.sparsity_before_hardening:.4f} from the {config.method} steps, "
              f"{mask.sparsity - result.sparsity_before_hardening:+.4f} at hardening (magnitude)")
    print(f"sparsity {mask.sparsity:.4f}; {measured}; wrote {mask_path}, {preset_dir}, report.json")
    return result
