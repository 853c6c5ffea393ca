"""Every keras-hub text encoder, and plain Keras models: prune, hold the mask, save, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from tiny import ENCODERS
from tiny import token_batches
from tiny import tiny_encoder
from tiny import tiny_encoder_classifier

import tf_rpp
from tf_rpp import export
from tf_rpp import selection
from tf_rpp.structured import shrink
from tf_rpp_lite.runner import load_interpreter

TARGET = 0.7


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.EinsumDense("ab,bc->ac", (16,), bias_axes="c", activation="relu"),
                             keras.layers.Dense(2)], name="mlp")


def _cnn():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((10, 10, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                             keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.Flatten(),
                             keras.layers.Dense(2)], name="cnn")


def _array_batches(model, n=64, batch=16):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *model.input_shape[1:])).astype("float32")
    y = (x.reshape(n, -1)[:, 0] > 0).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def _model_and_data(name):
    if name == "mlp":
        model = _mlp()
        return model, _array_batches(model)
    if name == "cnn":
        model = _cnn()
        return model, _array_batches(model)
    model = tiny_encoder_classifier(name)
    return model, token_batches(model)


@pytest.mark.parametrize("name", ENCODERS)
def test_default_selection_is_the_encoder_kernels(name):
    keys = [selection.weight_key(v) for v in selection.select_weights(tiny_encoder(name))]
    # ALBERT's two layers share one group of kernels: six variables, pruned once.
    assert len(keys) == (6 if name == "albert" else 12), keys
    assert all(k.endswith("/kernel") for k in keys)
    assert not any("embedding" in k or "pooled" in k for k in keys)


def test_a_plain_keras_model_gets_every_layer_kernel():
    keys = [selection.weight_key(v) for v in selection.select_weights(_cnn())]
    assert keys == ["cnn/conv2d/kernel", "cnn/conv2d_1/kernel", "cnn/dense/kernel"] or len(keys) == 3
    assert [k.rsplit("/", 2)[-2].rstrip("_0123456789") for k in keys] == ["conv2d", "conv2d", "dense"]


@pytest.mark.parametrize("name", ENCODERS + ("mlp", "cnn"))
def test_prune_hold_save_and_export(name, tmp_path):
    model, batches = _model_and_data(name)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=5)
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Pruning over 16 steps, then 16 steps of fine-tuning with the mask fixed.
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, TARGET, 0, 16, frequency=4)
    model.fit(batches.repeat(), steps_per_epoch=32, epochs=1, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    assert optimizer.frozen
    mask = optimizer.get_mask()
    assert abs(mask.sparsity - TARGET) < 0.01, mask.sparsity
    assert optimizer.iterations.numpy() == 32
    for key, variable in selection.match_keys(mask.keys, model).items():
        assert not np.any(variable.numpy()[~mask[key]]), key

    x = next(iter(batches))[0]
    expected = model.predict(x, verbose=0)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), expected, atol=1e-5)

    tflite = tmp_path / f"{name}.tflite"
    export.export_tflite(model, tflite, sequence_length=16, metadata=False, scores="logits")
    interpreter, _ = load_interpreter(str(tflite))
    runner = interpreter.get_signature_runner()
    feeds = {k: v[:1].numpy() for k, v in x.items()} if isinstance(x, dict) else None
    if feeds is None:
        (input_name,) = runner.get_input_details()
        feeds = {input_name: x[:1].numpy()}
    (output,) = runner(**feeds).values()
    np.testing.assert_allclose(output, expected[:1], atol=1e-4)


SHRINKABLE = ("bert", "distil_bert", "roberta", "xlm_roberta", "electra")


@pytest.mark.parametrize("name", SHRINKABLE)
def test_structured_pruning_and_shrinking(name, tmp_path):
    model = tiny_encoder_classifier(name)
    batches = token_batches(model)
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3))
    model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 16, frequency=4)
    model.fit(batches.repeat(), steps_per_epoch=24, epochs=1, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    assert optimizer.removed_groups() == {"heads": 0.5, "neurons": 0.5}

    small = shrink.shrink_classifier(model)
    assert type(small) is type(model)
    counts = shrink.parameter_counts(small.backbone)
    assert sum(counts["heads"]) == 2 and sum(counts["intermediate"]) == 32
    assert counts["total_parameters"] < model.backbone.count_params()
    x = next(iter(batches))[0]
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(small.predict(x, verbose=0), want, atol=1e-5)
    path = tmp_path / "small.keras"
    small.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), want, atol=1e-5)


@pytest.mark.parametrize("name", ("albert", "deberta_v3"))
def test_encoders_that_cannot_shrink_say_why(name):
    model = tiny_encoder_classifier(name)
    expected = "groups of shared layers" if name == "albert" else "DisentangledAttentionEncoder"
    with pytest.raises(ValueError, match=expected):
        shrink.shrink_classifier(model)


@pytest.mark.parametrize("name", ENCODERS)
def test_span_head_on_every_encoder(name, tmp_path):
    from tf_rpp import question_answering

    model = question_answering.SpanClassifier(tiny_encoder(name))
    x = next(iter(token_batches(model)))[0]
    logits = model.predict(x, verbose=0)
    assert logits.shape == (16, 2, 16)
    # The span head prunes like the encoder: the default selection skips the head.
    assert not any("span" in selection.weight_key(v) for v in selection.select_weights(model))
    path = tmp_path / "qa.keras"
    model.save(path)
    np.testing.assert_allclose(keras.models.load_model(path).predict(x, verbose=0), logits, atol=1e-5)
