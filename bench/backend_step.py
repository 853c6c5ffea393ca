"""The cost of the optimizer wrappers on each Keras backend: a MiniLM-shaped classifier's training step.

For each backend (a fresh process each: Keras fixes the backend at import), a
classifier of MiniLM's shape (6 layers, hidden 384, 12 heads, intermediate 1536,
random weights, 32 x 64 tokens) takes compiled training steps with plain AdamW,
`MaskedOptimizer(AdamW)` (a 60% mask) and `RPPOptimizer(AdamW)` (reweighting
every 10 steps), compiled as the pipeline compiles them (XLA on TensorFlow,
`jax.jit` on JAX, eager on PyTorch), interleaved round by round so drift hits all alike; reported:
the median step and the median over rounds of each wrapper's step over
AdamW's step of the same round. Results: `bench/results/backend_step.{json,md}`
(a backend run alone replaces its own row).

    python bench/backend_step.py --backends tensorflow,jax,torch --rounds 5
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
OPTIMIZERS = ("adamw", "masked", "rpp")


def measure(rounds, steps):
    """In this process's backend: {optimizer: [seconds per step, one per round]}."""
    import keras
    import keras_hub
    import numpy as np

    import tf_rpp

    data = np.random.default_rng(0)
    x = {"token_ids": data.integers(5, 30522, (32, 64)).astype("int32"),
         "segment_ids": np.zeros((32, 64), "int32"), "padding_mask": np.ones((32, 64), "int32")}
    y = data.integers(0, 2, 32).astype("int32")
    models = {}
    for name in OPTIMIZERS:
        keras.utils.set_random_seed(0)
        backbone = keras_hub.models.BertBackbone(vocabulary_size=30522, num_layers=6, num_heads=12, hidden_dim=384,
                                                 intermediate_dim=1536, max_sequence_length=512)
        model = keras_hub.models.BertTextClassifier(backbone, 2, preprocessor=None)
        inner = keras.optimizers.AdamW(1e-4)
        if name == "masked":
            weights = {tf_rpp.selection.weight_key(v): keras.ops.convert_to_numpy(v.value)
                       for v in tf_rpp.select_weights(model)}
            optimizer = tf_rpp.MaskedOptimizer(inner, tf_rpp.SparsityMask.from_magnitudes(weights, 0.6))
        elif name == "rpp":
            optimizer = tf_rpp.RPPOptimizer(inner, reweight_every=10)
        else:
            optimizer = inner
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=keras.backend.backend() != "torch")
        model.train_on_batch(x, y)  # compile
        model.train_on_batch(x, y)
        models[name] = model
    times = {name: [] for name in OPTIMIZERS}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                model.train_on_batch(x, y)
            times[name].append((time.perf_counter() - start) / steps)
    return times


def _summary(row):
    """The row with its median step per optimizer and each wrapper's ratio to AdamW."""
    times = row["rounds"]
    # Each round times the three optimizers back to back: the ratio within a round cancels drift.
    ratios = {name: statistics.median(t / a for t, a in zip(times[name], times["adamw"])) for name in ("masked", "rpp")}
    return {**row, "seconds": {name: statistics.median(values) for name, values in times.items()},
            "masked_ratio": ratios["masked"], "rpp_ratio": ratios["rpp"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="steps per optimizer per round (default 3)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from the stored rounds")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.rounds, args.steps)))
        return
    path = os.path.join(RESULTS, "backend_step.json")
    rows = {}  # rows of backends not run now are kept: one backend can be re-measured alone
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = {row["backend"]: row for row in json.load(f)["rows"]}
    command = "python bench/backend_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    for backend in [] if args.report_only else args.backends.split(","):
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", "--rounds", str(args.rounds),
                               "--steps", str(args.steps)], capture_output=True, text=True,
                              env={**os.environ, "KERAS_BACKEND": backend, "TF_RPP_QUIET": "1"})
        if done.returncode != 0:
            rows[backend] = {"backend": backend, "error": done.stderr.strip()[-300:], "command": command}
            continue
        rows[backend] = {"backend": backend, "rounds": json.loads(done.stdout.strip().splitlines()[-1]),
                         "command": command}
    rows = [row if "error" in row else _summary(row) for row in rows.values()]
    rows.sort(key=lambda row: ("tensorflow", "jax", "torch").index(row["backend"]))
    os.makedirs(RESULTS, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"rows": rows}, f, indent=2)
    lines = ["MiniLM-shaped classifier, random weights, 32 x 64 tokens, step compiled as the pipeline does "
             "(XLA on TensorFlow, jax.jit on JAX, eager on PyTorch): median step over rounds, and in brackets "
             "the median over rounds of the wrapper's step over AdamW's step of the same round. Targets: "
             "RPPOptimizer <= 1.02x, MaskedOptimizer <= 1.01x.", "",
             "| backend | AdamW s/step | MaskedOptimizer | RPPOptimizer | command |", "|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | failed: {row['error'][-120:]} | | | `{row['command']}` |")
            continue
        s = row["seconds"]
        lines.append(f"| {row['backend']} | {s['adamw']:.3f} | {s['masked']:.3f} ({row['masked_ratio']:.3f}x) | "
                     f"{s['rpp']:.3f} ({row['rpp_ratio']:.3f}x) | `{row['command']}` |")
    with open(os.path.join(RESULTS, "backend_step.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
