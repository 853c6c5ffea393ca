"""How much of RPP's mask the proximal steps make, and what the paper's fixed-lambda mode reaches.

Scheduled runs: upstream pruning with the main job's budget (MiniLM, task-agnostic
distillation, 150 steps on 32-token texts, PolynomialDecay 0 -> target over 80% of
them) for each target; reported: the exact-zero fraction the RPP steps made before
hardening, the final sparsity, their ratio (the share the proximal steps formed;
the rest is the magnitude cut at hardening), and the per-epoch trace of sparsity,
target and lambda.

Paper mode: the same budget at a fixed lambda (`--l1-strength`, no schedule); the
exact zeros at the end are the mask. Reported: the sparsity reached per lambda.

Each run lives in its own folder and is reused when finished (`resume`).
Results: `bench/results/rpp_own_steps.{json,md}`.

    python bench/rpp_own_steps.py --targets 0.6,0.8,0.9 --lambdas 0.002,0.01,0.03,0.1
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402,F401

from tf_rpp import pipeline  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# The main job's upstream stage (tf_rpp.pipeline.CompressConfig defaults).
BUDGET = dict(steps=150, sequence_length=32, objective="distill", verbose=2, resume=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="0.6,0.8,0.9", help="scheduled targets (comma-separated)")
    parser.add_argument("--lambdas", default="", help="paper mode: fixed lambdas (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", default="runs/rpp_own_steps", help="folder of the runs")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from finished runs")
    args = parser.parse_args(argv)
    rows = []
    for target in [float(t) for t in args.targets.split(",") if t]:
        out = os.path.join(args.runs, f"target_{target:g}_seed{args.seed}")
        result = _run(args, out, target_sparsity=target)
        if result is not None:
            rows.append({"mode": "scheduled", "target": target, "sparsity": result["sparsity"],
                         "sparsity_before_hardening": result.get("sparsity_before_hardening"),
                         "trace": result.get("trace"), "seconds": result["wall_time_s"], "out": out})
    for strength in [float(t) for t in args.lambdas.split(",") if t]:
        out = os.path.join(args.runs, f"lambda_{strength:g}_seed{args.seed}")
        result = _run(args, out, l1_strength=strength)
        if result is not None:
            rows.append({"mode": "fixed lambda", "l1_strength": strength, "sparsity": result["sparsity"],
                         "seconds": result["wall_time_s"], "out": out})
    _report(rows, "python bench/rpp_own_steps.py " + " ".join(sys.argv[1:] if argv is None else argv))


def _run(args, out, **settings):
    report = os.path.join(out, "report.json")
    if args.report_only:
        if not os.path.exists(report):
            return None
    else:
        pipeline.prune(out=out, seed=args.seed, **BUDGET, **settings)
    with open(report, encoding="utf-8") as f:
        return json.load(f)


def _report(rows, command):
    os.makedirs(RESULTS, exist_ok=True)
    atomic_write(os.path.join(RESULTS, "rpp_own_steps.json"),
                 json.dumps({"command": command, "budget": BUDGET, "rows": rows}, indent=2).encode())
    lines = [f"`{command}`: MiniLM, upstream task-agnostic distillation, 150 steps on 32-token texts "
             "(the main job's pruning stage).", "",
             "| target | final sparsity | made by the RPP steps | share of the final | seconds |",
             "|---|---|---|---|---|"]
    for row in (r for r in rows if r["mode"] == "scheduled"):
        before = row["sparsity_before_hardening"]
        share = f"{before / row['sparsity']:.1%}" if before is not None and row["sparsity"] else "-"
        lines.append(f"| {row['target']:.0%} | {row['sparsity']:.4f} | "
                     f"{before if before is None else format(before, '.4f')} | {share} | {row['seconds']:.0f} |")
    fixed = [r for r in rows if r["mode"] == "fixed lambda"]
    if fixed:
        lines += ["", "Paper mode (fixed lambda, no schedule; the exact zeros are the mask):", "",
                  "| lambda | sparsity reached | seconds |", "|---|---|---|"]
        lines += [f"| {r['l1_strength']:g} | {r['sparsity']:.4f} | {r['seconds']:.0f} |" for r in fixed]
    traced = [r for r in rows if r["mode"] == "scheduled" and r.get("trace")]
    if traced:
        lines += ["", "Per epoch (25 steps): exact-zero sparsity / target / lambda:", ""]
        for row in traced:
            t = row["trace"]
            cells = [f"{s:.3f} / {g:.3f} / {lam:.3g}" for s, g, lam in
                     zip(t.get("sparsity", []), t.get("target_sparsity", []), t.get("l1_strength", []))]
            lines.append(f"- {row['target']:.0%}: " + "; ".join(cells))
    atomic_write(os.path.join(RESULTS, "rpp_own_steps.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
