"""The main job over seeds, for each upstream objective: the drop it shows, mean and spread.

Runs `recipes/main.py --seed K --objective O` into `runs/main_seeds/O/seedK` for every
seed and objective (the main job's defaults otherwise; `--mlm-prune-steps` for MLM,
which also warms up its head), skipping runs that finished (the main job resumes).
`O_rewind` keeps `compress`'s `--prune-rewind` default (the kept weights back to
the pretrained values when the upstream mask is final); the others pass
`--no-prune-rewind`. The other runs reuse the dense model of the
distill run of the same seed: the dense fine-tune does not depend on them.
These rows fine-tune the pruned model at peak rate 3e-4 for 200 steps of 32.
`distill_lr6` (at 6e-4; 200 x 32) changes only the
pruned model's fine-tuning, so it reuses the distill run's mask too, as does
`distill_p16` (the pruned model on
400 batches of 16). All these rows start the pruned model from the encoder the pruning stage
saved (`--pruned-init upstream`), as they were measured. `distill_b16` trains both models on batches of 16 for 400 steps (the
same examples as 32 x 200) at the `distill_lr6` rates: it reuses the mask and
trains its own dense model; `distill_b16_frozen` also keeps the embeddings as
loaded in both fine-tunings (`--freeze-embeddings`); `distill_b16_s350` is
`distill_b16` at 350 steps (closer to the compute of 32 x 200). `defaults` is the main job exactly as
`recipes/main.py` runs it (the pruned model starts from the dense fine-tuned model, the mask applied);
`upstream_init` is the main job with `--pruned-init upstream` (the kept weights rewound to the
pretrained values, a new head), and `upstream_init_*` change one more setting of the pruned model's
fine-tuning. They reuse the `upstream_init` run's dense model and mask of the same seed. Writes
`bench/results/main_job_seeds.{json,md}`.

    python bench/main_job_seeds.py --seeds 0,1,2 --objectives distill,mlm,distill_rewind
    python bench/main_job_seeds.py --seeds 0,1,2 --objectives distill,distill_lr6
    python bench/main_job_seeds.py --seeds 0,1,2 --objectives distill,distill_lr6,distill_b16
    python bench/main_job_seeds.py --seeds 0,1,2 --objectives defaults,upstream_init
    python bench/main_job_seeds.py --report-only
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

from tf_rpp import cli
from tf_rpp._files import atomic_write

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _summary(folder):
    path = os.path.join(folder, "summary.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


B32 = ["--pruned-batch-size", "32", "--pruned-steps", "200"]  # the pruned model on the dense model's batch and steps


def _both_on_16(steps):
    """The main job's arguments that fine-tune both models on batches of 16 for `steps` steps."""
    return ["--batch-size", "16", "--steps", str(steps),
            "--pruned-batch-size", "16", "--pruned-steps", str(steps)]


B16 = _both_on_16(400)
# Variants of the fine-tuning: the main job's arguments, and the parts of the distill run they reuse.
FINETUNE_VARIANTS = {
    "distill_lr6": (["--pruned-learning-rate", "6e-4", *B32], ("dense", "prune")),
    "distill_p16": ([], ("dense", "prune")),
    # Both models on batches of 16 for twice the steps (the same examples): a new dense model too.
    "distill_b16": (["--pruned-learning-rate", "6e-4", *B16], ("prune",)),
    # 350 steps of 16 (5,600 examples, 7/8 of 32 x 200): about the compute of 32 x 200 (a step of 16 costs more than half).
    "distill_b16_s350": (["--pruned-learning-rate", "6e-4", *_both_on_16(350)], ("prune",)),
    # The same with the embeddings kept as loaded in both fine-tunings (AdamW's update of 11.7M weights saved).
    "distill_b16_frozen": (["--pruned-learning-rate", "6e-4", *B16, "--freeze-embeddings"], ("prune",)),
}
UPSTREAM_INIT = ["--pruned-init", "upstream"]
# The main job as it is or with changes to the pruned model's fine-tuning only: each reuses the dense model and
# mask of the `upstream_init` run of its seed (neither depends on how the pruned model starts).
MAIN_JOB_VARIANTS = {
    "defaults": [],  # exactly as `recipes/main.py` runs it
    "upstream_init": UPSTREAM_INIT,
    "upstream_init_p600": [*UPSTREAM_INIT, "--pruned-steps", "600"],  # 600 batches of 16 instead of 400
    "upstream_init_alpha1": [*UPSTREAM_INIT, "--distill-alpha", "1.0"],  # the teacher's logits only, no labels
    "upstream_init_tl30": [*UPSTREAM_INIT, "--teacher-layers", "30"],  # the teacher's layer outputs weighted 3x more
    "upstream_init_lr4": [*UPSTREAM_INIT, "--pruned-learning-rate", "4e-4"],
    "upstream_init_lr10": [*UPSTREAM_INIT, "--pruned-learning-rate", "1e-3"],
}
# The file that marks each reusable part of a main-job run finished.
_FINISHED = {"dense": "results.json", "prune": "report.json"}


