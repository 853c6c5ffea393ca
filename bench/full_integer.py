"""Full-integer `.tflite` for NPUs: accuracy, size and latency of each quantization recipe.

For each fine-tuned rt_polarity classifier (default: the main job's dense model
and the 80% RPP model of bench/frontier.py), exports the float32 file and the
quantized variants at 64 tokens, batch 1, and measures on all 1,057 dev
sentences: dev accuracy of the file against its Keras model (same token ids),
agreement of labels, max |probability difference|, bytes, and median
`invoke()` latency with 1 and 2 threads (ai_edge_litert).

Variants: float32 | dynamic (int8 weights) | int8-converter (the TFLite
converter's full integer) | a16w8 (ai-edge-quantizer, int16 activations) |
int8 (ai-edge-quantizer) with the ops of `FLOAT_SETS` kept in float.
Calibration: 200 real training sentences.

    python bench/full_integer.py                       # ~25 min on 2 cores
    python bench/full_integer.py --models dense=runs/main/dense/model.keras --variants float32 a16w8
    python bench/full_integer.py --models fast3x=runs/fast3x/model.keras --shrink fast3x --name speedup_a16w8

Resumable: each (model, variant) row is kept in --out/rows/; results go to
bench/results/full_integer.{json,md} (`--name` for another file).
"""

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402,F401

import numpy as np  # noqa: E402

import tf_rpp_lite  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import export  # noqa: E402
from tf_rpp.export import metadata  # noqa: E402
from tf_rpp.export import quantization  # noqa: E402
from tf_rpp.structured import shrink  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

from tflite_size_latency import latency_ms as tflite_latency_ms  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_MODELS = ["dense=runs/main_up/dense/model.keras",
                  "rpp_80=runs/frontier/rt_polarity/rpp_down_80/seed0/model.keras"]
MASK = ("SELECT_V2", "SOFTMAX")  # the attention mask's -1e9 fill and the softmax it feeds
LAYERNORM = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT")
# variant -> (scheme, ops kept in float); "a16w8" and "int8" are export_tflite's own recipes.
RECIPES = {"a16w8 all integer": ("a16w8", ()), "int8 all integer": ("int8", ()),
           "a16w8 float softmax": ("a16w8", ("SOFTMAX",)), "int8 float softmax": ("int8", ("SOFTMAX",)),
           "int8 float mask+softmax": ("int8", MASK), "a16w8 float mask+softmax": ("a16w8", MASK),
           "int8 float mask+softmax+gelu": ("int8", MASK + ("GELU",)),
           "int8 float mask+softmax+layernorm": ("int8", MASK + LAYERNORM),
           "int8 float mask+softmax+gelu+layernorm": ("int8", MASK + ("GELU",) + LAYERNORM),
           "a16w8 float layernorm": ("a16w8", LAYERNORM),
           "a16w8 float mask+softmax+layernorm": ("a16w8", MASK + LAYERNORM),
           "int8 float mask+softmax+layernorm+add": ("int8", MASK + LAYERNORM + ("ADD",)),
           "int8 float mask+softmax+layernorm, int16 add": ("int8", MASK + LAYERNORM, ("ADD",)),
           "int8 float mask+softmax+layernorm, int16 add+fc": ("int8", MASK + LAYERNORM, ("ADD", "FULLY_CONNECTED")),
           "int8 float mask+softmax+layernorm+batch_matmul": ("int8", MASK + LAYERNORM + ("BATCH_MATMUL",))}
VARIANTS = ["float32", "dynamic", "int8-converter", "a16w8", "int8", *RECIPES]
LENGTH = 64
TEXT = "a gripping, beautifully acted film that never lets go of its audience ."


def latency_ms(path, threads, runs=30):
    return tflite_latency_ms(path, TEXT, threads, runs)[0]


