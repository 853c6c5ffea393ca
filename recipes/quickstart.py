"""Quickstart: the whole tf_rpp flow on a tiny BERT, offline, in about a minute.

1. Prune a small keras-hub BERT masked LM with `RPPOptimizer(AdamW)`, driven
   by a tfmot `PolynomialDecay` schedule to the target sparsity.
2. Save the learned universal mask (`mask.npz`) and its per-layer report.
3. Fine-tune a `BertTextClassifier` on the same backbone with the mask fixed
   (`MaskedOptimizer`) and check every pruned weight is still exactly 0.0.
4. The same two steps without pruning (plain AdamW), for the dense accuracy
   beside the pruned one.

The data are synthetic token sequences with learnable structure, so nothing
is downloaded: in the masked-LM data odd tokens follow even ones; in the
classification data a class-1 sequence draws 70% of its tokens from the upper
half of the vocabulary, a class-0 sequence 30%. `recipes/main.py` runs the
real thing on a pretrained MiniLM and real text.

    python recipes/quickstart.py --out runs/quickstart
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import keras  # noqa: E402,I001
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

VOCAB, SEQ = 512, 32


def synthetic_mlm(n, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    tokens[:, 1::2] = (tokens[:, 0::2] + 1) % VOCAB
    positions = np.tile(np.arange(1, SEQ, 4, dtype="int32"), (n, 1))
    labels = np.take_along_axis(tokens, positions, 1)
    masked = tokens.copy()
    np.put_along_axis(masked, positions, 4, 1)
    x = {"token_ids": masked, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens),
         "mask_positions": positions}
    return tf.data.Dataset.from_tensor_slices((x, labels, np.ones(labels.shape, "float32"))).batch(32)


def synthetic_classification(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=n).astype("int32")
    upper = rng.random((n, SEQ)) < np.where(labels[:, None] == 1, 0.7, 0.3)
    tokens = np.where(upper, rng.integers(VOCAB // 2, VOCAB, size=(n, SEQ)),
                      rng.integers(5, VOCAB // 2, size=(n, SEQ))).astype("int32")
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens)}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(32)


def pretrain(args, optimizer, callbacks):
    """A tiny BERT backbone trained on the synthetic masked-LM data with `optimizer`."""
    keras.utils.set_random_seed(args.seed)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=4, hidden_dim=64,
                                             intermediate_dim=256, max_sequence_length=SEQ, dropout=0.0)
    masked_lm = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    masked_lm.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      weighted_metrics=["accuracy"])
    masked_lm.fit(synthetic_mlm(32 * 50, args.seed), epochs=-(-args.prune_steps // 50), steps_per_epoch=50,
                  verbose=2, shuffle=False, callbacks=callbacks)
    return backbone


def finetune(args, backbone, optimizer):
    """A classifier on `backbone` fine-tuned with `optimizer`, and its held-out accuracy."""
    classifier = keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=2, preprocessor=None)
    classifier.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=["accuracy"])
    classifier.fit(synthetic_classification(2048, args.seed), epochs=args.finetune_epochs, verbose=2, shuffle=False)
    _, accuracy = classifier.evaluate(synthetic_classification(512, args.seed + 1), verbose=0)
    return classifier, accuracy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/quickstart", help="output folder (default runs/quickstart)")
    parser.add_argument("--sparsity", type=float, default=0.7, help="target sparsity of the encoder kernels (default 0.7)")
    parser.add_argument("--prune-steps", type=int, default=300, help="MLM steps; the schedule ends at 80%% of them (default 300)")
    parser.add_argument("--finetune-epochs", type=int, default=3, help="classifier epochs with the mask fixed (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 <= args.sparsity < 1:
        parser.error("--sparsity must be in [0, 1), e.g. 0.7")
    os.makedirs(args.out, exist_ok=True)
    started = time.time()

    end_step = int(0.8 * args.prune_steps)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, args.sparsity, begin_step=0, end_step=end_step, frequency=5)
    print(f"[1/4] RPP on the masked-LM objective: {args.prune_steps} steps, PolynomialDecay to {args.sparsity:.0%} "
          f"at step {end_step}")
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=10)
    backbone = pretrain(args, optimizer, [tf_rpp.RPPCallback(schedule, log_dir=os.path.join(args.out, "logs"))])

    mask = optimizer.get_mask()
    mask_path = os.path.join(args.out, "mask.npz")
    mask.save(mask_path)
    report = mask.summary(print_fn=False)
    with open(os.path.join(args.out, "sparsity_report.txt"), "w", encoding="utf-8") as f:
        f.write(report + "\n")
    print(f"[2/4] mask saved to {mask_path}\n{report}")

    print(f"[3/4] fine-tuning a classifier with the mask fixed ({args.finetune_epochs} epochs)")
    masked = tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(1e-3), tf_rpp.SparsityMask.load(mask_path))
    classifier, accuracy = finetune(args, backbone, masked)
    after = tf_rpp.SparsityMask.from_model(classifier, prune=mask.keys)
    held = bool(np.all([np.all(~after[k] | mask[k]) for k in mask.keys]) and after.num_pruned >= mask.num_pruned)

    print("[4/4] the same without pruning: masked LM, then the classifier, plain AdamW")
    _, dense_accuracy = finetune(args, pretrain(args, keras.optimizers.AdamW(1e-3), []),
                                 keras.optimizers.AdamW(1e-3))

    rows = [
        ("target sparsity", f"{args.sparsity:.2%}"),
        ("learned mask sparsity", f"{mask.sparsity:.2%} ({mask.num_pruned:,} of {mask.num_weights:,} encoder weights)"),
        ("mask held while fine-tuning", "yes" if held else "NO"),
        ("held-out accuracy, pruned classifier", f"{accuracy:.2%}"),
        ("held-out accuracy, dense classifier", f"{dense_accuracy:.2%} (chance: 50%)"),
        ("wall time", f"{time.time() - started:.0f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    print("\n".join(f"{name.ljust(width)}  {value}" for name, value in rows))
    if not held:
        sys.exit("the mask did not hold")


if __name__ == "__main__":
    main()
