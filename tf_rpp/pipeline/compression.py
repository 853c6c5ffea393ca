"""The whole recipe in one call: a pruned encoder for your task, within a point or two of dense, as `.tflite`.

Four stages, each a resumable run of its own folder under `out`:

1. `dense/`: the dense pretrained encoder fine-tuned on the task (the teacher);
2. `prune/`: RPP learns the universal mask on generic text (upstream,
   task-agnostic: the pruned encoder matches the dense one's layer outputs);
3. `pruned/`: the dense fine-tuned model with the universal mask applied,
   fine-tuned with the mask fixed, distilling the dense model's logits and
   layer outputs, at its own rate, batch and steps (`pruned_init="upstream"`:
   the encoder the pruning stage saved, with a new head);
4. the phone files: `pruned/model.tflite` (float32) and
   `pruned/model_dynamic.tflite` (int8 weights), both with the metadata
   MediaPipe's `TextClassifier` reads, their size and single-thread latency.

It prints a table (sparsity, the metric of both models, the points lost with a
95% interval from resampling the validation examples, file sizes, latency)
and writes `out/summary.json`. Interrupted, the same call continues: finished
stages are reused, an interrupted pruning run resumes from its checkpoint; a
finished stage with other settings is refused before any work starts.

The task is a packaged one (`task="rt_polarity"`) or your own CSV / TSV / JSONL
files (`data=("reviews/",)`, `text_columns`, `label_column`).

Example:

```python
from tf_rpp import pipeline
result = pipeline.compress(data=("reviews/",), text_columns=("review",), label_column="stars",
                           sparsity=0.6, out="runs/reviews")
print(result.points_lost, result.files)
```
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from tf_rpp import significance
from tf_rpp._files import atomic_write
from tf_rpp.data import tasks
from tf_rpp.pipeline import _runs
from tf_rpp.pipeline import finetuning
from tf_rpp.pipeline import pruning
from tf_rpp.pipeline.options import option


@dataclasses.dataclass
class CompressConfig:
    """Settings of `compress`; the defaults are the measured recipe. Every field is a `tf-rpp compress` flag."""

    task: str = option("rt_polarity", f"a packaged or GLUE task ({', '.join(sorted(tasks.TASKS))}); ignored with "
                       "--data")
    data: tuple = option(None, "your own data: a folder with train and validation (or dev) .csv/.tsv/.jsonl files, "
                         "or two files TRAIN VALIDATION", type=str, nargs="+")
    text_columns: tuple = option(("text",), "with --data: the text column, or two for sentence pairs",
                                 type=str, nargs="+")
    label_column: str = option("label", "with --data: the label column")
    preset: str = option("minilm", "the dense encoder: 'minilm', a keras-hub preset or handle, or a folder")
    out: str = option("runs/compress", "output folder (one subfolder per stage)")
    sparsity: float = option(0.6, "sparsity of the encoder kernels the pruned model reaches")
    method: str = option("rpp", "how the upstream mask is learned: rpp (reweighted proximal pruning) or magnitude "
                         "(iterative magnitude pruning, NIP, on the same schedule)", choices=("rpp", "magnitude"))
    flow: str = option("upstream", "upstream: a universal mask learned on generic text, then fine-tuned with the "
                       "mask fixed (the paper's); downstream: prune the dense fine-tuned model on the task itself",
                       choices=("upstream", "downstream"))
    sequence_length: int = option(64, "tokens per example when fine-tuning and in the .tflite")
    steps: int = option(200, "the dense model's fine-tuning steps (and the downstream flow's)")
    batch_size: int = option(32, "the dense model's batch (and the downstream flow's)")
    learning_rate: float = option(1e-4, "the dense model's peak learning rate (and the downstream flow's)")
    pruned_steps: int = option(400, "upstream: the pruned model's fine-tuning steps")
    pruned_batch_size: int = option(16, "upstream: the pruned model's batch")
    pruned_learning_rate: float = option(6e-4, "upstream: the pruned model's peak learning rate")
    pruned_init: str = option("dense", "upstream: what the pruned model starts from: the dense fine-tuned model "
                              "with the universal mask applied (dense: its head and kept weights already trained on "
                              "the task) or the encoder the pruning stage saved, with a new head (upstream)",
                              choices=("dense", "upstream"))
    prune_steps: int = option(150, "upstream: pruning steps on the generic corpus")
    prune_sequence_length: int = option(32, "upstream: tokens per corpus text while pruning")
    objective: str = option("distill", "upstream objective: distill (match the dense encoder's layer outputs) or "
                            "mlm (masked LM plus --prune-distill times that term)", choices=("distill", "mlm"))
    prune_distill: float = option(50.0, "with --objective mlm: weight of the layer-output term beside masked LM")
    warmup_steps: int = option(100, "with --objective mlm: the MLM head's warm-up steps")
    prune_rewind: bool = option(True, "upstream: when the mask is final, return the kept weights to the pretrained "
                                "values (the RPP steps that chose the mask also shrank them; PruneConfig.rewind); "
                                "the pruned model starts from them with --pruned-init upstream")
    distill_alpha: float = option(0.5, "weight of the dense model's logits against the labels (1: logits only)")
    teacher_layers: float = option(10.0, "weight of the dense model's layer outputs (0: its logits only)")
    freeze_embeddings: bool = option(False, "both fine-tunings keep the encoder's embeddings as loaded")
    export_dynamic: bool = option(True, "also write pruned/model_dynamic.tflite (int8 weights, float "
                                  "activations: about 4x smaller and 3x faster than float32 on CPU)")
    seed: int = option(0, "random seed")
    verbose: int = option(2, "Keras progress display: 0 silent, 1 bar, 2 a line per epoch", choices=(0, 1, 2))

    def check(self):
        """Raises ValueError for settings that cannot work, before any data or model is loaded."""
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"--sparsity is a fraction in (0, 1); received {self.sparsity}.")
        for flag in ("steps", "batch_size", "pruned_steps", "pruned_batch_size", "prune_steps"):
            if getattr(self, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1; received {getattr(self, flag)}.")
        if self.data is not None and len(self.data) not in (1, 2):
            raise ValueError(f"--data takes a folder or two files (train, validation); received {self.data}.")
        for path in self.data or ():
            if not os.path.exists(path):
                raise FileNotFoundError(f"--data {path!r}: no such file or folder.")


@dataclasses.dataclass
class CompressResult:
    """What `compress` produced: both models' results, the points lost with their interval, the files."""

    dense: finetuning.FinetuneResult
    pruned: finetuning.FinetuneResult
    prune: pruning.PruneResult
    sparsity: float
    metric: str
    points_lost: float
    interval: dict
    files: dict
    wall_time_s: float

    def to_dict(self):
        """A JSON-ready dict (what `summary.json` holds)."""
        return dataclasses.asdict(self)


