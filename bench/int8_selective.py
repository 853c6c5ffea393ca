"""Which layers' int8 rounding costs accuracy: per-layer sensitivity, then keep the worst in float.

Calibrates a fine-tuned classifier once (int8 activations, 200 real training sentences, 128 tokens,
batch 1), then re-quantizes the calibrated model with one FULLY_CONNECTED layer at a time left in
float and measures how far the logits move from the Keras model's on 200 *other* training
sentences (the probe). Keeping the k most sensitive layers in float, it then measures dev accuracy
of each file on all `rt_polarity` dev sentences (dev data is never used to choose).

    python bench/int8_selective.py --model runs/rpp_vs_nip/rpp_80/rt_polarity/model.keras --out runs/int8_selective

Writes `sensitivity.json` and `results.json` in --out.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.lite.python import convert  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
from tf_rpp import data  # noqa: E402
from int8_common import file_logits  # noqa: E402
from int8_common import int8_converter  # noqa: E402


def fc_nodes(content):
    """Output tensor names of the FULLY_CONNECTED ops: the node names `mlir_quantize` can deny."""
    interpreter = tf.lite.Interpreter(model_content=content)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [names[op["outputs"][0]] for op in interpreter._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--out", default="runs/int8_selective")
    p.add_argument("--keep", default="0,1,2,4,6,8,12", help="numbers of float layers to evaluate on dev")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    model = tf_rpp.load_model(args.model, compile=False)
    tokenizer = model.preprocessor.tokenizer
    train = [t for t, _ in data.examples("rt_polarity", "train")]
    probe = train[200:400]
    started = time.time()
    with int8_converter(model, train[:200]) as converter:
        converter.experimental_mlir_quantizer = True
        converter._experimental_calibrate_only = True
        calibrated = converter.convert()
    print(f"calibrated in {time.time() - started:.0f} s")

    def quantize(denylist):
        return convert.mlir_quantize(calibrated, denylisted_nodes=list(denylist))

    reference = model.predict(probe, verbose=0)

    def error(content):
        got = file_logits(content, tokenizer, probe)
        return float(np.mean((got - reference) ** 2)), float(np.mean(got.argmax(-1) == reference.argmax(-1)))

    base_error, base_agree = error(quantize([]))
    print(f"full integer: probe logit MSE {base_error:.4f}, agreement {base_agree:.3f}")
    nodes = fc_nodes(quantize([]))
    sensitivity = []
    for i, node in enumerate(nodes):
        mse, agree = error(quantize([node]))
        sensitivity.append({"node": node, "mse_without": mse, "gain": base_error - mse, "agreement": agree})
        print(f"[{i + 1}/{len(nodes)}] {node}: MSE {mse:.4f} (gain {base_error - mse:+.4f}), agreement {agree:.3f}")
    sensitivity.sort(key=lambda r: -r["gain"])
    with open(os.path.join(args.out, "sensitivity.json"), "w") as f:
        json.dump({"full_integer_mse": base_error, "layers": sensitivity}, f, indent=2)

    dev = data.examples("rt_polarity", "validation")
    texts, labels = [t for t, _ in dev], np.asarray([y for _, y in dev])
    keras_accuracy = float(np.mean(np.argmax(model.predict(texts, verbose=0), -1) == labels))
    results = {"keras_accuracy": keras_accuracy, "rows": []}
    for k in [int(k) for k in args.keep.split(",")]:
        denylist = [r["node"] for r in sensitivity[:k]]
        content = quantize(denylist)
        accuracy = float(np.mean(file_logits(content, tokenizer, texts).argmax(-1) == labels))
        row = {"float_layers": k, "nodes": denylist, "bytes": len(content), "dev_accuracy": accuracy,
               "probe_mse": error(content)[0]}
        results["rows"].append(row)
        print(f"{k} FC layers float: {len(content):,} B, dev accuracy {accuracy:.4f} (Keras {keras_accuracy:.4f})")
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
