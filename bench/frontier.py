"""The accuracy frontier: how much accuracy survives pruning, at which latency and size, over seeds.

Each cell is one way to make a smaller or faster MiniLM-L6, trained with the
same fine-tuning budget (`--steps` at batch 32) for each of `--seeds` on each of
`--tasks`; the dense model of the same seed is its baseline, starting point
and teacher:

- `dense`: the pretrained model fine-tuned (peak rate 1e-4).
- `dense_distilled`: the control of the cells below that start from the dense
  model: the dense fine-tuned model trained for `--steps` more with their
  distillation and the structured cells' rate (3e-4), nothing pruned (their
  pruned models get two runs of training; this shows what the second run gives
  without pruning).
- `rpp_down_S`, `gmp_down_S` (S = 60, 80, 90): downstream unstructured pruning,
  the dense fine-tuned model pruned on the task itself (`RPPOptimizer`, or
  gradual magnitude pruning) to S% of the encoder kernels over 60% of the
  steps, then recovery with the mask fixed; distilling the dense model's logits
  and layer outputs. `_rewind`: at hardening the kept weights return to
  their dense values (`tf_rpp.hardening.rewind`).
- `structured_S`: structured RPP downstream (S% of heads and of feed-forward
  neurons removed, `GroupRPPOptimizer`), same distillation, then shrunk.
  `_early`: the mask chosen over the first third of the steps (not 60%), the
  rest recovery. `structured_hH_nN_rewind`: H% of heads, N% of neurons;
  `..._rewind_dt`: started from and distilling `dense_distilled` instead of `dense`.
  `structured_gmp_S`: the structured magnitude baseline (the weakest groups
  by norm, `GroupMagnitudeOptimizer`), no shrinkage. `structured_S_bB_rewind_dt`:
  whole blocks as groups too: B% of the attention blocks and B% of the
  feed-forward blocks go (RPP picks the layers), within S% of heads and neurons.
- `layerdrop_R_top|bottom|alternate`: the smaller dense model of equal or
  lower latency: the dense model with R of its 6 encoder layers removed
  (`tf-rpp finetune --keep-layers`; the top ones, the bottom ones, or every
  other), trained for the same steps at the structured cells' rate while
  distilling the dense model's logits and, kept layer by kept layer, its
  layer outputs. `_dt`: from and distilling `dense_distilled`.
  `layerdrop_R_alternate_hH_nN_rewind_dt`: both: R layers dropped, then H% of
  the kept layers' heads and N% of their neurons removed as in `structured_hH_nN_rewind_dt`.
- `rpp_up_S`: the paper's flow: a universal mask learned upstream with RPP
  (`tf_rpp.pipeline.prune`, per seed, on the task-agnostic distillation
  objective, the main job's, `--upstream-steps` at 32 tokens), then
  fine-tuned with the mask fixed and the same distillation. `nip_up_S`: the
  same with gradual magnitude pruning upstream (the paper's NIP baseline);
  the report gives how much of its kept weights RPP's mask of the same seed
  keeps too (`SparsityMask.overlap`). `rpp_up_S_rewind`: RPP's upstream mask
  on the pretrained weights (the kept weights as before the proximal steps).
  `rpp_up_S_u600`: `rpp_up_S` with 600 upstream steps. `..._dt`: distilling
  `dense_distilled` instead of `dense` while fine-tuning.
- Recovery variants of every `_dt` cell: `..._dt_lr6` fine-tunes at peak rate
  6e-4 instead of 3e-4, `..._dt_lr10` at 1e-3; `..._dt_kd` trains on the teacher's logits only
  (`distill_alpha` 1.0, no labels), as oBERT's recovery does.

Latency and size come from the seed-0 model of each cell, exported to
`.tflite` (float32 and dynamic-range int8, structured cells shrunk first) and
timed at batch 1 with 1 and 2 threads (`ai_edge_litert`, median `invoke()`).

Resumable: every run writes `runs/frontier/<task>/<cell>/seed<k>/results.json`
(`runs/frontier_<steps>/...` for another `--steps`: each budget has its own
runs and its own rows, and a run of another budget is refused); existing ones
are kept, so run it again after an interruption (or to add seeds or cells).
Results: `bench/results/frontier.{json,md}`, `docs/images/frontier_cells.png` (the user's picture,
`docs/images/frontier.png`, comes from `bench/which_model.py`).

    python bench/frontier.py --tasks rt_polarity --cells dense,rpp_down_80,structured_50   # train what is missing
    python bench/frontier.py --report-only                                                 # measure and write
    python bench/frontier.py --steps 600 --cells dense,structured_50_rewind --no-latency    # a longer budget
    python bench/frontier.py --cells rpp_up_80 --upstream-only      # the masks only, beside the dense runs
    python bench/frontier.py --steps 600 --cells dense,layerdrop_3_top --results layer_drop   # a study apart
    python bench/frontier.py --steps 600 --cells rpp_up_90_rewind_dt --export-only   # files for frontier_latency.py
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

os.environ.setdefault("TF_RPP_QUIET", "1")  # TensorFlow loads without its start-up logs
import tf_rpp  # noqa: E402,F401

from tf_rpp import export  # noqa: E402
from tf_rpp import models  # noqa: E402
from tf_rpp import pipeline  # noqa: E402
from tf_rpp.structured import layer_drop  # noqa: E402
from tf_rpp.structured import shrink  # noqa: E402
from tf_rpp import viz  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402
from tflite_size_latency import TEXT  # noqa: E402
from tflite_size_latency import latency_ms  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DISTILL = dict(teacher_layers=10.0)
STEPS = 300  # the frontier's budget; its runs live in runs/frontier, other budgets' in runs/frontier_<steps>


def _cells():
    cells = {"dense": dict(kind="dense", learning_rate=1e-4)}
    # The control of every cell that starts from the dense model: the same second run and
    # distillation with nothing pruned, so a pruned cell's gain from the extra steps shows.
    cells["dense_distilled"] = dict(kind="down", learning_rate=3e-4)
    for level in (60, 80, 90):
        for method, short in (("rpp", "rpp"), ("magnitude", "gmp")):
            for rewind in (False, True):
                name = f"{short}_down_{level}" + ("_rewind" if rewind else "")
                cells[name] = dict(kind="down", sparsity=level / 100, method=method, rewind=rewind,
                                   learning_rate=1e-4)
        for method, short in (("rpp", "rpp"), ("magnitude", "nip")):
            cells[f"{short}_up_{level}"] = dict(kind="up", sparsity=level / 100, method=method, learning_rate=3e-4)
        # The upstream RPP mask on the pretrained weights: its kept weights rewound to before the
        # proximal steps shrank them (separates RPP's choice from its shrinkage).
        cells[f"rpp_up_{level}_rewind"] = dict(kind="up", sparsity=level / 100, method="rpp", rewind=True,
                                               learning_rate=3e-4)
        # A longer upstream phase: the universal mask is learned once for every task.
        cells[f"rpp_up_{level}_u600"] = dict(kind="up", sparsity=level / 100, method="rpp", learning_rate=3e-4,
                                             upstream_steps=600)
        # Fine-tuned distilling `dense_distilled`, the better teacher the structured `_dt` cells use.
        for base in (f"rpp_up_{level}", f"rpp_up_{level}_rewind"):
            cells[f"{base}_dt"] = dict(cells[base], start="dense_distilled")
    for level in (50, 55, 60, 67, 70, 75, 80):
        for rewind in (False, True):
            cells[f"structured_{level}" + ("_rewind" if rewind else "")] = dict(
                kind="down", structured=level / 100, rewind=rewind, learning_rate=3e-4)
        for rewind in (False, True):  # the structured magnitude baseline: choosing without shrinking
            cells[f"structured_gmp_{level}" + ("_rewind" if rewind else "")] = dict(
                kind="down", structured=level / 100, method="magnitude", rewind=rewind, learning_rate=3e-4)
        # Same budget, the mask chosen in the first third: with rewind the pruning phase only
        # chooses, so its steps may serve recovery better.
        cells[f"structured_{level}_rewind_early"] = dict(
            kind="down", structured=level / 100, rewind=True, pruning_share=1 / 3, learning_rate=3e-4)
        cells[f"structured_{level}_rewind_dt"] = dict(cells[f"structured_{level}_rewind"], start="dense_distilled")
    # Fewer heads than neurons removed, for about the multiply-adds of structured_55 (the
    # feed-forward block holds two thirds of a layer's): heads cost less latency than weights.
    # h60_n75 and h50_n80: the same trade at the multiply-adds of structured_70 (about 3x).
    for heads, neurons in ((35, 65), (20, 75), (60, 75), (50, 80)):
        cells[f"structured_h{heads}_n{neurons}_rewind"] = dict(
            kind="down", structured=neurons / 100, structured_heads=heads / 100, rewind=True, learning_rate=3e-4)
        # Started from and distilling `dense_distilled` (a better teacher for the same compute as the
        # cell's own second run); the drop is still against `dense`.
        cells[f"structured_h{heads}_n{neurons}_rewind_dt"] = dict(
            cells[f"structured_h{heads}_n{neurons}_rewind"], start="dense_distilled")
    # Whole attention and feed-forward blocks as groups beside heads and neurons (CoFi-style): `b{B}` removes
    # B% of the layers' attention blocks and B% of their feed-forward blocks, chosen by RPP across layers,
    # inside the cell's overall share of heads and neurons.
    for level, blocks in ((60, 33), (70, 33), (70, 50), (75, 50)):
        cells[f"structured_{level}_b{blocks}_rewind_dt"] = dict(cells[f"structured_{level}_rewind_dt"],
                                                                 structured_blocks=blocks / 100)
    # The smaller dense model of the same family: the dense model with `removed` of its 6 encoder layers
    # dropped (Sajjad et al.), trained and distilled like the structured cells, each kept layer matching
    # the teacher's layer it was. `_top` drops the top layers, `_bottom` the bottom ones, `_alternate`
    # keeps evenly spaced layers.
    for removed in (3, 4, 5):
        for strategy in layer_drop.STRATEGIES:
            cells[f"layerdrop_{removed}_{strategy}"] = dict(
                kind="down", keep_layers=tuple(layer_drop.layers_to_keep(6, 6 - removed, strategy)),
                learning_rate=3e-4)
            cells[f"layerdrop_{removed}_{strategy}_dt"] = dict(cells[f"layerdrop_{removed}_{strategy}"],
                                                               start="dense_distilled")
    # Both at once, for speed-ups past what either reaches alone at a small loss: whole layers dropped
    # (every other one kept), then H% of the kept layers' heads and N% of their neurons removed.
    for removed in (2, 3):
        for heads, neurons in ((35, 65), (60, 75)):
            cells[f"layerdrop_{removed}_alternate_h{heads}_n{neurons}_rewind_dt"] = dict(
                cells[f"structured_h{heads}_n{neurons}_rewind_dt"],
                keep_layers=tuple(layer_drop.layers_to_keep(6, 6 - removed, "alternate")))
    # Recovery variants: sparser models may need a larger step size, or only the teacher's soft labels.
    for name in [c for c in cells if c.endswith("_dt")]:
        cells[f"{name}_lr6"] = dict(cells[name], learning_rate=6e-4)
        cells[f"{name}_lr10"] = dict(cells[name], learning_rate=1e-3)
        cells[f"{name}_kd"] = dict(cells[name], distill_alpha=1.0)
    return cells


CELLS = _cells()


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="rt_polarity", help="comma-separated (default rt_polarity)")
    p.add_argument("--cells", default="dense,rpp_down_80,structured_50",
                   help=f"comma-separated, of: {', '.join(CELLS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"fine-tuning steps of every run (default {STEPS})")
    p.add_argument("--upstream-steps", type=int, default=250, help="RPP steps of rpp_up_* (default 250)")
    p.add_argument("--runs", default=None,
                   help="where the models go (default runs/frontier, or runs/frontier_<steps> for other --steps)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed invokes per latency (default 50)")
    p.add_argument("--results", default="frontier",
                   help="bench/results/<name>.{json,md} to merge the rows into (default frontier; another name "
                        "keeps a study's rows, its own dense row included, apart)")
    p.add_argument("--report-only", action="store_true", help="train nothing; measure and write what exists")
    p.add_argument("--train-only", action="store_true", help="train what is missing; no export or report")
    p.add_argument("--upstream-only", action="store_true",
                   help="learn the upstream masks of the `*_up_*` cells only (they need no dense model, so "
                        "they can run beside the dense runs); no fine-tuning or report")
    p.add_argument("--export-only", action="store_true",
                   help="export the seed-0 `.tflite` files of --cells and time nothing (bench/frontier_latency.py "
                        "then times them round-robin, when nothing else runs); no report")
    p.add_argument("--sequence-length", type=int, default=64,
                   help="tokens of the files --export-only writes (default 64; another length is named in the file, "
                        "model_int8_128.tflite, beside the 64-token files)")
    p.add_argument("--no-latency", action="store_true", help="report accuracy and compute only (no .tflite export)")
    p.add_argument("--latency-cells", default=None,
                   help="comma-separated cells to export and time (default: all); the others keep the latency "
                        "measured before, if any (timings are only fair while nothing else runs)")
    return p


def _folder(args, task, cell, seed):
    return os.path.join(args.runs, task, cell, f"seed{seed}")


def _upstream_folder(args, cell, seed):
    return os.path.join(args.runs, "upstream", cell, f"seed{seed}")


def mask_overlap(args, cell, seeds):
    """For `nip_up_S`: per seed, the fraction of its kept weights that `rpp_up_S`'s mask keeps too."""
    other = cell.replace("nip_up_", "rpp_up_")
    shared = {}
    for seed in seeds:
        paths = [os.path.join(_upstream_folder(args, c, seed), "mask.npz") for c in (cell, other)]
        if all(os.path.exists(p) for p in paths):
            nip, rpp = (tf_rpp.SparsityMask.load(p) for p in paths)
            shared[str(seed)] = nip.overlap(rpp)
    return shared