def compress(config=None, **overrides):
    """Runs the recipe (see the module docstring) and prints its table.

    Args:
        config: a `CompressConfig` (default: all defaults).
        **overrides: fields to change, e.g. `compress(sparsity=0.7, out="runs/c70")`.

    Returns:
        A `CompressResult`; `out/summary.json` holds it.

    Raises:
        ValueError, FileNotFoundError: bad settings or data, before any training.

    Example:

    ```python
    result = compress(task="rt_polarity", out="runs/main")
    ```
    """
    config = dataclasses.replace(config or CompressConfig(), **overrides)
    config.check()
    _runs.check_backend(config)
    started = time.time()
    data = dict(task=config.task, data=config.data, text_columns=config.text_columns,
                label_column=config.label_column)
    common = finetuning.FinetuneConfig(
        **data, preset=config.preset, sequence_length=config.sequence_length, steps=config.steps,
        batch_size=config.batch_size, learning_rate=config.learning_rate, freeze_embeddings=config.freeze_embeddings,
        seed=config.seed, verbose=config.verbose, export_tflite=True, resume=True)
    common.check()  # the data's and settings' errors come before the first stage trains
    if config.data is not None:
        finetuning.resolve_task(common)
    dense = finetuning.finetune(common, out=os.path.join(config.out, "dense"))
    teacher = dict(teacher=dense.model_path, teacher_layers=config.teacher_layers, distill_alpha=config.distill_alpha)
    prune = None
    if config.flow == "downstream":
        pruned = finetuning.finetune(common, out=os.path.join(config.out, "pruned"), init_model=dense.model_path,
                                     sparsity=config.sparsity, method=config.method, **teacher)
        sparsity = pruned.mask_sparsity
    else:
        prune = pruning.prune(
            preset=config.preset, out=os.path.join(config.out, "prune"), target_sparsity=config.sparsity,
            method=config.method,
            steps=config.prune_steps, warmup_steps=config.warmup_steps, objective=config.objective,
            sequence_length=config.prune_sequence_length, distill=config.prune_distill, rewind=config.prune_rewind,
            seed=config.seed, verbose=config.verbose, resume=True)
        start = (dict(init_model=dense.model_path) if config.pruned_init == "dense"
                 else dict(preset=prune.preset_dir))
        pruned = finetuning.finetune(
            common, out=os.path.join(config.out, "pruned"), **start, mask=prune.mask_path,
            learning_rate=config.pruned_learning_rate, steps=config.pruned_steps, batch_size=config.pruned_batch_size,
            **teacher)
        sparsity = prune.sparsity
    files = _phone_files(config, dense, pruned)
    metric = next(iter(dense.metrics))
    result = CompressResult(
        dense=dense, pruned=pruned, prune=prune, sparsity=sparsity, metric=metric,
        points_lost=100 * (dense.metrics[metric] - pruned.metrics[metric]),
        interval=_interval(metric, dense, pruned), files=files, wall_time_s=time.time() - started)
    summary = result.to_dict()
    if summary["prune"] is not None:
        summary["prune"].pop("layer_sparsity")
    # A resumed run reuses finished stages: their own times say what training them took.
    summary["backend"] = keras.backend.backend()
    summary["stages_wall_time_s"] = {name: part.wall_time_s for name, part in
                                     (("dense", dense), ("prune", prune), ("pruned", pruned)) if part is not None}
    atomic_write(os.path.join(config.out, "summary.json"), json.dumps(summary, indent=2).encode())
    print()
    print(table(result, config.data and "your data" or dense.task))
    print(f"wall time {result.wall_time_s / 60:.1f} min, Keras on {keras.backend.backend()} (the stages' own: "
          + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in summary["stages_wall_time_s"].items())
          + f"); details in {config.out}/summary.json")
    return result


