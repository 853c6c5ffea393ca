"""Fine-tune a (pruned) BERT on a downstream task with its sparsity mask fixed.

The same as `tf-rpp finetune` and `tf_rpp.pipeline.finetune`: this file only forwards its arguments.

The mask is enforced after every step (`tf_rpp.MaskedOptimizer`), the task's
GLUE metric is computed on the validation split, and the run checks and
reports that the mask held (every pruned weight still exactly 0.0).

    # packaged data, offline:
    python recipes/glue_finetune.py --task rt_polarity --preset runs/prune/preset \\
        --mask runs/prune/mask.npz --out runs/rt_pruned --export-tflite
    # GLUE through tensorflow-datasets (downloads) or the official TSV layout:
    python recipes/glue_finetune.py --task glue/sst2 --tfds --data-dir ~/tfds ...
    python recipes/glue_finetune.py --task glue/mnli --tsv-dir glue_data/MNLI ...
    # structured RPP (heads and neurons) on a fine-tuned model, shrunk and exported:
    python recipes/glue_finetune.py --init-model runs/rt_dense/model.keras --teacher runs/rt_dense/model.keras \
        --structured 0.5 --steps 250 --shrink --export-tflite --out runs/rt_structured50
"""

import sys

from tf_rpp import cli


def main(argv=None):
    """`tf-rpp finetune` with these arguments; returns its result."""
    return cli.run(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    cli.main(["finetune", *sys.argv[1:]])
