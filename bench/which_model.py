"""Which model for my phone: the best measured recipe for each speed-up, against the smaller dense model.

Reads the seed-averaged accuracy of every 600-step cell of `--task` (the results files named in `SOURCES`:
whichever holds the most seeds of a cell) and the round-robin latency runs that timed their seed-0 files together
(`bench/results/which_model_latency.json`, then `which_model_latency_combined.json` for the cells the first
did not time; from `bench/frontier_latency.py`; each speed-up is against the dense file of its own run),
and writes:

- `bench/results/which_model.{json,md}` (`which_model_<task>` for another task): for each speed-up (2x, 3x,
  4x of the dense float32 file, 1 thread, 64 tokens; a cell counts at 0.95x of it, the rounds' spread), the
  cell that loses the fewest points, the best layer-dropped model of equal or higher speed-up, and every cell's figures;
- `docs/images/frontier.png` (`frontier_<task>.png`): points lost against speed-up (float32, dynamic int8) and
  file size.

    python bench/frontier_latency.py --runs-dir runs/which_model_files --cells <cells> --rounds 5 --threads 1,2 \
        --name which_model_latency
    python bench/which_model.py
    python bench/which_model.py --task snli      # the rt_polarity files' latency: same recipes, same shapes

`runs/which_model_files/<task>/<cell>/seed0/model_{float32,int8}.tflite` are the seed-0 files
`bench/frontier.py --export-only` wrote (links into `runs/frontier_600`), or, for a recipe whose 600-step
run is not on the machine, the files of the same recipe trained briefly
(`tf-rpp finetune --speedup N --steps 30 --shrink`, exported as `bench/frontier.py` exports): latency
depends on the shapes only, and the recipe removes exactly its share of heads and neurons.
"""

import argparse
import json
import os
import sys
import time

from frontier import CELLS
from tf_rpp import viz
from tf_rpp._files import atomic_write

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RESULTS = os.path.join(ROOT, "bench", "results")
SOURCES = ("frontier", "layer_drop", "blocks", "speedup_recipes", "layer_drop_structured", "snli_speedup3",
           "snli_layers_and_heads_3x", "snli_speedup4", "snli_speedup2")
TARGETS = (2.0, 3.0, 4.0)
TOLERANCE = 0.95
LATENCY_TASK = "rt_polarity"  # the task of the timed files under runs/which_model_files


def smaller_model(cell):
    """Whether `cell` is the smaller dense model (layers dropped, nothing else removed), the baseline to beat."""
    return cell.startswith("layerdrop") and "_h" not in cell


def family(cell):
    """The family a cell belongs to, for the picture's colours."""
    if smaller_model(cell):
        return "smaller model (layers dropped)"
    if cell.startswith("layerdrop"):
        return "layers dropped + structured"
    if "_b" in cell and cell.startswith("structured"):
        return "structured + whole blocks"
    if cell.startswith("structured"):
        return "structured (heads, neurons)"
    return "other"


def _label(cell):
    return (cell.replace("_rewind", "").replace("structured_", "s").replace("layerdrop_", "drop")
            .replace("_alternate", "alt"))


def accuracy_rows(task, steps):
    """Per cell, the accuracy row with the most seeds among `SOURCES` (task and budget as given)."""
    best = {}
    for source in SOURCES:
        path = os.path.join(RESULTS, f"{source}.json")
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            for row in json.load(f)["rows"]:
                if row["task"] != task or row["steps"] != steps or row.get("drop_vs_dense") is None:
                    continue
                if row["cell"] not in best or row["accuracy"]["n"] > best[row["cell"]]["accuracy"]["n"]:
                    best[row["cell"]] = dict(row, source=source)
    return best


def _merged_latency(names):
    """The rows of several round-robin latency runs, a cell from the first run that timed it.

    Speed-ups compare across runs (each is against the dense file of the same run); milliseconds less so.
    """
    runs = []
    for name in names:
        with open(os.path.join(RESULTS, f"{name}.json"), encoding="utf-8") as f:
            runs.append(json.load(f))
    rows, first, both = [], {}, []
    for number, run in enumerate(runs, 1):
        for row in run["rows"]:
            if row["cell"] not in first:
                first[row["cell"]] = dict(row, run=number)
                rows.append(first[row["cell"]])
            elif row["cell"] != "dense":  # timed again: how far the runs' speed-ups agree
                earlier = first[row["cell"]]
                both.append({"cell": row["cell"], "runs": [earlier["run"], number], "speedup": {
                    v: [earlier[v]["speedup_median"], row[v]["speedup_median"]] for v in ("float32", "int8")}})
    return {"command": " and ".join(f"({i}) `{r['command']}`" for i, r in enumerate(runs, 1)),
            "rounds": runs[0]["rounds"], "rows": rows, "timed_twice": both}


