"""Full-integer int8 with some op types left in float: where the int8 accuracy loss comes from.

Converts a fine-tuned classifier (SavedModel + `tf.lite.TFLiteConverter`, int8 activations calibrated
on 200 real training sentences, 128 tokens, batch 1) through TFLite's `QuantizationDebugger` with
`denylisted_ops`, so the listed op types stay float, then measures dev accuracy of the file on all
`rt_polarity` dev sentences and the median `invoke()` latency on 1 thread.

    python bench/int8_denylist.py --model runs/rpp_vs_nip/rpp_80/rt_polarity/model.keras \\
        --denylist ADD,MUL,MEAN,SQUARED_DIFFERENCE,RSQRT,NEG,SOFTMAX,GELU,BATCH_MATMUL

An exploration, not an export mode: its results are written up in docs/tflite.md.
"""

import argparse
import os
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
import tf_rpp_lite  # noqa: E402
from tf_rpp import data  # noqa: E402
from tf_rpp import export  # noqa: E402
from int8_common import int8_converter  # noqa: E402
from tflite_size_latency import latency_ms  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a fine-tuned rt_polarity classifier (.keras)")
    p.add_argument("--denylist", default="", help="comma-separated TFLite op types to keep in float")
    p.add_argument("--out", default="runs/int8_denylist/model.tflite")
    args = p.parse_args(argv)
    model = tf_rpp.load_model(args.model, compile=False)
    train = [t for t, _ in data.examples("rt_polarity", "train")]
    denylist = [op for op in args.denylist.split(",") if op]
    started = time.time()
    with int8_converter(model, train[:200]) as converter:
        if denylist:
            calibration = list(converter.representative_dataset())
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: iter(calibration[:8]),
                debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=denylist))
            content = debugger.get_nondebug_quantized_model()
        else:
            content = converter.convert()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "wb") as f:
        f.write(content)
    tokenizer = model.preprocessor.tokenizer
    export.write_tokenizer(tokenizer, export.tokenizer_path(args.out), ["negative", "positive"])
    dev = data.examples("rt_polarity", "validation")
    texts, labels = [t for t, _ in dev], np.asarray([y for _, y in dev])
    runner = tf_rpp_lite.TFLiteClassifier(args.out, num_threads=2)
    accuracy = float(np.mean(runner.logits(texts).argmax(-1) == labels))
    keras_accuracy = float(np.mean(np.argmax(model.predict(texts, verbose=0), -1) == labels))
    latency, runtime = latency_ms(args.out, texts[0], 1, 30)
    print(f"denylist {denylist or 'none'}: {len(content):,} B, converted in {time.time() - started:.0f} s; "
          f"dev accuracy {accuracy:.4f} (Keras {keras_accuracy:.4f}); latency {latency:.1f} ms on 1 thread ({runtime})")


if __name__ == "__main__":
    main()
