"""Structured RPP against dense and unstructured pruning: TFLite latency, size, accuracy.

Unstructured sparsity shrinks the file but TFLite still multiplies dense
matrices; removing whole attention heads and feed-forward neurons and shrinking
the model (`tf_rpp.structured.shrink`) removes the work itself. On the real MiniLM-L6
fine-tuned on `rt_polarity`:

- dense: the fine-tuned model `bench/rpp_vs_nip.py` leaves (`pretrained/rt_polarity`);
- unstructured 80%: the RPP-80% model of the same sweep;
- structured at each `--levels` fraction f: the dense model, fine-tuned further
  with `GroupRPPOptimizer` (RPPCallback, PolynomialDecay 0 -> f of the heads and
  of the neurons over `--prune-steps`, then the mask fixed), distilled from the
  dense model's logits, then shrunk. Every level gets the same budget.

Each model is exported at 128 tokens, batch 1, as float32 and dynamic-range
int8; measured: bytes, median `invoke()` latency with 1 and 2 threads
(ai_edge_litert, XNNPACK), and dev accuracy of the `.tflite` file.

    python bench/structured_speed.py                  # ~30 min on 2 cores (resumes per level)
    python bench/structured_speed.py --train-only     # the fine-tunes alone (while the machine is busy)
    python bench/structured_speed.py --report-only    # export and measure what exists, train nothing

Writes bench/results/structured_speed.json and .md, docs/images/structured_speed.png.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
import tf_rpp_lite  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import export  # noqa: E402
from tf_rpp import pipeline  # noqa: E402
from tf_rpp.structured import shrink  # noqa: E402
from tf_rpp import viz  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402
from tflite_size_latency import keras_logits  # noqa: E402
from tflite_size_latency import latency_ms  # noqa: E402

SWEEP = "runs/rpp_vs_nip"
VARIANTS = {"float32": None, "dynamic int8": "dynamic"}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", default=f"{SWEEP}/pretrained/rt_polarity/model.keras",
                   help="the dense fine-tuned classifier: baseline, starting point and teacher")
    p.add_argument("--unstructured", default=f"{SWEEP}/rpp_80/rt_polarity/model.keras",
                   help="an unstructured-pruned classifier to compare (default: RPP 80%%)")
    p.add_argument("--levels", default="0.3,0.5,0.6", help="fractions of heads and neurons removed")
    p.add_argument("--steps", type=int, default=450, help="fine-tuning steps per structured run (default 450)")
    p.add_argument("--prune-steps", type=int, default=250, help="steps to reach the target (default 250)")
    p.add_argument("--learning-rate", type=float, default=3e-4,
                   help="peak AdamW rate (default 3e-4: +2.2 points over 1e-4 at 50%%, measured)")
    p.add_argument("--group-strength", type=float, default=1.0, help="initial scale-free group lambda")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--sequence-length", type=int, default=64, help="training length (export is at 128)")
    p.add_argument("--out", default="runs/structured", help="folder for the runs and .tflite files")
    p.add_argument("--latency-runs", type=int, default=50)
    p.add_argument("--eval-limit", type=int, default=None, help="dev sentences evaluated (default all)")
    p.add_argument("--report-only", action="store_true", help="train nothing; export and measure what exists")
    p.add_argument("--train-only", action="store_true",
                   help="run the structured fine-tunes only (latency needs a quiet machine: measure later)")
    return p


def _structured(args, level):
    out = os.path.join(args.out, f"structured_{round(level * 100)}")
    results = os.path.join(out, "results.json")
    if not os.path.exists(results):
        if args.report_only:
            return None
        pipeline.finetune(
            task="rt_polarity", init_model=args.dense, teacher=args.dense, structured=level, steps=args.steps,
            pruning_steps=args.prune_steps, group_strength=args.group_strength,
            learning_rate=args.learning_rate, batch_size=args.batch_size, sequence_length=args.sequence_length,
            shrink=True, out=out, verbose=2)
    with open(results, encoding="utf-8") as f:
        return os.path.join(out, "model_shrunk.keras"), json.load(f)


def markdown(rows):
    lines = ["| model | heads kept | FFN units kept | variant | bytes | latency 1 thread (ms) | "
             "latency 2 threads (ms) | speed-up vs dense (1 thread) | dev acc. (.tflite) |",
             "|---|---|---|---|---|---|---|---|---|"]
    base = {r["variant"]: r["latency_ms_1_thread"] for r in rows if r["model"] == "dense"}
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['heads']} | {r['intermediate']} | {r['variant']} | {r['bytes']:,} | "
            f"{r['latency_ms_1_thread']:.1f} | {r['latency_ms_2_threads']:.1f} | "
            f"{base[r['variant']] / r['latency_ms_1_thread']:.2f}x | {r['accuracy']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    for path in (args.dense, args.unstructured):
        if not os.path.exists(path):
            raise FileNotFoundError(f"No model at {path}; run bench/rpp_vs_nip.py first or pass --dense/--unstructured.")
    models = [("dense", args.dense, None), ("unstructured 80%", args.unstructured, None)]
    for level in (float(v) for v in args.levels.split(",") if v):
        made = _structured(args, level)
        if made is not None:
            models.append((f"structured {level:.0%}", made[0], made[1]))
    if args.train_only:
        return
    dev = data.examples("rt_polarity", "validation")
    if args.eval_limit:
        dev = dev[: args.eval_limit]
    texts, labels = [t for t, _ in dev], np.asarray([y for _, y in dev])
    rows = []
    for name, path, result in models:
        model = tf_rpp.load_model(path, compile=False)
        counts = shrink.parameter_counts(model.backbone)
        keras_accuracy = None
        for variant, quantize in VARIANTS.items():
            tflite = os.path.join(args.out, f"{name.replace(' ', '_').replace('%', '')}_{variant.replace(' ', '_')}.tflite")
            export.export_tflite(model, tflite, sequence_length=128, quantize=quantize,
                                 labels=["negative", "positive"], scores="logits")
            runner = tf_rpp_lite.TFLiteClassifier(tflite, num_threads=2)
            encoded, _ = runner.encode(texts)
            if keras_accuracy is None:
                keras_accuracy = float(np.mean(keras_logits(model, encoded).argmax(-1) == labels))
            accuracy = float(np.mean(runner.run(*encoded).argmax(-1) == labels))
            row = {
                "model": name, "path": path, "variant": variant, "bytes": os.path.getsize(tflite),
                "heads": sum(counts["heads"]), "intermediate": sum(counts["intermediate"]),
                "heads_per_layer": counts["heads"], "intermediate_per_layer": counts["intermediate"],
                "backbone_parameters": counts["total_parameters"],
                "sparsity": tf_rpp.SparsityMask.from_model(model).sparsity,
                "latency_ms_1_thread": latency_ms(tflite, texts[0], 1, args.latency_runs)[0],
                "latency_ms_2_threads": latency_ms(tflite, texts[0], 2, args.latency_runs)[0],
                "runtime": runner.runtime, "accuracy": accuracy, "keras_accuracy": keras_accuracy,
                "dev_examples": len(texts),
                "training": None if result is None else {
                    k: result.get(k) for k in ("steps", "pruning_steps", "learning_rate", "removed_groups",
                                               "metrics", "wall_time_s")},
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if "per_layer" not in k}), flush=True)
    summary = {"command": "python bench/structured_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "sequence_length": 128, "batch_size": 1,
               "settings": {k: v for k, v in vars(args).items() if k not in ("report_only", "train_only")}, "rows": rows}
    results_dir = os.path.join(ROOT, "bench", "results")
    atomic_write(os.path.join(results_dir, "structured_speed.json"), json.dumps(summary, indent=2).encode())
    atomic_write(os.path.join(results_dir, "structured_speed.md"), markdown(rows).encode())
    viz.plot_speed_accuracy(rows, os.path.join(ROOT, "docs", "images", "structured_speed.png"))
    print(markdown(rows))


if __name__ == "__main__":
    main()