def table(result, task_name):
    """The printed table of a `CompressResult`, as text.

    Example:

    ```python
    print(table(result, "rt_polarity"))
    ```
    """
    dense, pruned, metric, interval = result.dense, result.pruned, result.metric, result.interval
    rows = [
        ("encoder-kernel sparsity", "0.00%", f"{result.sparsity:.2%}"),
        *([("  of which the pruning steps made", "-", f"{result.prune.sparsity_before_hardening:.2%}")]
          if result.prune is not None and result.prune.sparsity_before_hardening is not None else []),
        (f"{task_name} validation {metric}", f"{dense.metrics[metric]:.4f}", f"{pruned.metrics[metric]:.4f}"),
        ("points lost", "-", f"{result.points_lost:.2f}"),
        *([(f"  {interval['confidence']:.0%} interval, validation resampled", "-",
            f"{100 * interval['low']:.2f} to {100 * interval['high']:.2f}")] if interval else []),
        ("mask held while fine-tuning", "-", "yes" if pruned.mask_held else "NO"),
    ]
    for variant, (dense_file, pruned_file) in result.files.items():
        rows.append((f".tflite {variant} MB, ms (1 thread)", _file_text(dense_file), _file_text(pruned_file)))
    header = ("", "dense", "pruned")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [f"{header[0]:{widths[0]}}  {header[1]:>{widths[1]}}  {header[2]:>{widths[2]}}"]
    lines += [f"{name:{widths[0]}}  {a:>{widths[1]}}  {b:>{widths[2]}}" for name, a, b in rows]
    return "\n".join(lines)


def _file_text(file):
    return "-" if file is None else f"{file['bytes'] / 1e6:.1f} MB, {file['latency_ms']:.1f} ms"


def _phone_files(config, dense, pruned):
    """{variant: (dense file, pruned file)}, each `{"path", "bytes", "latency_ms"}` (None: not written)."""
    from tf_rpp import export
    from tf_rpp import saving

    files = {"float32": (_measured(dense.tflite_path), _measured(pruned.tflite_path))}
    if config.export_dynamic:
        path = os.path.join(os.path.dirname(pruned.tflite_path), "model_dynamic.tflite")
        if not os.path.exists(path):
            model = saving.load_model(pruned.model_path, compile=False)
            export.export_tflite(model, path, sequence_length=config.sequence_length, quantize="dynamic",
                                 labels=pruned.label_names)
        files["dynamic int8"] = (None, _measured(path))
    return files


def _measured(path):
    from tf_rpp.export import latency

    return {"path": path, "bytes": os.path.getsize(path), "latency_ms": latency.latency_ms(path)}


def _interval(metric, dense, pruned):
    """The paired bootstrap interval of dense minus pruned over the validation examples (None without predictions)."""
    if not (dense.predictions_path and pruned.predictions_path):
        return None
    first, second = np.load(dense.predictions_path), np.load(pruned.predictions_path)
    if not np.array_equal(first["labels"], second["labels"]):
        raise ValueError(f"{dense.predictions_path} and {pruned.predictions_path} hold different validation examples.")
    return significance.paired_bootstrap(tasks.METRICS[metric], first["labels"], first["predictions"],
                                         second["predictions"])