def run(args, objective, seed):
    folder = os.path.join(args.runs, objective, f"seed{seed}")
    if _summary(folder) is not None:
        return
    variant, shared = FINETUNE_VARIANTS.get(objective, (None, ()))
    reference = os.path.join(args.runs, "distill", f"seed{seed}")
    if objective in MAIN_JOB_VARIANTS:
        variant, shared = MAIN_JOB_VARIANTS[objective], ("dense", "prune")
        reference = os.path.join(args.runs, "upstream_init", f"seed{seed}")
    # What it takes from the distill run of its seed: the other objectives its dense model, a fine-tuning
    # variant the parts it names.
    if variant is None:
        shared = () if objective == "distill" else ("dense",)
    for part in shared:
        done = os.path.join(reference, part, _FINISHED[part])
        if os.path.exists(done) and not os.path.exists(os.path.join(folder, part)):
            # The main job resumes: it reuses a copied part trained with its settings (paths re-based).
            shutil.copytree(os.path.join(reference, part), os.path.join(folder, part))
    if objective in MAIN_JOB_VARIANTS:
        argv = ["--out", folder, "--seed", str(seed), *variant]
    elif variant is not None:  # as these rows were measured
        argv = ["--out", folder, "--seed", str(seed), "--no-prune-rewind", *UPSTREAM_INIT, *variant]
    else:
        # Pinned to the rate these rows were measured at.
        argv = ["--out", folder, "--seed", str(seed), "--objective", objective.removesuffix("_rewind"),
                "--pruned-learning-rate", "3e-4", *B32, *UPSTREAM_INIT]
        if not objective.endswith("_rewind"):
            argv.append("--no-prune-rewind")
        if objective.startswith("mlm"):
            argv += ["--prune-steps", str(args.mlm_prune_steps)]
    print(f"=== {objective} seed {seed} ({time.strftime('%H:%M:%S')})", flush=True)
    cli.run(["compress", *argv])


def _spread(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def report(args, objectives, seeds):
    rows = []
    for objective in objectives:
        runs = {s: _summary(os.path.join(args.runs, objective, f"seed{s}")) for s in seeds}
        runs = {s: r for s, r in runs.items() if r is not None}
        if not runs:
            continue
        dense = [r["dense"]["metrics"]["accuracy"] for r in runs.values()]
        pruned = [r["pruned"]["metrics"]["accuracy"] for r in runs.values()]
        drops = [100 * (d - p) for d, p in zip(dense, pruned)]
        rows.append({
            "objective": objective, "seeds": sorted(runs),
            "per_seed": {str(s): {"dense": r["dense"]["metrics"]["accuracy"],
                                  "pruned": r["pruned"]["metrics"]["accuracy"],
                                  "prune_s": r["prune"]["wall_time_s"], "total_s": r["wall_time_s"],
                                  "layer_error_after": r["prune"].get("layer_error_after")}
                         for s, r in sorted(runs.items())},
            "dense": _spread(dense), "pruned": _spread(pruned), "drop_points": _spread(drops),
            "prune_s_mean": statistics.mean(r["prune"]["wall_time_s"] for r in runs.values()),
        })
    json_path = os.path.join(ROOT, "bench", "results", "main_job_seeds.json")
    if os.path.exists(json_path):  # rows of objectives not run this time stay
        with open(json_path, encoding="utf-8") as f:
            ran = {row["objective"] for row in rows}
            rows = [r for r in json.load(f)["rows"] if r["objective"] not in ran] + rows
    result = {"command": "python bench/main_job_seeds.py " + " ".join(sys.argv[1:]), "rows": rows}
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    atomic_write(json_path, json.dumps(result, indent=2).encode())
    lines = ["`recipes/main.py` (MiniLM, RPP to 60% upstream, rt_polarity dev, 1,057 sentences), per upstream "
             "objective (the pruned model fine-tuned at peak rate 3e-4, 200 x 32) or fine-tuning variant (`distill_lr6`: "
             "at 6e-4, 200 x 32; `distill_p16`: the pruned model on 400 x 16 at 6e-4; `distill_b16*`: both models on "
             "batches of 16, see the script's docstring; these rows start the pruned model from the encoder the "
             "pruning stage saved; `defaults`: the main job exactly as `recipes/main.py` runs it: the pruned model "
             "starts from the dense fine-tuned model with the mask applied, 400 x 16 at 6e-4; `upstream_init`: the "
             "same from the pruning stage's encoder, its kept weights rewound to the pretrained values, and a new head; "
             "`upstream_init_*` with one more change, the same dense model and mask: `_p600` 600 steps, `_alpha1` the "
             "teacher's logits only, `_tl30` teacher layers weighted 30, `_lr4` / `_lr10` peak rate 4e-4 / 1e-3), "
             "seeds as listed; drop = dense minus pruned of the "
             "same seed, in points; mean +- sample std; prune = wall time of the upstream phase on a 2-core machine (some runs shared the cores).",
             "", "| objective | seeds | dense | pruned | drop (pts) | worst drop | prune phase |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['objective']} | {','.join(map(str, r['seeds']))} | {r['dense']['mean']:.4f} +- "
                     f"{r['dense']['std']:.4f} | {r['pruned']['mean']:.4f} +- {r['pruned']['std']:.4f} | "
                     f"{r['drop_points']['mean']:.2f} +- {r['drop_points']['std']:.2f} | "
                     f"{r['drop_points']['max']:.2f} | {r['prune_s_mean']:.0f} s |")
    atomic_write(os.path.join(ROOT, "bench", "results", "main_job_seeds.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--objectives", default="distill,mlm")
    p.add_argument("--runs", default="runs/main_seeds")
    p.add_argument("--mlm-prune-steps", type=int, default=200, help="MLM pruning steps (default 200)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    objectives = args.objectives.split(",")
    if not args.report_only:
        for seed in seeds:
            for objective in objectives:
                run(args, objective, seed)
                report(args, objectives, seeds)
    report(args, objectives, seeds)


if __name__ == "__main__":
    main()
