"""The wrappers inside XLA-compiled steps and under mixed precision.

A pruning step with `jit_compile=True` once cost 5-9x a plain one: summing the
token embedding's repeated gradient rows with `tf.unique` compiled to a sort,
a sequential loop and dynamically sized tensors that slowed the whole step.
These tests catch that class of regression structurally (what the compiled
update contains, how often it is traced) and as a loose timing ratio.
"""


import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import classification_dataset
from conftest import compile_classifier
from conftest import tiny_classifier

import tf_rpp
from tf_rpp import selection


def _wrappers():
    return {
        "rpp": lambda inner: tf_rpp.RPPOptimizer(inner, l1_strength=1e-2, prune=r"kernel$"),
        "masked": lambda inner: tf_rpp.MaskedOptimizer(inner, prune=r"kernel$"),
    }


def _embedding_problem():
    table = keras.Variable(np.random.default_rng(0).normal(size=(50, 8)).astype("float32"), name="embeddings")
    kernel = keras.Variable(np.random.default_rng(1).normal(size=(8, 8)).astype("float32"), name="kernel")
    indices = tf.constant([3, 7, 3, 3, 9, 7], tf.int32)
    values = tf.ones((6, 8))
    return table, kernel, indices, values


@pytest.mark.parametrize("wrapper", sorted(_wrappers()))
def test_compiled_update_has_no_sort_loop_or_dynamic_shape(wrapper):
    table, kernel, indices, values = _embedding_problem()
    optimizer = _wrappers()[wrapper](keras.optimizers.AdamW(1e-3))
    optimizer.build([table, kernel])

    @tf.function(jit_compile=True)
    def step(values, kernel_grad):
        grad = tf.IndexedSlices(values, indices, tf.constant([50, 8]))
        optimizer.apply([grad, kernel_grad], [table, kernel])

    hlo = step.experimental_get_compiler_ir(values, tf.ones((8, 8)))(stage="hlo")
    for op in (" sort(", " while(", "<=50"):  # tf.unique's sort and loop; a bounded dynamic dimension
        assert op not in hlo, f"the XLA update of {wrapper} contains {op.strip()!r}"


@pytest.mark.parametrize("wrapper", sorted(_wrappers()))
def test_repeated_sparse_rows_under_xla_update_like_dense_ones(wrapper):
    results = []
    for sparse in (True, False):
        table, kernel, indices, values = _embedding_problem()
        optimizer = _wrappers()[wrapper](keras.optimizers.Adam(1e-2))
        optimizer.build([table, kernel])

        @tf.function(jit_compile=True)
        def step():
            grad = tf.IndexedSlices(values, indices, tf.constant([50, 8]))
            optimizer.apply([grad if sparse else tf.convert_to_tensor(grad), tf.ones((8, 8))], [table, kernel])

        for _ in range(3):
            step()
        results.append(table.numpy())
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_xla_step_is_traced_once_while_the_callback_steers():
    model = tiny_classifier(seed=1)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3))
    compile_classifier(model, optimizer)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=x, y=y, y_pred=model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)

    for i, (x, y) in enumerate(classification_dataset(n=96)):
        step(x, y)
        # What RPPCallback does between steps: new lambda, then a frozen mask.
        optimizer.l1_strength = 1e-3 * (i + 1)
        if i == 3:
            optimizer.set_mask(optimizer.get_mask(), freeze=True)
    assert step.experimental_get_tracing_count() == 1


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("jit_compile", [True], ids=["xla"])  # XLA: the recipes' step; graph mode is covered elsewhere
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_keeps_masks_and_forms_rpp_zeros(policy, jit_compile):
    import tensorflow_model_optimization as tfmot

    model = tiny_classifier(seed=2)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), l1_strength=1e-2, reweight_every=2)
    compile_classifier(model, optimizer, jit_compile=jit_compile)
    if policy == "mixed_float16":
        # Keras wraps it for loss scaling; the wrapper must sit inside.
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is optimizer
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 12, frequency=2)
    history = model.fit(classification_dataset(n=224), epochs=1, verbose=0,
                        callbacks=[tf_rpp.RPPCallback(schedule)])
    assert np.all(np.isfinite(history.history["loss"]))
    assert optimizer.frozen
    assert optimizer.sparsity() == pytest.approx(0.5, abs=0.01)
    mask = optimizer.get_mask()
    model.fit(classification_dataset(n=64, seed=1), epochs=1, verbose=0)
    for key, variable in selection.match_keys(mask.keys, model).items():
        assert variable.dtype == "float32"
        assert np.all(variable.numpy()[~mask[key]] == 0.0), key


def test_loss_scale_optimizer_inside_the_wrapper_is_refused():
    inner = keras.optimizers.LossScaleOptimizer(keras.optimizers.AdamW(1e-3))
    with pytest.raises(ValueError, match="LossScaleOptimizer"):
        tf_rpp.MaskedOptimizer(inner)


@pytest.mark.parametrize("policy", ["mixed_float16"], indirect=True)
def test_loss_scaling_still_skips_non_finite_steps(policy):
    model = tiny_classifier(seed=4)
    weights = {selection.weight_key(v): v.numpy() for v in selection.select_weights(model)}
    mask = tf_rpp.SparsityMask.from_magnitudes(weights, 0.5)
    optimizer = tf_rpp.MaskedOptimizer(keras.optimizers.SGD(1e-2), mask)
    compile_classifier(model, optimizer)
    scaler = model.optimizer
    model.fit(classification_dataset(n=16, batch=16), epochs=1, verbose=0)  # builds everything
    before = [v.numpy() for v in model.trainable_variables]
    scale = float(scaler.dynamic_scale.numpy())
    grads = [tf.fill(v.shape, np.inf) for v in model.trainable_variables]
    scaler.apply(grads, model.trainable_variables)
    assert float(scaler.dynamic_scale.numpy()) == scale / 2  # the overflow was seen and the scale halved
    for a, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(a, v.numpy())
