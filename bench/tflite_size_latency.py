"""TFLite size, latency and parity of dense and RPP-pruned MiniLM-L6 on rt_polarity.

For each fine-tuned Keras model (default: the rt_polarity models that
`bench/rpp_vs_nip.py` leaves: the original MiniLM and RPP at 50/70/80/90%),
exports these `.tflite` variants at 128 tokens, batch 1:

    float32 | float32+sparse | dynamic int8 | int8 (full integer, calibrated on 200 real
    training sentences) | dynamic int8+trimmed vocab (`tf_rpp.export.trim_vocabulary` on the
    training sentences)

(`bench/results/tflite_size_latency.json` also holds rows measured when the sparse
encoding could be combined with int8 weights; it no longer can: those files do
not load in MediaPipe or LiteRT's default interpreter.)

and measures: bytes, gzip bytes, which weights the converter stored in a sparse
encoding (read from the flatbuffer), median interpreter `invoke()` latency with
1 and 2 threads (ai_edge_litert, XNNPACK default), dev accuracy of the file
against its Keras model on the same token ids, and for float32 the max |logit
difference| from Keras.

    python bench/tflite_size_latency.py                  # ~35 min on 2 cores
    python bench/tflite_size_latency.py --models dense=runs/main/dense/model.keras --eval-limit 100
    python bench/tflite_size_latency.py --variants "dynamic int8+trimmed vocab"   # adds rows

Rows of a run replace the committed rows of the same model and variant; others are kept.

Writes bench/results/tflite_size_latency.json and .md (the table; under --out with
--no-commit-results).
"""

import argparse
import gzip
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
import tf_rpp_lite  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import export  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

SWEEP = "runs/rpp_vs_nip"
DEFAULT_MODELS = [("dense", f"{SWEEP}/pretrained/rt_polarity/model.keras")] + [
    (f"rpp_{s}", f"{SWEEP}/rpp_{s}/rt_polarity/model.keras") for s in (50, 70, 80, 90)]
VARIANTS = {
    "float32": {"sparse": False, "quantize": None},
    "float32+sparse": {"sparse": True, "quantize": None},
    "dynamic int8": {"sparse": False, "quantize": "dynamic"},
    "int8": {"sparse": False, "quantize": "int8"},
    # The vocabulary trimmed to the tokens of the training sentences (plus
    # every single character): the token embedding is most of what remains.
    "dynamic int8+trimmed vocab": {"sparse": False, "quantize": "dynamic", "trim": True},
}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None, help="name=path.keras pairs (default: the sweep's)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    p.add_argument("--out", default="runs/tflite_bench", help="folder for the .tflite files")
    p.add_argument("--sequence-length", type=int, default=128)
    p.add_argument("--latency-runs", type=int, default=50, help="timed invokes per thread count (median)")
    p.add_argument("--eval-limit", type=int, default=None, help="dev sentences evaluated (default all 1,057)")
    p.add_argument("--calibration", type=int, default=200, help="training sentences for int8 calibration")
    p.add_argument("--no-commit-results", action="store_true", help="write results only under --out")
    p.add_argument("--skip-latency", action="store_true",
                   help="export and evaluate only (latency needs a quiet machine: measure it later)")
    p.add_argument("--latency-only", action="store_true",
                   help="re-measure the latency of the files listed in the results JSON, nothing else")
    return p


def sparse_tensors(path):
    """Names and shapes of the constant tensors stored in a sparse encoding, and op counts."""
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(f.read(), 0))
    graph = model.subgraphs[0]
    sparse = [(t.name.decode(), [int(d) for d in t.shape]) for t in graph.tensors if t.sparsity is not None]
    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = {}
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        ops[name] = ops.get(name, 0) + 1
    return sparse, ops


# The text every frontier latency is timed on (bench/frontier.py, bench/frontier_latency.py).
TEXT = "a gripping, beautifully acted film that never lets go of its audience ."


