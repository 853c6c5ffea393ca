"""The main job's pruned fine-tuning, one change at a time, over seeds.

Each variant re-runs only the last step of `recipes/main.py` (the pruned model's
200 fine-tuning steps, distilling the dense model's logits and layer outputs) on
the dense model and the 60% mask of `bench/main_job_seeds.py`'s distill run of
the same seed (`runs/main_seeds/distill/seed<k>`), so the drop is paired with
that run's dense model and the base rows there (3e-4: `distill`, 6e-4:
`distill_lr6`). Variants:

- `lr10`: peak rate 1e-3 (the main job's default is 6e-4).
- `ema98`: 6e-4, and the model ends on an exponential moving average of its
  weights (Keras's own `use_ema=True, ema_momentum=0.98` on the AdamW inside
  `MaskedOptimizer`, which re-applies the mask to the averaged weights).
- `no_dropout`: 6e-4 with the encoder's dropout off (0.1 in MiniLM's config;
  the classifier head keeps its 0.1): 200 steps are under one epoch, and the
  teacher terms already regularise.
- `batch16`: 6e-4, batches of 16 for 400 steps (the same examples, twice the
  updates).
- `layers3`: 6e-4, the teacher's layer outputs weighted 3 instead of 10.
- `alpha1`: 6e-4, the teacher's logits only (no label term).
- `steps300`: 6e-4 for 300 steps instead of 200 (what more steps buy; the
  main job's 20 minutes do not leave room for them).
- `dense_batch16`: not a pruned model: the dense model trained as the main
  job trains it (1e-4) on batches of 16 for 400 steps, so that `batch16` is
  also compared with a dense model of the same batches.
- `task_vector`: 6e-4 (and `task_vector_lr3`: 3e-4), starting from the pruned
  encoder plus the dense model's fine-tuning delta (fine-tuned minus pretrained
  weights, the "task vector" of Ilharco et al. 2023, moved onto the pruned
  model as in task-vector transport, Rinaldi et al. 2025, arXiv 2510.09658),
  masked, with the dense model's classifier head, instead of a fresh head.

Writes `runs/pruned_recovery/<variant>/seed<k>/results.json` (skipped when
there) and `bench/results/pruned_recovery.{json,md}`.

    python bench/pruned_recovery.py --variants lr10,ema98 --seeds 0,1,2
    python bench/pruned_recovery.py --variants task_vector,task_vector_lr3 --seeds 0
    python bench/pruned_recovery.py --variants batch16,dense_batch16,layers3,alpha1,steps300 --seeds 0,1,2
"""

import argparse
import json
import os
import shutil
import statistics
import sys

import keras


from tf_rpp import models  # noqa: E402
from tf_rpp import pipeline  # noqa: E402
from tf_rpp import saving  # noqa: E402
from tf_rpp._files import atomic_write  # noqa: E402
from tf_rpp.masks import SparsityMask  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VARIANTS = {
    "lr10": {"learning_rate": 1e-3},
    "ema98": {"learning_rate": 6e-4, "ema": 0.98},
    "task_vector": {"learning_rate": 6e-4, "task_vector": True},
    "task_vector_lr3": {"learning_rate": 3e-4, "task_vector": True},
    "no_dropout": {"learning_rate": 6e-4, "backbone_dropout": 0.0},
    "batch16": {"learning_rate": 6e-4, "batch_size": 16, "steps": 400},
    "layers3": {"learning_rate": 6e-4, "teacher_layers": 3.0},
    "alpha1": {"learning_rate": 6e-4, "distill_alpha": 1.0},
    "steps300": {"learning_rate": 6e-4, "steps": 300},
    # The dense model of the same batches (the main job's dense recipe, 1e-4), the reference `batch16` needs.
    "dense_batch16": {"dense": True, "learning_rate": 1e-4, "batch_size": 16, "steps": 400},
}
BASES = {"distill": "3e-4", "distill_lr6": "6e-4"}


def task_vector_start(dense_path, preset, mask_path, out_path):
    """Writes the pruned encoder plus the dense model's masked fine-tuning delta, with its head, to `out_path`."""
    start = saving.load_model(dense_path, compile=False)
    pretrained = {v.path: v.numpy() for v in models.backbone("minilm").weights}
    pruned = {v.path: v.numpy() for v in models.backbone(preset).weights}
    mask = SparsityMask.load(mask_path)
    for weight in start.backbone.weights:
        weight.assign(pruned[weight.path] + weight.numpy() - pretrained[weight.path])
    mask.apply(start)
    start.save(out_path)


