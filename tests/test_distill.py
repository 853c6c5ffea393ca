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
