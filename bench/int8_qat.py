"""Full-integer int8 after quantization-aware fine-tuning, against the same fine-tuning without it.

Starting from a fine-tuned `rt_polarity` classifier (and its mask), fine-tunes it `--steps` more steps
at a small learning rate, distilling from itself, (a) with `--int8-aware` (int8 rounding simulated at
every dense layer, `tf_rpp.quantization`) and (b) without (the control). Then exports each model,
and the starting one, as full-integer int8 (`export_tflite(quantize="int8")`, activations calibrated
on 200 real training sentences, 128 tokens) and measures dev accuracy of each `.tflite` (all 1,057
dev sentences, `tf_rpp_lite`) against its Keras model.

    python bench/int8_qat.py --model runs/rpp_vs_nip/rpp_80/rt_polarity/model.keras \\
        --mask runs/rpp_vs_nip/rpp_80/prune/mask.npz --out runs/int8_qat

Writes `results.json` in --out and prints a table.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import tf_rpp  # noqa: E402
import tf_rpp_lite  # noqa: E402
from recipes import glue_finetune  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import export  # noqa: E402


def int8_row(name, model_path, out, calibration, texts, labels):
    model = tf_rpp.load_model(model_path, compile=False)
    keras_accuracy = float(np.mean(np.argmax(model.predict(texts, verbose=0), -1) == labels))
    path = os.path.join(out, f"{name}_int8.tflite")
    size = export.export_tflite(model, path, sequence_length=128, sparse=False, quantize="int8",
                                representative_data=calibration, labels=["negative", "positive"])
    runner = tf_rpp_lite.TFLiteClassifier(path, num_threads=2)
    encoded, _ = runner.encode(texts)
    accuracy = float(np.mean(runner.run(*encoded).argmax(-1) == labels))
    row = {"model": name, "keras_accuracy": keras_accuracy, "int8_accuracy": accuracy,
           "loss_points": 100 * (keras_accuracy - accuracy), "bytes": size}
    print(f"{name}: Keras {keras_accuracy:.4f}, full-integer int8 {accuracy:.4f} "
          f"({row['loss_points']:+.2f} points lost), {size:,} B")
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a fine-tuned rt_polarity classifier (.keras)")
    p.add_argument("--mask", default=None, help="its SparsityMask (.npz), kept fixed while fine-tuning")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--out", default="runs/int8_qat")
    p.add_argument("--no-control", action="store_true", help="skip the fine-tuning without int8 simulation")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train = [t for t, _ in data.examples("rt_polarity", "train")]
    dev = data.examples("rt_polarity", "validation")
    texts, labels = [t for t, _ in dev], np.asarray([y for _, y in dev])
    calibration = train[:200]
    variants = [("int8_aware", ["--int8-aware"])] + ([] if args.no_control else [("control", [])])
    for name, flags in variants:
        if os.path.exists(os.path.join(args.out, name, "model.keras")):
            continue
        glue_finetune.run(glue_finetune.build_parser().parse_args([
            "--task", "rt_polarity", "--init-model", args.model, "--teacher", args.model,
            *(["--mask", args.mask] if args.mask else []), "--steps", str(args.steps),
            "--learning-rate", str(args.learning_rate), "--verbose", "2", "--out", os.path.join(args.out, name),
            *flags]))
    rows = [int8_row("start", args.model, args.out, calibration, texts, labels)]
    for name, _ in variants:
        rows.append(int8_row(name, os.path.join(args.out, name, "model.keras"), args.out, calibration, texts, labels))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    print("\n| model | Keras | full-integer int8 .tflite | points lost |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['keras_accuracy']:.4f} | {r['int8_accuracy']:.4f} | {r['loss_points']:+.2f} |")


if __name__ == "__main__":
    main()