def latency_ms(path, text, threads, runs):
    """Median `invoke()` time of `path` on one packed text, and the runtime that ran it."""
    runner = tf_rpp_lite.TFLiteClassifier(path, num_threads=threads)
    runner.feed(*runner.encode([text])[0])
    for _ in range(5):
        runner.interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner.interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), runner.runtime


def keras_logits(model, encoded, batch=64):
    token_ids, segment_ids, padding_mask = encoded
    outputs = []
    for i in range(0, len(token_ids), batch):
        x = {"token_ids": token_ids[i:i + batch], "segment_ids": segment_ids[i:i + batch],
             "padding_mask": padding_mask[i:i + batch]}
        outputs.append(np.asarray(model(x, training=False)))
    return np.concatenate(outputs)


def markdown(rows):
    lines = ["| model | sparsity | variant | bytes | % of dense float32 | gzip bytes | sparse tensors | "
             "latency 1 thread (ms) | latency 2 threads (ms) | dev acc. (.tflite) | dev acc. (Keras) | "
             "max abs logit diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = next((r["bytes"] for r in rows if r["model"] == "dense" and r["variant"] == "float32"), None)
    for r in rows:
        share = f"{100 * r['bytes'] / base:.1f}%" if base else "-"
        diff = "-" if r.get("max_abs_logit_diff") is None else f"{r['max_abs_logit_diff']:.2e}"
        lat1 = "-" if r["latency_ms_1_thread"] is None else f"{r['latency_ms_1_thread']:.1f}"
        lat2 = "-" if r["latency_ms_2_threads"] is None else f"{r['latency_ms_2_threads']:.1f}"
        lines.append(f"| {r['model']} | {r['sparsity']:.0%} | {r['variant']} | {r['bytes']:,} | {share} | "
                     f"{r['gzip_bytes']:,} | {r['sparse_tensors']} | {lat1} | {lat2} | {r['accuracy']:.4f} | {r['keras_accuracy']:.4f} | {diff} |")
    return "\n".join(lines) + "\n"


def _results_dir(args):
    return args.out if args.no_commit_results else os.path.join(ROOT, "bench", "results")


def _previous(args):
    """The results JSON written before (`{}` if none)."""
    path = os.path.join(_results_dir(args), "tflite_size_latency.json")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _merge(previous, rows):
    old = previous.get("rows", [])
    if not old:
        return rows
    new = {(r["model"], r["variant"]) for r in rows}
    order = list(VARIANTS)
    merged = [r for r in old if (r["model"], r["variant"]) not in new] + rows
    models = list(dict.fromkeys(r["model"] for r in old + rows))
    return sorted(merged, key=lambda r: (models.index(r["model"]), order.index(r["variant"])))


def _write(args, rows, argv, previous):
    command = "python bench/tflite_size_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    commands = previous.get("commands", [previous["command"]] if "command" in previous else [])
    summary = {"commands": [c for c in commands if c != command] + [command],
               "sequence_length": args.sequence_length, "batch_size": 1, "latency_runs": args.latency_runs,
               "rows": rows}
    results_dir = _results_dir(args)
    atomic_write(os.path.join(results_dir, "tflite_size_latency.json"), json.dumps(summary, indent=2).encode())
    atomic_write(os.path.join(results_dir, "tflite_size_latency.md"), markdown(rows).encode())
    print(markdown(rows))


def remeasure_latency(args, argv):
    previous = _previous(args)
    if not previous:
        raise FileNotFoundError(f"No results in {_results_dir(args)} to re-measure; run the bench first.")
    rows = previous["rows"]
    for row in rows:
        for threads, key in ((1, "latency_ms_1_thread"), (2, "latency_ms_2_threads")):
            row[key], row["runtime"] = latency_ms(row["tflite_path"], row["latency_text"], threads, args.latency_runs)
        print(f"{row['model']:8s} {row['variant']:20s} {row['latency_ms_1_thread']:8.2f} ms  "
              f"{row['latency_ms_2_threads']:8.2f} ms  {row['runtime']}", flush=True)
    _write(args, rows, argv, previous)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.latency_only:
        return remeasure_latency(args, argv)
    models = [tuple(m.split("=", 1)) for m in args.models] if args.models else DEFAULT_MODELS
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"Unknown variants {unknown}; choose from {list(VARIANTS)}.")
    missing = [path for _, path in models if not os.path.exists(path)]
    if missing:
        raise FileNotFoundError(f"No model at {missing[0]}; run bench/rpp_vs_nip.py first or pass --models.")
    os.makedirs(args.out, exist_ok=True)
    dev = data.examples("rt_polarity", "validation")
    if args.eval_limit:
        dev = dev[: args.eval_limit]
    texts, labels = [t for t, _ in dev], np.asarray([y for _, y in dev])
    train_texts = [t for t, _ in data.examples("rt_polarity", "train")]
    calibration = train_texts[: args.calibration]
    rows = []
    for name, model_path in models:
        model = tf_rpp.load_model(model_path, compile=False)
        sparsity = tf_rpp.SparsityMask.from_model(model).sparsity
        reference = None
        for variant in variants:
            path = os.path.join(args.out, f"{name}_{variant.replace(' ', '_').replace('+', '_')}.tflite")
            settings = dict(VARIANTS[variant])
            exported = model
            if settings.pop("trim", False):
                exported, kept = tf_rpp.export.trim_vocabulary(model, train_texts)
                print(f"{name}: vocabulary trimmed to {len(kept):,} tokens", flush=True)
            started = time.time()
            export.export_tflite(exported, path, sequence_length=args.sequence_length,
                                 labels=["negative", "positive"], representative_data=calibration, scores="logits",
                                 **settings)
            export_s = time.time() - started
            runner = tf_rpp_lite.TFLiteClassifier(path, num_threads=2)
            # A trimmed vocabulary tokenizes differently: its own ids, from its own tokenizer file.
            own, truncated = runner.encode(texts)
            if reference is None:  # the Keras model on its own tokenizer's ids, once per model
                if exported is model:
                    encoded = own
                else:
                    packed = export.representative_inputs(texts, model.preprocessor.tokenizer,
                                                          args.sequence_length, batch_size=len(texts))[0]
                    encoded = tuple(packed[n] for n in export.INPUT_NAMES)
                reference = keras_logits(model, encoded)
            tflite_logits = runner.run(*own)
            sparse, ops = sparse_tensors(path)
            with open(path, "rb") as f:
                gz = len(gzip.compress(f.read(), compresslevel=6))
            row = {
                "model": name, "model_path": model_path, "variant": variant, "sparsity": sparsity,
                "bytes": os.path.getsize(path), "gzip_bytes": gz, "sparse_tensors": len(sparse),
                "sparse_tensor_names": [n for n, _ in sparse], "ops": ops,
                "tflite_path": path, "latency_text": texts[0],
                "latency_ms_1_thread": None if args.skip_latency else latency_ms(path, texts[0], 1, args.latency_runs)[0],
                "latency_ms_2_threads": None if args.skip_latency else latency_ms(path, texts[0], 2, args.latency_runs)[0],
                "runtime": runner.runtime,
                "accuracy": float(np.mean(tflite_logits.argmax(-1) == labels)),
                "keras_accuracy": float(np.mean(reference.argmax(-1) == labels)),
                "max_abs_logit_diff": (float(np.max(np.abs(tflite_logits - reference)))
                                       if VARIANTS[variant]["quantize"] is None else None),
                "vocabulary_size": int(exported.backbone.vocabulary_size),
                "dev_examples": len(texts), "truncated_texts": truncated, "export_s": export_s,
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("sparse_tensor_names", "ops")}), flush=True)
    previous = _previous(args)
    _write(args, _merge(previous, rows), argv, previous)


if __name__ == "__main__":
    main()
