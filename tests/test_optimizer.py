"""RPPOptimizer and MaskedOptimizer: the step, enforcement, distribution, state."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import classification_dataset
from conftest import compile_classifier
from conftest import compile_mlm
from conftest import mlm_dataset
from conftest import tiny_classifier
from conftest import tiny_masked_lm

import tf_rpp
from tf_rpp import selection


def np_soft(x, t):
    return np.sign(x) * np.maximum(np.abs(x) - t, 0)


def rpp_reference(w, grads, lrs, l1, eps, every):
    """NumPy proximal SGD with reweighting, the algorithm of the issue."""
    gamma = np.ones_like(w)
    for k, (g, lr) in enumerate(zip(grads, lrs)):
        w = w - lr * g
        if k % every == 0:
            gamma = 1.0 / (np.abs(w) + eps)
        w = np_soft(w, lr * l1 * gamma)
    return w


@pytest.mark.parametrize("mode", ["eager", "function", "xla"])
def test_rpp_steps_match_numpy_reference(mode):
    rng = np.random.default_rng(0)
    w0 = (rng.normal(size=(12, 10)) * 0.05).astype("float32")
    b0 = rng.normal(size=(10,)).astype("float32")
    grads = [(rng.normal(size=w0.shape) * 0.02).astype("float32") for _ in range(7)]
    bias_grads = [rng.normal(size=b0.shape).astype("float32") for _ in range(7)]
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.8)
    lrs = [float(schedule(k)) for k in range(7)]
    kernel = keras.Variable(w0, name="kernel")
    bias = keras.Variable(b0, name="bias")
    optimizer = tf_rpp.RPPOptimizer(
        keras.optimizers.SGD(schedule), l1_strength=0.002, epsilon=1e-3, reweight_every=3, prune=r"kernel$"
    )
    optimizer.build([kernel, bias])

    def step(g, gb):
        optimizer.apply([g, gb], [kernel, bias])

    if mode == "function":
        step = tf.function(step)
    elif mode == "xla":
        step = tf.function(step, jit_compile=True)
    for g, gb in zip(grads, bias_grads):
        step(tf.constant(g), tf.constant(gb))
    want = rpp_reference(w0, grads, lrs, 0.002, 1e-3, 3)
    got = kernel.numpy()
    assert 0.1 < np.mean(want == 0) < 0.9  # the reference does prune, but not everything
    np.testing.assert_array_equal(got == 0, want == 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The bias is not pruned: plain SGD.
    np.testing.assert_allclose(bias.numpy(), b0 - sum(lr * g for lr, g in zip(lrs, bias_grads)), atol=1e-5)
    assert int(optimizer.iterations.numpy()) == 7


def test_rpp_sparsity_grows_on_a_masked_lm():
    model = tiny_masked_lm()
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=5)
    compile_mlm(model, optimizer)
    sparsities = []
    for _ in range(3):
        model.fit(mlm_dataset(n=160), epochs=1, verbose=0)
        sparsities.append(optimizer.sparsity())
    assert sparsities[0] > 0.05
    assert sparsities[0] < sparsities[1] < sparsities[2]
    # Everything not selected is untouched by the l1 term.
    pruned = {id(v) for v in optimizer.pruned_variables}
    for v in model.trainable_weights:
        if id(v) not in pruned and "bias" not in v.path and "beta" not in v.path:
            assert np.mean(v.numpy() == 0) < 0.01, v.path


INNER_OPTIMIZERS = {
    "adamw": lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
    "adam": lambda: keras.optimizers.Adam(1e-2),
    "sgd_momentum": lambda: keras.optimizers.SGD(0.5, momentum=0.9, nesterov=True),
    "adafactor": lambda: keras.optimizers.Adafactor(1e-1),
    "lion": lambda: keras.optimizers.Lion(1e-2, weight_decay=0.1),
}


# Every inner optimizer under XLA (the recipes' train step); graph mode once.
@pytest.mark.parametrize("inner, jit_compile", [(name, True) for name in sorted(INNER_OPTIMIZERS)] + [("adamw", False)],
                         ids=[f"{name}-xla" for name in sorted(INNER_OPTIMIZERS)] + ["adamw-graph"])
def test_masked_weights_stay_exactly_zero(inner, jit_compile):
    model = tiny_classifier(seed=3)
    weights = {selection.weight_key(v): v.numpy() for v in selection.select_weights(model, include_embeddings=True)}
    mask = tf_rpp.SparsityMask.from_magnitudes(weights, 0.6)
    optimizer = tf_rpp.MaskedOptimizer(INNER_OPTIMIZERS[inner](), mask)
    compile_classifier(model, optimizer, jit_compile=jit_compile)
    before = {k: v.numpy() for k, v in selection.match_keys(mask.keys, model).items()}
    model.fit(classification_dataset(n=96), epochs=2, verbose=0)
    for key, variable in selection.match_keys(mask.keys, model).items():
        value = variable.numpy()
        assert np.all(value[~mask[key]] == 0.0), key
        if key != "segment_embedding/embeddings":  # segment 1 never occurs in the data
            assert np.any(value[mask[key]] != before[key][mask[key]]), f"{key} did not train"
    assert tf_rpp.SparsityMask.from_model(model, prune=mask.keys).num_pruned >= mask.num_pruned
    assert optimizer.frozen


def test_rpp_with_jit_compile_matches_graph_mode():
    results = []
    for jit in (False, True):
        model = tiny_masked_lm(seed=4)
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=4)
        compile_mlm(model, optimizer, jit_compile=jit)
        model.fit(mlm_dataset(n=96), epochs=1, verbose=0)
        results.append([v.numpy() for v in optimizer.pruned_variables])
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert np.mean(np.concatenate([r.ravel() for r in results[1]]) == 0) > 0.05


def _train_rpp(strategy, data):
    import tensorflow_model_optimization as tfmot

    with strategy.scope():
        model = tiny_masked_lm(seed=5)
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=3)
        compile_mlm(model, optimizer)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.7, 0, 10, frequency=2)
    model.fit(data, epochs=2, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    return optimizer, [v.numpy() for v in model.trainable_weights]


def test_mirrored_strategy_matches_single_device(mirrored):
    data = mlm_dataset(n=96, batch=16)  # 6 global batches an epoch
    single, single_weights = _train_rpp(tf.distribute.get_strategy(), data)
    assert mirrored.num_replicas_in_sync == 2
    multi, multi_weights = _train_rpp(mirrored, data)
    assert single.frozen and multi.frozen
    assert single.get_mask() == multi.get_mask()
    assert single.get_mask().sparsity == pytest.approx(0.7, abs=1e-3)
    for a, b in zip(single_weights, multi_weights):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # Both replicas hold the same pruned weights.
    for v in multi.pruned_variables:
        replicas = v.value.values
        np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())


def test_masked_optimizer_under_mirrored_strategy_keeps_zeros(mirrored):
    with mirrored.scope():
        model = tiny_classifier(seed=6)
        weights = {selection.weight_key(v): v.numpy() for v in selection.select_weights(model)}
        mask = tf_rpp.SparsityMask.from_magnitudes(weights, 0.8)
        compile_classifier(model, tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(1e-2), mask))
    model.fit(classification_dataset(n=64), epochs=1, verbose=0)
    for key, variable in selection.match_keys(mask.keys, model).items():
        for replica in variable.value.values:
            assert np.all(replica.numpy()[~mask[key]] == 0.0)


def test_config_round_trip_and_registration():
    optimizer = tf_rpp.RPPOptimizer(
        keras.optimizers.AdamW(3e-4, weight_decay=0.01), l1_strength=5e-3, epsilon=1e-4, reweight_every=7,
        prune=r"query/kernel$",
    )
    config = optimizer.get_config()
    assert config["l1_strength"] == 5e-3 and config["epsilon"] == 1e-4 and config["reweight_every"] == 7
    clone = tf_rpp.RPPOptimizer.from_config(config)
    assert clone.get_config() == config
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(revived, tf_rpp.RPPOptimizer)
    assert isinstance(revived.inner_optimizer, keras.optimizers.AdamW)
    assert float(revived.inner_optimizer.learning_rate) == pytest.approx(3e-4)
    assert revived.get_config() == config


def test_save_load_and_resume_continue_exactly(tmp_path):
    data = mlm_dataset(n=64)

    def fresh():
        model = tiny_masked_lm(seed=7)
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=3)
        return compile_mlm(model, optimizer), optimizer

    straight, straight_opt = fresh()
    straight.fit(data, epochs=2, verbose=0)

    first, first_opt = fresh()
    first.fit(data, epochs=1, verbose=0)
    first_opt.l1_strength = 1e-2  # a callback would have adapted it; it must survive the file
    first.save(tmp_path / "half.keras")
    # keras.models.load_model skips compile() for keras-hub tasks and drops the
    # optimizer state; tf_rpp.load_model restores it.
    resumed = tf_rpp.load_model(tmp_path / "half.keras")
    resumed_opt = resumed.optimizer
    assert isinstance(resumed_opt, tf_rpp.RPPOptimizer)
    assert int(resumed_opt.iterations.numpy()) == 4
    for a, b in zip(first_opt.variables, resumed_opt.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    resumed.fit(data, epochs=1, verbose=0)
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)
    np.testing.assert_array_equal(
        straight_opt.get_mask()["transformer_layer_0/self_attention_layer/query/kernel"],
        resumed_opt.get_mask()["transformer_layer_0/self_attention_layer/query/kernel"],
    )


def test_keras_load_model_restores_the_optimizer_of_a_functional_model(tmp_path):
    backbone = tiny_masked_lm(seed=9).backbone
    inputs = backbone.input
    pooled = backbone(inputs)["pooled_output"]
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(pooled))
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=2)
    compile_classifier(model, optimizer)
    data = classification_dataset(n=32)
    model.fit(data, verbose=0)
    model.save(tmp_path / "functional.keras")
    loaded = keras.models.load_model(tmp_path / "functional.keras")
    assert isinstance(loaded.optimizer, tf_rpp.RPPOptimizer)
    assert len(loaded.optimizer.variables) == len(optimizer.variables)
    for a, b in zip(optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    model.fit(data, verbose=0)
    loaded.fit(data, verbose=0)
    for a, b in zip(model.trainable_weights, loaded.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


class _Crash(keras.callbacks.Callback):
    def __init__(self, at_step):
        super().__init__()
        self.at_step = at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.at_step:
            raise RuntimeError("simulated crash")


def test_backup_and_restore_resumes_pruning_exactly(tmp_path):
    import tensorflow_model_optimization as tfmot

    data = mlm_dataset(n=64)  # 4 steps an epoch
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.6, 0, 16, frequency=2)

    def fresh():
        model = tiny_masked_lm(seed=8)
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=2)
        return compile_mlm(model, optimizer), optimizer

    straight, straight_opt = fresh()
    straight.fit(data, epochs=5, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])

    backup = str(tmp_path / "backup")
    crashed, _ = fresh()
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.fit(data, epochs=5, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup, save_freq="epoch"), tf_rpp.RPPCallback(schedule), _Crash(10)])
    resumed, resumed_opt = fresh()
    resumed.fit(data, epochs=5, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup, save_freq="epoch"), tf_rpp.RPPCallback(schedule)])
    assert int(resumed_opt.iterations.numpy()) == 20
    assert straight_opt.frozen and resumed_opt.frozen
    assert straight_opt.get_mask() == resumed_opt.get_mask()
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"l1_strength": -1e-3}, "`l1_strength` must be a finite number >= 0"),
        ({"l1_strength": float("nan")}, "`l1_strength` must be a finite number >= 0"),
        ({"epsilon": 0.0}, "`epsilon` must be a finite number > 0"),
        ({"epsilon": -1.0}, "`epsilon` must be a finite number > 0"),
        ({"reweight_every": 0}, "`reweight_every` must be an integer >= 1"),
        ({"reweight_every": 2.5}, "`reweight_every` must be an integer >= 1"),
        ({"learning_rate": 0.1}, "set learning rate, weight decay"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tf_rpp.RPPOptimizer(keras.optimizers.AdamW(), **kwargs)


def test_bad_wrapping_raises_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="must be a keras.optimizers.Optimizer instance"):
        tf_rpp.RPPOptimizer("adamw")
    with pytest.raises(ValueError, match="Do not nest"):
        tf_rpp.MaskedOptimizer(tf_rpp.RPPOptimizer(keras.optimizers.AdamW()))
    with pytest.raises(ValueError, match="gradient_accumulation_steps"):
        tf_rpp.RPPOptimizer(keras.optimizers.AdamW(gradient_accumulation_steps=2))
    mask = tf_rpp.SparsityMask({"transformer_layer_0/self_attention_layer/query/kernel": np.ones((16, 2, 8), bool)})
    with pytest.raises(ValueError, match="either `mask`"):
        tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(), mask, prune="bert")
    other = tf_rpp.SparsityMask({"transformer_layer_0/self_attention_layer/query/kernel": np.ones((4, 2, 2), bool)})
    model = tiny_classifier()
    compile_classifier(model, tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(), other))
    with pytest.raises(ValueError, match=r"query/kernel.*shape"):
        model.fit(classification_dataset(n=16), verbose=0)


def test_extra_optimizer_memory_per_pruned_weight():
    model = tiny_masked_lm()
    rpp = tf_rpp.RPPOptimizer(keras.optimizers.AdamW())
    rpp.build(model.trainable_variables)
    masked = tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(), prune="bert")
    masked.build(model.trainable_variables)
    pruned = sum(int(np.prod(v.shape)) for v in rpp.pruned_variables)

    def own_bytes(optimizer):
        inner = {id(v) for v in optimizer.inner_optimizer.variables}
        return sum(v.numpy().nbytes for v in optimizer.variables if id(v) not in inner)

    # gamma (float32) + mask (bool) per weight, plus a few scalars.
    assert own_bytes(rpp) - 5 * pruned < 64
    assert own_bytes(masked) - 1 * pruned < 64


@pytest.mark.parametrize("inner", ["adam", "adamw", "adafactor", "lion", "sgd_momentum"])
def test_sparse_gradients_with_repeated_indices_update_like_dense_ones(inner):
    # Embedding gradients repeat indices (a token occurs many times a batch).
    values = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 10)
    sparse = tf.IndexedSlices(values, tf.constant([0, 0, 2, 0]), tf.constant([5, 3]))
    results = []
    for gradient in (sparse, tf.convert_to_tensor(sparse)):
        table = keras.Variable(np.ones((5, 3), "float32"), name="embeddings")
        optimizer = tf_rpp.MaskedOptimizer(INNER_OPTIMIZERS[inner](), prune=["embeddings"])
        step = tf.function(lambda g: optimizer.apply([g], [table]))
        for _ in range(3):
            step(gradient)
        results.append(table.numpy())
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_two_fit_calls_equal_one():
    # Keras calls finalize_variable_values() after every fit(); it must not
    # take a pruning step (it once re-ran the reweighting there).
    data = mlm_dataset(n=64)  # 4 steps an epoch; reweighting on step 3 ends epoch 1
    runs = []
    for split in (False, True):
        model = tiny_masked_lm(seed=7)
        compile_mlm(model, tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=3))
        for epochs in ((1, 1) if split else (2,)):
            model.fit(data, epochs=epochs, verbose=0)
        runs.append([v.numpy() for v in model.trainable_weights])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("inner", ["adamw", "sgd_momentum", "lion"])
def test_auto_gradient_masking_is_bit_identical_for_elementwise_optimizers(inner):
    weights = []
    for mask_gradients in ("auto", True):
        model = tiny_classifier(seed=12)
        keyed = {selection.weight_key(v): v.numpy() for v in selection.select_weights(model)}
        mask = tf_rpp.SparsityMask.from_magnitudes(keyed, 0.5)
        optimizer = tf_rpp.MaskedOptimizer(INNER_OPTIMIZERS[inner](), mask, mask_gradients=mask_gradients)
        assert optimizer._masks_gradients is (mask_gradients is True)
        compile_classifier(model, optimizer)
        model.fit(classification_dataset(n=64), epochs=2, verbose=0)
        weights.append([v.numpy() for v in model.trainable_weights])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_coupled_optimizers_get_masked_gradients():
    assert tf_rpp.MaskedOptimizer(keras.optimizers.Adafactor())._masks_gradients
    assert tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(clipnorm=1.0))._masks_gradients
    assert tf_rpp.MaskedOptimizer(keras.optimizers.Lamb())._masks_gradients

    class MyAdam(keras.optimizers.Adam):
        pass

    assert tf_rpp.MaskedOptimizer(MyAdam())._masks_gradients
    assert not tf_rpp.MaskedOptimizer(keras.optimizers.AdamW())._masks_gradients
    with pytest.raises(ValueError, match="`mask_gradients`"):
        tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(), mask_gradients="yes")