def _latency_cache(args, task, cell):
    return os.path.join(_folder(args, task, cell, 0), "latency.json")


def _done(folder):
    path = os.path.join(folder, "results.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _upstream_cell(cell):
    """The upstream run an `*_up_*` cell fine-tunes from (`rpp_up_80_rewind_dt_kd` reuses `rpp_up_80`'s)."""
    return re.match(r"(rpp|nip)_up_\d+(_u600)?", cell).group(0)


def _upstream(args, cell, seed):
    """The upstream pruning run of `cell` (`rpp_up_S`/`nip_up_S`) and seed: its report, run if missing."""
    folder = _upstream_folder(args, cell, seed)
    report = os.path.join(folder, "report.json")
    if os.path.exists(report):  # finished: kept whatever --upstream-steps says now (rows show each run's)
        with open(report, encoding="utf-8") as f:
            return json.load(f)
    spec = CELLS[cell]
    return pipeline.prune(out=folder, objective="distill", method=spec["method"], sequence_length=32,
                          target_sparsity=spec["sparsity"], steps=spec.get("upstream_steps", args.upstream_steps),
                          seed=seed, verbose=2,
                          resume=True).to_dict()


def upstream_steps(args, cell, seed):
    """The pruning steps the upstream run of `cell` and `seed` took (its `report.json`)."""
    with open(os.path.join(_upstream_folder(args, cell, seed), "report.json"), encoding="utf-8") as f:
        return json.load(f)["args"]["steps"]


def train(args, task, cell, seed):
    """Trains one run unless its results exist; returns its `results.json` dict."""
    folder = _folder(args, task, cell, seed)
    found = _done(folder)
    if found is not None:
        if found["steps"] != args.steps:
            raise SystemExit(f"frontier: {folder} was trained for {found['steps']} steps, not --steps "
                             f"{args.steps}; give another --runs")
        return found
    spec = CELLS[cell]
    common = dict(task=task, steps=args.steps, seed=seed, verbose=2, learning_rate=spec["learning_rate"])
    print(f"=== {task} {cell} seed {seed} ({time.strftime('%H:%M:%S')})", flush=True)
    if spec["kind"] == "dense":
        return pipeline.finetune(out=folder, **common).to_dict()
    dense = train(args, task, spec.get("start", "dense"), seed)["model_path"]
    distill = dict(DISTILL, **{k: spec[k] for k in ("distill_alpha",) if k in spec})
    if spec["kind"] == "up":
        upstream = _upstream(args, _upstream_cell(cell), seed)
        preset = models.DEFAULT_PRESET if spec.get("rewind") else upstream["preset_dir"]
        result = pipeline.finetune(out=folder, preset=preset, mask=upstream["mask_path"],
                                   teacher=dense, **distill, **common).to_dict()
        result["upstream_wall_time_s"] = upstream["wall_time_s"]
    else:
        pruning = {k: spec[k] for k in ("sparsity", "method", "structured", "structured_heads",
                                        "structured_blocks", "rewind", "keep_layers") if k in spec}
        if "pruning_share" in spec:
            pruning["pruning_steps"] = int(spec["pruning_share"] * args.steps)
        result = pipeline.finetune(out=folder, init_model=dense, teacher=dense, **distill, **pruning,
                                   **common).to_dict()
    atomic_write(os.path.join(folder, "results.json"), json.dumps(result, indent=2).encode())
    return result


def measure(args, task, cell):
    """Bytes and batch-1 latency of the cell's seed-0 model, float32 and dynamic int8 (cached)."""
    cache = _latency_cache(args, task, cell)
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    rows = {}
    for variant, path in export_cell(args, task, cell).items():
        rows[variant] = {"bytes": os.path.getsize(path),
                         "latency_ms_1_thread": latency_ms(path, TEXT, 1, args.latency_runs)[0],
                         "latency_ms_2_threads": latency_ms(path, TEXT, 2, args.latency_runs)[0]}
    atomic_write(cache, json.dumps(rows, indent=2).encode())
    return rows


def tflite_name(variant, sequence_length=64):
    """The file name of a cell's exported `variant` ("float32", "int8"): 64 tokens unnamed, others by length.

    >>> tflite_name("int8"), tflite_name("int8", 128)
    ('model_int8.tflite', 'model_int8_128.tflite')
    """
    return f"model_{variant}.tflite" if sequence_length == 64 else f"model_{variant}_{sequence_length}.tflite"


def export_cell(args, task, cell):
    """Writes the cell's seed-0 `model_{float32,int8}.tflite` (structured cells shrunk first); their paths."""
    length = getattr(args, "sequence_length", 64)
    folder = _folder(args, task, cell, 0)
    result = _done(folder)
    if result is None:
        raise SystemExit(f"frontier: {folder} is not trained yet; nothing to export")
    model = tf_rpp.load_model(result["model_path"], compile=False)
    if CELLS[cell].get("structured"):
        model = shrink.shrink_classifier(model)
    paths = {}
    for variant, quantize in (("float32", None), ("int8", "dynamic")):
        paths[variant] = os.path.join(folder, tflite_name(variant, length))
        export.export_tflite(model, paths[variant], sequence_length=length, quantize=quantize,
                             labels=result["label_names"])
    return paths


def _spread(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(args, tasks, cells, seeds):
    """Per task and cell: every seed's metric, their spread, the drop from dense, compute, latency, size."""
    rows = []
    for task in tasks:
        dense_runs = {s: _done(_folder(args, task, "dense", s)) for s in seeds}
        for cell in cells:
            runs = {s: _done(_folder(args, task, cell, s)) for s in seeds}
            runs = {s: r for s, r in runs.items() if r is not None}
            if not runs:
                continue
            metric = next(iter(next(iter(runs.values()))["metrics"]))
            values = [r["metrics"][metric] for r in runs.values()]
            paired = [r["metrics"][metric] - dense_runs[s]["metrics"][metric] for s, r in runs.items()
                      if dense_runs.get(s) is not None]
            own = [r["wall_time_s"] + r.get("upstream_wall_time_s", 0.0) for r in runs.values()]
            spec = CELLS[cell]
            row = {"task": task, "cell": cell, "steps": args.steps, "kind": spec["kind"], "metric": metric,
                   "seeds": sorted(runs),
                   "per_seed": {str(s): r["metrics"][metric] for s, r in sorted(runs.items())},
                   "accuracy": _spread(values), "drop_vs_dense": _spread([-d for d in paired]) if paired else None,
                   "sparsity": spec.get("sparsity"), "structured": spec.get("structured"),
                   "structured_heads": spec.get("structured_heads", spec.get("structured")),
                   "structured_blocks": spec.get("structured_blocks"),
                   "method": spec.get("method", "rpp") if spec["kind"] != "dense" else None,
                   "compute_s_mean": statistics.mean(own),
                   "starts_from_dense": spec["kind"] != "dense"}
            if cell.startswith("nip_up_"):
                row["kept_shared_with_rpp"] = mask_overlap(args, cell, sorted(runs))
            if spec["kind"] == "up":
                row["upstream_steps"] = sorted({upstream_steps(args, _upstream_cell(cell), s) for s in runs})
            timed = args.latency_cells is None or cell in args.latency_cells.split(",")
            cached = os.path.exists(_latency_cache(args, task, cell))
            if not (args.train_only or args.no_latency) and 0 in runs and (timed or cached):
                row["tflite"] = measure(args, task, cell)
            rows.append(row)
    for row in rows:
        dense = next((r for r in rows if r["task"] == row["task"] and r["cell"] == "dense"
                      and r["steps"] == row["steps"]), None)
        if dense and "tflite" in row and "tflite" in dense:
            for variant, measured in row["tflite"].items():
                base = dense["tflite"][variant]
                measured["speedup_1_thread"] = base["latency_ms_1_thread"] / measured["latency_ms_1_thread"]
                measured["size_fraction"] = measured["bytes"] / base["bytes"]
    return rows


def _with_earlier_seeds(rows, old, seeds):
    """`rows` with those of `seeds` an earlier report of the same rows holds and these runs lack (folders gone).

    A seed measured again replaces the earlier figure; the spread and the drop are recomputed over all seeds.
    """
    merged = []
    for row in rows:
        earlier = old.get((row["task"], row["cell"], row["steps"]))
        missing = {s: v for s, v in (earlier or {}).get("per_seed", {}).items()
                   if s not in row["per_seed"] and int(s) in seeds}
        if missing:
            n_new, n_old = len(row["per_seed"]), len(missing)
            row = dict(row, per_seed=dict(sorted({**row["per_seed"], **missing}.items())),
                       compute_s_mean=(row["compute_s_mean"] * n_new + earlier["compute_s_mean"] * n_old)
                       / (n_new + n_old))
            row["seeds"] = sorted(int(s) for s in row["per_seed"])
            row["accuracy"] = _spread(list(row["per_seed"].values()))
        merged.append(row)
    dense = {(r["task"], r["steps"]): r["per_seed"] for r in list(old.values()) + merged if r["cell"] == "dense"}
    for row in merged:
        base = dense.get((row["task"], row["steps"]))
        if base and row["cell"] != "dense":
            paired = [base[s] - v for s, v in row["per_seed"].items() if s in base]
            row["drop_vs_dense"] = _spread(paired) if paired else None
    return merged


def markdown(rows, args):
    lines = [f"MiniLM-L6 (all-MiniLM-L6-v2), `steps` fine-tuning steps at batch 32 per run (the dense "
             "baseline of a row is trained for as many), seeds "
             f"{args.seeds}; accuracy on the dev set, mean +- sample std over seeds; drop = dense minus pruned, "
             "paired by seed. Latency: `.tflite` batch 1, 64 tokens, median of "
             f"{args.latency_runs} invokes (ai_edge_litert, XNNPACK); size: file bytes (sparse encoding). "
             "Compute: mean wall time of a run on a 2-core machine (cells that start from the dense model "
             "also need it). Upstream cells (`*_up_*`): the upstream pruning steps are in brackets after "
             "the cell's name.", "",
             "| task | cell | steps | seeds | accuracy | drop vs dense (pts) | worst seed drop | int8 ms 1 thr | "
             "speed-up int8 | fp32 ms 1 thr | speed-up fp32 | int8 MB | fp32 MB | compute per run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        acc, drop = r["accuracy"], r["drop_vs_dense"]
        t = r.get("tflite", {})
        i8, f32 = t.get("int8", {}), t.get("float32", {})
        dropped = (f"{100 * drop['mean']:+.2f} +- {100 * drop['std']:.2f} | {100 * drop['max']:+.2f}"
                   if drop and r["cell"] != "dense" else "- | -")
        speed = " | ".join(
            f"{d[key]:.2f}{unit}" if key in d else "-"
            for d in (i8, f32) for key, unit in (("latency_ms_1_thread", ""), ("speedup_1_thread", "x")))
        sizes = " | ".join(f"{d['bytes'] / 1e6:.1f}" if d else "-" for d in (i8, f32))
        name = r["cell"] + (f" ({'/'.join(map(str, r['upstream_steps']))} up)" if r.get("upstream_steps") else "")
        lines.append(f"| {r['task']} | {name} | {r['steps']} | {len(r['seeds'])} | "
                     f"{acc['mean']:.4f} +- {acc['std']:.4f} | {dropped} | {speed} | {sizes} | "
                     f"{r['compute_s_mean'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def runs_folder(steps):
    """Where the runs of a `--steps` budget live: one folder per budget, so none is taken for another's."""
    return "runs/frontier" if steps == STEPS else f"runs/frontier_{steps}"


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.runs = args.runs or runs_folder(args.steps)
    tasks = [t for t in args.tasks.split(",") if t]
    cells = [c for c in args.cells.split(",") if c]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise SystemExit(f"frontier: unknown cell(s) {unknown}; known: {', '.join(CELLS)}")
    if args.upstream_only:
        upstream = list(dict.fromkeys(_upstream_cell(c) for c in cells if CELLS[c]["kind"] == "up"))
        if not upstream:
            raise SystemExit(f"frontier: --upstream-only needs an upstream cell (rpp_up_*, nip_up_*); got {cells}")
        for seed in seeds:  # one mask per seed serves every task
            for cell in upstream:
                _upstream(args, cell, seed)
        return
    if args.export_only:
        for task in tasks:
            for cell in cells:
                print(f"{task} {cell}: " + ", ".join(export_cell(args, task, cell).values()), flush=True)
        return
    if not args.report_only:
        for task in tasks:
            for seed in seeds:  # seed-major: every cell gets its first seed early
                for cell in cells:
                    train(args, task, cell, seed)
    if args.train_only:
        return
    rows = summarize(args, tasks, cells, seeds)
    results_dir = os.path.join(ROOT, "bench", "results")
    old = {}
    json_path = os.path.join(results_dir, f"{args.results}.json")
    if os.path.exists(json_path):  # rows of other tasks or cells measured earlier stay
        with open(json_path, encoding="utf-8") as f:
            old = {(r["task"], r["cell"], r["steps"]): r for r in json.load(f)["rows"]}
    rows = _with_earlier_seeds(rows, old, seeds)
    old.update({(r["task"], r["cell"], r["steps"]): r for r in rows})
    merged = sorted(old.values(), key=lambda r: (r["task"], r["steps"], list(CELLS).index(r["cell"])))
    summary = {"command": "python bench/frontier.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": merged}
    atomic_write(json_path, json.dumps(summary, indent=2).encode())
    atomic_write(os.path.join(results_dir, f"{args.results}.md"),
                 (f"`{summary['command']}`\n\n" if args.results != "frontier" else "").encode()
                 + markdown(merged, args).encode())
    if args.results == "frontier" and any("tflite" in r for r in merged):
        viz.plot_frontier(merged, os.path.join(ROOT, "docs", "images", "frontier_cells.png"))
    print(markdown(merged, args))


if __name__ == "__main__":
    main()
