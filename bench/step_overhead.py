"""Training-step overhead of RPPOptimizer and mask enforcement on a MiniLM-L6 shape.

Three copies of a MiniLM-L6-shaped `keras_hub.models.BertMaskedLM` (6 layers,
hidden 384, 12 heads, intermediate 1536, vocabulary 30522, random init) train
on the same batch of 16 x 128 tokens with

  - `keras.optimizers.AdamW` alone,
  - `tf_rpp.RPPOptimizer(AdamW)` (prox + reweighting every 100 steps),
  - `tf_rpp.MaskedOptimizer(AdamW, mask)` at 80% sparsity (fine-tuning),

timed in interleaved rounds so drift in machine speed hits all three alike;
the medians are compared. Because two ~2 s steps differ by milliseconds, it
also times tf_rpp's own work alone (gradient masking, the fused prox/mask
pass, a reweighting) on the same weights, which is what the ratios are made of.

    python bench/step_overhead.py                # ~6 minutes on 2 cores
    python bench/step_overhead.py --rounds 2     # quicker, noisier

Writes bench/results/step_overhead.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tf_rpp  # noqa: E402
from tf_rpp import selection  # noqa: E402

MINILM = dict(vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384,
              intermediate_dim=1536, max_sequence_length=512)


def make_batch(batch, seq, masked, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1000, 30000, size=(batch, seq)).astype("int32")
    positions = np.sort(np.stack([rng.choice(seq, masked, replace=False) for _ in range(batch)]), axis=1).astype("int32")
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
         "padding_mask": np.ones_like(tokens), "mask_positions": positions}
    return x, np.take_along_axis(tokens, positions, 1), np.ones(positions.shape, "float32")


def make_model(optimizer, jit_compile):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(**MINILM, dropout=0.0)
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
    return model


def own_bytes(optimizer):
    inner = {id(v) for v in optimizer.inner_optimizer.variables}
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in optimizer.variables if id(v) not in inner)


def time_isolated_work(optimizer, repeats):
    """Milliseconds of tf_rpp's own per-step work, alone, on the pruned weights."""
    weights = optimizer.pruned_variables
    grads = [tf.random.normal(w.shape, stddev=1e-3) for w in weights]

    @tf.function
    def mask_gradients():
        return [optimizer._masked_gradient(g, w) for g, w in zip(grads, weights)]

    @tf.function
    def post_step():
        optimizer._after_inner_step(tf.constant(1e-4))

    @tf.function
    def forced_gradient_masking():
        # What `mask_gradients=True` (or Adafactor, Lamb, norm clipping) adds.
        from tf_rpp.optimizer import _mask_gradient
        return [_mask_gradient(g, m) for g, m in zip(grads, optimizer._mask_variables)]

    results = {}
    for name, fn in (("mask_gradients", mask_gradients), ("post_step", post_step)):
        fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = fn()
            if out is not None:
                _ = [o.numpy() for o in out[:1]]
            samples.append(time.perf_counter() - start)
        results[name] = 1000 * statistics.median(samples)
    if isinstance(optimizer, tf_rpp.RPPOptimizer):
        @tf.function
        def reweight():
            for w, gamma in zip(weights, optimizer._gamma_variables):
                gamma.assign(tf_rpp.proximal.reweight(w.value, optimizer.epsilon))

        reweight()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            reweight()
            samples.append(time.perf_counter() - start)
        results["reweight_amortized"] = 1000 * statistics.median(samples) / optimizer.reweight_every
    forced_gradient_masking()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        _ = forced_gradient_masking()[0].numpy()
        samples.append(time.perf_counter() - start)
    return results, 1000 * statistics.median(samples)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per optimizer per round (default 5)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--jit", action="store_true", help="compile the train step with XLA (Keras's CPU default is off)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "step_overhead.json"))
    args = parser.parse_args()

    x, y, w = make_batch(args.batch, args.seq, masked=20)
    variants = {
        "adamw": make_model(keras.optimizers.AdamW(1e-4), args.jit),
        "rpp": make_model(tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4)), args.jit),
    }
    backbone_weights = {selection.weight_key(v): v.numpy() for v in selection.select_weights(variants["rpp"])}
    mask = tf_rpp.SparsityMask.from_magnitudes(backbone_weights, 0.8)
    variants["masked"] = make_model(tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(1e-4), mask), args.jit)

    print(f"warming up {len(variants)} MiniLM-L6-shaped masked LMs (batch {args.batch} x {args.seq})...", flush=True)
    for model in variants.values():
        for _ in range(2):
            model.train_on_batch(x, y, sample_weight=w)

    times = {name: [] for name in variants}
    progress = keras.utils.Progbar(args.rounds * len(variants) * args.steps, unit_name="step")
    for _ in range(args.rounds):
        for name, model in variants.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                model.train_on_batch(x, y, sample_weight=w)
                times[name].append(time.perf_counter() - start)
                progress.add(1)

    medians = {name: statistics.median(t) for name, t in times.items()}
    rpp_opt, masked_opt = variants["rpp"].optimizer, variants["masked"].optimizer
    pruned = sum(int(np.prod(v.shape)) for v in rpp_opt.pruned_variables)
    (rpp_work, _), (masked_work, forced_ms) = time_isolated_work(rpp_opt, 30), time_isolated_work(masked_opt, 30)
    isolated = {"rpp": rpp_work, "masked": masked_work}
    # A reweighting pass happens once per `reweight_every` steps.
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}",
        "jit_compile": args.jit,
        "batch": [args.batch, args.seq],
        "steps_per_variant": len(times["adamw"]),
        "median_step_s": medians,
        "iqr_step_s": {n: [float(np.percentile(t, 25)), float(np.percentile(t, 75))] for n, t in times.items()},
        "ratio_rpp_vs_adamw": medians["rpp"] / medians["adamw"],
        "ratio_masked_vs_adamw": medians["masked"] / medians["adamw"],
        "isolated_ms": isolated,
        "isolated_ratio_rpp": 1 + sum(isolated["rpp"].values()) / 1000 / medians["adamw"],
        "isolated_ratio_masked": 1 + sum(isolated["masked"].values()) / 1000 / medians["adamw"],
        "gradient_masking_pass_ms_if_needed": forced_ms,
        "isolated_ratio_masked_with_gradient_masking": 1 + (sum(isolated["masked"].values()) + forced_ms) / 1000 / medians["adamw"],
        "pruned_weights": pruned,
        "extra_optimizer_bytes_per_pruned_weight": {
            "rpp": own_bytes(rpp_opt) / pruned,
            "masked": own_bytes(masked_opt) / pruned,
            "adamw_itself": sum(int(np.prod(v.shape)) * 4 for v in rpp_opt.inner_optimizer.variables) / sum(
                int(np.prod(v.shape)) for v in variants["rpp"].trainable_weights),
        },
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    tf_rpp.files.atomic_write(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print()
    print(f"median step: AdamW {medians['adamw']:.3f} s | RPP(AdamW) {medians['rpp']:.3f} s | "
          f"Masked(AdamW) {medians['masked']:.3f} s  ({len(times['adamw'])} steps each, interleaved)")
    print(f"ratio vs AdamW (medians):        RPP {result['ratio_rpp_vs_adamw']:.4f}x   mask {result['ratio_masked_vs_adamw']:.4f}x")
    print(f"tf_rpp work alone per step:      RPP {sum(isolated['rpp'].values()):.1f} ms   mask {sum(isolated['masked'].values()):.1f} ms"
          f"  -> RPP {result['isolated_ratio_rpp']:.4f}x, mask {result['isolated_ratio_masked']:.4f}x")
    print(f"(an inner optimizer that needs masked gradients, e.g. Adafactor, adds {forced_ms:.1f} ms: "
          f"mask {result['isolated_ratio_masked_with_gradient_masking']:.4f}x)")
    per = result["extra_optimizer_bytes_per_pruned_weight"]
    print(f"extra optimizer memory per pruned weight: RPP {per['rpp']:.2f} B, mask {per['masked']:.2f} B "
          f"({pruned:,} pruned weights; AdamW itself keeps {per['adamw_itself']:.0f} B per weight)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
