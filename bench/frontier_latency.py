"""Re-times the frontier's exported `.tflite` files round-robin, so slow drifts of the machine hit every cell alike.

`bench/frontier.py` times one cell after another; on the 2-core test machine one file's median moved by up to 20%
between runs minutes apart. Here every round times every cell's float32 and int8 file once (batch 1,
--sequence-length tokens, 64 unless told, 1 thread, median of `--runs` invokes); the figure is the median over
`--rounds`, and each speed-up is against the dense file of the same round, then the median of those ratios.
`--threads 1,2` times each file with each thread count (the JSON's top-level figures are the first count's).

    python bench/frontier_latency.py --cells dense,structured_50_rewind,structured_h35_n65_rewind --rounds 5
    python bench/frontier_latency.py --steps 600 --cells structured_70_rewind_dt   # runs/frontier_600
    python bench/frontier_latency.py --runs-dir runs/which_model_files --cells layerdrop_4_alternate \
        --sequence-length 128 --name which_model_latency_128   # after frontier.py --export-only --sequence-length 128

Results: `bench/results/<--name>.{json,md}` (default `frontier_latency`, `frontier_latency_<steps>` for another
`--steps`), with each file's bytes. Needs the files `bench/frontier.py` exported
(`<--runs-dir>/<task>/<cell>/seed0/model_{float32,int8}.tflite`; `bench/frontier.py --export-only` writes them).
"""

import argparse
import json
import os
import statistics
import sys
import time

from frontier import STEPS
from frontier import runs_folder
from frontier import tflite_name
from tflite_size_latency import TEXT
from tflite_size_latency import latency_ms

from tf_rpp._files import atomic_write

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", required=True, help="comma-separated; dense first is added if missing")
    p.add_argument("--task", default="rt_polarity")
    p.add_argument("--steps", type=int, default=None,
                   help="the fine-tuning budget of the runs to time (default bench/frontier.py's); picks --runs-dir "
                        "and --name as bench/frontier.py does (runs/frontier_600, frontier_latency_600 for 600)")
    p.add_argument("--runs-dir", default=None, help="where the runs are (default: from --steps, in the repository)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", default="1", help="comma-separated interpreter thread counts, e.g. 1,2")
    p.add_argument("--runs", type=int, default=50, help="timed invokes per file per round")
    p.add_argument("--sequence-length", type=int, default=64,
                   help="time the files exported at this many tokens (bench/frontier.py --export-only "
                        "--sequence-length)")
    p.add_argument("--name", default=None, help="results file name under bench/results (default: from --steps, "
                   "frontier_latency or frontier_latency_<steps>)")
    args = p.parse_args(argv)
    steps = STEPS if args.steps is None else args.steps
    args.runs_dir = args.runs_dir or os.path.join(ROOT, runs_folder(steps))
    args.name = args.name or ("frontier_latency" if steps == STEPS else f"frontier_latency_{steps}")
    cells = ["dense"] + [c for c in args.cells.split(",") if c and c != "dense"]
    paths = {(c, v): os.path.join(args.runs_dir, args.task, c, "seed0", tflite_name(v, args.sequence_length))
             for c in cells for v in ("float32", "int8")}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
        raise SystemExit(f"frontier_latency: not exported yet (run bench/frontier.py first): {missing}")
    threads = [int(t) for t in args.threads.split(",")]
    times = {(c, v, t): [] for c, v in paths for t in threads}
    for r in range(args.rounds):
        for (c, v), path in paths.items():
            for t in threads:
                times[(c, v, t)].append(latency_ms(path, TEXT, t, args.runs)[0])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{c} {v} {t}t {times[(c, v, t)][-1]:.2f}" for c, v, t in times), flush=True)
    rows = []
    for c in cells:
        row = {"cell": c}
        for v in ("float32", "int8"):
            by_threads = {}
            for t in threads:
                ratios = [d / x for d, x in zip(times[("dense", v, t)], times[(c, v, t)])]
                by_threads[str(t)] = {"median_ms": statistics.median(times[(c, v, t)]),
                                      "per_round_ms": times[(c, v, t)], "speedup_median": statistics.median(ratios),
                                      "speedup_min": min(ratios), "speedup_max": max(ratios)}
            row[v] = dict(by_threads[str(threads[0])], bytes=os.path.getsize(paths[(c, v)]), threads=by_threads)
        rows.append(row)
    out = {"command": "python bench/frontier_latency.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": args.rounds, "runs": args.runs,
           "threads": threads, "rows": rows}
    lines = [f"Batch 1, {args.sequence_length} tokens; {args.rounds} rounds, each timing every file once per thread "
             f"count (median of {args.runs} invokes); speed-up = dense / cell within a round, median (min-max) "
             "over rounds.", ""]
    for t in threads:
        lines += [f"{t} thread{'s' if t > 1 else ''}:", "",
                  "| cell | int8 ms | int8 speed-up | float32 ms | float32 speed-up | int8 MB | float32 MB |",
                  "|---|---|---|---|---|---|---|"]
        for row in rows:
            i8, f32 = row["int8"]["threads"][str(t)], row["float32"]["threads"][str(t)]
            lines.append(f"| {row['cell']} | {i8['median_ms']:.2f} | {i8['speedup_median']:.2f}x "
                         f"({i8['speedup_min']:.2f}-{i8['speedup_max']:.2f}) | {f32['median_ms']:.2f} | "
                         f"{f32['speedup_median']:.2f}x ({f32['speedup_min']:.2f}-{f32['speedup_max']:.2f}) | "
                         f"{row['int8']['bytes'] / 1e6:.1f} | {row['float32']['bytes'] / 1e6:.1f} |")
        lines.append("")
    results = os.path.join(ROOT, "bench", "results")
    atomic_write(os.path.join(results, f"{args.name}.json"), json.dumps(out, indent=2).encode())
    atomic_write(os.path.join(results, f"{args.name}.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
