"""Downstream fine-tuning: a (pruned) encoder on a task, its sparsity mask fixed.

The mask is enforced after every step (`tf_rpp.MaskedOptimizer`), the task's
metrics are computed on the validation split, and the run checks and reports
that the mask held (every pruned weight still exactly 0.0). Optional: distil
from a dense fine-tuned teacher (logits, and layer outputs), structured RPP of
heads and neurons while fine-tuning (`structured`) with physical shrinking, and
the `.tflite` export. The validation predictions are kept, with their labels,
in `out/predictions.npz`: two runs on the same task can then be compared example
by example (`tf_rpp.significance.paired_bootstrap`).

Data: a packaged task (`rt_polarity`, `snli`, `bbc_news`), GLUE (`glue/*`
through tensorflow-datasets or a GLUE TSV folder), or your own CSV / TSV /
JSONL files (`data=("folder",)` or `data=("train.csv", "dev.csv")`,
`tf_rpp.data.files`).

Example:

```python
from tf_rpp import pipeline
result = pipeline.finetune(pipeline.FinetuneConfig(
    data=("reviews/",), text_columns=("review",), label_column="stars",
    preset="runs/prune/preset", mask="runs/prune/mask.npz", out="runs/reviews", export_tflite=True))
print(result.metrics, result.mask_held, result.label_names)
```
"""

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tf_rpp import data as data_lib
from tf_rpp import distill
from tf_rpp import models
from tf_rpp import saving
from tf_rpp.data import files as data_files
from tf_rpp.data import tasks
from tf_rpp.pipeline import _runs
from tf_rpp.pipeline.configs import FinetuneConfig
from tf_rpp.pipeline.configs import FinetuneResult
from tf_rpp.pipeline.configs import _recipe_text
from tf_rpp.structured import layer_drop

REPORT = "results.json"


