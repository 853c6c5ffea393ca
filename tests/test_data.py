"""Data loaders on the real packaged data: counts, balance, text sanity, GLUE TSV layouts."""

import os
import shutil

import keras_hub
import numpy as np
import pytest

from tf_rpp import data
from tf_rpp import models
from tf_rpp.data import tasks


def test_rt_polarity_counts_balance_and_split():
    everything = data.rt_polarity_examples()
    assert len(everything) == 10605
    assert sum(r > 0 for _, r in everything) == 5242
    assert sum(r < 0 for _, r in everything) == 5326
    train, dev = data.rt_polarity("train"), data.rt_polarity("validation")
    assert len(train) + len(dev) == 10605 - 37
    assert len(dev) == round(0.1 * (10605 - 37))
    for rows in (train, dev):
        positive = np.mean([label for _, label in rows])
        assert 0.45 < positive < 0.52
        assert all(text.strip() for text, _ in rows)
    assert data.rt_polarity("validation") == dev  # seeded: the same split every time
    assert data.rt_polarity("validation", seed=1) != dev


def test_snli_counts_and_labels():
    train = data.snli_examples("train")
    dev = data.snli_examples("validation")
    assert len(train) == 100000 - 110
    assert 9800 < len(dev) <= 10000
    counts = np.bincount([label for *_, label in train], minlength=3)
    assert counts.min() > 0.3 * len(train)
    assert all(p.strip() and h.strip() for p, h, _ in dev)


def test_bbc_news_and_mlm_corpus():
    articles = data.bbc_news_examples()
    assert len(articles) == 2225
    assert np.bincount([label for _, label in articles]).tolist() == [510, 386, 417, 511, 401]
    corpus = data.mlm_corpus()
    assert len(corpus) > 15000
    assert all(len(t.split()) >= 5 for t in corpus)
    dev_sentences = {s for s, _ in data.rt_polarity("validation")}
    assert not dev_sentences & set(corpus)


def test_tf_data_output_shapes():
    single = data.load("rt_polarity", "validation")
    text, label = next(iter(single))
    assert text.dtype.name == "string" and label.dtype.name == "int32"
    pair = data.load("snli", "validation")
    (premise, hypothesis), label = next(iter(pair))
    assert premise.dtype.name == "string" and hypothesis.dtype.name == "string"


def test_a_tampered_archive_is_refused(tmp_path):
    cache = tmp_path / "cache"
    os.makedirs(cache / "archives")
    source = data.fetch_archive("rt_polarity")
    target = cache / "archives" / os.path.basename(source)
    shutil.copy(source, target)
    with open(target, "r+b") as f:
        f.seek(1000)
        f.write(b"tampered")
    with pytest.raises(ValueError, match="SHA-256"):
        data.rt_polarity("train", cache_dir=str(cache))


def write_tsv(path, header, rows):
    # GLUE's files are raw tab-separated lines: quotes are not escaped.
    with open(path, "w", encoding="utf-8", newline="") as f:
        for row in [header, *rows]:
            f.write("\t".join(str(cell).replace("\t", " ") for cell in row) + "\n")


