"""Draw what pruning learned: mask patterns, per-layer sparsity, word t-SNE (PNG files).

    python recipes/visualize.py --mask runs/rpp_vs_nip/rpp_80/prune/mask.npz \\
        --preset runs/rpp_vs_nip/rpp_80/prune/preset --out docs/images --word film

Writes `<prefix>mask_patterns.png` (query and key masks of the chosen layers,
the paper's Figure 3), `<prefix>layer_sparsity.png` (a bar per pruned weight)
and, with --preset, `<prefix>tsne.png`: final-layer vectors of single words in
the dense model (--dense-preset) and the pruned one, around --word (Figure 4).
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tf_rpp  # noqa: E402
from tf_rpp import models  # noqa: E402
from tf_rpp import viz  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mask", required=True, help="a SparsityMask .npz")
    p.add_argument("--out", default="runs/images", help="folder for the PNG files")
    p.add_argument("--prefix", default="", help="file name prefix, e.g. 'rpp80_'")
    p.add_argument("--layers", default="1,2,5", help="transformer layers whose query/key masks are drawn")
    p.add_argument("--preset", default=None, help="the pruned backbone's preset folder (enables the t-SNE)")
    p.add_argument("--dense-preset", default=models.DEFAULT_PRESET, help="the dense model to compare with")
    p.add_argument("--word", default="film", help="the word the t-SNE zooms around")
    p.add_argument("--neighbors", type=int, default=40, help="words shown around --word")
    p.add_argument("--vocabulary-sample", type=int, default=3000,
                   help="whole-word vocabulary entries embedded to find the neighbours")
    return p


def run(args):
    mask = tf_rpp.SparsityMask.load(args.mask)
    os.makedirs(args.out, exist_ok=True)
    written = []
    layers = [int(i) for i in args.layers.split(",") if i.strip()]
    keys = [f"transformer_layer_{i}/self_attention_layer/{part}/kernel" for i in layers for part in ("query", "key")]
    path = os.path.join(args.out, f"{args.prefix}mask_patterns.png")
    viz.plot_mask_pattern(mask, keys, path, title=f"kept (black) and pruned (white) weights, {mask.sparsity:.0%} overall")
    written.append(path)
    path = os.path.join(args.out, f"{args.prefix}layer_sparsity.png")
    viz.plot_layer_sparsity(mask, path)
    written.append(path)
    if args.preset:
        tokenizer = models.tokenizer(args.dense_preset)
        vocabulary = tokenizer.get_vocabulary()
        # Whole, alphabetic words only: pieces (##ing) and [unused] slots say little.
        words = [w for w in vocabulary[1000:] if w.isalpha() and len(w) > 2][: args.vocabulary_sample]
        if args.word not in words:
            words.append(args.word)
        representations = {}
        for name, preset in (("dense", args.dense_preset), (f"RPP {mask.sparsity:.0%}", args.preset)):
            representations[name] = viz.word_representations(models.backbone(preset), tokenizer, words)
        path = os.path.join(args.out, f"{args.prefix}tsne.png")
        viz.plot_embedding_tsne(representations, words, args.word, neighbors=args.neighbors, path=path)
        written.append(path)
    print("wrote " + ", ".join(written))
    return written


def main(argv=None):
    run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
