"""`tf-rpp-classify` (and `tf-rpp classify`): classify texts with an exported `.tflite`."""

import argparse
import sys

from tf_rpp_lite.runner import TFLiteClassifier


def main(argv=None, prog="tf-rpp-classify"):
    """`tf-rpp-classify model.tflite TEXT [TEXT ...]`: one line per text (label, probability, text)."""
    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("model", help="a .tflite file exported by tf_rpp (its .tokenizer.json beside it)")
    parser.add_argument("texts", nargs="+", help="texts to classify; 'premise ||| hypothesis' for pairs")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    args = parser.parse_args(argv)
    try:
        classifier = TFLiteClassifier(args.model, num_threads=args.threads)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(f"{prog}: {e}")
    texts = [tuple(t.split(" ||| ", 1)) if " ||| " in t else t for t in args.texts]
    labels, probabilities = classifier.classify(texts)
    print(f"# runtime: {classifier.runtime}", file=sys.stderr)
    for text, label, p in zip(args.texts, labels, probabilities):
        print(f"{label}\t{p.max():.4f}\t{text}")