def test_glue_tsv_layouts_written_from_packaged_data(tmp_path):
    sst2 = tmp_path / "SST-2"
    sst2.mkdir()
    rows = data.rt_polarity("validation")[:300]
    write_tsv(sst2 / "dev.tsv", ["sentence", "label"], rows)
    parsed = data.read_glue_tsv("glue/sst2", "validation", str(sst2))
    assert parsed == [(s, label) for s, label in rows]

    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    header = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
              "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
    pairs = data.snli_examples("validation")[:200]
    names = ("entailment", "neutral", "contradiction")
    write_tsv(mnli / "dev_matched.tsv", header, [
        [i, i, f"{i}e", "fiction", "(x)", "(y)", "(X)", "(Y)", p, h, names[y], names[y]]
        for i, (p, h, y) in enumerate(pairs)])
    parsed = data.read_glue_tsv("glue/mnli", "validation", str(mnli))
    assert parsed == [(p, h, y) for p, h, y in pairs]
    ds = data.load("glue/mnli", "validation", tsv_dir=str(mnli))
    (premise, _), label = next(iter(ds))
    assert premise.numpy().decode() == pairs[0][0] and int(label) == pairs[0][2]


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'glue/sst3'"):
        data.load("glue/sst3", "train")
    with pytest.raises(ValueError, match="Splits are 'train' and 'validation'"):
        data.load("rt_polarity", "test")
    with pytest.raises(FileNotFoundError, match="dev_matched.tsv"):
        data.read_glue_tsv("glue/mnli", "validation", str(tmp_path))
    with pytest.raises(ValueError, match="is a GLUE task"):
        data.load("glue/sst2", "train")
    with pytest.raises(ValueError, match="empty"):
        data.to_dataset([])
    with pytest.raises(ValueError, match="empty text"):
        data.to_dataset([("fine", 1), ("  ", 0)])
    bad = tmp_path / "bad"
    bad.mkdir()
    write_tsv(bad / "dev.tsv", ["text", "label"], [["a", 1]])
    with pytest.raises(ValueError, match="not in the GLUE glue/sst2 layout"):
        data.read_glue_tsv("glue/sst2", "validation", str(bad))


def test_glue_metrics_against_hand_computed_values():
    assert tasks.accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    assert tasks.f1([1, 0, 1, 1], [1, 1, 0, 1]) == pytest.approx(2 / 3)
    assert tasks.matthews_corrcoef([1, 0, 1, 1], [1, 0, 0, 1]) == pytest.approx(2 / np.sqrt(12))
    assert tasks.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert tasks.spearman([1, 2, 2, 4], [4, 3, 3, 1]) == pytest.approx(-1.0)
    assert tasks.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(np.corrcoef([1, 2, 3], [2, 4, 7])[0, 1])
    assert set(tasks.evaluate("glue/stsb", [1.0, 2.0, 3.5], [1.1, 1.9, 3.0])) == {"pearson", "spearman"}


@pytest.mark.parametrize("task", ["glue/sst2", "glue/mnli", "glue/stsb"])
def test_glue_through_tensorflow_datasets(task):
    # tfds's own offline test mode: examples generated from the real GLUE
    # feature specs, through the same tfds.load call users make.
    tfds = pytest.importorskip("tensorflow_datasets")
    spec = tasks.get(task)
    with tfds.testing.mock_data(num_examples=8):
        ds = data.load(task, "validation", tfds=True)
        features, label = next(iter(ds))
    texts = features if spec.is_pair else (features,)
    assert len(texts) == len(spec.text_features)
    assert all(t.dtype.name == "string" for t in texts)
    assert label.dtype.is_floating == spec.is_regression


def test_length_grouped_batches_keep_every_token_and_cut_the_padding():
    spec = tasks.get("rt_polarity")
    rows = data.examples(spec, "validation")[:400]
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(models.tokenizer(), sequence_length=64)
    features = data.to_dataset(rows).map(lambda x, y: (preprocessor(x), y))
    real_tokens = sorted(int(np.sum(x["padding_mask"])) for x, _ in features)
    seen, widths = [], []
    for x, y in data.length_grouped(features, 16, widths=(16, 32, 48)):
        width = x["token_ids"].shape[1]
        widths.append(width)
        assert x["token_ids"].shape[0] == 16 and y.shape == (16,)
        lengths = np.sum(x["padding_mask"].numpy(), axis=1)
        # Each example sits in the narrowest group that holds it, and its tokens are all there.
        narrower = max([w for w in (0, 16, 32, 48) if w < width])
        assert np.all(lengths <= width) and np.all(lengths > narrower)
        np.testing.assert_array_equal(x["token_ids"].numpy()[:, 0], 101)  # [CLS] first, untouched
        seen.extend(int(n) for n in lengths)
    assert set(widths) <= {16, 32, 48, 64} and len(set(widths)) >= 3
    # Only partial groups at the end are dropped (fewer than one batch per group).
    assert len(seen) > len(real_tokens) - 4 * 16
    assert np.mean(widths) < 48  # rt_polarity sentences average 27 tokens: far less padding than 64
