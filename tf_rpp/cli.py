"""`tf-rpp`: the pipeline on the command line.

    tf-rpp compress --data my_reviews/ --text-columns review --label-column stars --out runs/mine
                                                                    # the whole recipe, one command
    tf-rpp prune --out runs/prune --target-sparsity 0.6          # learn the universal mask (MLM)
    tf-rpp finetune --preset runs/prune/preset --mask runs/prune/mask.npz \\
        --task rt_polarity --out runs/rt --export-tflite            # fine-tune with the mask fixed
    tf-rpp finetune --data my_reviews/ --text-columns review --label-column stars --out runs/mine
    tf-rpp export runs/rt/model.keras runs/rt/model_dynamic.tflite --quantize dynamic
    tf-rpp classify runs/rt/model.tflite "a wonderful, moving film"
    tf-rpp visualize --mask runs/prune/mask.npz --preset runs/prune/preset --out figures

    tf-rpp compress --backend jax --out runs/jax                 # train on JAX (or torch); same files

`tf-rpp COMMAND --help` explains every flag. TensorFlow's start-up logs are off;
`--tf-logs` (or `TF_CPP_MIN_LOG_LEVEL=0`) brings them back.
"""

import argparse
import json
import os
import sys

from tf_rpp import _console as console
from tf_rpp.pipeline import options


