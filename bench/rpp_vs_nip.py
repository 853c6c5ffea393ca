"""RPP against the NIP baseline across sparsities, at our scale (the paper's Figure 2).

For each target sparsity the real pretrained MiniLM-L6 is pruned on the
masked-LM objective over the packaged corpus with RPP and with NIP (iterative
magnitude pruning on the same tfmot PolynomialDecay schedule), same data,
steps and seed, from one shared MLM-head warm-up. A "dense" run goes through
the same MLM phase without pruning, and "pretrained" is the original MiniLM
with no MLM phase. Every mask is then fine-tuned, fixed, on `rt_polarity` and
on `snli` with one budget for all runs.

Every stage writes its own results and is skipped when they exist, so an
interrupted sweep continues where it stopped: run the same command again.

    python bench/rpp_vs_nip.py                    # the committed sweep (~75 min on 2 cores)
    python bench/rpp_vs_nip.py --quick --out runs/sweep_quick   # a 5-minute smoke run
    python bench/rpp_vs_nip.py --out runs/rpp_vs_nip_long --prune-steps 500 --sparsities 0.8 \
        --baselines "" --warmup-from runs/rpp_vs_nip/dense/prune --name rpp_vs_nip_long   # a longer budget

Writes `<out>/<run>/...` (recipe outputs), `bench/results/rpp_vs_nip.json` and `.md`
(the table), and `docs/images/rpp_vs_nip.png` (under --out with --quick).
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402,F401

import keras  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
from tf_rpp import pipeline  # noqa: E402
from tf_rpp import viz  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

TASKS = ("rt_polarity", "snli")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/rpp_vs_nip", help="folder for every run's outputs")
    p.add_argument("--sparsities", default="0.5,0.7,0.8,0.9,0.6", help="comma-separated targets")
    p.add_argument("--methods", default="rpp,nip")
    p.add_argument("--prune-steps", type=int, default=150, help="MLM steps per pruning run (default 150)")
    p.add_argument("--warmup-steps", type=int, default=150, help="shared MLM-head warm-up (default 150)")
    p.add_argument("--finetune-steps", type=int, default=150, help="steps per fine-tune, every run (default 150)")
    p.add_argument("--finetune-learning-rate", type=float, default=2e-4,
                   help="peak AdamW rate of every fine-tune (default 2e-4: between dense's best 1e-4 and "
                        "a 60%%-pruned model's best 3e-4, measured on rt_polarity)")
    p.add_argument("--sequence-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--snli-eval", type=int, default=3000, help="SNLI test pairs evaluated (default 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", default="pretrained,dense",
                   help="reference runs to include: pretrained (no MLM phase), dense (MLM phase, no pruning)")
    p.add_argument("--warmup-from", default=None,
                   help="a finished run's prune folder whose MLM-head warm-up to reuse (same seed and settings)")
    p.add_argument("--name", default="rpp_vs_nip",
                   help="basename of the results (bench/results/NAME.json, .md; docs/images/NAME.png)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: tabulate and plot the runs already finished (missing ones are listed)")
    p.add_argument("--quick", action="store_true", help="a tiny smoke run: 2 levels, a few steps, nothing committed")
    return p


def _runs(args):
    """`(name, method, sparsity)` of every run, method by method, so the RPP
    models bench/tflite_size_latency.py needs come first."""
    runs = [(b, b, 0.0) for b in args.baselines.split(",") if b]
    for method in args.methods.split(","):
        runs += [(f"{method}_{round(float(s) * 100)}", method, float(s)) for s in args.sparsities.split(",")]
    return runs


def _prune(args, method, sparsity, run_dir, warm_dir):
    report_path = os.path.join(run_dir, "report.json")
    if os.path.exists(os.path.join(run_dir, "mask.npz")) and os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as f:
            return json.load(f)
    os.makedirs(run_dir, exist_ok=True)
    if warm_dir and warm_dir != run_dir and not os.path.exists(os.path.join(run_dir, "warmup.weights.h5")):
        # One warm-up for all: every run starts pruning from the same MLM head.
        for name in ("warmup.weights.h5", "report.json"):
            shutil.copy(os.path.join(warm_dir, name), os.path.join(run_dir, name))
    keras.backend.clear_session()
    return pipeline.prune(
        out=run_dir, method="magnitude" if method in ("nip", "dense") else "rpp", target_sparsity=sparsity,
        steps=args.prune_steps, warmup_steps=args.warmup_steps, sequence_length=args.sequence_length,
        batch_size=args.batch_size, seed=args.seed, verbose=2, resume=True).to_dict()


def _finetune(args, task, out, preset=None, mask=None, keep_model=False):
    results_path = os.path.join(out, "results.json")
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            return json.load(f)
    keras.backend.clear_session()
    config = pipeline.FinetuneConfig(
        task=task, out=out, steps=args.finetune_steps, sequence_length=args.sequence_length,
        batch_size=args.batch_size, learning_rate=args.finetune_learning_rate, seed=args.seed, verbose=2,
        eval_limit=args.snli_eval if task == "snli" else None, save_model=keep_model)
    if preset:
        config = dataclasses.replace(config, preset=preset, mask=mask)
    return pipeline.finetune(config).to_dict()


def markdown(rows):
    lines = [
        "| method | target | sparsity | held-out MLM acc. | rt_polarity dev acc. | snli test acc. |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["method"] not in ("pretrained", "dense"), r["target"], r["method"])):
        mlm = "-" if r["mlm_accuracy"] is None else f"{r['mlm_accuracy']:.4f}"
        lines.append(f"| {r['method']} | {r['target']:.0%} | {r['sparsity']:.2%} | {mlm} | "
                     f"{r['rt_polarity']:.4f} | {r['snli']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sparsities, args.prune_steps, args.warmup_steps, args.finetune_steps = "0.7", 10, 4, 6
        args.snli_eval = 64
    started = time.time()
    rows = []
    warm_dir = args.warmup_from
    for name, method, sparsity in _runs(args):
        run_dir = os.path.join(args.out, name)
        if args.report_only and not all(os.path.exists(os.path.join(run_dir, t, "results.json")) for t in TASKS):
            print(f"not finished yet: {name}")
            continue
        print(f"=== {name} ===", flush=True)
        report = None
        if method != "pretrained":
            report = _prune(args, method, sparsity, os.path.join(run_dir, "prune"), warm_dir)
            warm_dir = warm_dir or os.path.join(run_dir, "prune")
        row = {"method": method, "target": sparsity, "run": name,
               "sparsity": report["sparsity"] if report else 0.0,
               "mlm_accuracy": report["mlm_accuracy_after"] if report else None,
               "mlm_accuracy_before": report["mlm_accuracy_before"] if report else None}
        for task in TASKS:
            preset = os.path.join(run_dir, "prune", "preset") if report else None
            mask = os.path.join(run_dir, "prune", "mask.npz") if report else None
            # rt_polarity models of the RPP runs feed bench/tflite_size_latency.py.
            keep = task == "rt_polarity" and method in ("pretrained", "dense", "rpp")
            result = _finetune(args, task, os.path.join(run_dir, task), preset, mask, keep)
            row[task] = result["metrics"]["accuracy"]
            row[f"{task}_mask_held"] = result.get("mask_held")
        rows.append(row)
        print(json.dumps(row), flush=True)

    finished = {r["run"] for r in rows}
    summary = {"config": vars(args), "rows": rows,
               "missing_runs": [name for name, _, _ in _runs(args) if name not in finished],
               "wall_time_s_this_invocation": time.time() - started,
               "command": "python bench/rpp_vs_nip.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    results_dir = args.out if args.quick else os.path.join(ROOT, "bench", "results")
    docs = args.out if args.quick else os.path.join(ROOT, "docs")
    os.makedirs(os.path.join(docs, "images"), exist_ok=True)
    atomic_write(os.path.join(results_dir, f"{args.name}.json"), json.dumps(summary, indent=2).encode())
    atomic_write(os.path.join(results_dir, f"{args.name}.md"), markdown(rows).encode())
    viz.plot_sparsity_sweep(
        [r for r in rows if r["method"] != "pretrained"],
        {"mlm_accuracy": "held-out MLM accuracy", "rt_polarity": "rt_polarity dev accuracy",
         "snli": f"SNLI test accuracy ({args.snli_eval} pairs)"},
        path=os.path.join(docs, "images", f"{args.name}.png"),
        title=f"MiniLM-L6: {args.prune_steps} MLM pruning steps, {args.finetune_steps} fine-tuning steps per task")
    print(markdown(rows))


if __name__ == "__main__":
    main()
