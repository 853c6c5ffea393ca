"""Learn a universal sparsity mask: RPP on the masked-LM objective of a pretrained BERT.

Steps: (1) warm up the MLM head with the backbone frozen (MiniLM ships none),
(2) prune the encoder kernels with RPP (or the magnitude baseline) driven by a
tfmot PolynomialDecay to --target-sparsity, or with a fixed --l1-strength,
optionally (--distill) while matching the dense model's hidden states,
(3) write the mask, the pruned backbone as a keras-hub preset, a per-layer
sparsity report, held-out MLM accuracy before and after, and TensorBoard logs.

Interrupted? Run the same command with --resume: the warm-up is kept and
pruning continues from the last completed epoch (BackupAndRestore).

    python recipes/pretrain_prune.py --out runs/prune --target-sparsity 0.6
    python recipes/pretrain_prune.py --method magnitude --out runs/nip    # the NIP baseline
    python recipes/pretrain_prune.py --preset bert_base_en_uncased ...   # with internet
"""

import argparse
import json
import math
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
from tf_rpp import models  # noqa: E402
from tf_rpp.files import atomic_write  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default=models.DEFAULT_PRESET,
                   help="'minilm' (embedded all-MiniLM-L6-v2), a keras-hub preset, hf:// or kaggle:// handle, or a folder")
    p.add_argument("--corpus", default="packaged",
                   help="'packaged' (BBC News + rt_polarity train sentences) or a UTF-8 text file, one text per line")
    p.add_argument("--out", default="runs/prune", help="output folder")
    p.add_argument("--method", choices=("rpp", "magnitude"), default="rpp",
                   help="rpp (reweighted proximal pruning) or magnitude (the NIP baseline, same schedule)")
    p.add_argument("--target-sparsity", type=float, default=0.6,
                   help="final sparsity of the encoder kernels, reached by a tfmot PolynomialDecay (default 0.6)")
    p.add_argument("--l1-strength", type=float, default=None,
                   help="paper mode: a fixed lambda and no schedule (the exact zeros become the mask); "
                        "with a target it is only lambda's starting value")
    p.add_argument("--steps", type=int, default=300, help="pruning steps (default 300)")
    p.add_argument("--end-fraction", type=float, default=0.8,
                   help="the schedule reaches the target at this fraction of --steps; the rest trains with the mask frozen")
    p.add_argument("--frequency", type=int, default=10, help="schedule's pruning frequency in steps (default 10)")
    p.add_argument("--warmup-steps", type=int, default=150, help="MLM-head warm-up steps, backbone frozen (default 150)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate while pruning (default 1e-4)")
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight of upstream distillation while pruning: the pruned encoder also matches the "
                        "dense preset's layer outputs on the same texts (relative squared error, mean over "
                        "layers), added to the MLM loss; 0 (default) is the paper's MLM objective alone")
    p.add_argument("--reweight-every", type=int, default=10, help="RPP reweighting period in steps (default 10)")
    p.add_argument("--sequence-length", type=int, default=64, help="tokens per text (default 64)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-texts", type=int, default=512, help="held-out texts for MLM accuracy (default 512)")
    p.add_argument("--steps-per-epoch", type=int, default=25, help="checkpoint period for --resume (default 25)")
    p.add_argument("--include-embeddings", action="store_true", help="also prune the embeddings (implies training them)")
    p.add_argument("--train-embeddings", action="store_true",
                   help="also train the embeddings while pruning. Off by default: the MLM head is tied to the "
                        "token embedding, and Adam moves all 30,522 rows every step (MiniLM's moved 12%% in 160 "
                        "steps and its SNLI accuracy fell from 0.71 to 0.48)")
    p.add_argument("--strategy", choices=("default", "mirrored", "tpu"), default="default",
                   help="tf.distribute strategy: 'mirrored' (all local GPUs, or CPUs), 'tpu' (TPUStrategy on "
                        "the TPU the cluster resolver finds); --batch-size is the global batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress display")
    return p