def finetune(config=None, **overrides):
    """Fine-tunes with the mask fixed and evaluates (see the module docstring).

    Five stages, each its own function: data -> model -> train -> evaluate -> write.

    Args:
        config: a `FinetuneConfig` (default: all defaults).
        **overrides: fields to change, e.g. `finetune(task="snli", steps=100)`.

    Returns:
        A `FinetuneResult`; `out/results.json` holds it.

    Raises:
        ValueError, FileNotFoundError: bad settings or data, before training starts.
        RuntimeError: a pruned weight became nonzero (never expected).

    Example:

    ```python
    result = finetune(task="rt_polarity", preset="runs/prune/preset", mask="runs/prune/mask.npz", out="runs/rt")
    ```
    """
    config = dataclasses.replace(config or FinetuneConfig(), **overrides).with_speedup_recipe()
    config.check()
    _runs.check_backend(config)
    if config.resume:
        finished = _runs.reuse_finished(config, REPORT, FinetuneResult,
                                        paths=("model_path", "tflite_path", "predictions_path"))
        if finished is not None:
            return finished
    if config.task == "squad":
        from tf_rpp.pipeline import squad_finetuning

        return squad_finetuning.finetune_squad(config)
    spec, table = resolve_task(config)
    if pair_recipe := config._pair_recipe():
        print(f"--speedup {config.speedup} on sentence pairs: {_recipe_text(pair_recipe)}, "
              "which lost fewer points on pairs than heads and neurons alone (docs/which-model.md)")
    if config.teacher and spec.is_regression:
        raise ValueError(f"--teacher distils class probabilities; {spec.name} is a regression task.")
    os.makedirs(config.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    train, dev = _datasets(config, spec, table)
    # The teacher loads before the classifier is built: loading draws from the seeded generators, and the
    # seeded results in docs/ were measured in this order.
    teacher = _teacher(config, spec)
    classifier = _classifier(config, spec)
    optimizer, mask = _train(config, spec, classifier, teacher, train)
    result = _evaluate(config, spec, classifier, dev, optimizer, mask)
    _runs.write_models(config, classifier, result, labels=spec.label_names, metadata=not spec.is_regression,
                       scores="logits" if spec.is_regression else "probabilities")
    result.wall_time_s = time.time() - started
    _runs.write_report(config.out, REPORT, config, result)
    print("validation " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
          + f"; wrote {config.out}/{REPORT}")
    return result


def resolve_task(config):
    """The task's `TaskSpec` and, for your own files, its rows (`None` otherwise).

    Example:

    ```python
    spec, table = resolve_task(FinetuneConfig(data=("reviews/",), label_column="stars"))
    spec.label_names, len(table.train)
    ```
    """
    if config.data is None:
        return tasks.get(config.task), None
    table = data_files.read_task(*config.data, text_columns=config.text_columns,
                             label_column=config.label_column, regression=config.regression)
    return table.spec, table


def _datasets(config, spec, table):
    if table is not None:
        train_rows, dev_rows = table.train, table.validation
    elif config.tfds:
        dev = data_lib.load_glue_tfds(spec, "validation", config.data_dir)
        return data_lib.load_glue_tfds(spec, "train", config.data_dir), dev.take(config.eval_limit or -1)
    else:
        train_rows = data_lib.examples(spec, "train", tsv_dir=config.tsv_dir)
        dev_rows = data_lib.examples(spec, "validation", tsv_dir=config.tsv_dir)
    if config.eval_limit:
        dev_rows = dev_rows[: config.eval_limit]
    dtype = "float32" if spec.is_regression else "int32"
    return data_lib.to_dataset(train_rows, dtype), data_lib.to_dataset(dev_rows, dtype)


def _teacher(config, spec):
    """The fine-tuned teacher to distil from (None without `--teacher`), checked against the task."""
    if not config.teacher:
        return None
    teacher = saving.load_model(config.teacher, compile=False)
    outputs = int(teacher.output_shape[-1])
    if outputs != spec.num_classes:
        raise ValueError(f"The teacher has {outputs} outputs; {spec.name} has {spec.num_classes} classes.")
    return teacher


def _classifier(config, spec):
    """The model to train: a classifier on `--preset`, or `--init-model` as saved."""
    if config.init_model:
        classifier = saving.load_model(config.init_model, compile=False)
    else:
        classifier = models.classifier(models.backbone(config.preset), config.tokenizer_preset or config.preset,
                                       spec.num_classes, config.sequence_length)
    if config.keep_layers is not None:
        depth = len(classifier.backbone.transformer_layers)
        classifier = layer_drop.drop_classifier_layers(classifier, config.keep_layers)  # checks them against depth
        print(f"encoder layers kept: {', '.join(map(str, config.keep_layers))} of {depth}")
    if config.freeze_embeddings:
        print(f"embeddings kept as loaded: {', '.join(models.freeze_embeddings(classifier.backbone))}")
    return classifier


def _train(config, spec, classifier, teacher, train):
    """Trains `classifier` in place; returns the optimizer and the mask it kept (or learned)."""
    loss = (keras.losses.MeanSquaredError() if spec.is_regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if teacher is not None:
        loss = distill.DistillationLoss(config.distill_alpha, config.temperature)
    if teacher is not None and config.teacher_layers == 0:
        print(f"computing the teacher's logits on the training examples the steps draw ({config.teacher})")
        train = distill.teacher_stream(train, teacher, config.steps * config.batch_size, seed=config.seed)
    else:  # with teacher layers, the teacher's logits come from its pass inside each step
        train = train.shuffle(20_000, seed=config.seed).repeat()
    train = _batches(config, train, classifier.preprocessor)
    optimizer, callbacks, mask = _runs.build_optimizer(config, classifier)
    trained = classifier
    if config.teacher_layers > 0:
        trained = distill.LayerDistiller(classifier, teacher.backbone, alpha=config.teacher_layers, teacher_task=teacher,
                                         teacher_layer_indices=config.keep_layers)
    # keras-hub's default metric reads y as labels; with a teacher y also carries logits.
    trained.compile(optimizer=optimizer, loss=loss, jit_compile=_runs.jit_compile(config),
                    **({"metrics": []} if teacher is not None else {}))
    what = (f"structured {config.method} removing {_removed_groups_text(config)}" if config.structured is not None
            else f"{config.method} to {config.sparsity:.0%} sparsity" if config.sparsity is not None
            else "mask " + config.mask if mask else "dense")
    print(f"fine-tuning {spec.name} for {config.steps} steps ({what})")
    with models.preprocessor_detached(classifier):  # the batches are preprocessed
        trained.fit(train, steps_per_epoch=config.steps, epochs=1, verbose=config.verbose, callbacks=callbacks,
                    shuffle=False)
    mask = _runs.learned_mask(config, optimizer, given=mask)
    return optimizer, mask


def _evaluate(config, spec, classifier, dev, optimizer, mask):
    """The task's metrics on the validation split, the per-example predictions and the mask check."""
    dev = dev.batch(64)
    labels = np.concatenate([y.numpy() for _, y in dev])
    # A 1-tuple: Keras reads a bare (premise, hypothesis) tuple as (x, y).
    outputs = classifier.predict(dev.map(lambda x, y: (x,)), verbose=0)
    predictions = outputs[:, 0] if spec.is_regression else np.argmax(outputs, axis=-1)
    result = FinetuneResult(
        task=spec.name, metrics=tasks.evaluate(spec, labels, predictions), validation_examples=int(len(labels)),
        label_names=list(spec.label_names) if spec.label_names else None,
        preset=str(config.init_model or config.preset), mask=config.mask, steps=config.steps,
        learning_rate=config.learning_rate, teacher=config.teacher, teacher_layers=config.teacher_layers,
        keep_layers=list(config.keep_layers) if config.keep_layers is not None else None)
    # Per example, so that two runs can be compared on the same sentences (`tf_rpp.significance`).
    result.predictions_path = os.path.join(config.out, "predictions.npz")
    np.savez(result.predictions_path, labels=labels, predictions=predictions)
    if mask is not None:
        _runs.check_mask_held(result, mask, classifier)
    if config.structured is not None or config.sparsity is not None:
        result.structured, result.sparsity, result.rewind = config.structured, config.sparsity, config.rewind
        result.structured_heads, result.structured_blocks = config.structured_heads, config.structured_blocks
        result.pruning_steps = config.prune_steps
        result.method = config.method
    if config.structured is not None:
        result.removed_groups = optimizer.removed_groups()
    return result


def _removed_groups_text(config):
    if config.structured_heads is None:
        text = f"{config.structured:.0%} of heads and neurons"
    else:
        text = f"{config.structured_heads:.0%} of heads, {config.structured:.0%} of neurons"
    if config.structured_blocks is not None:
        text += f", {config.structured_blocks:.0%} of attention and feed-forward blocks"
    return text


def _batches(config, train, preprocessor):
    """Preprocessed training batches: length-grouped (`config.length_groups`) or full width."""
    # x=: keras-hub reads a bare (premise, hypothesis) tuple as (x, y).
    preprocess = lambda x, y: (preprocessor(x=x), y)  # noqa: E731
    if config.length_groups:
        train = data_lib.length_grouped(train.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE),
                                        config.batch_size)
    else:
        train = train.batch(config.batch_size, drop_remainder=True).map(preprocess,
                                                                        num_parallel_calls=tf.data.AUTOTUNE)
    return train.prefetch(tf.data.AUTOTUNE)


