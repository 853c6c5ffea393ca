"""Learn a universal sparsity mask: RPP on the masked-LM objective of a pretrained BERT.

The same as `tf-rpp prune` and `tf_rpp.pipeline.prune`: this file only forwards its arguments.

Steps: (1) warm up the MLM head with the backbone frozen (MiniLM ships none),
(2) prune the encoder kernels with RPP (or the magnitude baseline) driven by a
tfmot PolynomialDecay to --target-sparsity, or with a fixed --l1-strength,
optionally (--distill) while matching the dense model's hidden states,
(3) write the mask, the pruned backbone as a keras-hub preset, a per-layer
sparsity report, held-out MLM accuracy before and after, and TensorBoard logs.

Interrupted? Run the same command with --resume: the warm-up is kept and
pruning continues from the last completed epoch (BackupAndRestore); a finished
run is reused as it is.

    python recipes/pretrain_prune.py --out runs/prune --target-sparsity 0.6
    python recipes/pretrain_prune.py --method magnitude --out runs/nip    # the NIP baseline
    python recipes/pretrain_prune.py --preset bert_base_en_uncased ...   # with internet
"""

import sys

from tf_rpp import cli


def main(argv=None):
    """`tf-rpp prune` with these arguments; returns its result."""
    return cli.run(["prune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    cli.main(["prune", *sys.argv[1:]])
