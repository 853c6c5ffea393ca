"""Layer dropping: a backbone with some of its encoder layers, and distilling it from the full model."""

import keras
import numpy as np
import pytest
from conftest import SEQ
from conftest import tiny_classifier

import tf_rpp
from tf_rpp.structured import layer_drop

INPUTS = {"token_ids": (np.arange(2 * SEQ, dtype="int32").reshape(2, SEQ) % 50) + 5,
          "segment_ids": np.zeros((2, SEQ), "int32"), "padding_mask": np.ones((2, SEQ), "int32")}


def test_the_kept_layers_compute_what_they_computed_in_the_full_encoder():
    classifier = tiny_classifier(seed=1, layers=3)
    full = tf_rpp.distill.encoder_outputs(classifier.backbone)(INPUTS)
    first_two = layer_drop.drop_layers(classifier.backbone, [0, 1])
    assert len(first_two.transformer_layers) == 2
    np.testing.assert_allclose(first_two(INPUTS)["sequence_output"], full[1], atol=1e-5)
    every = layer_drop.drop_classifier_layers(classifier, [0, 1, 2])
    np.testing.assert_allclose(every(INPUTS), classifier(INPUTS), atol=1e-5)
    # Dropping a middle layer changes what the top computes: the copy is layer for layer, not the same model.
    skipped = layer_drop.drop_classifier_layers(classifier, [0, 2])
    assert not np.allclose(skipped.backbone(INPUTS)["sequence_output"], full[2], atol=1e-2)
    assert skipped.output_dense.get_weights()[0].tolist() == classifier.output_dense.get_weights()[0].tolist()


def test_a_dropped_model_saves_and_loads_as_a_plain_keras_hub_model(tmp_path):
    small = layer_drop.drop_classifier_layers(tiny_classifier(seed=2, layers=3), [1])
    small.save(tmp_path / "small.keras")
    loaded = keras.models.load_model(tmp_path / "small.keras")
    assert type(loaded).__name__ == "BertTextClassifier" and len(loaded.backbone.transformer_layers) == 1
    np.testing.assert_allclose(loaded(INPUTS), small(INPUTS), atol=1e-6)


def test_the_student_matches_the_teacher_layers_it_kept():
    teacher = tiny_classifier(seed=3, layers=3)
    student = layer_drop.drop_classifier_layers(teacher, [0, 1])
    kept = tf_rpp.distill.LayerDistiller(student, teacher.backbone, alpha=1.0, teacher_layer_indices=[0, 1])
    kept(INPUTS, training=True)
    assert float(kept.losses[0]) < 1e-9  # the same layers, the same outputs
    shifted = tf_rpp.distill.LayerDistiller(student, teacher.backbone, alpha=1.0, teacher_layer_indices=[1, 2])
    shifted(INPUTS, training=True)
    assert float(shifted.losses[0]) > 1e-6  # a tiny random post-LN encoder's layers differ little
    config = shifted.get_config()
    assert config["teacher_layer_indices"] == [1, 2]
    with pytest.raises(ValueError, match="one of the teacher's 3 layers for each of the student's 2"):
        tf_rpp.distill.LayerDistiller(student, teacher.backbone, teacher_layer_indices=[0, 3])
    with pytest.raises(ValueError, match="teacher_layer_indices"):
        tf_rpp.distill.LayerDistiller(student, teacher.backbone)  # depths differ, no map


def test_bad_layer_choices_are_refused():
    assert layer_drop.layers_to_keep(6, 2, "bottom") == [4, 5]
    with pytest.raises(ValueError, match="`strategy` must be one of"):
        layer_drop.layers_to_keep(6, 2, "middle")
    with pytest.raises(ValueError, match="from 1 to 6"):
        layer_drop.layers_to_keep(6, 0)
    with pytest.raises(ValueError, match="distinct, ascending indices in \\[0, 2\\)"):
        layer_drop.drop_layers(tiny_classifier(layers=2).backbone, [1, 2])
