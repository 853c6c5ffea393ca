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
    export.export_tflite(classifier, path, sequence_length=32, labels=LABELS)
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
    from tf_rpp.export import metadata

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


def test_exports_without_metadata_run_from_the_tokenizer_file_beside_them(exported, tmp_path):
    classifier, _ = exported
    path = tmp_path / "plain.tflite"
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
    from tf_rpp.export import metadata

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


# Quantized files compute the model within these bounds (the fixture's head is random and scaled x40,
# which magnifies rounding); accuracy on real fine-tuned models is bench/full_integer.py's.
VARIANT_ATOL = {"float32": 1e-5, "float32-sparse": 1e-5, "dynamic": 0.05, "float16": 0.01, "int8": 0.3, "a16w8": 0.25}


@pytest.fixture(scope="module")
def pruned_exports(exported, tmp_path_factory):
    """The fixture's classifier pruned to 80% by magnitude, exported in every variant: {variant: path}."""
    import tf_rpp

    classifier, _ = exported
    pruned = models.classifier(models.backbone(), num_classes=2, sequence_length=32)
    pruned.set_weights(classifier.get_weights())
    selected = tf_rpp.select_weights(pruned)
    mask = tf_rpp.SparsityMask.from_magnitudes({tf_rpp.selection.weight_key(v): v.numpy() for v in selected}, 0.8)
    mask.apply(pruned)
    folder = tmp_path_factory.mktemp("variants")
    texts = [s for s, _ in data.rt_polarity("train")[:40]]
    paths = {}
    for variant in VARIANT_ATOL:
        quantize = None if variant.startswith("float32") else variant
        paths[variant] = str(folder / f"{variant}.tflite")
        export.export_tflite(pruned, paths[variant], sequence_length=32, quantize=quantize,
                             sparse=variant == "float32-sparse", labels=LABELS,
                             representative_data=texts if quantize in export.CALIBRATED else None)
    return pruned, paths


def test_every_export_variant_of_a_pruned_model_loads_in_litert_default_interpreter(pruned_exports):
    """LiteRT's default interpreter (XNNPACK on, no fallback) prepares each file; each computes the model."""
    from ai_edge_litert.interpreter import Interpreter

    from tf_rpp.export import latency

    pruned, paths = pruned_exports
    dev = [s for s, _ in data.rt_polarity("validation")[:16]]
    want = probabilities(pruned, dev)
    dense_float32 = os.path.getsize(paths["float32"])
    for variant, path in paths.items():
        Interpreter(model_path=path).allocate_tensors()  # raises if a delegate cannot prepare a node
        assert latency.latency_ms(path, runs=2, warmup=1) > 0
        lite = tf_rpp_lite.TFLiteClassifier(path)
        assert lite.runtime == "ai_edge_litert", (variant, lite.runtime)
        got = lite.scores(dev)
        assert got.dtype == np.float32 and lite.interpreter.get_output_details()[0]["dtype"] == np.float32
        assert np.max(np.abs(got - want)) < VARIANT_ATOL[variant], variant
        if variant != "float32":
            assert os.path.getsize(path) < dense_float32, variant
        assert (os.stat(path).st_mode & 0o777) == (0o666 & ~_umask()), oct(os.stat(path).st_mode)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_sparse_encoding_with_quantization_is_refused_before_writing(exported, tmp_path):
    classifier, _ = exported
    with pytest.raises(ValueError, match="applies to float32 only"):
        export.export_tflite(classifier, tmp_path / "m.tflite", sparse=True, quantize="dynamic", labels=LABELS)
    assert not (tmp_path / "m.tflite").exists()


MEDIAPIPE_SCRIPT = """
import json, sys
from mediapipe.tasks import python as mp_python
from mediapipe.tasks.python import text as mp_text
texts = json.load(open(sys.argv[1], encoding="utf-8"))
out = {}
for path in sys.argv[2:]:
    options = mp_text.TextClassifierOptions(base_options=mp_python.BaseOptions(model_asset_path=path), max_results=-1)
    with mp_text.TextClassifier.create_from_options(options) as classifier:
        results = [classifier.classify(t).classifications[0].categories for t in texts]
    out[path] = [{c.category_name: c.score for c in categories} for categories in results]
print(json.dumps(out))
"""


def test_mediapipe_text_classifier_runs_every_export_as_is(exported, pruned_exports, tmp_path):
    """MediaPipe Tasks (pinned 1.2.3, in its own environment as an app would have it) loads each file, no sidecar."""
    import json

    classifier, path = exported
    pruned, paths = pruned_exports
    python = _environment_with(tmp_path / "phone", "mediapipe==1.2.3")
    texts = [s for s, _ in data.rt_polarity("validation")[:40]]
    texts_file = tmp_path / "texts.json"
    texts_file.write_text(json.dumps(texts), encoding="utf-8")
    files = {"dense": path, **paths}
    done = subprocess.run([python, "-c", MEDIAPIPE_SCRIPT, str(texts_file), *files.values()], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"]})
    assert done.returncode == 0, done.stderr[-2000:]
    got_all = json.loads(done.stdout.strip().splitlines()[-1])
    want = {"dense": probabilities(classifier, texts)}
    want_pruned = probabilities(pruned, texts)
    for variant, file in files.items():
        got = np.array([[scores[label] for label in LABELS] for scores in got_all[file]])
        expected = want.get(variant, want_pruned)
        np.testing.assert_allclose(got, expected, atol=max(1e-3, VARIANT_ATOL.get(variant, 0)), err_msg=variant)


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