def same_shapes(cell):
    """What decides `cell`'s file shapes: what its spec in bench/frontier.py removes (not its teacher, rate or loss)."""
    spec = CELLS.get(cell)
    return cell if spec is None else tuple(spec.get(k) for k in ("keep_layers", "structured", "structured_heads",
                                                                  "structured_blocks"))


def points(accuracy, latency):
    """The picture's and the table's entries: cells with an accuracy row and timed files of their shapes.

    A cell whose own files were not timed takes the timing of a timed cell that differs from it only in
    how it trained (`same_shapes`), recorded in `timed_as`, unless a cell of those shapes was timed and
    measured itself (then the variants would only crowd the picture).
    """
    timed = {row["cell"]: row for row in latency["rows"]}
    by_shapes, measured_shapes = {}, {same_shapes(c) for c in accuracy if c in timed}
    for row in latency["rows"]:
        by_shapes.setdefault(same_shapes(row["cell"]), row)
    out = []
    for cell in accuracy:
        key = same_shapes(cell)
        row = timed.get(cell) or (by_shapes.get(key) if key not in measured_shapes else None)
        if cell == "dense" or row is None or row["cell"] == "dense":
            continue
        acc = accuracy[cell]
        drop = acc["drop_vs_dense"]
        out.append({
            "cell": cell, "label": _label(cell), "family": family(cell),
            "source": acc["source"], "seeds": acc["seeds"],
            "drop": {"mean": 100 * drop["mean"], "std": 100 * drop["std"], "n": drop["n"],
                     "worst": 100 * drop["max"]},
            "accuracy": acc["accuracy"]["mean"],
            "speedup": {v: row[v]["speedup_median"] for v in ("float32", "int8")},
            "speedup_2_threads": {v: row[v].get("threads", {}).get("2", {}).get("speedup_median")
                                  for v in ("float32", "int8")},
            "ms": {v: row[v]["median_ms"] for v in ("float32", "int8")}, "timed_in": row.get("run", 1),
            "timed_as": None if row["cell"] == cell else row["cell"],
            "megabytes": {v: row[v]["bytes"] / 1e6 for v in ("float32", "int8")},
        })
    return out


def choose(entries):
    """For each target speed-up, the entry losing the fewest points and the best layer-dropped one."""
    table = []
    for target in TARGETS:
        fast = [e for e in entries if e["speedup"]["float32"] >= TOLERANCE * target]
        pruned = [e for e in fast if not smaller_model(e["cell"])]
        dropped = [e for e in fast if smaller_model(e["cell"])]
        best = min(pruned, key=lambda e: e["drop"]["mean"]) if pruned else None
        baseline = min(dropped, key=lambda e: e["drop"]["mean"]) if dropped else None
        ships = min([e for e in (best, baseline) if e], key=lambda e: e["drop"]["mean"], default=None)
        table.append({"target": target, "best": best and best["cell"], "layer_drop": baseline and baseline["cell"],
                      "ships": ships and ships["cell"]})
    return table


def _fmt(entry):
    if entry is None:
        return "none measured", "", "", ""
    d = entry["drop"]
    return (f"`{entry['cell']}`", f"{d['mean']:.2f} +- {d['std']:.2f} (n={d['n']})",
            f"{entry['speedup']['float32']:.2f}x / {entry['speedup']['int8']:.2f}x",
            f"{entry['ms']['float32']:.1f} / {entry['ms']['int8']:.1f} ms ({entry['timed_in']}), "
            f"{entry['megabytes']['float32']:.0f} / {entry['megabytes']['int8']:.0f} MB")


