"""tf_rpp.quantization: int8 rounding while training only, ranges tracked, layers restored."""

import keras
import numpy as np
import pytest
from tiny import classification_dataset
from tiny import compile_classifier
from tiny import tiny_classifier

from tf_rpp import quantization


def test_training_sees_int8_levels_and_inference_is_untouched():
    model = tiny_classifier(seed=0)
    x, _ = next(iter(classification_dataset(n=16, batch=16)))
    before = model(x, training=False)
    with quantization.simulate_int8(model) as layers:
        names = {layer.name for layer in layers}
        assert {"logits", "pooled_dense"} <= names and len(layers) == 2 + 2 * 6  # 6 per encoder layer
        np.testing.assert_array_equal(model(x, training=False), before)
        trained = model(x, training=True)
        # The logits layer's output is rounded: at most 256 distinct values, on a grid.
        assert len(np.unique(np.asarray(trained))) <= 256
        assert not np.allclose(trained, before, atol=1e-6)
        logits = next(layer for layer in layers if layer.name == "logits")
        tracker = logits.call.__kwdefaults__["_outputs"]
        lo, hi = float(tracker.minimum.numpy()), float(tracker.maximum.numpy())
        assert lo <= float(np.min(before)) + 0.5 and hi >= float(np.max(before)) - 0.5 and lo <= 0.0 <= hi
    assert all("call" not in vars(layer) for layer in layers)
    np.testing.assert_allclose(model(x, training=True), before, atol=1e-5)  # dropout is 0 in the tiny model


def test_fit_inside_the_block_trains_and_leaves_a_plain_model(tmp_path):
    model = compile_classifier(tiny_classifier(seed=1), keras.optimizers.Adam(3e-3))
    data = classification_dataset(n=128, batch=16)
    with quantization.simulate_int8(model):
        history = model.fit(data, epochs=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.train_function is None
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    x, _ = next(iter(data))
    np.testing.assert_allclose(restored(x), model(x), atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="decay"):
        with quantization.simulate_int8(tiny_classifier(), decay=1.0):
            pass
    with pytest.raises(ValueError, match="no Dense"):
        with quantization.simulate_int8(keras.Sequential([keras.Input((3,)), keras.layers.ReLU()])):
            pass
