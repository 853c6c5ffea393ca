"""Structured RPP: group math, GroupRPPOptimizer with RPPCallback, shrinking, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import tf_rpp
from tf_rpp.structured import groups
from tf_rpp import proximal
from tf_rpp.structured import shrink
from tiny import classification_dataset
from tiny import compile_classifier
from tiny import tiny_classifier


def _reference_group_prox(members, gamma, step):
    # Straight from the issue: w_g <- w_g * max(0, 1 - step * gamma_g / ||w_g||).
    g = np.moveaxis(members[0][0], members[0][1], 0).shape[0]
    norms = np.zeros(g)
    for w, axis in members:
        norms += (np.moveaxis(w, axis, 0).reshape(g, -1) ** 2).sum(1)
    norms = np.sqrt(norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        factors = np.where(norms > 0, np.maximum(0.0, 1 - step * gamma / norms), 0.0)
    out = []
    for w, axis in members:
        shape = [1] * w.ndim
        shape[axis] = g
        out.append(w * factors.reshape(shape))
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 4), st.floats(0.0, 3.0),
    st.integers(0, 2**31 - 1),
)
def test_group_prox_matches_the_formula(groups_count, width, step, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(3, groups_count, width)).astype("float32")
    o = rng.normal(size=(groups_count, width, 3)).astype("float32")
    gamma = rng.uniform(0.1, 2.0, groups_count).astype("float32")
    members = [(q, 1), (o, 0)]
    got = [np.asarray(t) for t in proximal.group_reweighted_prox(members, gamma, np.float32(step))]
    want = _reference_group_prox(members, gamma, step)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    # A group below its threshold is exactly zero in every member, and stays zero.
    norms = np.sqrt((q**2).sum((0, 2)) + (o**2).sum((1, 2)))
    dead = norms <= step * gamma
    assert np.all(got[0][:, dead, :] == 0.0) and np.all(got[1][dead] == 0.0)
    again = [np.asarray(t) for t in proximal.group_reweighted_prox([(got[0], 1), (got[1], 0)], gamma, 0.0)]
    assert np.all(again[0][:, dead, :] == 0.0)


def test_bert_groups_cover_every_head_and_neuron():
    model = tiny_classifier(hidden=16, layers=2)
    sets = groups.bert_groups(model)
    assert [(g.kind, g.layer, g.size) for g in sets] == [
        ("heads", "transformer_layer_0", 2), ("neurons", "transformer_layer_0", 32),
        ("heads", "transformer_layer_1", 2), ("neurons", "transformer_layer_1", 32),
    ]
    assert groups.bert_groups(model, kinds="heads")[0].kind == "heads"
    with pytest.raises(ValueError, match="subset of"):
        groups.bert_groups(model, kinds=("channels",))
    with pytest.raises(ValueError, match="No keras-hub BERT encoder layer"):
        groups.bert_groups(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


def test_structured_mask_ranks_groups_across_layers_and_keeps_one_per_layer():
    a = groups.GroupSet("neurons", "l0", (("a", 1),), 4)
    b = groups.GroupSet("neurons", "l1", (("b", 1),), 4)
    weights = {"a": np.array([[0.1, 0.2, 0.3, 0.4]]), "b": np.array([[5.0, 6.0, 7.0, 8.0]])}
    mask = groups.structured_mask(weights, [a, b], 0.5)
    # The 4 weakest groups are all in layer 0, but it keeps its strongest.
    assert mask["a"].tolist() == [[False, False, False, True]]
    assert mask["b"].tolist() == [[False, True, True, True]]
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        groups.structured_mask(weights, [a, b], 1.0)


def _group_pruned_classifier(target=0.5, steps=60, optimizer_class=tf_rpp.GroupRPPOptimizer, **options):
    model = tiny_classifier(hidden=16, layers=2)
    optimizer = optimizer_class(keras.optimizers.AdamW(1e-3), **options)
    compile_classifier(model, optimizer)
    callback = tf_rpp.RPPCallback(tfmot.sparsity.keras.PolynomialDecay(0.0, target, 0, steps, frequency=5))
    history = model.fit(classification_dataset(n=256).repeat(), steps_per_epoch=10, epochs=steps // 10 + 2,
                        callbacks=[callback], verbose=0)
    return model, optimizer, history


def test_group_rpp_removes_the_scheduled_fraction_of_heads_and_neurons():
    model, optimizer, history = _group_pruned_classifier(target=0.5)
    assert optimizer.frozen
    # Exactly the target per kind (4 heads, 64 neurons), as exact zeros.
    assert optimizer.removed_groups() == {"heads": 0.5, "neurons": 0.5}
    weights = optimizer.weights_by_key()
    for gs in optimizer.group_sets:
        kept = groups.kept_groups(weights, gs)
        mask = optimizer.get_mask()
        for key, axis in gs.members:
            dead = np.moveaxis(weights[key], axis, 0)[~kept]
            assert np.all(dead == 0.0)
            assert not np.moveaxis(mask[key], axis, 0)[~kept].any()
    # The proximal step itself removed groups before the hardening.
    assert max(history.history["neurons_removed"][:-2]) > 0
    assert "heads_strength" in history.history
    # Further training keeps them removed (the frozen mask is enforced).
    model.fit(classification_dataset(n=64), epochs=1, verbose=0)
    assert optimizer.removed_groups() == {"heads": 0.5, "neurons": 0.5}


def test_relative_targets_remove_fewer_heads_than_neurons_under_one_schedule():
    _, optimizer, _ = _group_pruned_classifier(target=0.5, relative_targets={"heads": 0.5})
    # 4 heads and 64 neurons: a quarter of the heads, half of the neurons, as exact zeros.
    assert optimizer.removed_groups() == {"heads": 0.25, "neurons": 0.5}
    # Each kind is steered to its own target.
    norms, sizes = optimizer.group_norms(), {gs.kind: gs.weights_per_group for gs in optimizer.group_sets}
    optimizer.steer(tf_rpp.controller.Steering(step=0, target=0.3, next_target=0.6, learning_rate_mass=1e-2))
    for kind, target in (("heads", 0.3), ("neurons", 0.6)):
        want = tf_rpp.controller.planned_group_strength(
            norms[kind], target, 1e-2, optimizer.group_scale(kind), optimizer.group_epsilon, sizes[kind])
        assert optimizer.group_strength(kind) == pytest.approx(want, rel=1e-6)
    clone = tf_rpp.GroupRPPOptimizer.from_config(optimizer.get_config())
    assert clone.relative_targets == {"heads": 0.5} and clone.kind_targets(0.8) == {"heads": 0.4, "neurons": 0.8}
    with pytest.raises(ValueError, match=r"makes heads's 1\.2"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(), relative_targets={"heads": 2.0}).kind_targets(0.6)
    with pytest.raises(ValueError, match="which is not pruned"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(), kinds=["neurons"], relative_targets={"heads": 0.5})
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(), relative_targets={"neurons": 0.0})


def _median_kept_head_norm(optimizer):
    norms = optimizer.group_norms()["heads"]
    return float(np.median(norms[norms > 0]))


def test_group_magnitude_removes_the_weakest_groups_and_does_not_shrink_the_rest():
    model = tiny_classifier(hidden=16, layers=2)
    optimizer = tf_rpp.GroupMagnitudeOptimizer(keras.optimizers.AdamW(1e-3), relative_targets={"heads": 0.5})
    optimizer.build(model.trainable_variables)
    weights = optimizer.weights_by_key()
    optimizer.steer(tf_rpp.controller.Steering(step=0, target=0.5))
    want = groups.structured_mask(weights, optimizer.group_sets, {"heads": 0.25, "neurons": 0.5})
    assert all(np.array_equal(optimizer.get_mask()[k], want[k]) for k in want.keys)
    clone = tf_rpp.GroupMagnitudeOptimizer.from_config(optimizer.get_config())
    assert clone.relative_targets == {"heads": 0.5} and clone.kinds == ("heads", "neurons")

    _, magnitude, _ = _group_pruned_classifier(target=0.5, optimizer_class=tf_rpp.GroupMagnitudeOptimizer)
    _, rpp, _ = _group_pruned_classifier(target=0.5)
    assert magnitude.removed_groups() == rpp.removed_groups() == {"heads": 0.5, "neurons": 0.5}
    # Without proximal steps the kept groups keep their size; RPP's shrink on the way.
    kept = {name: _median_kept_head_norm(opt) for name, opt in (("magnitude", magnitude), ("rpp", rpp))}
    assert kept["magnitude"] > 1.5 * kept["rpp"]


def test_group_and_unstructured_modes_combine():
    _, optimizer, _ = _group_pruned_classifier(target=0.5, l1_strength=0.003)
    removed = optimizer.removed_groups()
    assert removed["heads"] >= 0.5 and removed["neurons"] >= 0.5
    # Unstructured zeros inside the kept groups, on top of the removed groups.
    weights = optimizer.weights_by_key()
    extra = 0
    for gs in optimizer.group_sets:
        kept = groups.kept_groups(weights, gs)
        for key, axis in gs.members:
            extra += int(np.sum(np.moveaxis(weights[key], axis, 0)[kept] == 0.0))
    assert extra > 0
    assert optimizer.get_mask().sparsity > 0.5


def test_shrunk_classifier_computes_the_same_logits_and_round_trips(tmp_path):
    model, _, _ = _group_pruned_classifier(target=0.5)
    small = shrink.shrink_classifier(model)
    counts = shrink.parameter_counts(small.backbone)
    assert counts["heads"] == [1, 1] or sum(counts["heads"]) == 2
    assert sum(counts["intermediate"]) == 32
    assert counts["total_parameters"] < model.backbone.count_params()
    x = next(iter(classification_dataset(n=32, seed=3)))[0]
    want = np.asarray(model.predict(x, verbose=0))
    got = np.asarray(small.predict(x, verbose=0))
    assert np.max(np.abs(got - want)) <= 1e-5
    path = str(tmp_path / "small.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.backbone, shrink.ShrunkBertBackbone)
    assert np.max(np.abs(np.asarray(loaded.predict(x, verbose=0)) - want)) <= 1e-5
    # The shrunk model exports to TFLite and gives the same logits there.
    from tf_rpp import export
    from tf_rpp_lite import load_interpreter

    tflite_path = str(tmp_path / "small.tflite")
    export.export_tflite(small, tflite_path, sequence_length=x["token_ids"].shape[1], batch_size=1,
                         metadata=False, scores="logits")
    interpreter, _ = load_interpreter(tflite_path)
    runner = interpreter.get_signature_runner()
    sample = {k: np.asarray(v[:1], "int32") for k, v in x.items()}
    out = list(runner(**sample).values())[0]
    assert np.max(np.abs(out - want[:1])) <= 1e-4


def test_group_optimizer_config_and_bad_arguments():
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), group_strength=3.0, kinds=["neurons"])
    config = optimizer.get_config()
    clone = tf_rpp.GroupRPPOptimizer.from_config(config)
    assert clone.kinds == ("neurons",) and clone.initial_group_strength == 3.0
    with pytest.raises(ValueError, match="`group_strength` must be a finite number >= 0"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), group_strength=-1.0)
    with pytest.raises(ValueError, match="`group_epsilon` must be a finite number > 0"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), group_epsilon=0.0)
    with pytest.raises(ValueError, match="subset of"):
        tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), kinds=["layers"])
    with pytest.raises(ValueError, match="one entry per layer"):
        shrink.ShrunkBertBackbone(vocabulary_size=10, hidden_dim=8, num_heads=[1, 1], intermediate_dims=[4],
                                  key_dim=4, max_sequence_length=8)


def test_group_optimizer_state_survives_a_saved_model(tmp_path):
    model, optimizer, _ = _group_pruned_classifier(target=0.5)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = tf_rpp.load_model(path)
    assert isinstance(loaded.optimizer, tf_rpp.GroupRPPOptimizer)
    assert loaded.optimizer.frozen
    assert loaded.optimizer.get_mask() == optimizer.get_mask()
    np.testing.assert_array_equal(
        loaded.optimizer.group_strength_variable.numpy(), optimizer.group_strength_variable.numpy()
    )


def test_group_rpp_under_mirrored_strategy_matches_one_device(mirrored):
    def run(strategy):
        with strategy.scope():
            model = tiny_classifier(hidden=16, layers=2)
            compile_classifier(model, tf_rpp.GroupRPPOptimizer(keras.optimizers.SGD(0.05), group_strength=50.0))
        model.fit(classification_dataset(n=64), epochs=2, verbose=0, shuffle=False)
        return model.optimizer.weights_by_key()

    single = run(tf.distribute.get_strategy())
    multi = run(mirrored)
    for key in single:
        np.testing.assert_allclose(multi[key], single[key], atol=1e-5)
        np.testing.assert_array_equal(multi[key] == 0, single[key] == 0)


def test_group_scale_is_read_when_built_and_the_xla_step_sorts_nothing():
    # A sort inside the XLA-compiled step made the structured MiniLM step 4x
    # slower on CPU; the median that needed it is now read once, when built.
    model = tiny_classifier(hidden=16, layers=2)
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3))
    variables = model.trainable_variables
    optimizer.build(variables)
    weights = optimizer.weights_by_key()
    for kind in ("heads", "neurons"):
        norms = np.sort(np.concatenate([groups.group_norms(weights, gs) for gs in optimizer.group_sets
                                        if gs.kind == kind]))
        assert optimizer.group_scale(kind) == pytest.approx(norms[(norms.size - 1) // 2] ** 2, rel=1e-5)
    grads = [tf.ones_like(v) * 1e-3 for v in variables]
    step = tf.function(lambda: optimizer.apply(grads, variables), jit_compile=True)
    hlo = step.experimental_get_compiler_ir()(stage="hlo")
    assert " sort(" not in hlo and "multiply(" in hlo


def test_whole_blocks_are_a_group_kind_that_shrinks_to_a_residual_bias(tmp_path):
    # 4 layers: half of the attention blocks and half of the feed-forward blocks go, chosen by RPP
    # across layers, alongside a quarter of the heads and neurons of what is left.
    model = tiny_classifier(hidden=16, layers=4)
    kinds = ("heads", "neurons", "attention", "feedforward")
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), kinds=kinds,
                                         relative_targets={"heads": 0.5, "neurons": 0.5})
    compile_classifier(model, optimizer)
    callback = tf_rpp.RPPCallback(tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 60, frequency=5))
    history = model.fit(classification_dataset(n=256).repeat(), steps_per_epoch=10, epochs=8,
                        callbacks=[callback], verbose=0)
    removed = optimizer.removed_groups()
    assert removed["attention"] == 0.5 and removed["feedforward"] == 0.5
    # A removed block's heads and neurons are removed too (nested groups).
    assert removed["heads"] >= 0.5 and removed["neurons"] >= 0.5
    assert "attention_removed" in history.history and "feedforward_strength" in history.history
    sets = [gs for gs in optimizer.group_sets if gs.kind == "attention"]
    assert [gs.size for gs in sets] == [1] * 4 and sets[0].weights_per_group == 4 * 16 * 16

    small = shrink.shrink_classifier(model)
    counts = shrink.parameter_counts(small.backbone)
    assert counts["heads"].count(0) == 2 and counts["intermediate"].count(0) == 2
    x = next(iter(classification_dataset(n=32, seed=3)))[0]
    want = np.asarray(model.predict(x, verbose=0))
    assert np.max(np.abs(np.asarray(small.predict(x, verbose=0)) - want)) <= 1e-5
    path = str(tmp_path / "blocks.keras")
    small.save(path)
    loaded = keras.models.load_model(path)
    assert shrink.parameter_counts(loaded.backbone)["heads"] == counts["heads"]
    assert np.max(np.abs(np.asarray(loaded.predict(x, verbose=0)) - want)) <= 1e-5
    # Shrinking a shrunk model again keeps it as it is.
    again = shrink.shrink_classifier(loaded)
    assert shrink.parameter_counts(again.backbone) == counts
    from tf_rpp import export
    from tf_rpp_lite import load_interpreter

    tflite_path = str(tmp_path / "blocks.tflite")
    export.export_tflite(small, tflite_path, sequence_length=x["token_ids"].shape[1], batch_size=1,
                         metadata=False, scores="logits")
    runner = load_interpreter(tflite_path)[0].get_signature_runner()
    out = list(runner(**{k: np.asarray(v[:1], "int32") for k, v in x.items()}).values())[0]
    assert np.max(np.abs(out - want[:1])) <= 1e-4


def test_block_groups_take_whole_weights_and_are_ranked_with_no_per_layer_floor():
    weights = {"a": np.full((2, 3), 0.1), "b": np.full((2, 3), 5.0), "c": np.full((3, 2), 1.0)}
    sets = [groups.GroupSet("feedforward", "l0", (("a", None),), 1),
            groups.GroupSet("feedforward", "l1", (("b", None), ("c", None)), 1)]
    np.testing.assert_allclose(groups.group_norms(weights, sets[1]), [np.sqrt(6 * 25 + 6)])
    mask = groups.structured_mask(weights, sets, 0.5)
    assert not mask["a"].any() and mask["b"].all() and mask["c"].all()
    members = [(weights["b"].astype("float32"), None), (weights["c"].astype("float32"), None)]
    norms = np.asarray(proximal.group_norms(members))
    assert norms.shape == (1,) and norms[0] == pytest.approx(np.sqrt(156), rel=1e-6)
    shrunk = proximal.group_reweighted_prox(members, np.ones(1, "float32"), np.float32(norms[0] / 2))
    np.testing.assert_allclose(np.asarray(shrunk[0]), weights["b"] / 2, rtol=1e-6)
    assert not np.asarray(proximal.group_reweighted_prox(members, np.ones(1, "float32"), 100.0)[1]).any()
