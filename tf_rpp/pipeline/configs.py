"""The settings and results of the pipeline's stages: what `prune` and `finetune` take and return.

Each config is a dataclass whose fields are also `tf-rpp` flags (`options`);
`check()` refuses settings that cannot work before any data or model loads.

Example:

```python
config = PruneConfig(out="runs/prune", target_sparsity=0.6)
config.check()
```
"""

import dataclasses
import os

from tf_rpp import models
from tf_rpp.data import tasks
from tf_rpp.pipeline.options import option
from tf_rpp.structured import layer_drop


@dataclasses.dataclass
class PruneConfig:
    """Settings of `prune`; the defaults are the recipes'. Every field is a `tf-rpp prune` flag."""

    preset: str = option(models.DEFAULT_PRESET, "'minilm' (embedded all-MiniLM-L6-v2), a keras-hub preset, "
                         "hf:// or kaggle:// handle, or a folder")
    corpus: str = option("packaged", "'packaged' (BBC News + rt_polarity train sentences) or a UTF-8 text file, "
                         "one text per line")
    out: str = option("runs/prune", "output folder")
    objective: str = option("auto", "what the pruned encoder is trained on: distill (task-agnostic distillation: "
                            "match the dense preset's layer outputs on the corpus, no MLM head; for models pretrained "
                            "by distillation or without an MLM head, like MiniLM), mlm (the paper's masked-LM "
                            "objective, plus --distill times the layer term), or auto: mlm for a preset folder that "
                            "holds a trained keras-hub MaskedLM, distill otherwise", choices=("auto", "distill", "mlm"))
    method: str = option("rpp", "rpp (reweighted proximal pruning) or magnitude (the NIP baseline, same schedule)",
                         choices=("rpp", "magnitude"))
    target_sparsity: float = option(0.6, "final sparsity of the encoder kernels, reached by a tfmot PolynomialDecay")
    l1_strength: float = option(None, "paper mode: a fixed lambda and no schedule (the exact zeros become the "
                                "mask); with a target it is only lambda's starting value (default 2e-3)", type=float)
    steps: int = option(300, "pruning steps")
    end_fraction: float = option(0.8, "the schedule reaches the target at this fraction of --steps; the rest "
                                 "trains with the mask frozen")
    frequency: int = option(10, "the schedule's pruning frequency in steps")
    rewind: bool = option(False, "when the mask is final, the kept weights return to the preset's values (the "
                          "proximal steps shrink them) and the rest of --steps trains them from there")
    warmup_steps: int = option(150, "with --objective mlm: MLM-head warm-up steps, backbone frozen")
    learning_rate: float = option(1e-4, "AdamW learning rate while pruning")
    distill: float = option(0.0, "with --objective mlm: weight of upstream distillation while pruning: the pruned "
                            "encoder also matches the dense preset's layer outputs on the same texts (relative squared "
                            "error, mean over layers), added to the MLM loss; 0 is the paper's MLM objective alone")
    reweight_every: int = option(10, "RPP reweighting period in steps")
    sequence_length: int = option(64, "tokens per text")
    batch_size: int = option(32, "global batch size")
    eval_texts: int = option(512, "held-out texts for MLM accuracy")
    steps_per_epoch: int = option(25, "checkpoint period for --resume")
    include_embeddings: bool = option(False, "also prune the embeddings (implies training them)")
    train_embeddings: bool = option(False, "also train the embeddings while pruning (the MLM head is tied to the "
                                    "token embedding, so Adam would move every row each step)")
    strategy: str = option("default", "tf.distribute strategy (TensorFlow backend): 'mirrored' (all local GPUs, or CPUs), 'tpu' "
                           "(TPUStrategy on the TPU the cluster resolver finds); --batch-size is the global batch",
                           choices=("default", "mirrored", "tpu"))
    jit_compile: bool = option(True, "compile the train step (XLA on TensorFlow, jax.jit on JAX; PyTorch runs eagerly)")
    seed: int = option(0, "random seed (data order, MLM masks, initialisation)")
    resume: bool = option(False, "continue an interrupted run in --out (one that finished is reused)")
    verbose: int = option(1, "Keras progress display: 0 silent, 1 bar, 2 a line per epoch", choices=(0, 1, 2))

    @property
    def scheduled(self):
        """Whether a PolynomialDecay drives pruning (and hardens the mask at its end): all but paper mode."""
        return self.l1_strength is None or self.method == "magnitude"

    def check(self):
        """Raises ValueError for settings that cannot work, before any data or model is loaded."""
        if not 0 <= self.target_sparsity < 1:
            raise ValueError(f"--target-sparsity must be in [0, 1); received {self.target_sparsity}.")
        if self.distill < 0:
            raise ValueError(f"--distill must be >= 0 (0: the MLM objective alone); received {self.distill}.")
        if self.steps < 1 or self.steps_per_epoch < 1:
            raise ValueError("--steps and --steps-per-epoch must be >= 1.")
        if not 0 < self.end_fraction <= 1:
            raise ValueError(f"--end-fraction must be in (0, 1]; received {self.end_fraction}.")
        if self.rewind and not self.scheduled:
            raise ValueError("--rewind acts when a schedule's mask is final; paper mode (--l1-strength) has none.")
        if self.corpus != "packaged" and not os.path.isfile(self.corpus):
            raise FileNotFoundError(f"--corpus {self.corpus!r}: no such file (or use 'packaged').")


