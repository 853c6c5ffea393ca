"""Vocabulary trimming: a smaller token embedding, the same model on covered text, and the runner agrees."""

import os

import keras
import keras_hub
import numpy as np
import pytest

import tf_rpp
import tf_rpp_lite
from tf_rpp import data
from tf_rpp import export
from tf_rpp import models
from tf_rpp.structured import shrink


@pytest.fixture(scope="module")
def classifier():
    # A tiny encoder on the real MiniLM vocabulary and tokenizer.
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=30522, num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=64, dropout=0.0)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(models.tokenizer(), sequence_length=32)
    return keras_hub.models.BertTextClassifier(backbone, 2, preprocessor=preprocessor, dropout=0.0)


def test_trimmed_vocabulary_keeps_covered_text_exact_and_never_adds_unknowns(classifier):
    train = [t for t, _ in data.examples("rt_polarity", "train")[:2000]]
    small, kept = export.trim_vocabulary(classifier, train)
    vocabulary = classifier.preprocessor.tokenizer.get_vocabulary()
    assert small.backbone.vocabulary_size == len(kept) < 0.5 * len(vocabulary)
    assert small.backbone.count_params() < classifier.backbone.count_params()
    np.testing.assert_array_equal(small.backbone.token_embedding.embeddings.numpy(),
                                  classifier.backbone.token_embedding.embeddings.numpy()[kept])
    # Text whose tokens were all kept: the same logits.
    np.testing.assert_allclose(small.predict(train[:64], verbose=0), classifier.predict(train[:64], verbose=0),
                               atol=1e-6)
    # Unseen words split into kept pieces rather than [UNK].
    new_tokenizer = small.preprocessor.tokenizer
    ids = np.asarray(new_tokenizer(["an unprecedentedly cinematographic extravaganza"]))
    assert new_tokenizer.token_to_id("[UNK]") not in ids[0].tolist()
    with pytest.raises(ValueError, match="at least one text"):
        export.trim_vocabulary(classifier, [])


def test_trimmed_model_exports_with_its_vocabulary_and_the_runner_matches_keras(classifier, tmp_path):
    train = [t for t, _ in data.examples("rt_polarity", "train")[:500]]
    small, _ = export.trim_vocabulary(classifier, train)
    path = str(tmp_path / "trimmed.tflite")
    export.export_tflite(small, path, sequence_length=32, labels=["negative", "positive"], scores="logits")
    full = str(tmp_path / "full.tflite")
    export.export_tflite(classifier, full, sequence_length=32, labels=["negative", "positive"], scores="logits")
    assert os.path.getsize(path) < os.path.getsize(full)
    runner = tf_rpp_lite.TFLiteClassifier(path)
    dev = [t for t, _ in data.examples("rt_polarity", "validation")[:40]]
    # The runner tokenizes with the trimmed vocabulary packed in the file,
    # exactly as the trimmed keras-hub preprocessor does.
    keras_ids = small.preprocessor(dev)["token_ids"].numpy()
    lite_ids = runner.encode(dev)[0][0]
    np.testing.assert_array_equal(lite_ids, keras_ids)
    np.testing.assert_allclose(runner.scores(dev), small.predict(dev, verbose=0), atol=1e-4)


def test_submodules_are_reachable_from_the_package():
    # The README writes tf_rpp.structured.shrink.shrink_classifier(...) and tf_rpp.export.export_tflite(...).
    assert tf_rpp.structured.shrink_classifier is shrink.shrink_classifier
    assert tf_rpp.export.trim_vocabulary is export.vocabulary.trim_vocabulary
    assert tf_rpp.export.export_tflite is export.export_tflite
    assert callable(tf_rpp.viz.plot_speed_accuracy)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tf_rpp.nope
