"""Throughput of the MiniLM fine-tuning step on the 2-core test machine: what makes a step cheaper.

Real all-MiniLM-L6-v2 (`tf_rpp.models`), real `rt_polarity` training sentences, AdamW, batch 32,
sequence length 64, keras-hub's dropout 0.1. Options, each timed over the same batches:

- `graph`: Keras's default on CPU (`jit_compile` off);
- `xla`: the whole train step compiled with XLA (`jit_compile=True`);
- `xla+frozen_embedding`: also the 30,522 x 384 token embedding not trained (AdamW's dense
  update of its 11.7M weights and moments skipped);
- `xla+buckets`: each batch trimmed to the shortest multiple of 16 tokens that holds its longest
  sentence (the padding mask makes the result identical to padding to 64), so short sentences cost
  less; one XLA compile per bucket, timed separately;
- `xla+buckets+frozen_embedding`: both;
- `xla+length_groups` (the recipes' default): batches of similar-length sentences
  (`tf_rpp.data.length_grouped`: groups of 16, 32, 48 and 64 tokens), so a batch of short
  sentences is short; four compiles; `+frozen_embedding` as above;
- `xla+mixed_bfloat16`: bf16 compute (no AVX-512 BF16 or AMX on the test CPU: expected slower);
- `mlm_distill_graph` / `mlm_distill_xla`: the main job's pruning step, `RPPOptimizer(AdamW)` on
  the masked-LM objective with upstream layer distillation (weight 50, a dense teacher forward
  pass each step), embeddings fixed; FLOPs counted for the student's training only.

For each: median ms/step, padded and real (non-padding) tokens/s, and the achieved FLOP/s of
the encoder's matmuls (training = 3 x forward; per token and layer `8 d^2 + 4 d ffn + 4 L d`) as
a fraction of the test machine's measured float32 matmul peak (`tf.linalg.matmul` 2048^2, XLA).

    python bench/train_step.py                 # ~6 min on 2 cores
    python bench/train_step.py --steps 4       # a quick look

Writes bench/results/train_step.json and .md.
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import keras  # noqa: E402,I001
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_rpp import data  # noqa: E402
from tf_rpp import models  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OPTIONS = {
    "graph": dict(jit=False),
    "xla": dict(jit=True),
    "xla+frozen_embedding": dict(jit=True, freeze=True),
    "xla+buckets": dict(jit=True, buckets=True),
    "xla+buckets+frozen_embedding": dict(jit=True, buckets=True, freeze=True),
    "xla+length_groups": dict(jit=True, length_groups=True),
    "xla+length_groups+frozen_embedding": dict(jit=True, length_groups=True, freeze=True),
    "xla+mixed_bfloat16": dict(jit=True, policy="mixed_bfloat16"),
    "mlm_distill_graph": dict(jit=False, mlm=True),
    "mlm_distill_xla": dict(jit=True, mlm=True),
}
BUCKET = 16


def matmul_peak_gflops(n=2048, repeats=10):
    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    f = tf.function(lambda a, b: tf.linalg.matmul(a, b), jit_compile=True)
    f(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def train_flops_per_token(config, length):
    d, ffn, layers = config["hidden_dim"], config["intermediate_dim"], config["num_layers"]
    return 3 * layers * (8 * d * d + 4 * d * ffn + 4 * length * d)


def batches(preprocessor, texts, labels, batch_size, count, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pick = rng.choice(len(texts), batch_size, replace=False)
        x = preprocessor(tf.constant([texts[i] for i in pick]))
        out.append(({k: v.numpy() for k, v in x.items()}, np.asarray([labels[i] for i in pick], "int32")))
    return out


def trim(x, multiple=BUCKET):
    longest = int(x["padding_mask"].sum(axis=1).max())
    length = min(x["token_ids"].shape[1], -(-longest // multiple) * multiple)
    return {k: v[:, :length] for k, v in x.items()}


def mlm_model(preset, sequence_length, jit, texts, batch_size, count):
    """The main job's pruning model (MLM + layer distillation, RPP) and `count` preprocessed batches."""
    masked_lm = models.masked_lm(preset, sequence_length=sequence_length)
    rng = np.random.default_rng(0)
    prepared = []
    for _ in range(count):
        x, y, w = masked_lm.preprocessor(tf.constant([texts[i] for i in rng.choice(len(texts), batch_size)]))
        prepared.append(({k: v.numpy() for k, v in x.items()}, y.numpy(), w.numpy()))
    masked_lm.preprocessor = None
    models.freeze_embeddings(masked_lm.backbone)
    masked_lm.backbone.pooled_dense.trainable = False
    teacher = models.clone_backbone(masked_lm.backbone)
    trained = tf_rpp.distill.LayerDistiller(masked_lm, teacher, alpha=50.0)
    trained.compile(optimizer=tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4, weight_decay=0.01), reweight_every=10),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    weighted_metrics=["accuracy"], jit_compile=jit)
    return trained, prepared


