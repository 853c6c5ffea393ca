"""Fine-tuning extractive question answering (SQuAD v1.1) with the mask fixed: `finetune(task="squad")`.

The same settings as text classification (`FinetuneConfig`): a (pruned)
preset and its mask, or unstructured / structured pruning while fine-tuning,
the AdamW schedule, XLA, `.keras` and `.tflite` outputs. The model is a
`tf_rpp.question_answering.SpanClassifier`; examples are cut into overlapping
windows of `sequence_length` tokens; the metrics are the official SQuAD v1.1
exact match and F1 (percent) on the evaluation questions, the best span over
each question's windows.

Data: `data=("train.json", "dev.json")` (SQuAD v1.1 JSON; one file trains
and evaluates on the same questions), `tfds=True` (`squad/v1.1`, downloads),
or nothing: the 5-question real SQuAD fixture (`tf_rpp.data.squad.fixture`), which
only shows that the pipeline learns.

Example:

```python
from tf_rpp import pipeline
result = pipeline.finetune(task="squad", data=("train-v1.1.json", "dev-v1.1.json"), sequence_length=384,
                           preset="runs/prune/preset", mask="runs/prune/mask.npz", out="runs/squad")
print(result.metrics)    # {'exact_match': ..., 'f1': ...}
```
"""

import json
import os
import time

import keras

from tf_rpp import models
from tf_rpp import question_answering as qa
from tf_rpp import saving
from tf_rpp.data import squad
from tf_rpp._files import atomic_write
from tf_rpp.pipeline import _runs
from tf_rpp.pipeline.configs import FinetuneResult


def examples(config):
    """`(train, evaluation)` SQuAD examples for a config (see the module docstring).

    Example:

    ```python
    train, dev = examples(FinetuneConfig(task="squad", data=("train.json", "dev.json")))
    ```
    """
    if config.data:
        folders = [path for path in config.data if os.path.isdir(path)]
        if folders:
            raise ValueError(f"--task squad takes SQuAD JSON files (TRAIN [DEV]), not folders: {folders}.")
        train = squad.read_json(config.data[0])
        if len(config.data) == 1:
            print(f"evaluating on the training file {config.data[0]} (pass a second file to hold questions out)")
            return train, train
        return train, squad.read_json(config.data[1])
    if config.tfds:
        return squad.load_tfds("train", config.data_dir), squad.load_tfds("validation", config.data_dir)
    print("no --data: the 5-question SQuAD v1.1 fixture (allennlp 0.9.0's), trained and evaluated on; it shows "
          "that the pipeline learns, nothing more")
    fixture = squad.fixture()
    return fixture, fixture


def finetune_squad(config):
    """Fine-tunes a span classifier on SQuAD-format data and reports exact match and F1 (see the module docstring).

    Example: see the module docstring.
    """
    os.makedirs(config.out, exist_ok=True)
    started = time.time()
    keras.utils.set_random_seed(config.seed)
    train_examples, dev_examples = examples(config)
    if config.eval_limit:
        dev_examples = dev_examples[: config.eval_limit]
    tokenizer = models.tokenizer(config.tokenizer_preset or config.preset)
    if config.init_model:
        model = saving.load_model(config.init_model, compile=False)
        if not isinstance(model, qa.SpanClassifier):
            raise ValueError(f"--init-model {config.init_model} is a {type(model).__name__}, not a SpanClassifier.")
    else:
        model = qa.SpanClassifier(models.backbone(config.preset))
    if config.freeze_embeddings:
        print(f"embeddings kept as loaded: {', '.join(models.freeze_embeddings(model.backbone))}")
    train_windows = qa.windows(train_examples, tokenizer, config.sequence_length)
    dev_windows = qa.windows(dev_examples, tokenizer, config.sequence_length)
    train = (qa.to_dataset(train_windows, model).shuffle(len(train_windows), seed=config.seed).repeat()
             .batch(config.batch_size, drop_remainder=True).prefetch(8))
    optimizer, callbacks, mask = _runs.build_optimizer(config, model)
    print(f"fine-tuning squad for {config.steps} steps on {len(train_examples):,} questions "
          f"({len(train_windows):,} windows of {config.sequence_length} tokens)")
    with models.pooler_frozen(model.backbone):  # the span head reads tokens, never the pooled output
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=_runs.jit_compile(config))
        model.fit(train, steps_per_epoch=config.steps, epochs=1, verbose=config.verbose, callbacks=callbacks,
                  shuffle=False)
    mask = _runs.learned_mask(config, optimizer, given=mask)
    logits = model.predict(qa.to_dataset(dev_windows, model, labels=False).batch(64), verbose=0)
    answers = qa.best_answers(dev_examples, dev_windows, logits)
    metrics = squad.evaluate(answers, dev_examples)
    questions = metrics.pop("questions")
    result = FinetuneResult(task="squad", metrics=metrics, validation_examples=questions,
                            preset=str(config.init_model or config.preset), mask=config.mask, steps=config.steps,
                            learning_rate=config.learning_rate)
    if mask is not None:
        _runs.check_mask_held(result, mask, model)
    for field in ("structured", "sparsity", "rewind"):
        setattr(result, field, getattr(config, field))
    if config.structured is not None:
        result.removed_groups = optimizer.removed_groups()
    atomic_write(os.path.join(config.out, "predictions.json"), json.dumps(answers, indent=1).encode())
    # Start/end logits over the tokens; the tokenizer goes beside the .tflite as JSON.
    _runs.write_models(config, model, result, tokenizer=tokenizer, metadata=False, scores="logits")
    result.wall_time_s = time.time() - started
    _runs.write_report(config.out, "results.json", config, result)
    print(f"exact match {metrics['exact_match']:.2f}, F1 {metrics['f1']:.2f} on {questions:,} questions; "
          f"wrote {config.out}/results.json")
    return result