def markdown(entries, table, latency, task="rt_polarity", steps=600):
    by_cell = {e["cell"]: e for e in entries}
    shapes = ("" if task == LATENCY_TASK else
              f" The files timed are the {LATENCY_TASK} files of the same recipes: latency depends on the shapes "
              f"only, and the {task} model of a recipe has the same shapes.")
    lines = [f"{task}, {steps} fine-tuning steps; points lost = dense minus cell, paired by seed, mean +- sample "
             f"std (n seeds). Speed-up and latency: {latency['command']} (batch 1, 64 tokens, 1 thread, median "
             f"of {latency['rounds']} round-robin rounds; float32 / dynamic int8). A cell counts for a target "
             f"at {TOLERANCE}x of it. (1), (2): the run that timed the cell; milliseconds compare within a run only "
             "(the runs may be on different machines), speed-ups across them. \"as `cell`\": timed as that "
             "cell's files, which have the same shapes (they differ only in how they train)." + shapes, "",
             "| target | recipe | points lost | speed-up fp32 / int8 | latency, size fp32 / int8 | "
             "layer-dropped model of equal speed | its points lost | its speed-up | fewer points lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in table:
        best, base = by_cell.get(row["best"]), by_cell.get(row["layer_drop"])
        b, bl = _fmt(best), _fmt(base)
        ships = "" if not row["ships"] else "the smaller model" if row["ships"] == row["layer_drop"] else "the recipe"
        lines.append(f"| {row['target']:.0f}x | {b[0]} | {b[1]} | {b[2]} | {b[3]} | {bl[0]} | {bl[1]} | {bl[2]} "
                     f"| {ships} |")
    if latency["timed_twice"]:
        lines += ["", "Cells timed in more than one run (the first run's figures are used): "
                  + "; ".join(f"`{t['cell']}` {t['speedup']['float32'][0]:.2f}x / {t['speedup']['int8'][0]:.2f}x "
                              f"in ({t['runs'][0]}), {t['speedup']['float32'][1]:.2f}x / "
                              f"{t['speedup']['int8'][1]:.2f}x in ({t['runs'][1]})" for t in latency["timed_twice"])
                  + " (float32 / int8)."]
    lines += ["", "Every timed cell:", "",
              "| cell | family | seeds | points lost | worst seed | speed-up fp32 / int8 (1 thread) | "
              "speed-up fp32 / int8 (2 threads) | fp32 / int8 MB | timed in |", "|---|---|---|---|---|---|---|---|---|"]
    for e in sorted(entries, key=lambda e: e["speedup"]["float32"]):
        two = e["speedup_2_threads"]
        two_text = f"{two['float32']:.2f}x / {two['int8']:.2f}x" if two["float32"] else "-"
        lines.append(f"| `{e['cell']}` | {e['family']} | {e['seeds']} | {e['drop']['mean']:.2f} +- "
                     f"{e['drop']['std']:.2f} | {e['drop']['worst']:.2f} | {e['speedup']['float32']:.2f}x / "
                     f"{e['speedup']['int8']:.2f}x | {two_text} | {e['megabytes']['float32']:.0f} / "
                     f"{e['megabytes']['int8']:.0f} | ({e['timed_in']})"
                     + (f", as `{e['timed_as']}`" if e["timed_as"] else "") + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="rt_polarity")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--latency", default="which_model_latency,which_model_latency_combined",
                   help="comma-separated latency results names under bench/results; each cell's speed-up is "
                        "against the dense file of its own run, from the first name that timed it")
    p.add_argument("--name", default=None,
                   help="results name under bench/results (default which_model, which_model_<task> for another task)")
    p.add_argument("--picture", default=None,
                   help="default docs/images/frontier.png, frontier_<task>.png for another task")
    args = p.parse_args(argv)
    suffix = "" if args.task == LATENCY_TASK else f"_{args.task}"
    args.name = args.name or f"which_model{suffix}"
    args.picture = args.picture or os.path.join(ROOT, "docs", "images", f"frontier{suffix}.png")
    latency = _merged_latency(args.latency.split(","))
    entries = points(accuracy_rows(args.task, args.steps), latency)
    if not entries:
        raise SystemExit("which_model: no cell has both an accuracy row and timed files.")
    table = choose(entries)
    command = "python bench/which_model.py " + " ".join(argv if argv is not None else sys.argv[1:])
    summary = {"command": command.strip(), "latency_command": latency["command"],
               "timed_twice": latency["timed_twice"],
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "table": table, "cells": entries}
    text = markdown(entries, table, latency, args.task, args.steps)
    atomic_write(os.path.join(RESULTS, f"{args.name}.json"), json.dumps(summary, indent=2).encode())
    atomic_write(os.path.join(RESULTS, f"{args.name}.md"), (f"`{summary['command']}`\n\n" + text).encode())
    viz.plot_speedup_frontier(entries, args.picture, title=f"{args.task}: points lost against speed-up and size "
                              f"(seed mean +- std; {args.steps} fine-tuning steps)")
    print(text)


if __name__ == "__main__":
    main()
