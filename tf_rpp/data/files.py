"""Your own labelled data: CSV, TSV or JSONL files with named columns.

A task is read from a folder (`train.*` and `validation.*` or `dev.*`) or from
two paths, with one text column (or a pair, e.g. premise and hypothesis) and a
label column. Labels are class names or integers (any number of classes; the
names travel with the model and into the `.tflite`), or float targets with
`regression=True`. Everything is checked before any training starts:
missing columns, empty files, empty texts, validation labels never seen in
training, non-numeric regression targets, files that are not UTF-8.

Example:

>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> _ = open(os.path.join(folder, "train.csv"), "w").write("text,label\\ngreat,pos\\nawful,neg\\nfine,pos\\n")
>>> _ = open(os.path.join(folder, "validation.csv"), "w").write("text,label\\ngood,pos\\n")
>>> task = read_task(folder)
>>> task.spec.num_classes, task.spec.label_names, task.train[0]
(2, ('neg', 'pos'), ('great', 1))
"""

import csv
import dataclasses
import json
import os

from tf_rpp.data.tasks import TaskSpec

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_TRAIN_NAMES = ("train",)
_VALIDATION_NAMES = ("validation", "dev", "valid", "val")


@dataclasses.dataclass(frozen=True)
class TableTask:
    """A task read from files: its `TaskSpec` and `(text..., label)` rows per split."""

    spec: TaskSpec
    train: list
    validation: list
    train_path: str
    validation_path: str


def find_files(folder):
    """`(train_path, validation_path)` in `folder`: `train.{csv,tsv,jsonl}` and `validation.*` (or `dev.*`).

    Example:

    >>> find_files("my_data")  # doctest: +SKIP
    ('my_data/train.csv', 'my_data/dev.csv')
    """
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder!r} is not a folder; pass a folder or two files (train, validation).")
    names = os.listdir(folder)

    def find(stems):
        for stem in stems:
            for ext in FORMATS:
                if stem + ext in names:
                    return os.path.join(folder, stem + ext)
        return None

    train, validation = find(_TRAIN_NAMES), find(_VALIDATION_NAMES)
    if train is None or validation is None:
        raise FileNotFoundError(
            f"{folder!r} needs a train file and a validation file named train.csv / .tsv / .jsonl and "
            f"validation (or dev) with the same extensions; it has {sorted(names)[:10]}.")
    return train, validation


def read_records(path):
    """The rows of a CSV, TSV or JSONL file as dicts (column name -> value).

    Raises:
        ValueError: unknown extension, not UTF-8, a malformed JSON line, or no rows.

    Example:

    >>> read_records("train.csv")  # doctest: +SKIP
    [{'text': 'great', 'label': 'pos'}, ...]
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"{path}: unknown file type {ext!r}; use .csv, .tsv or .jsonl.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No file at {path!r}.")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if FORMATS[ext] == "jsonl":
                records = []
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as e:
                            raise ValueError(f"{path}, line {number}: not a JSON object ({e.msg}).") from None
            else:
                records = list(csv.DictReader(f, delimiter="\t" if FORMATS[ext] == "tsv" else ","))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8.") from None
    if not records:
        raise ValueError(f"{path} is empty: it has no data rows.")
    return records


def _column(records, path, name, what):
    available = sorted(records[0]) if isinstance(records[0], dict) else []
    values = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or name not in record or record[name] is None:
            raise ValueError(f"{path}: row {number} has no {what} column {name!r}; the columns are {available}. "
                             f"Pass --text-columns / --label-column with the right names.")
        values.append(record[name])
    return values


def _texts(records, path, columns):
    columns_values = [_column(records, path, c, "text") for c in columns]
    for column, values in zip(columns, columns_values):
        for number, value in enumerate(values, start=1):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{path}: row {number} has an empty or non-text {column!r}.")
    return columns_values


def read_task(train, validation=None, text_columns=("text",), label_column="label", regression=False, name=None):
    """A `TableTask` from a folder (`train` alone) or two files.

    Args:
        train: a folder holding both files, or the training file.
        validation: the validation file (with a file `train`).
        text_columns: one column name, or two for sentence pairs.
        label_column: the label (or regression target) column.
        regression: float targets (MSE loss, Pearson/Spearman) instead of classes.
        name: the task's name in reports (default: the folder or file name).

    Returns:
        A `TableTask`. Class labels are sorted (integers numerically, names
        alphabetically) and numbered in that order.

    Raises:
        ValueError, FileNotFoundError: see the module docstring.

    Example: see the module docstring.
    """
    if isinstance(text_columns, str):
        text_columns = (text_columns,)
    text_columns = tuple(text_columns)
    if len(text_columns) not in (1, 2):
        raise ValueError(f"text_columns holds one column or a pair; received {text_columns}.")
    if validation is None:
        train_path, validation_path = find_files(train)
    else:
        train_path, validation_path = train, validation
    records = {"train": read_records(train_path), "validation": read_records(validation_path)}
    paths = {"train": train_path, "validation": validation_path}
    texts = {split: _texts(records[split], paths[split], text_columns) for split in records}
    raw_labels = {split: _column(records[split], paths[split], label_column, "label") for split in records}
    if regression:
        labels = {split: [_float(v, paths[split], i) for i, v in enumerate(raw_labels[split], start=1)]
                  for split in raw_labels}
        label_names, num_classes, metrics = None, 1, ("pearson", "spearman")
    else:
        label_names = _label_names(raw_labels["train"])
        unseen = sorted({_label_key(v) for v in raw_labels["validation"]} - set(label_names))
        if unseen:
            raise ValueError(f"{validation_path}: label(s) {unseen[:5]} never appear in {train_path} "
                             f"(training labels: {list(label_names)[:10]}).")
        if len(label_names) < 2:
            raise ValueError(f"{train_path}: only one class ({label_names[0]!r}); a classifier needs two or more "
                             "(or pass --regression for a numeric target).")
        labels = {split: [label_names.index(_label_key(v)) for v in raw_labels[split]] for split in raw_labels}
        num_classes, metrics = len(label_names), ("accuracy",)
    spec = TaskSpec(name or os.path.basename(os.path.normpath(train)), num_classes, metrics, text_columns,
                    label_names=label_names)
    rows = {split: [(*(column[i] for column in texts[split]), labels[split][i]) for i in range(len(labels[split]))]
            for split in labels}
    return TableTask(spec, rows["train"], rows["validation"], train_path, validation_path)


def _float(value, path, number):
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: row {number} has the non-numeric regression target {value!r}.") from None


def _label_key(value):
    return str(value).strip()


def _label_names(values):
    names = sorted({_label_key(v) for v in values})
    try:
        return tuple(sorted(names, key=int))
    except ValueError:
        return tuple(names)


def text_lines(path):
    """The non-empty lines of a UTF-8 text file (a corpus: one text per line).

    Raises:
        ValueError: the file is not UTF-8 or has no text.

    Example:

    >>> texts = text_lines("corpus.txt")  # doctest: +SKIP
    """
    try:
        with open(path, encoding="utf-8") as f:
            texts = [line.strip() for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); convert it first.") from None
    if not texts:
        raise ValueError(f"{path} has no text.")
    return texts
