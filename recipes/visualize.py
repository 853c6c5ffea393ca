"""Draw what pruning learned: mask patterns, per-layer sparsity, word t-SNE (PNG files).

The same as `tf-rpp visualize`: this file only forwards its arguments.

    python recipes/visualize.py --mask runs/rpp_vs_nip/rpp_80/prune/mask.npz \\
        --preset runs/rpp_vs_nip/rpp_80/prune/preset --out docs/images --word film

Writes `<prefix>mask_patterns.png` (query and key masks of the chosen layers,
the paper's Figure 3), `<prefix>layer_sparsity.png` (a bar per pruned weight)
and, with --preset, `<prefix>tsne.png`: final-layer vectors of single words in
the dense model (--dense-preset) and the pruned one, around --word (Figure 4).
"""

import sys

from tf_rpp import cli


def main(argv=None):
    """`tf-rpp visualize` with these arguments; returns its result."""
    return cli.run(["visualize", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    cli.main(["visualize", *sys.argv[1:]])
