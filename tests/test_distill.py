"""tf_rpp.distill: the loss against a NumPy reference, the dataset plumbing, a tiny training run."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tiny import classification_dataset
from tiny import tiny_classifier

from tf_rpp import distill


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


@pytest.mark.parametrize("alpha,temperature", [(0.0, 2.0), (1.0, 1.0), (0.5, 2.0), (0.3, 4.0)])
def test_loss_matches_numpy_reference(alpha, temperature):
    rng = np.random.default_rng(1)
    student = rng.normal(size=(8, 3)).astype("float32")
    teacher = rng.normal(size=(8, 3)).astype("float32") * 2
    labels = rng.integers(0, 3, size=8)
    y_true = np.concatenate([labels[:, None].astype("float32"), teacher], axis=1)
    hard = -_log_softmax(student)[np.arange(8), labels]
    p_teacher = np.exp(_log_softmax(teacher / temperature))
    kl = (p_teacher * (_log_softmax(teacher / temperature) - _log_softmax(student / temperature))).sum(-1)
    expected = np.mean((1 - alpha) * hard + alpha * temperature**2 * kl)
    got = float(distill.DistillationLoss(alpha, temperature)(y_true, student))
    assert got == pytest.approx(expected, rel=1e-5)


def test_bad_arguments_and_mismatched_logits_are_refused():
    with pytest.raises(ValueError, match="`alpha` must be in"):
        distill.DistillationLoss(alpha=1.5)
    with pytest.raises(ValueError, match="`temperature` must be > 0"):
        distill.DistillationLoss(temperature=0)
    ds = tf.data.Dataset.from_tensor_slices((["a", "b", "c"], [0, 1, 0]))
    with pytest.raises(ValueError, match="3 examples but 2 teacher logits"):
        distill.with_teacher_logits(ds, np.zeros((2, 2)))


@pytest.mark.parametrize("num_drawn", [12, 100])  # fewer than the 40 examples: only those; more: all, once
def test_teacher_stream_pairs_each_drawn_example_with_its_teachers_logits(num_drawn):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    labels = np.arange(40, dtype="int32")
    teacher = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    ds = tf.data.Dataset.from_tensor_slices((x, labels))
    stream = distill.teacher_stream(ds, teacher, num_drawn, seed=3, shuffle_buffer=16)
    got_x, got_y = next(iter(stream.batch(num_drawn)))
    np.testing.assert_allclose(got_y[:, 1:], teacher.predict(got_x, verbose=0), atol=1e-5)
    np.testing.assert_array_equal(got_y[:, 0].numpy().astype(int), [
        int(np.flatnonzero((x == row).all(axis=1))[0]) for row in got_x.numpy()])  # labels stay with their x
    if num_drawn < 40:  # exactly the examples a teacher-less run draws, in its order
        plain = next(iter(ds.shuffle(16, seed=3).repeat().batch(num_drawn)))
        np.testing.assert_array_equal(got_x, plain[0])
    else:
        assert len(np.unique(got_y[:40, 0])) == 40  # every example, each once per pass
    with pytest.raises(ValueError, match="num_drawn"):
        distill.teacher_stream(ds, teacher, 0)


def test_student_learns_the_teachers_function_and_loss_round_trips():
    teacher = tiny_classifier(seed=1)
    data = classification_dataset(n=128, batch=16).unbatch()
    logits = teacher.predict(data.batch(32).map(lambda x, y: (x,)), verbose=0)
    student = tiny_classifier(seed=2)
    loss = distill.DistillationLoss(alpha=1.0, temperature=1.0)
    student.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, metrics=[])
    history = student.fit(distill.with_teacher_logits(data, logits).batch(16), epochs=15, verbose=0)
    assert history.history["loss"][-1] < 0.3 * history.history["loss"][0]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, distill.DistillationLoss) and restored.get_config() == loss.get_config()


def _relative_errors(student_layers, teacher_layers, padding):
    w = padding[..., None].astype("float64")
    return [float(np.sum(w * (s - t) ** 2) / np.sum(w * t ** 2)) for s, t in zip(student_layers, teacher_layers)]


@pytest.mark.parametrize("kind", ["masked_lm", "classifier"])
def test_layer_distiller_adds_the_layerwise_relative_error(kind):
    from tiny import mlm_arrays
    from tiny import tiny_backbone
    from tiny import tiny_classifier
    from tiny import tiny_masked_lm

    student = tiny_masked_lm(seed=3) if kind == "masked_lm" else tiny_classifier(seed=3)
    keras.utils.set_random_seed(4)
    teacher = tiny_backbone()
    distiller = distill.LayerDistiller(student, teacher, alpha=2.5)
    assert not teacher.trainable and distiller.built
    x, _, _ = mlm_arrays(n=8)
    x["padding_mask"][:, -5:] = 0  # padding positions must not count
    if kind == "classifier":
        x.pop("mask_positions")
    # The task's own output, through the distiller's head.
    np.testing.assert_allclose(distiller(x, training=False), student(x, training=False), atol=1e-5)
    assert not distiller.losses  # inference adds no term
    distiller(x, training=True)
    features = {k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    s = [np.asarray(h, "float64") for h in distill.encoder_outputs(student.backbone)(features)]
    t = [np.asarray(h, "float64") for h in distill.encoder_outputs(teacher)(features)]
    expected = 2.5 * np.mean(_relative_errors(s, t, x["padding_mask"]))
    assert expected > 0.1
    np.testing.assert_allclose(float(sum(distiller.losses)), expected, rtol=1e-4)


def test_distilled_pruning_keeps_the_teachers_representations_closer():
    """RPP to 60% of a copy of the teacher: with the distillation term its layers stay nearer the teacher's."""
    from tiny import compile_mlm
    from tiny import mlm_arrays
    from tiny import mlm_dataset
    from tiny import tiny_masked_lm
    from tensorflow_model_optimization.sparsity.keras import PolynomialDecay

    import tf_rpp
    from tf_rpp import models

    teacher = tiny_masked_lm(seed=5).backbone
    x, _, _ = mlm_arrays(n=64, seed=9)
    features = {k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    reference = [np.asarray(h, "float64") for h in distill.encoder_outputs(teacher)(features)]
    errors = {}
    for alpha in (0.0, 20.0):
        keras.utils.set_random_seed(0)
        student = tiny_masked_lm(seed=6)
        student.backbone.set_weights(teacher.get_weights())
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.Adam(3e-3), l1_strength=1e-3)
        trained = distill.LayerDistiller(student, models.clone_backbone(teacher), alpha=alpha)
        compile_mlm(trained, optimizer)
        history = trained.fit(mlm_dataset(n=128, batch=16), epochs=10, verbose=0,
                              callbacks=[tf_rpp.RPPCallback(PolynomialDecay(0.0, 0.6, 0, 50, frequency=5))])
        assert optimizer.frozen and abs(optimizer.sparsity() - 0.6) < 0.01
        assert (history.history["distill_loss"][-1] > 0) == (alpha > 0)
        got = [np.asarray(h, "float64") for h in distill.encoder_outputs(student.backbone)(features)]
        errors[alpha] = np.mean(_relative_errors(got, reference, x["padding_mask"]))
    assert errors[20.0] < 0.7 * errors[0.0], errors


