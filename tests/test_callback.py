"""RPPCallback: schedules, lambda adaptation, hardening, baseline, reporting."""

import glob

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from conftest import compile_mlm
from conftest import mlm_dataset
from conftest import tiny_masked_lm

import tf_rpp

PolynomialDecay = tfmot.sparsity.keras.PolynomialDecay
ConstantSparsity = tfmot.sparsity.keras.ConstantSparsity


class SparsityTrace(keras.callbacks.Callback):
    """Records (step, exact-zero sparsity, target) on every step."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.rows = []

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = int(optimizer.iterations.numpy())
        target = float(self.schedule(tf.constant(step, tf.int64))[1])
        self.rows.append((step, optimizer.sparsity(), target, dict(logs)))


def run_rpp(schedule, epochs, optimizer=None, callbacks=(), **callback_kwargs):
    model = tiny_masked_lm(seed=11, hidden=32)
    optimizer = optimizer or tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=10)
    compile_mlm(model, optimizer)
    trace = SparsityTrace(schedule or ConstantSparsity(0.0, 0))
    history = model.fit(
        mlm_dataset(n=320, batch=16), epochs=epochs, verbose=0,
        callbacks=[tf_rpp.RPPCallback(schedule, **callback_kwargs), trace, *callbacks],
    )
    return model, optimizer, trace.rows, history


def test_polynomial_decay_to_80_percent_is_tracked_and_hardened_exactly():
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=160, frequency=5)
    model, optimizer, rows, history = run_rpp(schedule, epochs=9)  # 180 steps
    # Tracking: while the schedule ramps, sparsity follows it (lambda adapts).
    ramp = [(s, sp, t) for s, sp, t, _ in rows if 40 <= s < 160]
    errors = [abs(sp - t) for _, sp, t in ramp]
    assert max(errors) < 0.1, max(errors)
    assert np.mean(errors) < 0.05
    # The RPP steps themselves made the mask: hardening only settles the last few weights.
    before = optimizer.sparsity_before_hardening
    assert before is not None and before >= 0.95 * 0.8, before
    assert history.history["sparsity_before_hardening"][-1] == pytest.approx(before)
    assert optimizer.get_mask().sparsity == pytest.approx(0.8, abs=1e-3)
    # End: within 1 point of 80%, and the frozen mask prunes exactly the target count.
    assert optimizer.frozen
    assert abs(optimizer.sparsity() - 0.8) < 0.01
    mask = optimizer.get_mask()
    assert mask.num_pruned == round(0.8 * mask.num_weights)
    # After hardening, training only enforces the mask.
    final_rows = [sp for s, sp, _, _ in rows if s > 160]
    assert max(final_rows) - min(final_rows) < 1e-3
    # Reporting: batch logs and History carry the pruning figures.
    logs = rows[-1][3]
    assert history.history["sparsity"][-1] == pytest.approx(optimizer.sparsity(), abs=1e-6)
    assert logs["target_sparsity"] == pytest.approx(0.8)
    assert logs["l1_strength"] == pytest.approx(optimizer.l1_strength)
    assert len(history.history["sparsity"]) == 9
    assert history.history["sparsity"][0] < history.history["sparsity"][-1]


def test_per_layer_hardening_prunes_each_weight_to_the_target():
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=40, frequency=5)
    _, optimizer, _, _ = run_rpp(schedule, epochs=3, scope="per_layer")
    mask = optimizer.get_mask()
    for key, sparsity in mask.layer_sparsity().items():
        size = mask[key].size
        assert round(sparsity * size) == round(0.5 * size), key


def test_paper_mode_fixed_lambda_freezes_the_exact_zeros():
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=5)
    model, optimizer, rows, _ = run_rpp(None, epochs=2, optimizer=optimizer, log_every=5)
    assert optimizer.l1_strength == pytest.approx(1e-2)  # never adapted
    assert optimizer.frozen
    sparsity = optimizer.sparsity()
    assert sparsity > 0.1
    mask = optimizer.get_mask()
    assert mask == tf_rpp.SparsityMask.from_model(model, prune=mask.keys)
    assert mask.sparsity == pytest.approx(sparsity)
    assert rows[-1][3]["sparsity"] > 0


def test_magnitude_baseline_follows_the_schedule_exactly():
    schedule = PolynomialDecay(0.0, 0.7, begin_step=0, end_step=60, frequency=10)
    optimizer = tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(1e-3))
    _, optimizer, rows, _ = run_rpp(schedule, epochs=4, optimizer=optimizer)
    for step, sparsity, target, _ in rows:
        if step % 10 == 0 and step <= 60:
            # Right after each pruning step the mask is exactly the target.
            assert sparsity == pytest.approx(target, abs=2e-4), step
    assert optimizer.frozen
    assert optimizer.get_mask().num_pruned == round(0.7 * optimizer.get_mask().num_weights)
    assert "l1_strength" not in rows[-1][3]


def test_tensorboard_gets_per_layer_sparsity(tmp_path):
    schedule = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=20, frequency=5)
    run_rpp(schedule, epochs=2, log_dir=str(tmp_path))
    tags = set()
    for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.update(value.tag for value in event.summary.value)
    assert "sparsity/total" in tags and "target_sparsity" in tags and "l1_strength" in tags
    assert "sparsity/transformer_layer_1/feedforward_output_dense/kernel" in tags


class TooSparse(tfmot.sparsity.keras.PruningSchedule):
    def __call__(self, step):
        return tf.constant(True), tf.constant(1.0)

    def get_config(self):
        return {"class_name": "TooSparse", "config": {}}


def test_bad_schedules_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match="must be a tfmot.sparsity.keras.PruningSchedule"):
        tf_rpp.RPPCallback(lambda step: (True, 0.5))
    with pytest.raises(ValueError, match="targets must be in \\[0, 1\\)"):
        run_rpp(TooSparse(), epochs=1)
    with pytest.raises(ValueError, match="`scope`"):
        tf_rpp.RPPCallback(ConstantSparsity(0.5, 0), scope="layer")
    with pytest.raises(ValueError, match="`adapt_rate`"):
        tf_rpp.RPPCallback(ConstantSparsity(0.5, 0), adapt_rate=-1)
    model = tiny_masked_lm()
    compile_mlm(model, keras.optimizers.AdamW())
    with pytest.raises(ValueError, match="needs the model compiled with tf_rpp.RPPOptimizer"):
        model.fit(mlm_dataset(n=16), verbose=0, callbacks=[tf_rpp.RPPCallback(ConstantSparsity(0.5, 0))])


class PoisonLoss(keras.losses.Loss):
    """The MLM loss, multiplied by NaN from a chosen step on (a diverging run)."""

    def __init__(self, poison_at):
        super().__init__(name="poison")
        self.calls = keras.Variable(0.0, trainable=False, name="calls")
        self.poison_at = poison_at
        self.inner = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def call(self, y_true, y_pred):
        self.calls.assign_add(1.0)
        scale = tf.where(self.calls >= self.poison_at, tf.constant(float("nan")), 1.0)
        return self.inner(y_true, y_pred) * scale


def test_nan_loss_stops_pruning_and_leaves_the_last_good_mask_on_disk(tmp_path):
    model = tiny_masked_lm(seed=11, hidden=32)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=10)
    model.compile(optimizer=optimizer, loss=PoisonLoss(poison_at=25), weighted_metrics=["accuracy"])
    good = tf_rpp.SparsityMask.from_model(model)
    good.save(tmp_path / "mask.npz")
    before = (tmp_path / "mask.npz").read_bytes()
    history = keras.callbacks.History()
    with pytest.raises(FloatingPointError, match="loss became nan at step 25.*Lower the learning rate"):
        model.fit(mlm_dataset(n=320, batch=16), epochs=3, verbose=0, callbacks=[
            tf_rpp.RPPCallback(PolynomialDecay(0.0, 0.8, 0, 40, frequency=5)), history])
    assert int(optimizer.iterations.numpy()) == 25  # stopped inside the first bad step
    assert not optimizer.frozen  # never hardened on broken weights
    assert (tmp_path / "mask.npz").read_bytes() == before
    # Whatever code later tries to rank the broken weights gets a clear error, not a mask.
    with pytest.raises(FloatingPointError, match="hold NaN or Inf"):
        tf_rpp.SparsityMask.from_magnitudes(optimizer.weights_by_key(), 0.5)


def _rpp_before_training(seed):
    """A tiny RPP-compiled masked LM, its pruned weights before training, and a 40-step schedule."""
    model = tiny_masked_lm(seed=seed, hidden=32)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=10)
    compile_mlm(model, optimizer)
    optimizer.build(model.trainable_variables)
    return model, optimizer, optimizer.weights_by_key(), PolynomialDecay(0.0, 0.7, begin_step=0, end_step=40,
                                                                         frequency=5)


def test_rewind_returns_the_kept_weights_to_their_values_at_the_start():
    model, optimizer, start, schedule = _rpp_before_training(11)
    # 40 steps, hardened at the last one: the kept weights are the starting values, the rest exact zeros.
    model.fit(mlm_dataset(n=320, batch=16), epochs=2, verbose=0,
              callbacks=[tf_rpp.RPPCallback(schedule, rewind=True)])
    assert optimizer.frozen and int(optimizer.iterations.numpy()) == 40
    mask = optimizer.get_mask()
    after = optimizer.weights_by_key()
    moved = 0
    for key in mask.keys:
        np.testing.assert_array_equal(after[key][mask[key]], start[key][mask[key]])
        assert np.all(after[key][~mask[key]] == 0.0)
    # Without rewind the same run ends with the kept weights moved (shrunk and trained).
    model2 = tiny_masked_lm(seed=11, hidden=32)
    optimizer2 = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=10)
    compile_mlm(model2, optimizer2)
    model2.fit(mlm_dataset(n=320, batch=16), epochs=2, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    for key, value in optimizer2.weights_by_key().items():
        moved += int(np.sum(value[optimizer2.get_mask()[key]] != start[key][optimizer2.get_mask()[key]]))
    assert moved > 0
    with pytest.raises(ValueError, match="lacks"):
        tf_rpp.hardening.rewind(optimizer, {})


def test_rewind_to_values_taken_before_an_interrupted_fit():
    # A resumed fit (BackupAndRestore) begins from half-pruned weights: rewinding to the values when
    # *that* fit began would keep the shrinkage, so the values from before the first fit are passed.
    model, optimizer, start, schedule = _rpp_before_training(12)
    model.fit(mlm_dataset(n=320, batch=16), epochs=1, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule, rewind=start)])
    assert not optimizer.frozen
    midway = optimizer.weights_by_key()
    model.fit(mlm_dataset(n=320, batch=16), epochs=1, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule, rewind=start)])
    assert optimizer.frozen
    mask, after = optimizer.get_mask(), optimizer.weights_by_key()
    differs = 0
    for key in mask.keys:
        np.testing.assert_array_equal(after[key][mask[key]], start[key][mask[key]])
        differs += int(np.sum(midway[key][mask[key]] != start[key][mask[key]]))
    assert differs > 0  # the second fit did begin from moved weights
    with pytest.raises(ValueError, match="`rewind` must be"):
        tf_rpp.RPPCallback(schedule, rewind="start")
