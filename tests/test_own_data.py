"""Your own data: CSV / TSV / JSONL files the tests write from packaged real data.

The reading and every refusal are checked on small files; one short MiniLM
fine-tune on a real 3-class file (SNLI pairs, string labels) shows the label
names travelling into the `.tflite`, and one on a regression file (the human
rating of rt_polarity sentences) shows the float target path.
"""

import csv
import json
import os
import shutil

import numpy as np
import pytest

import tf_rpp_lite
from tf_rpp import data
from tf_rpp import pipeline
from tf_rpp import saving
from tf_rpp.data import files as tables


def write_csv(path, header, rows, delimiter=","):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def snli_folder(tmp_path_factory):
    """A 3-class pair task with string labels, as JSONL train / dev files."""
    folder = tmp_path_factory.mktemp("nli")
    names = data.SNLI_LABELS
    pairs = data.snli_examples("validation")[:160]
    records = [{"premise": p, "hypothesis": h, "gold": names[y]} for p, h, y in pairs]
    write_jsonl(folder / "train.jsonl", records[:128])
    write_jsonl(folder / "dev.jsonl", records[128:])
    return folder


def test_reads_a_three_class_pair_task_from_a_folder(snli_folder):
    task = tables.read_task(str(snli_folder), text_columns=("premise", "hypothesis"), label_column="gold")
    assert task.spec.num_classes == 3 and task.spec.is_pair
    assert task.spec.label_names == ("contradiction", "entailment", "neutral")  # sorted, numbered in order
    assert len(task.train) == 128 and len(task.validation) == 32
    premise, hypothesis, label = task.train[0]
    first = data.snli_examples("validation")[0]
    assert (premise, hypothesis) == first[:2]
    assert task.spec.label_names[label] == data.SNLI_LABELS[first[2]]


def test_reads_csv_tsv_with_integer_labels_and_regression(tmp_path):
    rows = data.rt_polarity_examples()[:60]
    train = write_csv(tmp_path / "a.csv", ["sentence", "rating", "stars"],
                      [(s, r, int(round(r)) + 4) for s, r in rows[:40]])
    dev = write_csv(tmp_path / "b.tsv", ["sentence", "rating", "stars"],
                    [(s, r, int(round(r)) + 4) for s, r in rows[40:]], delimiter="\t")
    classes = tables.read_task(train, dev, text_columns="sentence", label_column="stars")
    assert list(classes.spec.label_names) == sorted(classes.spec.label_names, key=int)  # numeric order
    regression = tables.read_task(train, dev, text_columns="sentence", label_column="rating", regression=True)
    assert regression.spec.is_regression and regression.spec.metrics == ("pearson", "spearman")
    assert regression.train[0] == (rows[0][0], pytest.approx(rows[0][1]))


@pytest.mark.parametrize("case, message", [
    ("missing column", "has no text column 'review'"),
    ("empty file", "is empty: it has no data rows"),
    ("unseen label", r"label\(s\) \['surprise'\] never appear in"),
    ("non-numeric target", "non-numeric regression target 'high'"),
    ("not utf-8", "is not UTF-8 text"),
    ("one class", "only one class"),
    ("empty text", "has an empty or non-text 'text'"),
])
def test_bad_files_are_refused_before_training(tmp_path, case, message):
    train = tmp_path / "train.csv"
    dev = tmp_path / "validation.csv"
    write_csv(train, ["text", "label"], [("great film", "pos"), ("dull", "neg")])
    write_csv(dev, ["text", "label"], [("fine", "pos")])
    options = {}
    if case == "missing column":
        options["text_columns"] = ("review",)
    elif case == "empty file":
        write_csv(dev, ["text", "label"], [])
    elif case == "unseen label":
        write_csv(dev, ["text", "label"], [("wow", "surprise")])
    elif case == "non-numeric target":
        write_csv(train, ["text", "label"], [("great film", "0.9"), ("dull", "high")])
        options["regression"] = True
    elif case == "not utf-8":
        train.write_bytes("text,label\ncaf\u00e9 cr\u00e8me,pos\nbad,neg\n".encode("latin-1"))
    elif case == "one class":
        write_csv(train, ["text", "label"], [("great film", "pos"), ("good", "pos")])
    elif case == "empty text":
        write_csv(train, ["text", "label"], [("great film", "pos"), ("  ", "neg")])
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        pipeline.finetune(data=(str(tmp_path),), out=str(out), **options)
    assert not out.exists()  # nothing was started


def test_a_folder_without_the_files_is_refused(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "label"], [("a", "x")])
    with pytest.raises(FileNotFoundError, match="needs a train file and a validation file"):
        pipeline.finetune(data=(str(tmp_path),), out=str(tmp_path / "run"))