def build(variant, model, path, calibration, labels):
    """Writes `path`: export_tflite's own schemes, or ai-edge-quantizer int8 with some ops kept in float."""
    if variant not in RECIPES:
        quantize = None if variant == "float32" else variant
        export.export_tflite(model, path, LENGTH, sparse=False, quantize=quantize, labels=labels,
                             representative_data=calibration if quantize in export.CALIBRATED else None)
        return
    tokenizer = model.preprocessor.tokenizer
    with tempfile.TemporaryDirectory() as folder:
        plain = os.path.join(folder, "float.tflite")
        export.export_tflite(model, plain, LENGTH, sparse=False, metadata=False)
        scheme, float_ops, *int16 = RECIPES[variant]
        rules = quantization.recipe(scheme, quantization.output_names(plain), float_ops=float_ops,
                                    int16_ops=int16[0] if int16 else ())
        quantization.quantize_tflite(plain, path, rules, calibration)
    metadata.write_classifier_metadata(path, tokenizer.get_vocabulary(), labels, export.tokenizer_settings(tokenizer))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="name=path/model.keras ...")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--out", default="runs/full_integer")
    parser.add_argument("--eval-limit", type=int, default=None, help="dev sentences (default: all 1,057)")
    parser.add_argument("--shrink", nargs="*", default=(),
                        help="names among --models whose structured-pruned model is shrunk before export")
    parser.add_argument("--name", default="full_integer", help="results file name under bench/results")
    parser.add_argument("--latency-only", action="store_true",
                        help="re-measure the latency of the rows already there (run it alone on the machine)")
    args = parser.parse_args(argv)
    rows_dir = os.path.join(args.out, "rows")
    if args.latency_only:
        for f in sorted(os.listdir(rows_dir)):
            row = json.load(open(os.path.join(rows_dir, f)))
            file = os.path.join(args.out, row["model"], row["variant"].replace(" ", "_") + ".tflite")
            row["latency_ms_1_thread"], row["latency_ms_2_threads"] = latency_ms(file, 1), latency_ms(file, 2)
            atomic_write(os.path.join(rows_dir, f), json.dumps(row, indent=2).encode())
            print(row["model"], row["variant"], row["latency_ms_1_thread"], row["latency_ms_2_threads"], flush=True)
        args.models = []
    models = [m.split("=", 1) for m in args.models]
    for name, path in ([] if args.latency_only else models):
        if not os.path.exists(path):
            parser.error(f"model {name}: no file at {path}")
    unknown = set(args.shrink) - {name for name, _ in models}
    if unknown and not args.latency_only:
        parser.error(f"--shrink {' '.join(sorted(unknown))}: not among the names of --models")
    os.makedirs(os.path.join(args.out, "rows"), exist_ok=True)
    dev = data.rt_polarity("validation")[: args.eval_limit]
    texts, gold = [t for t, _ in dev], np.array([y for _, y in dev])
    train = [t for t, _ in data.rt_polarity("train")[:200]]
    labels = ["negative", "positive"]
    for name, model_path in ([] if args.latency_only else models):
        model = tf_rpp.load_model(model_path, compile=False)
        if name in args.shrink:
            model = shrink.shrink_classifier(model)
        calibration = export.representative_inputs(train, model.preprocessor.tokenizer, LENGTH)
        reference = None
        for variant in args.variants:
            row_path = os.path.join(args.out, "rows", f"{name}__{variant.replace(' ', '_')}.json")
            if os.path.exists(row_path):
                continue
            file = os.path.join(args.out, name, variant.replace(" ", "_") + ".tflite")
            os.makedirs(os.path.dirname(file), exist_ok=True)
            started = time.time()
            build(variant, model, file, calibration, labels)
            export_s = time.time() - started
            runner = tf_rpp_lite.TFLiteClassifier(file, num_threads=2)
            encoded, _ = runner.encode(texts)
            if reference is None:
                x = dict(zip(("token_ids", "segment_ids", "padding_mask"), encoded))
                logits = np.concatenate([np.asarray(model({k: v[i:i + 64] for k, v in x.items()}, training=False))
                                         for i in range(0, len(texts), 64)])
                reference = np.exp(logits - logits.max(-1, keepdims=True))
                reference /= reference.sum(-1, keepdims=True)
            started = time.time()
            got = runner.run(*encoded).astype(np.float32)
            row = {"model": name, "variant": variant, "bytes": os.path.getsize(file),
                   "accuracy": float(np.mean(got.argmax(-1) == gold)),
                   "keras_accuracy": float(np.mean(reference.argmax(-1) == gold)),
                   "label_agreement": float(np.mean(got.argmax(-1) == reference.argmax(-1))),
                   "max_abs_probability_diff": float(np.max(np.abs(got - reference))),
                   "output_dtype": str(runner.interpreter.get_output_details()[0]["dtype"].__name__),
                   "eval_s": time.time() - started, "export_s": export_s,
                   "latency_ms_1_thread": latency_ms(file, 1), "latency_ms_2_threads": latency_ms(file, 2),
                   "float_ops": list(RECIPES[variant][1] if variant in RECIPES else
                                     quantization.FLOAT_OPS.get(variant, ())), "examples": len(texts)}
            atomic_write(row_path, json.dumps(row, indent=2).encode())
            print(json.dumps(row), flush=True)
    rows = [json.load(open(os.path.join(args.out, "rows", f))) for f in sorted(os.listdir(os.path.join(args.out, "rows")))]
    order = {v: i for i, v in enumerate(VARIANTS)}
    rows.sort(key=lambda r: (r["model"], order.get(r["variant"], 99)))
    command = "python bench/full_integer.py " + " ".join(sys.argv[1:] if argv is None else argv)
    results = os.path.join(ROOT, "bench", "results", args.name)
    if args.latency_only and os.path.exists(results + ".json"):
        previous = json.load(open(results + ".json"))["command"].split("`; latency")[0]
        command = previous + "`; latency re-measured alone: `" + command
    atomic_write(results + ".json",
                 json.dumps({"command": command, "sequence_length": LENGTH, "rows": rows}, indent=2).encode())
    lines = [f"`{command.strip()}` (rt_polarity dev, {rows[0]['examples']:,} sentences, 64 tokens, batch 1; "
             "latency: median invoke(), ai_edge_litert)", "",
             "| model | variant | dev acc. (.tflite) | dev acc. (Keras) | points lost | label agreement | "
             "max abs prob. diff | bytes | ms, 1 thread | ms, 2 threads | output |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['variant']} | {r['accuracy']:.4f} | {r['keras_accuracy']:.4f} | "
                     f"{100 * (r['keras_accuracy'] - r['accuracy']):.2f} | {r['label_agreement']:.4f} | "
                     f"{r['max_abs_probability_diff']:.4f} | {r['bytes']:,} | {r['latency_ms_1_thread']:.1f} | "
                     f"{r['latency_ms_2_threads']:.1f} | {r['output_dtype']} |")
    atomic_write(results + ".md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