def test_layer_distiller_checks_its_inputs_and_round_trips():
    from tiny import tiny_backbone
    from tiny import tiny_masked_lm

    with pytest.raises(ValueError, match="depth and hidden size"):
        distill.LayerDistiller(tiny_masked_lm(), tiny_backbone(hidden=8))
    with pytest.raises(ValueError, match="alpha"):
        distill.LayerDistiller(tiny_masked_lm(), tiny_backbone(), alpha=-1)
    headless = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    headless.backbone = tiny_backbone()  # a task model whose head the distiller does not know
    with pytest.raises(ValueError, match="neither"):
        distill.LayerDistiller(headless, tiny_backbone())
    with pytest.raises(ValueError, match="transformer_layer"):
        distill.encoder_outputs(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))
    distiller = distill.LayerDistiller(tiny_masked_lm(), tiny_backbone(), alpha=3.0)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(distiller))
    assert isinstance(restored, distill.LayerDistiller) and restored.alpha == 3.0
    assert not restored.teacher.trainable
    from tiny import tiny_classifier

    teacher = tiny_classifier(seed=3)
    with pytest.raises(ValueError, match="teacher_task.backbone"):
        distill.LayerDistiller(tiny_classifier(), tiny_backbone(), teacher_task=teacher)
    with pytest.raises(ValueError, match="not a classifier"):
        distill.LayerDistiller(tiny_masked_lm(), teacher.backbone, teacher_task=teacher)
    both = distill.LayerDistiller(tiny_classifier(), teacher.backbone, alpha=2.0, teacher_task=teacher)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(both))
    assert restored.teacher_task is not None and restored.teacher is restored.teacher_task.backbone