def test_finetunes_a_three_class_file_and_the_labels_reach_the_tflite(snli_folder, small_preset, tmp_path):
    result = pipeline.finetune(
        data=(str(snli_folder),), preset=small_preset, text_columns=("premise", "hypothesis"), label_column="gold",
        out=str(tmp_path), steps=4, batch_size=8, sequence_length=32, verbose=0, export_tflite=True,
        jit_compile=False)
    assert result.task == os.path.basename(str(snli_folder)) and result.validation_examples == 32
    assert result.label_names == ["contradiction", "entailment", "neutral"]
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text())["label_names"] == result.label_names
    lite = tf_rpp_lite.TFLiteClassifier(result.tflite_path)
    labels, probabilities = lite.classify([("A man plays a guitar.", "A person makes music.")])
    assert labels[0] in result.label_names and probabilities.shape == (1, 3)
    assert lite.labels == result.label_names and lite.scores_kind == "probabilities"  # from the file's metadata


def test_finetunes_a_regression_file(small_preset, tmp_path):
    rows = data.rt_polarity_examples()[:96]
    folder = tmp_path / "ratings"
    folder.mkdir()
    write_csv(folder / "train.csv", ["text", "rating"], rows[:64])
    write_csv(folder / "validation.csv", ["text", "rating"], rows[64:])
    result = pipeline.finetune(data=(str(folder),), preset=small_preset, label_column="rating", regression=True,
                               out=str(tmp_path / "run"), export_tflite=True,
                               steps=2, batch_size=8, sequence_length=32, verbose=0, save_model=False,
                               jit_compile=False)
    assert set(result.metrics) == {"pearson", "spearman"} and result.label_names is None
    assert -1.0 <= result.metrics["pearson"] <= 1.0 and result.validation_examples == 32
    # No labels, so no TFLite metadata: the tokenizer file beside it, and a rating out.
    lite = tf_rpp_lite.TFLiteClassifier(result.tflite_path)
    assert lite.scores_kind == "logits" and lite.scores(["a fine film"]).shape == (1, 1)


def test_compress_runs_the_whole_recipe_on_a_folder_and_resumes(snli_folder, small_preset, tmp_path, capsys):
    """One call: dense, upstream RPP, pruned distilling the dense model, phone files, the table; again: reused."""
    settings = dict(data=(str(snli_folder),), text_columns=("premise", "hypothesis"), label_column="gold",
                    preset=small_preset, out=str(tmp_path / "c"), sparsity=0.5, sequence_length=32, steps=8,
                    batch_size=16, pruned_steps=8, pruned_batch_size=16, prune_steps=10, prune_sequence_length=16,
                    verbose=0)
    result = pipeline.compress(**settings)
    assert result.pruned.mask_held and result.sparsity == pytest.approx(0.5, abs=1e-3)
    assert result.prune.sparsity_before_hardening is not None
    assert result.dense.label_names == sorted(data.SNLI_LABELS) == result.pruned.label_names
    assert result.points_lost == pytest.approx(100 * (result.dense.metrics["accuracy"]
                                                      - result.pruned.metrics["accuracy"]))
    assert set(result.files) == {"float32", "dynamic int8"}
    dynamic = result.files["dynamic int8"][1]
    assert dynamic["bytes"] < result.files["float32"][1]["bytes"] and dynamic["latency_ms"] > 0
    lite = tf_rpp_lite.TFLiteClassifier(dynamic["path"])
    assert lite.labels == sorted(data.SNLI_LABELS)
    table = capsys.readouterr().out
    assert "points lost" in table and "dynamic int8" in table and "of which the pruning steps made" in table
    with open(tmp_path / "c" / "summary.json", encoding="utf-8") as f:
        assert json.load(f)["points_lost"] == pytest.approx(result.points_lost)
    again = pipeline.compress(**settings)  # every stage finished: reused, the same result
    assert again.pruned.metrics == result.pruned.metrics and again.files.keys() == result.files.keys()
    with pytest.raises(ValueError, match="sparsity"):
        pipeline.compress(**dict(settings, sparsity=1.5))
    # The other start of the pruned model, on the same dense model and mask: only the pruned stage trains.
    default = pipeline.CompressConfig().pruned_init
    other = "upstream" if default == "dense" else "dense"
    for stage in ("dense", "prune"):
        shutil.copytree(tmp_path / "c" / stage, tmp_path / "d" / stage)
    second = pipeline.compress(**dict(settings, out=str(tmp_path / "d"), pruned_init=other))
    assert second.pruned.mask_held and second.dense.metrics == result.dense.metrics

    def head_moved(run):  # how far the pruned model's head is from the dense model's, relative to its size
        dense, pruned = (saving.load_model(path, compile=False).output_dense.kernel.numpy()
                         for path in (run.dense.model_path, run.pruned.model_path))
        return np.linalg.norm(pruned - dense) / np.linalg.norm(dense)

    moved = {default: head_moved(result), other: head_moved(second)}
    # From the dense model the head starts trained and 8 steps move it little; from upstream it starts new.
    assert moved["dense"] < 0.5 * moved["upstream"], moved