@dataclasses.dataclass
class PruneResult:
    """What `prune` produced: the mask, the pruned preset and the measurements."""

    out: str
    mask_path: str
    preset_dir: str
    sparsity: float
    weight_sparsity: float
    layer_sparsity: dict
    pruned_weights: int
    masked_weights: int
    objective: str = "mlm"
    # The exact-zero fraction RPP's proximal steps made before hardening cut the rest by magnitude.
    sparsity_before_hardening: float = None
    # Per epoch: the exact-zero fraction, the schedule's target and lambda (the callback's logs).
    trace: dict = None
    mlm_accuracy_before: float = None
    mlm_accuracy_after: float = None
    mlm_accuracy_pretrained_head_untrained: float = None
    distill_loss_last_epoch: float = None
    layer_error_after: float = None
    wall_time_s: float = 0.0

    def to_dict(self):
        """A JSON-ready dict (what `report.json` holds, without the config)."""
        return dataclasses.asdict(self)


# The structured recipe measured with the fewest points lost for each speed-up of the phone file
# (float32, 1 thread, 64 tokens, MiniLM; docs/which-model.md): `--speedup N` fills these in.
SPEEDUP_RECIPES = {
    2: {"structured": 0.65, "structured_heads": 0.35, "rewind": True},
    3: {"structured": 0.75, "structured_heads": 0.60, "rewind": True},
    # Past 3x, removing more heads and neurons lost more than dropping every other layer and then
    # applying the 2x recipe to the layers kept (rt_polarity and SNLI).
    4: {"keep_layers": (0, 2, 4), "structured": 0.65, "structured_heads": 0.35, "rewind": True},
}
# On sentence pairs (SNLI) removing whole layers cost less than on single sentences: at 2x the smaller model
# (every other layer kept, nothing else removed) lost fewer points than heads and neurons on every seed, and at
# 3x four layers with the 2x recipe on them lost least (docs/which-model.md): `--speedup` on pairs takes these.
SPEEDUP_PAIR_RECIPES = {
    2: {"keep_layers": (0, 2, 4)},
    3: {"keep_layers": (0, 2, 3, 4), "structured": 0.65, "structured_heads": 0.35, "rewind": True},
}


def _recipe_text(recipe):
    """A speed-up recipe in words, for `--speedup`'s help and finetune's log (heads: `structured_heads`)."""
    layers = f"layers {', '.join(map(str, recipe['keep_layers']))} kept" if "keep_layers" in recipe else ""
    if "structured" not in recipe:
        return layers + " (the smaller dense model), nothing else removed"
    return ((layers + ", then " if layers else "") + f"{recipe.get('structured_heads', recipe['structured']):.0%} "
            f"of heads, {recipe['structured']:.0%} of neurons, kept weights rewound")


_SPEEDUP_HELP = "; ".join([f"{n}: {_recipe_text(r)}" for n, r in SPEEDUP_RECIPES.items()]
                          + [f"{n} on sentence pairs: {_recipe_text(r)}" for n, r in SPEEDUP_PAIR_RECIPES.items()])