def grouped_batches(preprocessor, texts, labels, batch_size, count, seed):
    """`count` batches as the recipes draw them by default: length-grouped (`tf_rpp.data.length_grouped`)."""
    features = tf.data.Dataset.from_tensor_slices((texts, np.asarray(labels, "int32"))).map(
        lambda x, y: (preprocessor(x), y))
    grouped = data.length_grouped(features.shuffle(len(texts), seed=seed).repeat(), batch_size)
    return [({k: v.numpy() for k, v in x.items()}, y.numpy()) for x, y in grouped.take(count)]


def run_option(name, option, preset, sequence_length, data_batches, steps, flops_config, peak, texts=None,
               grouped=None):
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(option.get("policy", "float32"))
    keras.utils.set_random_seed(0)
    if option.get("mlm"):
        classifier, prepared = mlm_model(preset, sequence_length, option["jit"], texts, 32, len(data_batches))
    else:
        classifier = models.classifier(models.backbone(preset), preset, 2, sequence_length)
        classifier.preprocessor = None
        if option.get("freeze"):
            classifier.backbone.token_embedding.trainable = False
        classifier.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           jit_compile=option["jit"])
        prepared = grouped if option.get("length_groups") else [
            (trim(x) if option.get("buckets") else x, y) for x, y in data_batches]
    compile_s, seen = 0.0, set()
    for x, y, *w in prepared:  # compile every shape first (one per bucket)
        length = x["token_ids"].shape[1]
        if length not in seen:
            seen.add(length)
            start = time.perf_counter()
            classifier.train_on_batch(x, y, *w)
            compile_s += time.perf_counter() - start
    times, padded, real, flops = [], 0, 0, 0.0
    for x, y, *w in prepared[:steps]:
        start = time.perf_counter()
        classifier.train_on_batch(x, y, *w)
        times.append(time.perf_counter() - start)
        length = x["token_ids"].shape[1]
        padded += x["token_ids"].size
        real += int(x["padding_mask"].sum())
        flops += x["token_ids"].size * train_flops_per_token(flops_config, length)
    keras.mixed_precision.set_global_policy("float32")
    total = sum(times)
    return {
        "option": name, "median_ms_per_step": 1000 * statistics.median(times),
        "mean_ms_per_step": 1000 * total / len(times), "padded_tokens_per_s": padded / total,
        "real_tokens_per_s": real / total, "encoder_gflops_per_s": flops / total / 1e9,
        "fraction_of_matmul_peak": flops / total / 1e9 / peak, "compile_and_first_steps_s": compile_s,
        "shapes_compiled": sorted(seen),
    }


