"""Fine-tune a (pruned) BERT on a downstream task with its sparsity mask fixed.

The mask is enforced after every step (`tf_rpp.MaskedOptimizer`), the task's
GLUE metric is computed on the validation split, and the run checks and
reports that the mask held (every pruned weight still exactly 0.0).

    # packaged data, offline:
    python recipes/glue_finetune.py --task rt_polarity --preset runs/prune/preset \\
        --mask runs/prune/mask.npz --out runs/rt_pruned --export-tflite
    # GLUE through tensorflow-datasets (downloads) or the official TSV layout:
    python recipes/glue_finetune.py --task glue/sst2 --tfds --data-dir ~/tfds ...
    python recipes/glue_finetune.py --task glue/mnli --tsv-dir glue_data/MNLI ...
    # structured RPP (heads and neurons) on a fine-tuned model, shrunk and exported:
    python recipes/glue_finetune.py --init-model runs/rt_dense/model.keras --teacher runs/rt_dense/model.keras \
        --structured 0.5 --steps 250 --shrink --export-tflite --out runs/rt_structured50
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tf_rpp  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import distill  # noqa: E402
from tf_rpp import export  # noqa: E402
from tf_rpp import models  # noqa: E402
from tf_rpp import shrink  # noqa: E402
from tf_rpp import tasks  # noqa: E402
from tf_rpp.files import atomic_write  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt_polarity", help=f"one of: {', '.join(sorted(tasks.TASKS))}")
    p.add_argument("--preset", default=models.DEFAULT_PRESET,
                   help="the backbone: 'minilm', a keras-hub preset or handle, or a pruned preset folder")
    p.add_argument("--tokenizer-preset", default=None, help="where the tokenizer comes from (default: --preset)")
    p.add_argument("--mask", default=None, help="a SparsityMask .npz to keep fixed; without it the model is dense")
    p.add_argument("--tsv-dir", default=None, help="a folder in the official GLUE TSV layout (glue/* tasks)")
    p.add_argument("--tfds", action="store_true", help="read glue/* through tensorflow-datasets (downloads)")
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets data folder")
    p.add_argument("--out", default="runs/finetune", help="output folder")
    p.add_argument("--sequence-length", type=int, default=64, help="tokens per example (default 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=250, help="training steps (default 250)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="peak AdamW learning rate (default 1e-4)")
    p.add_argument("--warmup-fraction", type=float, default=0.1, help="linear warm-up share of the steps")
    p.add_argument("--eval-limit", type=int, default=None, help="evaluate on at most this many validation examples")
    p.add_argument("--teacher", default=None,
                   help="a fine-tuned .keras classifier of the same task to distil from (e.g. the dense model)")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the teacher term (default 0.5)")
    p.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (default 2)")
    p.add_argument("--teacher-layers", type=float, default=0.0, metavar="WEIGHT",
                   help="with --teacher, also match the teacher's layer outputs (relative squared error, mean over "
                        "layers, times WEIGHT; tf_rpp.distill.LayerDistiller); default 0: logits only")
    p.add_argument("--init-model", default=None,
                   help="start from this fine-tuned classifier (.keras) instead of --preset, e.g. to prune it")
    p.add_argument("--structured", type=float, default=None, metavar="FRACTION",
                   help="structured RPP while fine-tuning: remove this fraction of the attention heads and of "
                        "the feed-forward neurons (tf_rpp.GroupRPPOptimizer, PolynomialDecay schedule)")
    p.add_argument("--structured-steps", type=int, default=None,
                   help="steps over which --structured reaches its target; the rest train with the mask "
                        "fixed (default: 60%% of --steps)")
    p.add_argument("--group-strength", type=float, default=1.0,
                   help="initial scale-free group lambda of --structured; RPPCallback adapts it (default 1)")
    p.add_argument("--shrink", action="store_true",
                   help="with --structured: also write model_shrunk.keras (removed heads and neurons dropped) "
                        "and export that one with --export-tflite")
    p.add_argument("--export-tflite", action="store_true", help="also write model.tflite (sparse encoding)")
    p.add_argument("--no-save-model", action="store_true", help="do not write model.keras (sweeps that only need metrics)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return p


def _datasets(args, spec):
    if args.tfds:
        dev = data.load_glue_tfds(args.task, "validation", args.data_dir)
        return data.load_glue_tfds(args.task, "train", args.data_dir), dev.take(args.eval_limit or -1)
    train = data.examples(args.task, "train", tsv_dir=args.tsv_dir)
    dev = data.examples(args.task, "validation", tsv_dir=args.tsv_dir)
    if args.eval_limit:
        dev = dev[: args.eval_limit]
    dtype = "float32" if spec.is_regression else "int32"
    return data.to_dataset(train, dtype), data.to_dataset(dev, dtype)


def _structured_steps(args):
    """Checks the structured-pruning flags before any data is read; the steps to reach the target."""
    if args.structured is None:
        if args.shrink:
            raise ValueError("--shrink needs --structured (only removed heads and neurons can be dropped).")
        return None
    if args.mask:
        raise ValueError("--structured learns its own mask; do not pass --mask with it.")
    if not 0.0 < args.structured < 1.0:
        raise ValueError(f"--structured is the fraction of heads and neurons to remove, in (0, 1); "
                         f"received {args.structured}.")
    prune_steps = args.structured_steps or int(0.6 * args.steps)
    if not 0 < prune_steps <= args.steps:
        raise ValueError(f"--structured-steps must be in [1, --steps]; received {prune_steps}.")
    return prune_steps


def run(args):
    spec = tasks.get(args.task)
    prune_steps = _structured_steps(args)
    if args.teacher_layers < 0 or (args.teacher_layers > 0 and not args.teacher):
        raise ValueError("--teacher-layers is a weight >= 0 and needs --teacher (the model whose layer outputs "
                         f"to match); received {args.teacher_layers} with --teacher {args.teacher}.")
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(args.seed)
    train, dev = _datasets(args, spec)
    loss = (keras.losses.MeanSquaredError() if spec.is_regression
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if args.teacher:
        if spec.is_regression:
            raise ValueError(f"--teacher distils class probabilities; {args.task} is a regression task.")
        teacher = tf_rpp.load_model(args.teacher, compile=False)
        print(f"computing the teacher's logits on the training examples the steps draw ({args.teacher})")
        train = distill.teacher_stream(train, teacher, args.steps * args.batch_size, seed=args.seed)
        if train.element_spec[1].shape[-1] != 1 + spec.num_classes:
            raise ValueError(f"The teacher has {train.element_spec[1].shape[-1] - 1} outputs; {args.task} has "
                             f"{spec.num_classes} classes.")
        loss = distill.DistillationLoss(args.distill_alpha, args.temperature)
        teacher_backbone = teacher.backbone if args.teacher_layers > 0 else None
        del teacher
    else:
        train = train.shuffle(20_000, seed=args.seed).repeat()
    train = train.batch(args.batch_size, drop_remainder=True)
    dev = dev.batch(64)

    if args.init_model:
        classifier = tf_rpp.load_model(args.init_model, compile=False)
    else:
        backbone = models.backbone(args.preset)
        classifier = models.classifier(backbone, args.tokenizer_preset or args.preset, spec.num_classes,
                                       args.sequence_length)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, args.steps - int(args.warmup_fraction * args.steps)),
        warmup_target=args.learning_rate, warmup_steps=int(args.warmup_fraction * args.steps))
    inner = keras.optimizers.AdamW(schedule, weight_decay=0.01)
    mask = None
    callbacks = []
    if args.structured is not None:
        optimizer = tf_rpp.GroupRPPOptimizer(inner, group_strength=args.group_strength)
        callbacks.append(tf_rpp.RPPCallback(
            tfmot.sparsity.keras.PolynomialDecay(0.0, args.structured, 0, prune_steps, frequency=10),
            log_dir=os.path.join(args.out, "logs")))
    elif args.mask:
        mask = tf_rpp.SparsityMask.load(args.mask)
        mask.check_compatible(classifier)
        optimizer = tf_rpp.MaskedOptimizer(inner, mask)
    else:
        optimizer = inner
    trained = classifier
    if args.teacher_layers > 0:
        # The distiller is a plain Keras model: it does not apply the classifier's preprocessor itself.
        # x=: keras-hub reads a bare (premise, hypothesis) tuple as (x, y).
        preprocessor = classifier.preprocessor
        train = train.map(lambda x, y: (preprocessor(x=x), y), num_parallel_calls=tf.data.AUTOTUNE)
        trained = distill.LayerDistiller(classifier, teacher_backbone, alpha=args.teacher_layers)
    # keras-hub's default metric reads y as labels; with a teacher y also carries logits.
    trained.compile(optimizer=optimizer, loss=loss, **({"metrics": []} if args.teacher else {}))
    what = (f"structured RPP to {args.structured:.0%} of heads and neurons" if args.structured is not None
            else "mask " + args.mask if mask else "dense")
    print(f"fine-tuning {args.task} for {args.steps} steps ({what})")
    trained.fit(train, steps_per_epoch=args.steps, epochs=1, verbose=args.verbose, callbacks=callbacks)
    if args.structured is not None:
        if not optimizer.frozen:
            raise RuntimeError("The structured mask was not hardened: --structured-steps exceeds the steps run.")
        mask = optimizer.get_mask()
        mask.save(os.path.join(args.out, "mask.npz"))

    labels = np.concatenate([y.numpy() for _, y in dev])
    # A 1-tuple: Keras reads a bare (premise, hypothesis) tuple as (x, y).
    outputs = classifier.predict(dev.map(lambda x, y: (x,)), verbose=0)
    predictions = outputs[:, 0] if spec.is_regression else np.argmax(outputs, axis=-1)
    metrics = tasks.evaluate(args.task, labels, predictions)

    result = {"task": args.task, "preset": str(args.init_model or args.preset), "mask": args.mask, "steps": args.steps,
              "learning_rate": args.learning_rate, "teacher": args.teacher, "teacher_layers": args.teacher_layers,
              "validation_examples": int(len(labels)), "metrics": metrics}
    if mask is not None:
        after = tf_rpp.SparsityMask.from_model(classifier, prune=mask.keys)
        still_zero = all(bool(np.all(~after[k] | mask[k])) for k in mask.keys)
        result.update(mask_sparsity=mask.sparsity, pruned_weights=mask.num_pruned,
                      zero_weights_after=after.num_pruned, mask_held=still_zero)
        print(f"mask held: {still_zero} ({mask.num_pruned:,} pruned weights, {after.num_pruned:,} zeros after)")
        if not still_zero:
            raise RuntimeError("A pruned weight became nonzero during fine-tuning.")
    if args.structured is not None:
        result.update(structured=args.structured, structured_steps=prune_steps,
                      removed_groups=optimizer.removed_groups())
    if not args.no_save_model:
        classifier.save(os.path.join(args.out, "model.keras"))
    exported = classifier
    if args.shrink:
        exported = shrink.shrink_classifier(classifier)
        exported.save(os.path.join(args.out, "model_shrunk.keras"))
        result["shrunk"] = shrink.parameter_counts(exported.backbone)
        result["dense_parameters"] = int(classifier.backbone.count_params())
        print(f"shrunk: heads per layer {result['shrunk']['heads']}, feed-forward units per layer "
              f"{result['shrunk']['intermediate']}; backbone parameters {result['dense_parameters']:,} -> "
              f"{result['shrunk']['total_parameters']:,}")
    if args.export_tflite:
        path = os.path.join(args.out, "model.tflite")
        result["tflite_bytes"] = export.export_tflite(
            exported, path, sequence_length=args.sequence_length, sparse=True, labels=spec.label_names)
    result["wall_time_s"] = time.time() - started
    atomic_write(os.path.join(args.out, "results.json"), json.dumps(result, indent=2).encode())
    print("validation " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"; wrote {args.out}/results.json")
    return result


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