def _run(args, variant, seed):
    folder = os.path.join(args.runs, variant, f"seed{seed}")
    done = os.path.join(folder, "results.json")
    if os.path.exists(done):
        return
    settings = dict(VARIANTS[variant])
    reference = os.path.join(args.reference, f"seed{seed}")
    dense, mask = os.path.join(reference, "dense", "model.keras"), os.path.join(reference, "prune", "mask.npz")
    preset = os.path.join(reference, "prune", "preset")
    start = {"preset": preset}
    os.makedirs(folder, exist_ok=True)
    if settings.pop("dense", False):
        pipeline.finetune(task="rt_polarity", seed=seed, verbose=2, save_model=False, out=folder,
                          **{"steps": 200, **settings})
        return
    if settings.pop("task_vector", False):
        start = {"init_model": os.path.join(folder, "start.keras")}
        task_vector_start(dense, preset, mask, start["init_model"])
    dropout = settings.pop("backbone_dropout", None)
    if dropout is not None:  # a copy of the pruned preset whose config sets the encoder's dropout
        start["preset"] = os.path.join(folder, "preset")
        shutil.copytree(preset, start["preset"], dirs_exist_ok=True)
        config_path = os.path.join(start["preset"], "config.json")
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        config["config"]["dropout"] = dropout
        atomic_write(config_path, json.dumps(config, indent=4).encode())
    ema = settings.pop("ema", None)
    adamw = keras.optimizers.AdamW
    if ema is not None:  # the pipeline builds its AdamW itself; this run's one turns the Keras EMA on

        class AveragedAdamW(adamw):
            def __init__(self, *a, **k):
                super().__init__(*a, use_ema=True, ema_momentum=ema, **k)

        keras.optimizers.AdamW = AveragedAdamW
    try:
        main_job = {"steps": 200, "teacher_layers": 10.0, "distill_alpha": 0.5}
        pipeline.finetune(task="rt_polarity", seed=seed, verbose=2, save_model=False, out=folder, mask=mask,
                          teacher=dense, **{**main_job, **start, **settings})
    finally:
        keras.optimizers.AdamW = adamw


def _accuracy(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["metrics"]["accuracy"]


def _spread(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def report(args, variants, seeds):
    """Per variant: pruned accuracy per seed, drop from the seed's dense model, gain over the 6e-4 base."""
    main_seeds = os.path.join(args.reference, "..")
    dense = {s: _accuracy(os.path.join(args.reference, f"seed{s}", "dense", "results.json")) for s in seeds}
    rows = []
    for name in [*BASES, *variants]:
        folder = os.path.join(main_seeds, name) if name in BASES else os.path.join(args.runs, name)
        paths = {s: os.path.join(folder, f"seed{s}", "pruned" if name in BASES else "", "results.json") for s in seeds}
        pruned = {s: _accuracy(p) for s, p in paths.items() if os.path.exists(p)}
        if not pruned:
            continue
        drops = {s: 100 * (dense[s] - a) for s, a in pruned.items()}
        rows.append({"variant": name, "seeds": sorted(pruned), "pruned": pruned, "drop_points": drops,
                     "drop": _spread(list(drops.values()))})
    base = next((r for r in rows if r["variant"] == "distill_lr6"), None)
    lines = ["The main job's pruned fine-tuning (MiniLM, 60% upstream mask, `rt_polarity` dev, 200 steps of 32 unless the "
             "row says otherwise), one change per row, on the same dense models and masks (`runs/main_seeds/distill/seed<k>`); drop = that seed's "
             "dense minus pruned, in points; gain = over `distill_lr6` (6e-4, the main job's default) of the same seed.",
             "", f"dense per seed: {' / '.join(f'{dense[s]:.4f}' for s in seeds)}", "",
             "| variant | seeds | pruned per seed | drop per seed | drop mean +- std | gain over 6e-4 per seed |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        gains = ("-" if base is None or r is base else
                 " / ".join(f"{base['drop_points'][s] - r['drop_points'][s]:+.2f}" for s in r["seeds"]
                            if s in base["drop_points"]))
        label = (f"{r['variant']} ({BASES[r['variant']]}, bench/main_job_seeds.py)" if r["variant"] in BASES
                 else f"{r['variant']} (a dense model: drop = the batch-32 dense minus it)"
                 if VARIANTS[r["variant"]].get("dense") else r["variant"])
        accuracies = " / ".join(f"{r['pruned'][s]:.4f}" for s in r["seeds"])
        drops = " / ".join(f"{r['drop_points'][s]:.2f}" for s in r["seeds"])
        lines.append(f"| {label} | {','.join(map(str, r['seeds']))} | {accuracies} | {drops} | "
                     f"{r['drop']['mean']:.2f} +- {r['drop']['std']:.2f} | {gains} |")
    by_name = {r["variant"]: r for r in rows}
    if "batch16" in by_name and "dense_batch16" in by_name:  # each against the dense model of its own batches
        pruned, reference = by_name["batch16"]["pruned"], by_name["dense_batch16"]["pruned"]
        paired = {s: 100 * (reference[s] - pruned[s]) for s in pruned if s in reference}
        by_name["batch16"]["drop_vs_dense_batch16"] = paired
        spread = _spread(list(paired.values()))
        lines += ["", f"`batch16` against `dense_batch16` of the same seed: drop per seed "
                      f"{' / '.join(f'{d:.2f}' for d in paired.values())}, mean "
                      f"{spread['mean']:.2f} +- {spread['std']:.2f}."]
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    atomic_write(os.path.join(ROOT, "bench", "results", "pruned_recovery.json"),
                 json.dumps({"command": "python bench/pruned_recovery.py " + " ".join(sys.argv[1:]), "dense": dense,
                             "rows": rows}, indent=2).encode())
    atomic_write(os.path.join(ROOT, "bench", "results", "pruned_recovery.md"), ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="lr10,ema98", help=f"comma-separated, of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", default="runs/pruned_recovery")
    p.add_argument("--reference", default="runs/main_seeds/distill", help="the distill runs of bench/main_job_seeds.py")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    missing = [s for s in seeds if not os.path.exists(os.path.join(args.reference, f"seed{s}", "prune", "mask.npz"))]
    if missing:
        raise SystemExit(f"{args.reference}: seeds {missing} have no finished distill run; run "
                         "`python bench/main_job_seeds.py --objectives distill` first")
    if not args.report_only:
        for seed in seeds:
            for variant in variants:
                _run(args, variant, seed)
    report(args, variants, seeds)


if __name__ == "__main__":
    main()
