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
`tf_rpp.tables`).

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
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot

from tf_rpp import data as data_lib
from tf_rpp import distill
from tf_rpp import export
from tf_rpp import models
from tf_rpp import saving
from tf_rpp import shrink
from tf_rpp import tables
from tf_rpp import tasks
from tf_rpp.callback import RPPCallback
from tf_rpp.files import atomic_write
from tf_rpp.mask import SparsityMask
from tf_rpp.optimizers import GroupMagnitudeOptimizer
from tf_rpp.optimizers import GroupRPPOptimizer
from tf_rpp.optimizers import MaskedOptimizer
from tf_rpp.optimizers import RPPOptimizer
from tf_rpp.pipeline import options
from tf_rpp.pipeline.options import option


@dataclasses.dataclass
class FinetuneConfig:
    """Settings of `finetune`; the defaults are the recipes'. Every field is a `tf-rpp finetune` flag."""

    task: str = option("rt_polarity", f"a known task: {', '.join(sorted(tasks.TASKS))}, or squad (extractive "
                       "question answering: --data SQuAD-format JSON files TRAIN [DEV], --tfds for squad/v1.1, "
                       "else the packaged 5-question fixture) (ignored with --data, except squad)")
    data: tuple = option(None, "your own data: a folder with train and validation (or dev) .csv/.tsv/.jsonl "
                         "files, or two files TRAIN VALIDATION", type=str, nargs="+")
    text_columns: tuple = option(("text",), "with --data: the text column, or two for sentence pairs",
                                 type=str, nargs="+")
    label_column: str = option("label", "with --data: the label (or regression target) column")
    regression: bool = option(False, "with --data: the label is a float target (MSE loss, Pearson/Spearman)")
    preset: str = option(models.DEFAULT_PRESET, "the backbone: 'minilm', a keras-hub preset or handle, or a "
                         "pruned preset folder")
    tokenizer_preset: str = option(None, "where the tokenizer comes from (default: --preset)", type=str)
    mask: str = option(None, "a SparsityMask .npz to keep fixed; without it the model is dense", type=str)
    tsv_dir: str = option(None, "a folder in the official GLUE TSV layout (glue/* tasks)", type=str)
    tfds: bool = option(False, "read glue/* through tensorflow-datasets (downloads)")
    data_dir: str = option(None, "tensorflow-datasets data folder", type=str)
    out: str = option("runs/finetune", "output folder")
    sequence_length: int = option(64, "tokens per example")
    batch_size: int = option(32, "batch size")
    length_groups: bool = option(True, "pad every batch to the full --sequence-length (default: batches of "
                                 "similar-length examples cut to 16/32/48 tokens or the full length, "
                                 "tf_rpp.data.length_grouped; 1.9x fewer tokens on rt_polarity)")
    steps: int = option(250, "training steps")
    learning_rate: float = option(1e-4, "peak AdamW learning rate (linear warm-up, cosine decay); a pruned model "
                                  "(--mask, --sparsity, --structured) recovers better higher: 6e-4 beat 3e-4 on "
                                  "every paired seed at 80% and structured 70% (docs/frontier.md)")
    warmup_fraction: float = option(0.1, "linear warm-up share of the steps")
    eval_limit: int = option(None, "evaluate on at most this many validation examples", type=int)
    teacher: str = option(None, "a fine-tuned .keras classifier of the same task to distil from (e.g. the dense "
                          "model)", type=str)
    distill_alpha: float = option(0.5, "weight of the teacher term")
    temperature: float = option(2.0, "distillation temperature")
    teacher_layers: float = option(0.0, "with --teacher, also match the teacher's layer outputs (relative squared "
                                   "error, mean over layers, times this weight); 0: logits only")
    init_model: str = option(None, "start from this fine-tuned classifier (.keras) instead of --preset, e.g. to "
                             "prune it", type=str)
    sparsity: float = option(None, "prune while fine-tuning (downstream, unstructured): reach this sparsity of the "
                             "encoder kernels (PolynomialDecay over --pruning-steps) with --method, e.g. starting "
                             "from the dense fine-tuned model (--init-model) and distilling it (--teacher)",
                             type=float)
    method: str = option("rpp", "with --sparsity: rpp (RPPOptimizer) or magnitude (gradual magnitude pruning); "
                         "with --structured: rpp (GroupRPPOptimizer) or magnitude (the weakest heads and neurons "
                         "by norm, GroupMagnitudeOptimizer)",
                         choices=("rpp", "magnitude"))
    structured: float = option(None, "structured RPP while fine-tuning: remove this fraction of the attention "
                               "heads and of the feed-forward neurons (GroupRPPOptimizer, PolynomialDecay)",
                               type=float)
    structured_heads: float = option(None, "with --structured: remove this fraction of the attention heads instead "
                                     "(--structured then counts feed-forward neurons only); heads cost less "
                                     "latency than their share of the weights at short sequences; 0 keeps them "
                                     "all", type=float)
    pruning_steps: int = option(None, "steps over which --sparsity or --structured reaches its target; the rest "
                                "train with the mask fixed (default: 60% of --steps)", type=int)
    rewind: bool = option(False, "with --sparsity or --structured: when the mask is final, the kept weights return "
                          "to their values at the start (the proximal steps shrink them; tf_rpp.hardening.rewind)")
    group_strength: float = option(1.0, "initial scale-free group lambda of --structured; RPPCallback adapts it")
    shrink: bool = option(False, "with --structured: also write model_shrunk.keras (removed heads and neurons "
                          "dropped) and export that one with --export-tflite")
    export_tflite: bool = option(False, "also write model.tflite (sparse encoding)")
    save_model: bool = option(True, "do not write model.keras (sweeps that only need metrics)")
    freeze_embeddings: bool = option(False, "keep the encoder's embeddings (token, position, segment, their "
                                     "layer norm) as loaded: AdamW skips the 11.7M token-embedding weights each "
                                     "step (about 12% cheaper at batch 16; on rt_polarity it cost the dense "
                                     "model 0.85 points, docs/frontier.md session 19)")
    jit_compile: bool = option(True, "do not compile the train step with XLA (XLA is faster on CPU here: "
                               "bench/results/train_step.md)")
    seed: int = option(0, "random seed")
    resume: bool = option(False, "reuse the run that finished in --out if it had these settings (a finished run with "
                          "other settings is refused before any work; an interrupted one trains again)")
    verbose: int = option(1, "Keras progress display: 0 silent, 1 bar, 2 a line per epoch", choices=(0, 1, 2))

    def check(self):
        """Raises ValueError for settings that cannot work, before any data or model is loaded."""
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1.")
        if self.task == "squad" and self.teacher:
            raise ValueError("--task squad does not distil from a teacher (yet); drop --teacher.")
        if self.data is not None and len(self.data) not in (1, 2):
            raise ValueError(f"--data takes a folder or two files (train, validation); received {self.data}.")
        if self.structured_heads is not None:
            if self.structured is None:
                raise ValueError("--structured-heads needs --structured (the feed-forward neurons' fraction).")
            if not 0 <= self.structured_heads < 1:
                raise ValueError(f"--structured-heads is a fraction in [0, 1); received {self.structured_heads}.")
        if self.structured is None and self.shrink:
            raise ValueError("--shrink needs --structured (only removed heads and neurons can be dropped).")
        pruning = [flag for flag, value in (("--sparsity", self.sparsity), ("--structured", self.structured))
                   if value is not None]
        if len(pruning) == 2:
            raise ValueError("Pass --sparsity (unstructured) or --structured, not both.")
        if pruning:
            if self.mask:
                raise ValueError(f"{pruning[0]} learns its own mask; do not pass --mask with it.")
            value = self.sparsity if self.sparsity is not None else self.structured
            if not 0.0 < value < 1.0:
                raise ValueError(f"{pruning[0]} is a fraction in (0, 1); received {value}.")
            if not 0 < self.prune_steps <= self.steps:
                raise ValueError(f"--pruning-steps must be in [1, --steps]; received {self.prune_steps}.")
        elif self.rewind:
            raise ValueError("--rewind needs --sparsity or --structured (it acts when their mask is final).")
        if self.teacher_layers < 0 or (self.teacher_layers > 0 and not self.teacher):
            raise ValueError("--teacher-layers is a weight >= 0 and needs --teacher (the model whose layer outputs "
                             f"to match); received {self.teacher_layers} with --teacher {self.teacher}.")
        for flag, path in (("--mask", self.mask), ("--teacher", self.teacher), ("--init-model", self.init_model)):
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"{flag} {path!r}: no such file.")

    @property
    def prune_steps(self):
        """Steps over which `sparsity` or `structured` reaches its target."""
        return self.pruning_steps or int(0.6 * self.steps)


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` produced: metrics, the mask check and the files written."""

    task: str
    metrics: dict
    validation_examples: int
    label_names: list = None
    preset: str = None
    mask: str = None
    steps: int = 0
    learning_rate: float = 0.0
    teacher: str = None
    teacher_layers: float = 0.0
    mask_sparsity: float = None
    pruned_weights: int = None
    zero_weights_after: int = None
    mask_held: bool = None
    sparsity: float = None
    method: str = None
    structured: float = None
    structured_heads: float = None
    pruning_steps: int = None
    rewind: bool = False
    removed_groups: dict = None
    shrunk: dict = None
    dense_parameters: int = None
    model_path: str = None
    tflite_path: str = None
    tflite_bytes: int = None
    predictions_path: str = None
    wall_time_s: float = 0.0

    def to_dict(self):
        """A JSON-ready dict (what `results.json` holds)."""
        return dataclasses.asdict(self)


def resolve_task(config):
    """The task's `TaskSpec` and, for your own files, its rows (`None` otherwise)."""
    if config.data is None:
        return tasks.get(config.task), None
    table = tables.read_task(*config.data, text_columns=config.text_columns,
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


def finetune(config=None, **overrides):
    """Fine-tunes with the mask fixed and evaluates (see the module docstring).

    Args:
        config: a `FinetuneConfig` (default: all defaults).
        **overrides: fields to change, e.g. `finetune(task="snli", steps=100)`.

    Returns:
        A `FinetuneResult`; `out/results.json` holds it.

    Raises:
        ValueError, FileNotFoundError: bad settings or data, before training starts.
        RuntimeError: a pruned weight became nonzero (never expected).
    """
    config = dataclasses.replace(config or FinetuneConfig(), **overrides)
    config.check()
    finished = _finished(config) if config.resume else None
    if finished is not None:
        return finished
    if config.task == "squad":
        from tf_rpp.pipeline import squad_finetuning

        return squad_finetuning.finetune_squad(config)
    spec, table = resolve_task(config)
    if config.teacher and spec.is_regression:
        raise ValueError(f"--teacher distils class probabilities; {spec.name} is a regression task.")
    os.makedirs(config.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    train, dev = _datasets(config, spec, table)
    loss = (keras.losses.MeanSquaredError() if spec.is_regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher = None
    if config.teacher:
        teacher = saving.load_model(config.teacher, compile=False)
        outputs = int(teacher.output_shape[-1])
        if outputs != spec.num_classes:
            raise ValueError(f"The teacher has {outputs} outputs; {spec.name} has {spec.num_classes} classes.")
        loss = distill.DistillationLoss(config.distill_alpha, config.temperature)
    if config.teacher and config.teacher_layers == 0:
        print(f"computing the teacher's logits on the training examples the steps draw ({config.teacher})")
        train = distill.teacher_stream(train, teacher, config.steps * config.batch_size, seed=config.seed)
    else:  # with teacher layers, the teacher's logits come from its pass inside each step
        train = train.shuffle(20_000, seed=config.seed).repeat()
    dev = dev.batch(64)

    if config.init_model:
        classifier = saving.load_model(config.init_model, compile=False)
    else:
        classifier = models.classifier(models.backbone(config.preset), config.tokenizer_preset or config.preset,
                                       spec.num_classes, config.sequence_length)
    if config.freeze_embeddings:
        print(f"embeddings kept as loaded: {', '.join(models.freeze_embeddings(classifier.backbone))}")
    train = _batches(config, train, classifier.preprocessor)
    optimizer, callbacks, mask = build_optimizer(config, classifier)
    trained = classifier
    if config.teacher_layers > 0:
        trained = distill.LayerDistiller(classifier, teacher.backbone, alpha=config.teacher_layers, teacher_task=teacher)
    # keras-hub's default metric reads y as labels; with a teacher y also carries logits.
    trained.compile(optimizer=optimizer, loss=loss, jit_compile=config.jit_compile,
                    **({"metrics": []} if config.teacher else {}))
    what = (f"structured {config.method} removing {_removed_groups_text(config)}" if config.structured is not None
            else f"{config.method} to {config.sparsity:.0%} sparsity" if config.sparsity is not None
            else "mask " + config.mask if mask else "dense")
    print(f"fine-tuning {spec.name} for {config.steps} steps ({what})")
    with models.preprocessor_detached(classifier):  # the batches are preprocessed
        trained.fit(train, steps_per_epoch=config.steps, epochs=1, verbose=config.verbose, callbacks=callbacks,
                    shuffle=False)
    if config.structured is not None or config.sparsity is not None:
        if not optimizer.frozen:
            raise RuntimeError("The mask was not hardened: --pruning-steps exceeds the steps run.")
        mask = optimizer.get_mask()
        mask.save(os.path.join(config.out, "mask.npz"))

    labels = np.concatenate([y.numpy() for _, y in dev])
    # A 1-tuple: Keras reads a bare (premise, hypothesis) tuple as (x, y).
    outputs = classifier.predict(dev.map(lambda x, y: (x,)), verbose=0)
    predictions = outputs[:, 0] if spec.is_regression else np.argmax(outputs, axis=-1)
    result = FinetuneResult(
        task=spec.name, metrics=tasks.evaluate(spec, labels, predictions), validation_examples=int(len(labels)),
        label_names=list(spec.label_names) if spec.label_names else None,
        preset=str(config.init_model or config.preset), mask=config.mask, steps=config.steps,
        learning_rate=config.learning_rate, teacher=config.teacher, teacher_layers=config.teacher_layers)
    # Per example, so that two runs can be compared on the same sentences (`tf_rpp.significance`).
    result.predictions_path = os.path.join(config.out, "predictions.npz")
    np.savez(result.predictions_path, labels=labels, predictions=predictions)
    if mask is not None:
        check_mask_held(result, mask, classifier)
    if config.structured is not None or config.sparsity is not None:
        result.structured, result.sparsity, result.rewind = config.structured, config.sparsity, config.rewind
        result.structured_heads = config.structured_heads
        result.pruning_steps = config.prune_steps
    if config.sparsity is not None or config.structured is not None:
        result.method = config.method
    if config.structured is not None:
        result.removed_groups = optimizer.removed_groups()
    write_models(config, classifier, result, labels=spec.label_names, metadata=not spec.is_regression,
                 scores="logits" if spec.is_regression else "probabilities")
    result.wall_time_s = time.time() - started
    write_results(config, result)
    print("validation " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
          + f"; wrote {config.out}/results.json")
    return result


# Settings that do not change what a run learns (`out` too: a moved or copied run is the same run).
_NOT_LEARNED = ("out", "resume", "verbose")


def write_results(config, result):
    """Writes `out/results.json`: `result` and, under "args", the settings (what `resume` compares).

    Example:

    ```python
    write_results(config, result)   # then finetune(config, resume=True) reuses the run
    ```
    """
    written = {"args": dataclasses.asdict(config), **result.to_dict()}
    atomic_write(os.path.join(config.out, "results.json"), json.dumps(written, indent=2).encode())


def _finished(config):
    """The result of a run that finished in `config.out` with these settings, or None."""
    path = os.path.join(config.out, "results.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        written = json.load(f)
    if "args" not in written:
        print(f"{config.out}: results.json of an older version (no settings recorded): training again")
        return None
    options.check_same_settings(config.out, written["args"], config, ignore=_NOT_LEARNED)
    # A report of an older version may lack a later field; its default stands in.
    result = FinetuneResult(**{f.name: written[f.name] for f in dataclasses.fields(FinetuneResult) if f.name in written})
    # Paths re-based on `out`: a moved or copied run is reused where it is now.
    for field in ("model_path", "tflite_path", "predictions_path"):
        recorded = getattr(result, field)
        if recorded:
            here = os.path.join(config.out, os.path.basename(recorded))
            if not os.path.exists(here):
                print(f"{config.out}: {here} is missing: training again")
                return None
            setattr(result, field, here)
    print(f"{config.out}: finished before with these settings, reusing it (results.json)")
    return result


def _removed_groups_text(config):
    if config.structured_heads is None:
        return f"{config.structured:.0%} of heads and neurons"
    return f"{config.structured_heads:.0%} of heads, {config.structured:.0%} of neurons"


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


def build_optimizer(config, classifier):
    """The optimizer, callbacks and fixed mask (None when dense or structured) of a run.

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
            optimizer = RPPOptimizer(inner) if config.method == "rpp" else MaskedOptimizer(inner)
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
    """`GroupRPPOptimizer`'s `kinds` and `relative_targets` for `config.structured_heads`.

    Example:

    >>> group_kinds(FinetuneConfig(structured=0.6, structured_heads=0.3))
    {'kinds': ('heads', 'neurons'), 'relative_targets': {'heads': 0.5}}
    """
    if config.structured_heads is None:
        return {"kinds": ("heads", "neurons"), "relative_targets": None}
    if config.structured_heads == 0:
        return {"kinds": ("neurons",), "relative_targets": None}
    return {"kinds": ("heads", "neurons"), "relative_targets": {"heads": config.structured_heads / config.structured}}


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
                                                   sparse=True, **export_settings)
