"""What each `.tflite` variant of a fine-tuned model costs: bytes, latency, and whether it loads by default.

For every variant (float32 with dense weights, float32 with `--sparse`, dynamic
int8, float16) of each model given: the file's size, its median single-thread
and two-thread latency in LiteRT's default interpreter (XNNPACK on), timed
round-robin over the files so machine drift hits all alike, and whether that
interpreter prepares it at all. Results: `bench/results/export_encodings.{json,md}`.

    python bench/export_encodings.py runs/main/dense/model.keras runs/main/pruned/model.keras
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402,F401

from tf_rpp import export  # noqa: E402
from tf_rpp import saving  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402
from tf_rpp.export import latency  # noqa: E402

VARIANTS = {"float32": dict(), "float32 --sparse": dict(sparse=True), "dynamic int8": dict(quantize="dynamic"),
            "float16": dict(quantize="float16")}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help=".keras classifiers (from tf-rpp finetune)")
    parser.add_argument("--out", default="runs/export_encodings", help="folder for the .tflite files")
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="round-robin timing rounds (default 5)")
    args = parser.parse_args(argv)
    files = []
    for model_path in args.models:
        name = os.path.basename(os.path.dirname(os.path.abspath(model_path)))
        model = saving.load_model(model_path, compile=False)
        with open(os.path.join(os.path.dirname(model_path), "results.json"), encoding="utf-8") as f:
            labels = json.load(f)["label_names"]
        sparsity = tf_rpp.SparsityMask.from_model(model).sparsity
        for variant, settings in VARIANTS.items():
            path = os.path.join(args.out, name, variant.replace(" --", "_").replace(" ", "_") + ".tflite")
            if not os.path.exists(path):
                export.export_tflite(model, path, sequence_length=args.sequence_length, labels=labels, **settings)
            files.append({"model": name, "sparsity": sparsity, "variant": variant, "path": path,
                          "bytes": os.path.getsize(path), "ms_1_thread": [], "ms_2_threads": []})
    for _ in range(args.rounds):
        for file in files:
            file["ms_1_thread"].append(latency.latency_ms(file["path"], threads=1, runs=10))
            file["ms_2_threads"].append(latency.latency_ms(file["path"], threads=2, runs=10))
    for file in files:
        for key in ("ms_1_thread", "ms_2_threads"):
            file[key] = sorted(file[key])[len(file[key]) // 2]
    command = "python bench/export_encodings.py " + " ".join(sys.argv[1:] if argv is None else argv)
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write(os.path.join(RESULTS, "export_encodings.json"),
                 json.dumps({"command": command, "files": files}, indent=2).encode())
    lines = [f"`{command}`: each file loaded in LiteRT's default interpreter (XNNPACK on); latency: median of "
             f"{args.rounds} round-robin rounds of the median of 10 inferences, batch 1, {args.sequence_length} "
             "tokens.", "", "| model | encoder sparsity | variant | bytes | ms, 1 thread | ms, 2 threads |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {f['model']} | {f['sparsity']:.1%} | {f['variant']} | {f['bytes']:,} | {f['ms_1_thread']:.1f} | "
              f"{f['ms_2_threads']:.1f} |" for f in files]
    atomic_write(os.path.join(RESULTS, "export_encodings.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