def test_teacher_logits_inside_the_step_equal_the_precomputed_stream():
    """`teacher_task`: the loss of one step equals DistillationLoss on precomputed teacher logits."""
    from tiny import classification_dataset
    from tiny import tiny_classifier

    teacher, student = tiny_classifier(seed=3), tiny_classifier(seed=4)
    x, y = next(iter(classification_dataset(n=16, batch=16)))
    loss = distill.DistillationLoss(alpha=0.7, temperature=2.0)
    inside = distill.LayerDistiller(student, teacher.backbone, alpha=0.0, teacher_task=teacher)
    inside.compile(loss=loss)
    logits = inside(x, training=True)
    got = float(inside.compute_loss(x=x, y=y, y_pred=logits, training=True))
    target = np.concatenate([np.asarray(y, "float32")[:, None], np.asarray(teacher(x, training=False))], axis=-1)
    want = float(loss(target, logits))  # the same student logits (its head has dropout)
    assert got == pytest.approx(want, rel=1e-5) and got > 0


def test_task_agnostic_distillation_of_a_bare_backbone_pulls_it_to_the_teacher():
    """A backbone as the task: the layer term is the whole loss; layer_error measures it on held-out batches."""
    from tiny import mlm_arrays
    from tiny import tiny_backbone

    from tf_rpp import models

    keras.utils.set_random_seed(1)
    teacher = tiny_backbone()
    keras.utils.set_random_seed(2)
    student = tiny_backbone()
    x, _, _ = mlm_arrays(n=64, seed=3)
    features = {k: x[k] for k in ("token_ids", "segment_ids", "padding_mask")}
    held_out = [{k: v[:32] for k, v in features.items()}]
    assert distill.layer_error(teacher, models.clone_backbone(teacher), held_out) == pytest.approx(0.0, abs=1e-6)
    before = distill.layer_error(student, teacher, held_out)
    s = [np.asarray(h, "float64") for h in distill.encoder_outputs(student)(held_out[0])]
    t = [np.asarray(h, "float64") for h in distill.encoder_outputs(teacher)(held_out[0])]
    assert before == pytest.approx(np.mean(_relative_errors(s, t, held_out[0]["padding_mask"])), rel=1e-4)
    distiller = distill.LayerDistiller(student, teacher, alpha=1.0)
    np.testing.assert_allclose(distiller(held_out[0]), student(held_out[0])["sequence_output"], atol=1e-5)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), loss=None)
    history = distiller.fit(tf.data.Dataset.from_tensor_slices(features).batch(16).repeat(), steps_per_epoch=10,
                            epochs=6, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert distill.layer_error(student, teacher, held_out) < 0.5 * before