def _prune_parser(sub):
    from tf_rpp.pipeline import pruning as prune

    p = sub.add_parser("prune", help="learn a universal sparsity mask on the model's pre-training objective (masked LM or distillation)",
                       description=prune.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(p, prune.PruneConfig)
    p.set_defaults(run=lambda args: prune.prune(options.config_from_arguments(prune.PruneConfig, args)))


def _compress_parser(sub):
    from tf_rpp.pipeline import compression

    p = sub.add_parser("compress", help="the whole recipe on a task or your own files: dense fine-tune, RPP, "
                       "pruned fine-tune distilling the dense model, phone-ready .tflite files, a table",
                       description=compression.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(p, compression.CompressConfig)
    p.set_defaults(run=lambda args: compression.compress(options.config_from_arguments(compression.CompressConfig, args)))


def _finetune_parser(sub):
    from tf_rpp.pipeline import finetuning as finetune

    p = sub.add_parser("finetune", help="fine-tune on a task (packaged, GLUE or your own files), mask fixed",
                       description=finetune.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_arguments(p, finetune.FinetuneConfig)
    p.set_defaults(run=lambda args: finetune.finetune(options.config_from_arguments(finetune.FinetuneConfig, args)))


def _export_parser(sub):
    p = sub.add_parser("export", help="convert a fine-tuned .keras classifier to .tflite",
                       description="Converts a fine-tuned classifier to .tflite (batch 1, int32 token ids, class "
                                   "probabilities out) with TFLite metadata inside: vocabulary, label names and "
                                   "input roles, so MediaPipe Tasks' TextClassifier and tf-rpp classify run the "
                                   "one file.")
    p.add_argument("model", help="the .keras classifier (from tf-rpp finetune)")
    p.add_argument("output", help="the .tflite file to write")
    p.add_argument("--sequence-length", type=int, default=None,
                   help="input length (default: the model's preprocessor's)")
    p.add_argument("--quantize", choices=("dynamic", "float16", "int8", "a16w8", "int8-converter"), default=None,
                   help="dynamic: int8 weights; float16: float16 weights; full integer, calibrated on "
                        "--calibration-texts (ai-edge-quantizer): a16w8 (int16 activations, int8 weights) or int8 "
                        "(with selective float ops); int8-converter: the TFLite converter's full integer "
                        "(default: float32)")
    p.add_argument("--calibration-texts", default=None,
                   help="with --quantize int8: a UTF-8 file of real texts, one per line (a few hundred)")
    p.add_argument("--labels", nargs="+", default=None,
                   help="class names in output order (default: label_names of results.json beside the model)")
    p.add_argument("--logits", action="store_true", help="output logits (default: probabilities, softmax in the graph)")
    p.add_argument("--no-metadata", action="store_true",
                   help="no TFLite metadata: the tokenizer goes to <output>.tokenizer.json beside the file (MediaPipe "
                        "cannot run it; for models without labels, e.g. regression)")
    p.add_argument("--sparse", action="store_true",
                   help="float32 only: store pruned kernels in TFLite's sparse encoding: a smaller file at the same "
                        "speed up to about 80%% sparsity, slower above (TFLite's sparse kernel); refused with "
                        "--quantize, whose sparse int8 weights do not load in MediaPipe or LiteRT's default "
                        "interpreter (default: dense weights, loads and runs fast everywhere)")
    p.add_argument("--threads", type=int, default=1, help="threads for the latency printed after writing (default 1)")
    p.set_defaults(run=_export)


def _export(args):
    from tf_rpp import data
    from tf_rpp import export
    from tf_rpp import saving

    if args.sparse and args.quantize:
        raise ValueError(f"--sparse applies to float32 only: with --quantize {args.quantize} the sparse encoding does "
                         "not load in MediaPipe or LiteRT's default interpreter. Drop --sparse.")
    if args.quantize in export.CALIBRATED and not args.calibration_texts:
        raise ValueError(f"--quantize {args.quantize} needs --calibration-texts (a file of real texts, one per line).")
    calibration = data.text_lines(args.calibration_texts) if args.calibration_texts else None
    labels = args.labels
    results = os.path.join(os.path.dirname(os.path.abspath(args.model)), "results.json")
    if labels is None and os.path.exists(results):
        with open(results, encoding="utf-8") as f:
            labels = json.load(f).get("label_names")
    if not args.no_metadata and not labels:
        raise ValueError(f"No label names for the TFLite metadata: none in {results}. Pass --labels NAME ... "
                         "(in output order) or --no-metadata.")
    model = saving.load_model(args.model, compile=False)
    length = args.sequence_length or getattr(getattr(model, "preprocessor", None), "sequence_length", None) or 128
    size = export.export_tflite(model, args.output, sequence_length=length, sparse=args.sparse,
                                quantize=args.quantize, labels=labels, representative_data=calibration,
                                metadata=not args.no_metadata, scores="logits" if args.logits else "probabilities")
    from tf_rpp.export import latency

    milliseconds = latency.latency_ms(args.output, threads=args.threads)
    print(f"wrote {args.output}: {size / 1e6:.1f} MB, {milliseconds:.1f} ms per text ({args.threads} thread"
          f"{'s' if args.threads > 1 else ''}, LiteRT), sequence length {length}, labels {labels}")
    return size


def _classify_parser(sub):
    p = sub.add_parser("classify", help="classify texts with an exported .tflite (no TensorFlow needed)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(run=lambda args: _classify(args.rest))


def _classify(argv):
    from tf_rpp_lite import cli as lite_cli

    return lite_cli.main(argv, prog="tf-rpp classify")


def _visualize_parser(sub):
    p = sub.add_parser("visualize", help="draw mask patterns, per-layer sparsity and the word t-SNE (PNG)",
                       description="Draws what pruning learned: mask patterns of chosen layers (the paper's "
                                   "Figure 3), a bar per pruned weight, and with --preset a word t-SNE of the "
                                   "dense and the pruned model (Figure 4).")
    p.add_argument("--mask", required=True, help="a SparsityMask .npz")
    p.add_argument("--out", default="runs/images", help="folder for the PNG files (default: runs/images)")
    p.add_argument("--prefix", default="", help="file name prefix, e.g. 'rpp80_'")
    p.add_argument("--layers", default="1,2,5", help="transformer layers whose query/key masks are drawn")
    p.add_argument("--preset", default=None, help="the pruned backbone's preset folder (enables the t-SNE)")
    p.add_argument("--dense-preset", default="minilm", help="the dense model to compare with (default: minilm)")
    p.add_argument("--word", default="film", help="the word the t-SNE zooms around (default: film)")
    p.add_argument("--neighbors", type=int, default=40, help="words shown around --word (default: 40)")
    p.add_argument("--vocabulary-sample", type=int, default=3000,
                   help="whole-word vocabulary entries embedded to find the neighbours (default: 3000)")
    p.set_defaults(run=_visualize)


def _visualize(args):
    from tf_rpp import viz
    from tf_rpp.masks import SparsityMask

    layers = tuple(int(i) for i in args.layers.split(",") if i.strip())
    written = viz.write_figures(
        SparsityMask.load(args.mask), args.out, args.prefix, layers, args.preset, args.dense_preset, args.word,
        args.neighbors, args.vocabulary_sample)
    print("wrote " + ", ".join(written))
    return written


def build_parser():
    """The `tf-rpp` argument parser, one subcommand per step.

    Example:

    ```python
    build_parser().parse_args(["prune", "--steps", "100"]).steps   # 100
    ```
    """
    parser = argparse.ArgumentParser(prog="tf-rpp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tf-logs", action="store_true", help="show TensorFlow's own log lines")
    parser.add_argument("--backend", choices=console.BACKENDS, default=None,
                        help="the Keras backend that trains (default: KERAS_BACKEND, else tensorflow); TensorFlow "
                             "reads the data and writes the .tflite files on every backend")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compress,prune,finetune,export,classify,visualize}")
    for add in (_compress_parser, _prune_parser, _finetune_parser, _export_parser, _classify_parser,
                _visualize_parser):
        add(sub)
    return parser


def run(argv):
    """Runs one `tf-rpp` command line (a list of arguments) and returns the step's result.

    Example:

    ```python
    result = run(["finetune", "--task", "snli", "--steps", "100"])   # a FinetuneResult
    ```
    """
    argv = _global_flags_first(list(argv))
    args = build_parser().parse_args(argv)
    if args.backend is not None:
        import keras

        if keras.backend.backend() != args.backend:
            raise ValueError(f"--backend {args.backend}: Keras in this process already runs on "
                             f"{keras.backend.backend()!r}, and it fixes its backend when first imported; run the "
                             f"tf-rpp command, or start Python with KERAS_BACKEND={args.backend}.")
    if not args.tf_logs:
        console.quiet_python_logging()
    return args.run(args)


def _global_flags_first(argv):
    # --tf-logs and --backend are accepted after the subcommand too.
    flags = []
    for flag, takes_value in (("--tf-logs", False), ("--backend", True)):
        for i, arg in enumerate(argv[1:], start=1):
            if arg == flag or arg.startswith(flag + "="):
                end = i + 1 + (takes_value and arg == flag)
                flags += argv[i:end]
                del argv[i:end]
                break
    return flags + argv


def main(argv=None):
    """The `tf-rpp` command: errors in the settings or data end it with a one-line message.

    Bad settings or data (`ValueError`, `FileNotFoundError`) are found before
    any work starts and exit with status 2 and the message; no traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        run(argv)
    except (ValueError, FileNotFoundError) as e:
        command = next((a for a in argv if not a.startswith("-")), "")
        print(f"tf-rpp {command}: error: {e}", file=sys.stderr)
        sys.exit(2)