def markdown(result):
    rows = result["rows"]
    # Rows may come from several runs (--options adds to the file); each used its run's peak.
    found = sorted({round(r["encoder_gflops_per_s"] / r["fraction_of_matmul_peak"], 1) for r in rows})
    peaks = " / ".join(f"{p} GFLOP/s" for p in found)
    bases = {r["option"]: r["mean_ms_per_step"] for r in rows if r["option"] in ("graph", "mlm_distill_graph")}
    lines = [f"MiniLM-L6 classifier, rt_polarity train sentences, batch {result['batch_size']} x "
             f"{result['sequence_length']}, {result['steps']} timed steps per option; {result['machine']}; "
             f"float32 matmul peak measured in each run: {peaks}.", "",
             "| option | ms/step (median) | ms/step (mean) | speed-up vs its graph step | real tokens/s | padded tokens/s | "
             "encoder GFLOP/s | of matmul peak | compile + first steps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = bases.get("mlm_distill_graph" if r["option"].startswith("mlm") else "graph", float("nan"))
        lines.append(
            f"| {r['option']} | {r['median_ms_per_step']:.0f} | {r['mean_ms_per_step']:.0f} | "
            f"{base / r['mean_ms_per_step']:.2f}x | {r['real_tokens_per_s']:.0f} | {r['padded_tokens_per_s']:.0f} | "
            f"{r['encoder_gflops_per_s']:.1f} | {r['fraction_of_matmul_peak']:.0%} | "
            f"{r['compile_and_first_steps_s']:.1f} s ({len(r['shapes_compiled'])} shapes) |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="timed steps per option (default 12)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--sequence-length", type=int, default=64)
    p.add_argument("--options", default=",".join(OPTIONS), help="comma-separated subset of " + ", ".join(OPTIONS))
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="folder for the results")
    args = p.parse_args(argv)
    unknown = [o for o in args.options.split(",") if o not in OPTIONS]
    if unknown:
        p.error(f"unknown options {unknown}; choose from {list(OPTIONS)}")
    preset = models.resolve_preset("minilm")
    rows = data.rt_polarity("train")
    texts, labels = [s for s, _ in rows], [y for _, y in rows]
    preprocessor = models.classifier(models.backbone(preset), preset, 2, args.sequence_length).preprocessor
    data_batches = batches(preprocessor, texts, labels, args.batch_size, args.steps, seed=0)
    lengths = [int(x["padding_mask"].sum(axis=1).max()) for x, _ in data_batches]
    grouped = grouped_batches(preprocessor, texts, labels, args.batch_size, args.steps, seed=0)
    peak = matmul_peak_gflops()
    config = models.backbone(preset).get_config()
    result = {"command": "python bench/train_step.py " + " ".join(argv or []),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, TF {tf.__version__}, Keras {keras.__version__}",
              "batch_size": args.batch_size, "sequence_length": args.sequence_length, "steps": args.steps,
              "matmul_peak_gflops": peak, "longest_sentence_per_batch": lengths, "rows": []}
    # A subset run adds its rows to the committed ones (same machine: compare within one file only).
    previous = os.path.join(args.out, "train_step.json")
    chosen = args.options.split(",")
    if os.path.exists(previous):
        with open(previous, encoding="utf-8") as f:
            kept = [r for r in json.load(f)["rows"] if r["option"] not in chosen]
        result["rows"] = kept
    for name in chosen:
        print(f"--- {name}", flush=True)
        row = run_option(name, OPTIONS[name], preset, args.sequence_length, data_batches, args.steps, config, peak,
                         texts=data.mlm_corpus() if OPTIONS[name].get("mlm") else None, grouped=grouped)
        print(json.dumps(row), flush=True)
        result["rows"].append(row)
        result["rows"].sort(key=lambda r: list(OPTIONS).index(r["option"]))
        os.makedirs(args.out, exist_ok=True)
        atomic_write(os.path.join(args.out, "train_step.json"), json.dumps(result, indent=2).encode())
    if any(r["option"] == "graph" for r in result["rows"]):
        atomic_write(os.path.join(args.out, "train_step.md"), markdown(result).encode())
        print(markdown(result))


if __name__ == "__main__":
    main()
