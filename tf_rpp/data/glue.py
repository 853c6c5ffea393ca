"""GLUE: through tensorflow-datasets (the `tfds` extra) or from the official TSV layout.

Example:

```python
rows = read_glue_tsv("glue/sst2", "validation", "glue_data/SST-2")
ds = load_glue_tfds("glue/sst2", "train", data_dir="tfds_data")
```
"""

import csv
import os

import tensorflow as tf

from tf_rpp.data import tasks as tasks_lib


def load_glue_tfds(task, split, data_dir=None):
    """A GLUE task from tensorflow-datasets (downloads on first use, into `data_dir`)."""
    from tf_rpp._optional import require

    tfds = require("tensorflow_datasets", "tfds")

    spec = tasks_lib.get(task)
    dataset = tfds.load(spec.name, split=spec.tfds_split(split), data_dir=data_dir)
    keys = spec.text_features

    def convert(example):
        texts = tuple(example[k] for k in keys)
        return (texts if len(texts) > 1 else texts[0]), example["label"]

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def read_glue_tsv(task, split, tsv_dir):
    """Rows `(text..., label)` of a GLUE task from the official TSV layout.

    Example:

    >>> rows = read_glue_tsv("glue/sst2", "validation", "glue_data/SST-2")  # doctest: +SKIP
    """
    spec = tasks_lib.get(task)
    path = os.path.join(tsv_dir, spec.tsv_file(split))
    if not os.path.exists(path):
        raise FileNotFoundError(f"{spec.name}: no {split} file at {path} (the GLUE layout names it {spec.tsv_file(split)}).")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        lines = list(reader)
    if spec.tsv_columns is None:  # CoLA: no header, columns source, label, -, sentence
        return [(line[3], int(line[1])) for line in lines if len(line) >= 4]
    header, body = lines[0], lines[1:]
    missing = [c for c in (*spec.tsv_columns, spec.tsv_label) if c not in header]
    if missing:
        raise ValueError(f"{path} is not in the GLUE {spec.name} layout: its header lacks {missing}.")
    columns = [header.index(c) for c in spec.tsv_columns]
    label_column = header.index(spec.tsv_label)
    rows = []
    for number, line in enumerate(body, start=2):
        if len(line) <= max(*columns, label_column):
            raise ValueError(f"{path}, line {number}: {len(line)} columns, expected {len(header)}.")
        rows.append((*(line[c] for c in columns), spec.parse_label(line[label_column])))
    return rows
