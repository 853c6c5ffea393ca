"""Downstream tasks: their inputs, labels, splits and GLUE metrics.

Example:

>>> spec = get("glue/mrpc")
>>> spec.num_classes, spec.metrics
(2, ('f1', 'accuracy'))
>>> round(evaluate("glue/cola", [1, 0, 1, 1], [1, 0, 0, 1])["matthews_corrcoef"], 4)
0.5774
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What a task looks like: its text features, classes, metrics and GLUE files."""

    name: str
    num_classes: int  # 1 for regression (STS-B)
    metrics: tuple
    text_features: tuple  # tensorflow-datasets feature names
    tsv_columns: tuple = None  # GLUE TSV header names (None: CoLA, no header)
    tsv_label: str = "label"
    tsv_labels: tuple = None  # label strings in class order, when labels are words
    tsv_dev: str = "dev.tsv"
    tfds_validation: str = "validation"
    label_names: tuple = None  # class names, for reports and exported models

    @property
    def is_pair(self):
        return len(self.text_features) > 1

    @property
    def is_regression(self):
        return self.num_classes == 1

    def tsv_file(self, split):
        return {"train": "train.tsv", "validation": self.tsv_dev}[_check_split(split)]

    def tfds_split(self, split):
        return {"train": "train", "validation": self.tfds_validation}[_check_split(split)]

    def parse_label(self, text):
        if self.is_regression:
            return float(text)
        if self.tsv_labels is not None:
            if text not in self.tsv_labels:
                raise ValueError(f"{self.name}: unknown label {text!r}; expected one of {self.tsv_labels}.")
            return self.tsv_labels.index(text)
        return int(text)


def _check_split(split):
    if split not in ("train", "validation"):
        raise ValueError(f"Splits are 'train' and 'validation'; received {split!r}.")
    return split


_NLI = ("entailment", "neutral", "contradiction")
_BINARY_NLI = ("entailment", "not_entailment")

TASKS = {
    spec.name: spec
    for spec in (
        TaskSpec("rt_polarity", 2, ("accuracy",), ("sentence",), label_names=("negative", "positive")),
        TaskSpec("snli", 3, ("accuracy",), ("premise", "hypothesis"), label_names=_NLI),
        TaskSpec("bbc_news", 5, ("accuracy",), ("text",),
                 label_names=("business", "entertainment", "politics", "sports", "tech")),
        TaskSpec("glue/sst2", 2, ("accuracy",), ("sentence",), ("sentence",)),
        TaskSpec("glue/cola", 2, ("matthews_corrcoef",), ("sentence",), None),
        TaskSpec("glue/mnli", 3, ("accuracy",), ("premise", "hypothesis"), ("sentence1", "sentence2"),
                 "gold_label", _NLI, "dev_matched.tsv", "validation_matched"),
        TaskSpec("glue/qnli", 2, ("accuracy",), ("question", "sentence"), ("question", "sentence"),
                 "label", _BINARY_NLI),
        TaskSpec("glue/rte", 2, ("accuracy",), ("sentence1", "sentence2"), ("sentence1", "sentence2"),
                 "label", _BINARY_NLI),
        TaskSpec("glue/mrpc", 2, ("f1", "accuracy"), ("sentence1", "sentence2"), ("#1 String", "#2 String"),
                 "Quality"),
        TaskSpec("glue/stsb", 1, ("pearson", "spearman"), ("sentence1", "sentence2"), ("sentence1", "sentence2"),
                 "score"),
        TaskSpec("glue/qqp", 2, ("f1", "accuracy"), ("question1", "question2"), ("question1", "question2"),
                 "is_duplicate"),
        TaskSpec("glue/wnli", 2, ("accuracy",), ("sentence1", "sentence2"), ("sentence1", "sentence2")),
    )
}


def get(task):
    """The `TaskSpec` of a task name (a `TaskSpec` passes through); a clear error for unknown names.

    Example:

    >>> get("snli").label_names
    ('entailment', 'neutral', 'contradiction')
    >>> get(get("snli")) is get("snli")
    True
    """
    if isinstance(task, TaskSpec):
        return task
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}. Known tasks: {', '.join(sorted(TASKS))}.")
    return TASKS[task]


# Metrics (NumPy; GLUE definitions) -------------------------------------------


def accuracy(labels, predictions):
    """Fraction of exact matches."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float(np.mean(labels == predictions))


def f1(labels, predictions):
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    labels, predictions = np.asarray(labels) == 1, np.asarray(predictions) == 1
    tp = np.sum(labels & predictions)
    precision = tp / max(np.sum(predictions), 1)
    recall = tp / max(np.sum(labels), 1)
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def matthews_corrcoef(labels, predictions):
    """Matthews correlation of binary labels (CoLA's metric)."""
    labels, predictions = np.asarray(labels) == 1, np.asarray(predictions) == 1
    tp = float(np.sum(labels & predictions))
    tn = float(np.sum(~labels & ~predictions))
    fp = float(np.sum(~labels & predictions))
    fn = float(np.sum(labels & ~predictions))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float(0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator)


def pearson(labels, predictions):
    """Pearson correlation."""
    return float(np.corrcoef(np.asarray(labels, float), np.asarray(predictions, float))[0, 1])


def _ranks(values):
    values = np.asarray(values, float)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    # Ties share their average rank.
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(labels, predictions):
    """Spearman rank correlation (ties averaged)."""
    return pearson(_ranks(labels), _ranks(predictions))


METRICS = {"accuracy": accuracy, "f1": f1, "matthews_corrcoef": matthews_corrcoef,
           "pearson": pearson, "spearman": spearman}


def evaluate(task, labels, predictions):
    """The task's metrics of class (or score) predictions, as a dict; `task` is a `TaskSpec` or name.

    Example:

    >>> evaluate(get("rt_polarity"), [1, 0, 1], [1, 1, 1])
    {'accuracy': 0.6666666666666666}
    """
    return {name: METRICS[name](labels, predictions) for name in get(task).metrics}
