"""RPP against iterative magnitude pruning (NIP) upstream, with the main job's recipe and budget.

For each sparsity and method, `tf_rpp.pipeline.compress` (the main job: task-agnostic
distillation upstream, 150 steps, the kept weights rewound to the pretrained values
once the mask is final; the pruned model starts from them (`pruned_init="upstream"`) and is
fine-tuned 400 x 16 at 6e-4 distilling the dense model) on one shared dense model per seed and task. The upstream stage does not
see the task, so one upstream mask per seed, sparsity and method serves every task
(its folder is copied into the other tasks' runs). Reported per run: validation accuracy, points lost against the dense model,
the sparsity the pruning steps made before hardening, and for each sparsity the
overlap of the RPP and NIP masks (`SparsityMask.overlap`: the share of NIP's kept entries RPP keeps too).

Every run is resumable (`compress` reuses finished stages). Results:
`bench/results/upstream_rpp_vs_nip.{json,md}`.

    python bench/upstream_rpp_vs_nip.py --sparsities 0.6,0.8,0.9 --seeds 0 --tasks rt_polarity,snli
"""

import argparse
import json
import os
import shutil
import statistics
import sys

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs

import tf_rpp  # noqa: E402
from tf_rpp import pipeline  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
METHODS = {"rpp": "RPP", "magnitude": "NIP"}
# The main job's fine-tuning of the pruned model, pinned: every row is measured with the same recipe.
PRUNED_FINETUNE = {"pruned_steps": 400, "pruned_batch_size": 16, "pruned_learning_rate": 6e-4,
                   "pruned_init": "upstream"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsities", default="0.6,0.8,0.9")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--tasks", default="rt_polarity", help="comma-separated packaged tasks")
    parser.add_argument("--runs", default="runs/upstream_rpp_vs_nip")
    parser.add_argument("--dense-from", default=None,
                        help="a finished compress run whose dense/ stage to reuse for seed 0 of the first task")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    tasks = args.tasks.split(",")
    runs = [(seed, sparsity, method, task) for seed in [int(s) for s in args.seeds.split(",")]
            for sparsity in [float(s) for s in args.sparsities.split(",")] for method in METHODS for task in tasks]
    for seed, sparsity, method, task in runs:
        name = f"{method}_{round(sparsity * 100)}"
        out = os.path.join(args.runs, task, f"seed{seed}", name)
        if not args.report_only:
            _share_dense(args, seed, os.path.join(args.runs, task, f"seed{seed}", "dense"), out,
                         first_task=task == tasks[0])
            _share_upstream(os.path.join(args.runs, tasks[0], f"seed{seed}", name), out)
        summary = _run(args, out, task=task, sparsity=sparsity, method=method, seed=seed)
        if summary is not None:
            rows.append({"task": task, "seed": seed, "sparsity": sparsity, "method": method, "out": out,
                         "dense": summary["dense"]["metrics"], "pruned": summary["pruned"]["metrics"],
                         "points_lost": summary["points_lost"],
                         "sparsity_before_hardening": summary["prune"]["sparsity_before_hardening"],
                         "wall_time_s": summary["stages_wall_time_s"]})
    for row in rows:
        if row["method"] == "magnitude":
            rpp = os.path.join(os.path.dirname(row["out"]), f"rpp_{round(row['sparsity'] * 100)}", "prune", "mask.npz")
            if os.path.exists(rpp):  # as bench/frontier.py measures it: the kept entries both masks keep
                nip = tf_rpp.SparsityMask.load(os.path.join(row["out"], "prune", "mask.npz"))
                row["overlap_with_rpp"] = nip.overlap(tf_rpp.SparsityMask.load(rpp))
    _report(rows, args, "python bench/upstream_rpp_vs_nip.py " + " ".join(sys.argv[1:] if argv is None else argv))


def _share_dense(args, seed, dense, out, first_task):
    """One dense model per seed and task: trained in the first run, copied into the others (compress reuses it)."""
    if not os.path.exists(os.path.join(dense, "results.json")) and args.dense_from and seed == 0 and first_task:
        shutil.copytree(os.path.join(args.dense_from, "dense"), dense, dirs_exist_ok=True)
    if os.path.exists(os.path.join(dense, "results.json")) and not os.path.exists(os.path.join(out, "dense")):
        shutil.copytree(dense, os.path.join(out, "dense"))


