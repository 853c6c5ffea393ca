"""The TensorFlow-free runner: tokenizer parity with keras-hub, TFLite parity with Keras, errors."""

import os
import subprocess
import sys
import venv

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_rpp_lite
from tf_rpp import data
from tf_rpp import export
from tf_rpp import models

EDGE_CASES = [
    "", "   ", "Hello, World!", "naïve café — résumé", "ÉCOLE ŒUVRE Straße İstanbul", "don't stop-believing...",
    "Ｆｕｌｌｗｉｄｔｈ ｔｅｘｔ", "soft\u00adhyphen zero\u200bwidth", "emoji 😀 and ♥ symbols", "中文字符 和 日本語のテキスト",
    "tabs\tand\nnewlines\r\n", "x" * 150, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "$100 & 50% off #hashtag @user ^caret `tick` ~tilde |pipe|", "ﬁne ligatures", "Ångström µm ½",
]


@pytest.fixture(scope="module")
def keras_tokenizer():
    return models.tokenizer()


@pytest.fixture(scope="module")
def lite_tokenizer(keras_tokenizer):
    return tf_rpp_lite.WordPieceTokenizer(
        keras_tokenizer.get_vocabulary(), keras_tokenizer.lowercase, keras_tokenizer.strip_accents,
        keras_tokenizer.split_on_cjk, keras_tokenizer.oov_token)


def real_sentences():
    sentences = [s for s, _ in data.rt_polarity("validation")]
    sentences += [p for p, _, _ in data.snli_examples("validation")[:1500]]
    sentences += [t.split("\n")[0] for t, _ in data.bbc_news_examples()[::4]]
    return sentences


def test_token_ids_equal_keras_hub_on_real_sentences_and_edge_cases(keras_tokenizer, lite_tokenizer):
    texts = real_sentences() + EDGE_CASES
    assert len(texts) > 3000
    expected = keras_tokenizer(tf.constant(texts))
    expected = expected.to_list() if hasattr(expected, "to_list") else [list(e) for e in expected]
    mismatches = [(t, e, lite_tokenizer.encode(t)) for t, e in zip(texts, expected) if lite_tokenizer.encode(t) != e]
    assert not mismatches, mismatches[:3]
    # The edge cases do exercise unknown words and long words.
    unk = lite_tokenizer.ids["[UNK]"]
    assert unk in lite_tokenizer.encode("x" * 150)


def test_packing_equals_the_keras_hub_preprocessor(keras_tokenizer, lite_tokenizer):
    import keras_hub

    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(keras_tokenizer, sequence_length=24)
    ids = lite_tokenizer.ids
    packer = tf_rpp_lite.BertPacker(ids["[CLS]"], ids["[SEP]"], ids["[PAD]"], 24)
    pairs = [(p, h) for p, h, _ in data.snli_examples("validation")[:200]]
    # x= keyword: a positional tuple would be read as (x, y).
    want = preprocessor(x=(tf.constant([p for p, _ in pairs]), tf.constant([h for _, h in pairs])))
    for i, (p, h) in enumerate(pairs):
        token_ids, segment_ids, padding_mask = packer.pack([lite_tokenizer.encode(p), lite_tokenizer.encode(h)])
        np.testing.assert_array_equal(token_ids, want["token_ids"][i].numpy())
        np.testing.assert_array_equal(segment_ids, want["segment_ids"][i].numpy())
        np.testing.assert_array_equal(padding_mask, want["padding_mask"][i].numpy().astype(np.int32))
    singles = [s for s, _ in data.rt_polarity("validation")[:200]]
    want = preprocessor(tf.constant(singles))
    for i, s in enumerate(singles):
        token_ids, _, _ = packer.pack([lite_tokenizer.encode(s)])
        np.testing.assert_array_equal(token_ids, want["token_ids"][i].numpy())


LABELS = ["negative", "positive"]


