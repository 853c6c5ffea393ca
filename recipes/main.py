"""The main job, offline, on the embedded defaults: prune MiniLM, fine-tune, export.

Default flow (`--flow upstream`, the paper's):

1. `tf_rpp.pipeline.prune` (`tf-rpp prune`): RPP on the real pretrained all-MiniLM-L6-v2 over the
   packaged text corpus, to 60% sparsity of the encoder kernels (tfmot PolynomialDecay), learning the
   universal mask. The objective is task-agnostic distillation (`--objective distill`, the default here):
   the pruned encoder matches the dense MiniLM's layer outputs, MiniLM's own way of being trained (it
   ships no MLM head). `--objective mlm` is the paper's masked LM on a freshly initialised head, plus
   the same layer term (`--prune-distill 50`); on seed 0 it lost 2.37 points against distillation's
   1.70 and took 513 s against 385 s (docs/frontier.md).
2. `tf_rpp.pipeline.finetune` (`tf-rpp finetune`) twice on `rt_polarity` (Rotten-Tomatoes sentences,
   SST-2-like): the dense pretrained MiniLM, then the pruned one with its mask fixed, distilling from the
   dense one, its logits and its layer outputs.
3. Both exported to `.tflite`; a table of sparsity, dev accuracy and sizes. The points lost come with a
   95% interval from resampling the dev sentences (a paired bootstrap, `tf_rpp.significance`): how much
   of the gap the dev set's size alone leaves uncertain. The training seed moves it further
   (bench/results/main_job_seeds.md).

`--flow downstream` prunes the dense fine-tuned model on the task itself instead (RPP to 60% over 60%
of the steps, distilling it); at 60%, seed 0, it reached 0.8430 against the dense 0.8713
(docs/frontier.md), below the upstream flow, so it is not the default.

Defaults, sized for about 20 minutes on 2 cores: fine-tuning at sequence length 64 (batches of
similar-length sentences); the dense model 200 steps of 32 at peak rate 1e-4; the pruned model the same
6,400 examples in 400 steps of 16 (twice the updates: over seeds 0-2 it lost 0.60 +- 0.71 points against
1.01 +- 1.42 in 200 steps of 32, docs/frontier.md session 19) at peak rate 6e-4 (sparse models recover
faster at a higher rate, session 17),
distillation alpha 0.5, T 2, layer weight 10 (the teacher's logits come from its pass inside each step);
pruning on 32-token texts for 150 steps. The longer budget of the earlier runs (300 fine-tuning steps,
MLM with 150 + 250 pruning steps at 64 tokens) is `--objective mlm --finetune-steps 300 --pruned-steps 300
--pruned-batch-size 32 --warmup-steps 150 --prune-steps 250 --prune-sequence-length 64`.

    python recipes/main.py --out runs/main

Interrupted, the same command continues: finished models and a finished pruning run are kept, an
interrupted pruning run resumes from its checkpoint. A finished part trained with other settings (say
another --pruned-learning-rate) is refused before any work, naming them: give another --out.
"""


import argparse
import json
import os
import time

import numpy as np