def read_corpus(corpus):
    if corpus == "packaged":
        return data.mlm_corpus()
    with open(corpus, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise ValueError(f"{corpus} has no text.")
    return texts


def mlm_accuracy(masked_lm, batches):
    """Accuracy at the masked positions of preprocessed, cached batches."""
    correct = total = 0.0
    for x, y, weights in batches:
        predictions = tf.argmax(masked_lm(x, training=False), axis=-1, output_type=tf.int32)
        weights = tf.cast(weights, tf.float32)
        correct += float(tf.reduce_sum(tf.cast(predictions == tf.cast(y, tf.int32), tf.float32) * weights))
        total += float(tf.reduce_sum(weights))
    return correct / max(total, 1.0)


def freeze_embeddings(backbone):
    """Makes a keras-hub BERT backbone's embedding layers non-trainable; returns their names."""
    names = []
    for attribute in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"):
        layer = getattr(backbone, attribute, None)
        if layer is not None:
            layer.trainable = False
            names.append(layer.name)
    return names


def make_strategy(name):
    """The tf.distribute strategy a recipe runs under (models are built in its scope)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def run(args):
    strategy = make_strategy(args.strategy)
    if strategy.num_replicas_in_sync > 1:
        print(f"{args.strategy}: {strategy.num_replicas_in_sync} replicas, global batch {args.batch_size}")
    with strategy.scope():
        return _run(args)


def _run(args):
    if not 0 <= args.target_sparsity < 1:
        raise ValueError(f"--target-sparsity must be in [0, 1); received {args.target_sparsity}.")
    if args.distill < 0:
        raise ValueError(f"--distill must be >= 0 (0: the MLM objective alone); received {args.distill}.")
    if args.steps < 1 or args.steps_per_epoch < 1:
        raise ValueError("--steps and --steps-per-epoch must be >= 1.")
    os.makedirs(args.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(args.seed)

    texts = read_corpus(args.corpus)
    order = np.random.default_rng(args.seed).permutation(len(texts))
    held_out = [texts[i] for i in order[: args.eval_texts]]
    train_texts = [texts[i] for i in order[args.eval_texts:]]
    print(f"corpus: {len(train_texts):,} training texts, {len(held_out):,} held out")

    masked_lm = models.masked_lm(args.preset, sequence_length=args.sequence_length)
    preprocessor = masked_lm.preprocessor
    # Masks are drawn once for the held-out texts, so before/after compare alike.
    eval_batches = tf.data.Dataset.from_tensor_slices(held_out).batch(args.batch_size).map(preprocessor).cache()
    train = (tf.data.Dataset.from_tensor_slices(train_texts).shuffle(len(train_texts), seed=args.seed)
             .repeat().batch(args.batch_size, drop_remainder=True)
             .map(preprocessor, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    masked_lm.preprocessor = None  # the pipeline above preprocesses
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    report_path = os.path.join(args.out, "report.json")
    warm_path = os.path.join(args.out, "warmup.weights.h5")
    report = {"args": vars(args)}
    if args.resume and os.path.exists(warm_path):
        masked_lm.load_weights(warm_path)
        with open(report_path, encoding="utf-8") as f:
            report.update({k: v for k, v in json.load(f).items() if k.startswith("mlm_accuracy_")})
        print("resume: warm-up already done")
    else:
        report["mlm_accuracy_pretrained_head_untrained"] = mlm_accuracy(masked_lm, eval_batches)
        if args.warmup_steps > 0:
            print(f"[1/3] warming up the MLM head for {args.warmup_steps} steps (backbone frozen)")
            masked_lm.backbone.trainable = False
            masked_lm.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, weighted_metrics=["accuracy"])
            masked_lm.fit(train, steps_per_epoch=args.warmup_steps, epochs=1, verbose=args.verbose)
            masked_lm.backbone.trainable = True
        report["mlm_accuracy_before"] = mlm_accuracy(masked_lm, eval_batches)
        masked_lm.save_weights(warm_path)
        atomic_write(report_path, json.dumps(report, indent=2).encode())
    print(f"held-out MLM accuracy before pruning: {report['mlm_accuracy_before']:.4f}")

    frozen = freeze_embeddings(masked_lm.backbone) if not (args.train_embeddings or args.include_embeddings) else []
    if frozen:
        print(f"embeddings kept fixed while pruning: {', '.join(frozen)}")
    inner = keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01)
    if args.method == "rpp":
        optimizer = tf_rpp.RPPOptimizer(
            inner, l1_strength=args.l1_strength if args.l1_strength is not None else 2e-3,
            reweight_every=args.reweight_every, include_embeddings=args.include_embeddings)
    else:
        optimizer = tf_rpp.MaskedOptimizer(inner, prune=None, include_embeddings=args.include_embeddings)
    schedule = None
    if args.l1_strength is None or args.method == "magnitude":
        end_step = max(1, int(args.steps * args.end_fraction))
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            0.0, args.target_sparsity, begin_step=0, end_step=end_step, frequency=args.frequency)
    trained = masked_lm
    if args.distill > 0:
        # A copy of the backbone is the preset as loaded (frozen during the warm-up; on --resume the
        # pruned weights come back only inside fit), so the preset is not read from disk twice.
        teacher = models.clone_backbone(masked_lm.backbone)
        trained = tf_rpp.distill.LayerDistiller(masked_lm, teacher, alpha=args.distill)
        print(f"distilling the dense preset's layer outputs while pruning (weight {args.distill})")
    trained.compile(optimizer=optimizer, loss=loss, weighted_metrics=["accuracy"])
    epochs = math.ceil(args.steps / args.steps_per_epoch)
    what = f"PolynomialDecay to {args.target_sparsity:.0%}" if schedule else f"fixed lambda {args.l1_strength}"
    print(f"[2/3] {args.method} for {epochs * args.steps_per_epoch} steps, {what}")
    history = trained.fit(
        train, steps_per_epoch=args.steps_per_epoch, epochs=epochs, verbose=args.verbose,
        callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup"), save_freq="epoch"),
            tf_rpp.RPPCallback(schedule, log_dir=os.path.join(args.out, "logs"), log_every=args.frequency),
        ],
    )
    if not optimizer.frozen:
        raise RuntimeError("Pruning ended before the mask was final; raise --steps or lower --end-fraction.")

    print("[3/3] writing the mask, the pruned preset and the report")
    mask = optimizer.get_mask()
    mask.metadata.update(preset=str(args.preset), method=args.method, steps=args.steps)
    mask.save(os.path.join(args.out, "mask.npz"))
    preset_dir = os.path.join(args.out, "preset")
    masked_lm.backbone.save_to_preset(preset_dir)
    models.tokenizer(args.preset).save_to_preset(preset_dir)
    summary = mask.summary(print_fn=False)
    atomic_write(os.path.join(args.out, "sparsity_report.txt"), (summary + "\n").encode())
    report.update(
        mlm_accuracy_after=mlm_accuracy(masked_lm, eval_batches),
        sparsity=mask.sparsity,
        weight_sparsity=optimizer.sparsity(),
        layer_sparsity=mask.layer_sparsity(),
        pruned_weights=mask.num_pruned,
        masked_weights=mask.num_weights,
        wall_time_s=time.time() - started,
    )
    if args.distill > 0 and history.history.get("distill_loss"):
        # Relative squared error of the layer outputs against the dense model, mean of the last epoch.
        report["distill_loss_last_epoch"] = float(history.history["distill_loss"][-1])
    atomic_write(report_path, json.dumps(report, indent=2).encode())
    print(summary)
    print(f"sparsity {mask.sparsity:.4f}; held-out MLM accuracy {report['mlm_accuracy_before']:.4f} -> "
          f"{report['mlm_accuracy_after']:.4f}; wrote {args.out}/mask.npz, {preset_dir}, report.json")
    return report


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