def probabilities(classifier, texts):
    return keras.ops.convert_to_numpy(keras.ops.softmax(classifier.predict(texts, verbose=0)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The real MiniLM with a random head, scaled so its probabilities spread over (0, 1), exported as is."""
    keras.utils.set_random_seed(0)
    classifier = models.classifier(models.backbone(), num_classes=2, sequence_length=32)
    kernel = classifier.output_dense.kernel
    kernel.assign(kernel * 40.0)
    path = tmp_path_factory.mktemp("lite") / "model.tflite"
    export.export_tflite(classifier, path, sequence_length=32, sparse=True, labels=LABELS)
    return classifier, str(path)


def test_tflite_classifier_matches_keras_from_the_one_file(exported):
    classifier, path = exported
    assert not os.path.exists(export.tokenizer_path(path))  # everything is inside the .tflite
    lite = tf_rpp_lite.TFLiteClassifier(path)
    assert lite.runtime in ("ai_edge_litert", "tflite_runtime", "tensorflow")
    assert lite.scores_kind == "probabilities" and lite.labels == LABELS
    texts = [s for s, _ in data.rt_polarity("validation")[:24]] + [("a premise here", "a hypothesis")]
    got = lite.scores(texts)
    want = probabilities(classifier, texts[:-1])
    assert 0.05 < want[:, 1].mean() < 0.95 and np.abs(want[:, 1] - 0.5).max() > 0.3  # spread, not all near 0.5
    np.testing.assert_allclose(got[:-1], want, atol=1e-5)
    labels, probs = lite.classify(texts[:-1])
    assert labels == [LABELS[i] for i in want.argmax(-1)]
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    _, truncated = lite.encode(["word " * 100])
    assert truncated == 1


def test_metadata_is_what_mediapipe_reads(exported):
    from tf_rpp import metadata

    _, path = exported
    meta = metadata.read_metadata(path)
    graph = meta.subgraphMetadata[0]
    assert meta.minParserVersion == b"1.1.0"
    roles = {"token_ids": b"ids", "padding_mask": b"mask", "segment_ids": b"segment_ids"}
    names = [d["name"] for d in tf_rpp_lite.load_interpreter(path)[0].get_input_details()]
    assert [t.name for t in graph.inputTensorMetadata] == [roles[r] for r in metadata.input_roles(names)]
    assert graph.inputProcessUnits[0].options.vocabFile[0].name == b"vocab.txt"
    assert graph.outputTensorMetadata[0].associatedFiles[0].name == b"labels.txt"
    files = tf_rpp_lite.packed_files(path)
    assert files["labels.txt"].decode().split("\n") == LABELS
    assert files["vocab.txt"].decode().split("\n") == models.tokenizer().get_vocabulary()


def test_older_exports_with_a_tokenizer_file_beside_them_still_run(exported, tmp_path):
    classifier, _ = exported
    path = tmp_path / "old.tflite"
    export.export_tflite(classifier, path, sequence_length=32, labels=LABELS, metadata=False, scores="logits")
    assert os.path.exists(export.tokenizer_path(path)) and not tf_rpp_lite.packed_files(str(path))
    lite = tf_rpp_lite.TFLiteClassifier(str(path))
    texts = [s for s, _ in data.rt_polarity("validation")[:8]]
    assert lite.scores_kind == "logits"
    np.testing.assert_allclose(lite.scores(texts), classifier.predict(texts, verbose=0), atol=1e-4)
    np.testing.assert_allclose(lite.classify(texts)[1], probabilities(classifier, texts), atol=1e-5)
    alone = tmp_path / "alone.tflite"
    alone.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match="no TFLite metadata and no tokenizer file"):
        tf_rpp_lite.TFLiteClassifier(str(alone))


def test_metadata_without_labels_or_tokenizer_is_refused_before_writing(exported, tmp_path):
    classifier, _ = exported
    target = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match="one non-empty name per class"):
        export.export_tflite(classifier, target, sequence_length=32)
    with pytest.raises(ValueError, match="one non-empty name per class"):
        export.export_tflite(classifier, target, sequence_length=32, labels=["good", ""])
    bare = keras.Model(classifier.inputs, classifier.outputs)  # no preprocessor, so no tokenizer
    with pytest.raises(ValueError, match="WordPiece vocabulary"):
        export.export_tflite(bare, target, sequence_length=32, labels=LABELS)
    with pytest.raises(ValueError, match="`scores` must be one of"):
        export.export_tflite(classifier, target, sequence_length=32, labels=LABELS, scores="softmax")
    assert not target.exists() and os.listdir(tmp_path) == []
    from tf_rpp import metadata

    with pytest.raises(ValueError, match="scores 2 classes but 3 labels"):
        metadata.write_classifier_metadata(exported[1], models.tokenizer().get_vocabulary(), ["a", "b", "c"])


def _environment_with(folder, *requirements):
    """A fresh virtual environment holding only `requirements` (from the package index); its python."""
    venv.create(folder, with_pip=True)
    python = str(folder / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"could not install {' and '.join(requirements)}: {install.stderr[-800:]}")
    return python


MEDIAPIPE_SCRIPT = """
import json, sys
from mediapipe.tasks import python as mp_python
from mediapipe.tasks.python import text as mp_text
options = mp_text.TextClassifierOptions(base_options=mp_python.BaseOptions(model_asset_path=sys.argv[1]),
                                        max_results=-1)
texts = json.load(open(sys.argv[2], encoding="utf-8"))
with mp_text.TextClassifier.create_from_options(options) as classifier:
    results = [classifier.classify(t).classifications[0].categories for t in texts]
print(json.dumps([{c.category_name: c.score for c in categories} for categories in results]))
"""


def test_mediapipe_text_classifier_runs_the_export_as_is(exported, tmp_path):
    """MediaPipe Tasks (pinned 0.10.21, its own environment: it needs numpy<2) loads the file, no sidecar."""
    import json

    classifier, path = exported
    python = _environment_with(tmp_path / "phone", "mediapipe==0.10.21")
    texts = [s for s, _ in data.rt_polarity("validation")[:40]]
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    done = subprocess.run([python, "-c", MEDIAPIPE_SCRIPT, path, str(texts_file)], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    got = np.array([[scores[label] for label in LABELS] for scores in got])
    want = probabilities(classifier, texts)
    assert list(got.argmax(-1)) == list(want.argmax(-1))
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_runner_imports_no_tensorflow_and_the_cli_works(exported):
    _, path = exported
    code = "import sys, tf_rpp_lite; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    done = subprocess.run([sys.executable, "-m", "tf_rpp_lite", path, "a wonderful film", "a dull, lifeless mess"],
                          capture_output=True, text=True, env=env, check=True)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("negative", "positive")
    assert "runtime:" in done.stderr


def test_corrupt_or_wrong_files_get_clear_errors(exported, tmp_path):
    _, path = exported
    with pytest.raises(FileNotFoundError, match="No model"):
        tf_rpp_lite.TFLiteClassifier(str(tmp_path / "missing.tflite"))
    wrong = tmp_path / "wrong.tflite"
    wrong.write_bytes(b"this is not a model at all")
    with pytest.raises(ValueError, match="not a TFLite model"):
        tf_rpp_lite.TFLiteClassifier(str(wrong))
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(open(path, "rb").read()[:4096])
    with pytest.raises(ValueError, match="could not be loaded"):
        tf_rpp_lite.TFLiteClassifier(str(truncated))


def test_runner_in_a_tflite_runtime_only_environment(exported, tmp_path):
    """tflite-runtime 2.14 and numpy<2 only, as on a small Linux device."""
    classifier, path = exported
    python = _environment_with(tmp_path / "device", "tflite-runtime==2.14.0", "numpy<2")
    texts = [s for s, _ in data.rt_polarity("validation")[:16]]
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(texts), encoding="utf-8")
    lite_dir = os.path.dirname(os.path.dirname(os.path.abspath(tf_rpp_lite.__file__)))
    script = (
        "import sys, json, numpy; sys.path.insert(0, sys.argv[1]); import tf_rpp_lite\n"
        "assert 'tensorflow' not in sys.modules\n"
        "c = tf_rpp_lite.TFLiteClassifier(sys.argv[2])\n"
        "texts = open(sys.argv[3], encoding='utf-8').read().split('\\n')\n"
        "print(json.dumps({'runtime': c.runtime, 'numpy': numpy.__version__, 'scores': c.scores(texts).tolist()}))\n"
    )
    done = subprocess.run([python, "-c", script, lite_dir, path, str(texts_file)],
                          capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["runtime"] == "tflite_runtime" and result["numpy"].startswith("1.")
    np.testing.assert_allclose(np.asarray(result["scores"]), probabilities(classifier, texts), atol=1e-5)


# The fixture's head is random and scaled x40, which magnifies activation rounding: these bounds
# (measured 0.20 int8, 0.15 a16w8) only say the files compute the model; accuracy of full-integer
# files on real fine-tuned models is bench/full_integer.py's (docs/phone.md).
@pytest.mark.parametrize("quantize, atol", [("dynamic", 0.05), ("float16", 0.01), ("int8", 0.3), ("a16w8", 0.25)])
def test_quantized_exports_are_smaller_and_close_to_keras(exported, tmp_path, quantize, atol):
    """Probabilities within `atol` of Keras's, and float32 probabilities out whatever the scheme."""
    classifier, float_path = exported
    texts = [s for s, _ in data.rt_polarity("train")[:40]]
    path = tmp_path / f"{quantize}.tflite"
    size = export.export_tflite(classifier, path, sequence_length=32, sparse=False, quantize=quantize,
                                representative_data=texts, labels=LABELS)
    assert size < 0.6 * os.path.getsize(float_path)
    lite = tf_rpp_lite.TFLiteClassifier(str(path))
    dev = [s for s, _ in data.rt_polarity("validation")[:16]]
    got, want = lite.scores(dev), probabilities(classifier, dev)
    assert got.dtype == np.float32 and lite.interpreter.get_output_details()[0]["dtype"] == np.float32
    assert np.max(np.abs(got - want)) < atol


def test_bad_export_arguments_are_refused(exported, tmp_path):
    classifier, _ = exported
    with pytest.raises(ValueError, match="`quantize` must be one of"):
        export.export_tflite(classifier, tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(ValueError, match="needs representative_data"):
        export.export_tflite(classifier, tmp_path / "m.tflite", quantize="int8", labels=LABELS)
    with pytest.raises(ValueError, match="at least 1 non-empty"):
        export.export_tflite(classifier, tmp_path / "m.tflite", quantize="int8", representative_data=["", "  "],
                             labels=LABELS)
    assert not (tmp_path / "m.tflite").exists()


def test_sparse_full_integer_model_runs_on_builtin_kernels_when_xnnpack_declines(tmp_path):
    """XNNPACK has no sparse int8 FULLY_CONNECTED; the runner falls back and says so."""
    import tf_rpp

    keras.utils.set_random_seed(1)
    classifier = models.classifier(models.backbone(), num_classes=2, sequence_length=32)
    selected = tf_rpp.select_weights(classifier)
    mask = tf_rpp.SparsityMask.from_magnitudes({tf_rpp.selection.weight_key(v): v.numpy() for v in selected}, 0.8)
    mask.apply(classifier)
    texts = [s for s, _ in data.rt_polarity("train")[:100]]
    path = tmp_path / "int8_sparse.tflite"
    export.export_tflite(classifier, path, sequence_length=32, sparse=True, quantize="int8-converter",
                         representative_data=texts, labels=LABELS, scores="logits")
    lite = tf_rpp_lite.TFLiteClassifier(str(path))
    assert "builtin kernels" in lite.runtime
    dev = [s for s, _ in data.rt_polarity("validation")[:16]]
    got, want = lite.scores(dev), classifier.predict(dev, verbose=0)
    assert np.max(np.abs(got - want)) < 0.15 * max(1.0, float(np.max(np.abs(want))))