@dataclasses.dataclass
class FinetuneConfig:
    """Settings of `finetune`; the defaults are the recipes'. Every field is a `tf-rpp finetune` flag."""

    task: str = option("rt_polarity", f"a known task: {', '.join(sorted(tasks.TASKS))}, or squad (extractive "
                       "question answering: --data SQuAD-format JSON files TRAIN [DEV], --tfds for squad/v1.1, "
                       "else the packaged 5-question fixture) (ignored with --data, except squad)")
    data: tuple = option(None, "your own data: a folder with train and validation (or dev) .csv/.tsv/.jsonl "
                         "files, or two files TRAIN VALIDATION", type=str, nargs="+")
    text_columns: tuple = option(("text",), "with --data: the text column, or two for sentence pairs",
                                 type=str, nargs="+")
    label_column: str = option("label", "with --data: the label (or regression target) column")
    regression: bool = option(False, "with --data: the label is a float target (MSE loss, Pearson/Spearman)")
    preset: str = option(models.DEFAULT_PRESET, "the backbone: 'minilm', a keras-hub preset or handle, or a "
                         "pruned preset folder")
    tokenizer_preset: str = option(None, "where the tokenizer comes from (default: --preset)", type=str)
    mask: str = option(None, "a SparsityMask .npz to keep fixed; without it the model is dense", type=str)
    tsv_dir: str = option(None, "a folder in the official GLUE TSV layout (glue/* tasks)", type=str)
    tfds: bool = option(False, "read glue/* through tensorflow-datasets (downloads)")
    data_dir: str = option(None, "tensorflow-datasets data folder", type=str)
    out: str = option("runs/finetune", "output folder")
    sequence_length: int = option(64, "tokens per example")
    batch_size: int = option(32, "batch size")
    length_groups: bool = option(True, "batch examples of similar length together, each batch cut to 16, 32, 48 "
                                 "tokens or the full --sequence-length (tf_rpp.data.length_grouped): fewer padded "
                                 "tokens per step")
    steps: int = option(250, "training steps")
    learning_rate: float = option(1e-4, "peak AdamW learning rate (linear warm-up, cosine decay); a pruned model "
                                  "(--mask, --sparsity, --structured) recovers better at a higher one, e.g. 6e-4 "
                                  "(docs/results.md)")
    warmup_fraction: float = option(0.1, "linear warm-up share of the steps")
    eval_limit: int = option(None, "evaluate on at most this many validation examples", type=int)
    teacher: str = option(None, "a fine-tuned .keras classifier of the same task to distil from (e.g. the dense "
                          "model)", type=str)
    distill_alpha: float = option(0.5, "weight of the teacher term")
    temperature: float = option(2.0, "distillation temperature")
    teacher_layers: float = option(0.0, "with --teacher, also match the teacher's layer outputs (relative squared "
                                   "error, mean over layers, times this weight); 0: logits only")
    init_model: str = option(None, "start from this fine-tuned classifier (.keras) instead of --preset, e.g. to "
                             "prune it", type=str)
    keep_layers: tuple = option(None, "keep only these encoder layers (e.g. 0 1 2) of --preset or --init-model, "
                                "the others removed before training (layer dropping: a smaller dense model; with "
                                "--structured its heads and neurons are pruned too); with --teacher-layers each "
                                "kept layer matches the teacher's layer it was",
                                type=int, nargs="+")
    sparsity: float = option(None, "prune while fine-tuning (downstream, unstructured): reach this sparsity of the "
                             "encoder kernels (PolynomialDecay over --pruning-steps) with --method, e.g. starting "
                             "from the dense fine-tuned model (--init-model) and distilling it (--teacher)",
                             type=float)
    method: str = option("rpp", "with --sparsity: rpp (RPPOptimizer) or magnitude (gradual magnitude pruning); "
                         "with --structured: rpp (GroupRPPOptimizer) or magnitude (the weakest heads and neurons "
                         "by norm, GroupMagnitudeOptimizer)",
                         choices=("rpp", "magnitude"))
    structured: float = option(None, "structured RPP while fine-tuning: remove this fraction of the attention "
                               "heads and of the feed-forward neurons (GroupRPPOptimizer, PolynomialDecay)",
                               type=float)
    speedup: int = option(None, "instead of --structured: the measured recipe for this speed-up of the "
                          f".tflite ({_SPEEDUP_HELP}); pair it with --init-model and "
                          "--teacher (the dense fine-tuned model) and --learning-rate 6e-4, as measured "
                          "(docs/which-model.md)", type=int,
                          choices=tuple(SPEEDUP_RECIPES))
    structured_blocks: float = option(None, "with --structured: also remove this fraction of the layers' whole "
                                      "attention blocks and of their feed-forward blocks, chosen by RPP across "
                                      "layers (a removed block leaves its output bias on the residual path)",
                                      type=float)
    structured_heads: float = option(None, "with --structured: remove this fraction of the attention heads instead "
                                     "(--structured then counts feed-forward neurons only); heads cost less "
                                     "latency than their share of the weights at short sequences; 0 keeps them "
                                     "all", type=float)
    pruning_steps: int = option(None, "steps over which --sparsity or --structured reaches its target; the rest "
                                "train with the mask fixed (default: 60% of --steps)", type=int)
    rewind: bool = option(False, "with --sparsity or --structured: when the mask is final, the kept weights return "
                          "to their values at the start (the proximal steps shrink them; tf_rpp.hardening.rewind)")
    group_strength: float = option(1.0, "initial scale-free group lambda of --structured; RPPCallback adapts it")
    shrink: bool = option(False, "with --structured: also write model_shrunk.keras (removed heads and neurons "
                          "dropped) and export that one with --export-tflite; with --keep-layers alone the same "
                          "file holds the model as trained (its layers are already gone), so --speedup's commands "
                          "work on every task")
    export_tflite: bool = option(False, "also write model.tflite (float32, loads in MediaPipe and LiteRT)")
    save_model: bool = option(True, "write model.keras")
    freeze_embeddings: bool = option(False, "keep the encoder's embeddings (token, position, segment, their "
                                     "layer norm) as loaded: cheaper steps, AdamW skips the token embedding")
    jit_compile: bool = option(True, "compile the train step (XLA on TensorFlow, jax.jit on JAX; PyTorch runs eagerly)")
    seed: int = option(0, "random seed")
    resume: bool = option(False, "reuse the run that finished in --out if it had these settings (a finished run with "
                          "other settings is refused before any work; an interrupted one trains again)")
    verbose: int = option(1, "Keras progress display: 0 silent, 1 bar, 2 a line per epoch", choices=(0, 1, 2))

    def with_speedup_recipe(self):
        """This config with `--speedup N` turned into its measured recipe; else itself.

        The recipe is `SPEEDUP_RECIPES[N]` (heads and neurons removed), or for sentence-pair input (two
        `--text-columns` with `--data`, or a pair task such as snli) `SPEEDUP_PAIR_RECIPES[N]` where
        there is one (encoder layers kept).

        Example:

        >>> FinetuneConfig(speedup=3).with_speedup_recipe().structured_heads
        0.6
        >>> FinetuneConfig(speedup=3, task="snli").with_speedup_recipe().keep_layers
        (0, 2, 3, 4)
        >>> FinetuneConfig(speedup=2, task="snli").with_speedup_recipe().structured is None
        True
        """
        if self.speedup is None:
            return self
        if self.speedup not in SPEEDUP_RECIPES:
            raise ValueError(f"--speedup {self.speedup} has no measured recipe; choose one of "
                             f"{sorted(SPEEDUP_RECIPES)}, or set --structured yourself.")
        given = [flag for flag, value in (("--structured", self.structured), ("--sparsity", self.sparsity),
                                          ("--mask", self.mask), ("--keep-layers", self.keep_layers),
                                          ("--structured-heads", self.structured_heads),
                                          ("--structured-blocks", self.structured_blocks)) if value is not None]
        if given:
            raise ValueError(f"--speedup chooses what to remove; do not pass {', '.join(given)} with it.")
        return dataclasses.replace(self, **(self._pair_recipe() or SPEEDUP_RECIPES[self.speedup]))

    def _pair_recipe(self):
        """`SPEEDUP_PAIR_RECIPES[--speedup]` when the examples are sentence pairs and there is one; else None."""
        return SPEEDUP_PAIR_RECIPES.get(self.speedup) if self._pairs() else None

    def _pairs(self):
        """Whether the examples are sentence pairs, from the settings alone (before any data is read)."""
        if self.data is not None:
            return len(self.text_columns) == 2
        return self.task in tasks.TASKS and tasks.get(self.task).is_pair

    def check(self):
        """Raises ValueError for settings that cannot work, before any data or model is loaded."""
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("--steps and --batch-size must be >= 1.")
        if self.task == "squad" and self.teacher:
            raise ValueError("--task squad does not distil from a teacher (yet); drop --teacher.")
        if self.data is not None and len(self.data) not in (1, 2):
            raise ValueError(f"--data takes a folder or two files (train, validation); received {self.data}.")
        if self.structured_heads is not None:
            if self.structured is None:
                raise ValueError("--structured-heads needs --structured (the feed-forward neurons' fraction).")
            if not 0 <= self.structured_heads < 1:
                raise ValueError(f"--structured-heads is a fraction in [0, 1); received {self.structured_heads}.")
        if self.structured_blocks is not None:
            if self.structured is None:
                raise ValueError("--structured-blocks needs --structured (the heads' and neurons' fraction).")
            if not 0 < self.structured_blocks < 1:
                raise ValueError(f"--structured-blocks is a fraction in (0, 1); received {self.structured_blocks}.")
        if self.structured is None and self.keep_layers is None and self.shrink:
            raise ValueError("--shrink needs --structured (only removed heads and neurons can be dropped) or "
                             "--keep-layers.")
        pruning = [flag for flag, value in (("--sparsity", self.sparsity), ("--structured", self.structured))
                   if value is not None]
        if len(pruning) == 2:
            raise ValueError("Pass --sparsity (unstructured) or --structured, not both.")
        if pruning:
            if self.mask:
                raise ValueError(f"{pruning[0]} learns its own mask; do not pass --mask with it.")
            value = self.sparsity if self.sparsity is not None else self.structured
            if not 0.0 < value < 1.0:
                raise ValueError(f"{pruning[0]} is a fraction in (0, 1); received {value}.")
            if not 0 < self.prune_steps <= self.steps:
                raise ValueError(f"--pruning-steps must be in [1, --steps]; received {self.prune_steps}.")
        elif self.rewind:
            raise ValueError("--rewind needs --sparsity or --structured (it acts when their mask is final).")
        if self.keep_layers is not None:
            if self.mask or self.sparsity is not None:
                raise ValueError("--keep-layers trains a smaller model, dense or with --structured; it does not "
                                 "combine with --mask or --sparsity.")
            try:
                layer_drop.check_kept(self.keep_layers)
            except ValueError as error:
                raise ValueError(f"--keep-layers: {error}") from None
        if self.teacher_layers < 0 or (self.teacher_layers > 0 and not self.teacher):
            raise ValueError("--teacher-layers is a weight >= 0 and needs --teacher (the model whose layer outputs "
                             f"to match); received {self.teacher_layers} with --teacher {self.teacher}.")
        for flag, path in (("--mask", self.mask), ("--teacher", self.teacher), ("--init-model", self.init_model)):
            if path and not os.path.exists(path):
                raise FileNotFoundError(f"{flag} {path!r}: no such file.")

    @property
    def prune_steps(self):
        """Steps over which `sparsity` or `structured` reaches its target."""
        return self.pruning_steps or int(0.6 * self.steps)


@dataclasses.dataclass
class FinetuneResult:
    """What `finetune` produced: metrics, the mask check and the files written."""

    task: str
    metrics: dict
    validation_examples: int
    label_names: list = None
    preset: str = None
    mask: str = None
    steps: int = 0
    learning_rate: float = 0.0
    teacher: str = None
    teacher_layers: float = 0.0
    keep_layers: list = None
    mask_sparsity: float = None
    pruned_weights: int = None
    zero_weights_after: int = None
    mask_held: bool = None
    sparsity: float = None
    method: str = None
    structured: float = None
    structured_heads: float = None
    structured_blocks: float = None
    pruning_steps: int = None
    rewind: bool = False
    removed_groups: dict = None
    shrunk: dict = None
    dense_parameters: int = None
    model_path: str = None
    tflite_path: str = None
    tflite_bytes: int = None
    predictions_path: str = None
    wall_time_s: float = 0.0

    def to_dict(self):
        """A JSON-ready dict (what `results.json` holds)."""
        return dataclasses.asdict(self)