from tf_rpp import pipeline, significance, tasks
from tf_rpp.files import atomic_write


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/main", help="output folder (default runs/main)")
    parser.add_argument("--flow", default="upstream", choices=("upstream", "downstream"),
                        help="upstream (default, the paper's): a universal mask learned on generic text, then "
                             "fine-tuned with the mask fixed; downstream: prune the dense fine-tuned model on the "
                             "task (at 60%%, seed 0: 0.8430 against upstream's 0.8505, docs/frontier.md)")
    parser.add_argument("--target-sparsity", type=float, default=0.6, help="default 0.6")
    parser.add_argument("--finetune-steps", type=int, default=200,
                        help="the dense model's fine-tuning steps (and --flow downstream's pruned model's), default 200")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="the dense model's batch (and --flow downstream's pruned model's), default 32")
    parser.add_argument("--pruned-steps", type=int, default=400,
                        help="--flow upstream: the pruned model's fine-tuning steps (default 400: with batches of 16, "
                             "the dense model's 6,400 examples in twice the updates)")
    parser.add_argument("--pruned-batch-size", type=int, default=16,
                        help="--flow upstream: the pruned model's batch (default 16: over seeds 0-2 it lost 0.60 +- "
                             "0.71 points against 32 x 200's 1.01 +- 1.42, bench/results/pruned_recovery.md)")
    parser.add_argument("--freeze-embeddings", action="store_true",
                        help="both fine-tunings keep the encoder's embeddings as loaded (cheaper steps; with batches "
                             "of 16 both models scored lower on rt_polarity, docs/frontier.md session 19)")
    parser.add_argument("--prune-steps", type=int, default=150, help="--flow upstream: pruning steps (default 150)")
    parser.add_argument("--warmup-steps", type=int, default=100,
                        help="--flow upstream --objective mlm: MLM-head warm-up (default 100)")
    parser.add_argument("--prune-sequence-length", type=int, default=32,
                        help="--flow upstream: tokens per corpus text while pruning (default 32)")
    parser.add_argument("--objective", default="distill", choices=("mlm", "distill"),
                        help="--flow upstream: the upstream objective (default distill: match the dense encoder's "
                             "layer outputs; mlm: masked LM plus --prune-distill times that term)")
    parser.add_argument("--prune-distill", type=float, default=50.0,
                        help="--objective mlm: weight of upstream layer distillation beside MLM (default 50; on "
                             "rt_polarity at 60%% 0, 10, 50 gave 0.8165, 0.8382, 0.8439, measured)")
    parser.add_argument("--prune-rewind", action="store_true",
                        help="--flow upstream: when the mask is final the kept weights return to the pretrained "
                             "values, then train for the last 20%% of the pruning steps (PruneConfig.rewind)")
    parser.add_argument("--task", default="rt_polarity", help="downstream task (default rt_polarity)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="peak fine-tuning rate of the dense model "
                        "and of downstream pruning (default 1e-4)")
    parser.add_argument("--pruned-learning-rate", type=float, default=6e-4,
                        help="--flow upstream: peak rate of the pruned model (default 6e-4: over seeds 0-2 it lost "
                             "1.01 +- 1.42 points against 3e-4's 1.55 +- 0.39, bench/results/main_job_seeds.md)")
    parser.add_argument("--distill-alpha", type=float, default=0.5,
                        help="weight of the dense model's logits against the labels in the pruned model's training "
                             "(default 0.5; 1: the teacher's logits only)")
    parser.add_argument("--teacher-layers", type=float, default=10.0,
                        help="weight of the dense fine-tuned model's layer outputs in the pruned model's training "
                             "(default 10; 0: its logits only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2), help="Keras progress (default: a line per epoch)")
    args = parser.parse_args(argv)
    started = time.time()

    common = pipeline.FinetuneConfig(task=args.task, steps=args.finetune_steps, batch_size=args.batch_size,
                                     freeze_embeddings=args.freeze_embeddings,
                                     seed=args.seed, verbose=args.verbose,
                                     learning_rate=args.learning_rate, export_tflite=True, resume=True)
    dense = pipeline.finetune(common, out=os.path.join(args.out, "dense"))
    teacher = dict(teacher=dense.model_path, teacher_layers=args.teacher_layers, distill_alpha=args.distill_alpha)
    prune = None
    if args.flow == "downstream":
        pruned = pipeline.finetune(common, out=os.path.join(args.out, "pruned"), init_model=dense.model_path,
                                   sparsity=args.target_sparsity, method="rpp", **teacher)
        sparsity = pruned.mask_sparsity
    else:
        prune = pipeline.prune(out=os.path.join(args.out, "prune"), target_sparsity=args.target_sparsity,
                               steps=args.prune_steps, warmup_steps=args.warmup_steps, objective=args.objective,
                               sequence_length=args.prune_sequence_length,
                               distill=args.prune_distill, rewind=args.prune_rewind, seed=args.seed,
                               verbose=args.verbose, resume=True)
        pruned = pipeline.finetune(common, out=os.path.join(args.out, "pruned"), preset=prune.preset_dir,
                                   mask=prune.mask_path, learning_rate=args.pruned_learning_rate,
                                   steps=args.pruned_steps, batch_size=args.pruned_batch_size, **teacher)
        sparsity = prune.sparsity

    metric = next(iter(dense.metrics))
    interval = _interval(metric, dense, pruned)
    rows = [
        ("encoder-kernel sparsity", "0.00%", f"{sparsity:.2%}"),
        (f"{args.task} dev {metric}", f"{dense.metrics[metric]:.4f}", f"{pruned.metrics[metric]:.4f}"),
        ("points lost", "-", f"{100 * (dense.metrics[metric] - pruned.metrics[metric]):.2f}"),
        *([(f"  {interval['confidence']:.0%} interval, dev sentences resampled", "-",
            f"{100 * interval['low']:.2f} to {100 * interval['high']:.2f}")] if interval else []),
        ("mask held while fine-tuning", "-", "yes" if pruned.mask_held else "NO"),
        (".tflite float32 bytes (sparse encoding)", f"{dense.tflite_bytes:,}", f"{pruned.tflite_bytes:,}"),
    ]
    summary = {"flow": args.flow, "dense": dense.to_dict(), "pruned": pruned.to_dict(),
               "points_lost_interval": interval,
               "prune": None if prune is None else {k: v for k, v in prune.to_dict().items() if k != "layer_sparsity"},
               "wall_time_s": time.time() - started,
               # A resumed job reuses finished parts: their own times say what training them took.
               "parts_wall_time_s": {name: part.wall_time_s for name, part in
                                     (("dense", dense), ("prune", prune), ("pruned", pruned)) if part is not None}}
    atomic_write(os.path.join(args.out, "summary.json"), json.dumps(summary, indent=2).encode())
    widths = [max(len(r[i]) for r in rows + [("", "dense MiniLM", "RPP-pruned")]) for i in range(3)]
    print()
    print(f"{'':{widths[0]}}  {'dense MiniLM':>{widths[1]}}  {'RPP-pruned':>{widths[2]}}")
    for name, a, b in rows:
        print(f"{name:{widths[0]}}  {a:>{widths[1]}}  {b:>{widths[2]}}")
    parts = summary["parts_wall_time_s"]
    print(f"wall time {summary['wall_time_s'] / 60:.1f} min (the parts' own: "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in parts.items())
          + f"); details in {args.out}/summary.json")


def _interval(metric, dense, pruned):
    """The paired bootstrap interval of dense minus pruned over the dev examples (None: a run without predictions)."""
    if not (dense.predictions_path and pruned.predictions_path):
        return None
    first, second = np.load(dense.predictions_path), np.load(pruned.predictions_path)
    if not np.array_equal(first["labels"], second["labels"]):
        raise ValueError(f"{dense.predictions_path} and {pruned.predictions_path} hold different dev examples.")
    return significance.paired_bootstrap(tasks.METRICS[metric], first["labels"], first["predictions"],
                                         second["predictions"])


if __name__ == "__main__":
    main()
