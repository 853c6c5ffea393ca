"""The main job, offline, on the embedded defaults: `tf-rpp compress` on `rt_polarity`.

Prunes the real pretrained all-MiniLM-L6-v2 to 60% sparsity with RPP on a
packaged English corpus (upstream, task-agnostic distillation), fine-tunes it
with the mask fixed on `rt_polarity` (10,605 Rotten-Tomatoes sentences)
distilling the dense fine-tuned model, writes the phone-ready `.tflite` files
and prints a table: the accuracy of both models, the points lost with a 95%
interval, file sizes and latency. Every flag of `tf-rpp compress` works here:

    python recipes/main.py --out runs/main
    python recipes/main.py --out runs/main70 --sparsity 0.7

Interrupted, the same command continues where it stopped.
"""

import os
import sys

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs

from tf_rpp import cli  # noqa: E402


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--out" not in argv:
        argv = ["--out", "runs/main", *argv]
    cli.main(["compress", *argv])


if __name__ == "__main__":
    main()