def _share_upstream(first, out):
    """The upstream stage does not depend on the task: the first task's finished mask is reused by the others."""
    if first != out and os.path.exists(os.path.join(first, "prune", "report.json")) \
            and not os.path.exists(os.path.join(out, "prune")):
        shutil.copytree(os.path.join(first, "prune"), os.path.join(out, "prune"))


def _run(args, out, **settings):
    path = os.path.join(out, "summary.json")
    if not args.report_only:
        pipeline.compress(out=out, verbose=2, **PRUNED_FINETUNE, **settings)
        dense = os.path.join(os.path.dirname(out), "dense")
        if not os.path.exists(dense):
            shutil.copytree(os.path.join(out, "dense"), dense)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _report(rows, args, command):
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write(os.path.join(RESULTS, "upstream_rpp_vs_nip.json"),
                 json.dumps({"command": command, "rows": rows}, indent=2).encode())
    lines = [f"`{command}`: MiniLM, validation sets; the main job's recipe (`tf-rpp compress`: 150 upstream steps, "
             "the pruned model from the kept weights rewound to the pretrained values, fine-tuned 400 x 16 at 6e-4 "
             "distilling the dense model), one "
             "shared dense model per seed and task, one upstream mask per seed, sparsity and method for every task. "
             "Points lost: dense minus pruned of the same seed, mean +- sample std over seeds. Made by the pruning "
             "steps: the exact-zero fraction before hardening. Kept entries shared: the share of NIP's kept "
             "entries RPP keeps too.",
             "", "| task | sparsity | method | seeds | accuracy | points lost | made by the pruning steps | "
             "kept entries shared with RPP |", "|---|---|---|---|---|---|---|---|"]
    cells = [(t, s) for t in dict.fromkeys(r["task"] for r in rows) for s in sorted({r["sparsity"] for r in rows})]
    for (task, sparsity), (method, name) in [(c, m) for c in cells for m in METHODS.items()]:
        group = [r for r in rows if r["task"] == task and r["sparsity"] == sparsity and r["method"] == method]
        if not group:
            continue
        metric = next(iter(group[0]["pruned"]))
        accuracy = _mean_std([r["pruned"][metric] for r in group])
        lost = _mean_std([r["points_lost"] for r in group])
        made = [r["sparsity_before_hardening"] for r in group if r["sparsity_before_hardening"] is not None]
        overlap = [r["overlap_with_rpp"] for r in group if "overlap_with_rpp" in r]
        made_text = f"{statistics.mean(made):.4f}" if made else "-"
        overlap_text = f"{statistics.mean(overlap):.1%}" if overlap else "-"
        lines.append(f"| {task} | {sparsity:.0%} | {name} | {len(group)} | {accuracy[0]:.4f} +- {accuracy[1]:.4f} | "
                     f"{lost[0]:.2f} +- {lost[1]:.2f} | {made_text} | {overlap_text} |")
    lines += ["", "RPP ahead of NIP, paired by seed (NIP's points lost minus RPP's; positive: RPP lost less):", "",
              "| task | sparsity | seeds | per seed | mean +- std |", "|---|---|---|---|---|"]
    lost_by_run = {(r["task"], r["sparsity"], r["method"], r["seed"]): r["points_lost"] for r in rows}
    for task, sparsity in cells:
        seeds = sorted(r["seed"] for r in rows if (r["task"], r["sparsity"], r["method"]) == (task, sparsity, "rpp")
                       and (task, sparsity, "magnitude", r["seed"]) in lost_by_run)
        if seeds:
            ahead = [lost_by_run[task, sparsity, "magnitude", s] - lost_by_run[task, sparsity, "rpp", s] for s in seeds]
            mean, std = _mean_std(ahead)
            lines.append(f"| {task} | {sparsity:.0%} | {len(seeds)} | {', '.join(f'{a:+.2f}' for a in ahead)} | "
                         f"{mean:+.2f} +- {std:.2f} |")
    atomic_write(os.path.join(RESULTS, "upstream_rpp_vs_nip.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
