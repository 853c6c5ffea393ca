"""SparsityMask: extract, harden, save/load, apply, summary."""

import json
import zipfile

import numpy as np
import pytest
from conftest import tiny_backbone
from conftest import tiny_classifier
from conftest import tiny_masked_lm

import tf_rpp
from tf_rpp import selection


def random_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=(8, 10)).astype("float32"), "b": rng.normal(size=(4, 3, 5)).astype("float32")}


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.8, 0.9, 0.99])
def test_from_magnitudes_global_prunes_exactly_the_smallest(sparsity):
    weights = random_weights()
    mask = tf_rpp.SparsityMask.from_magnitudes(weights, sparsity)
    everything = np.concatenate([np.abs(w).ravel() for w in weights.values()])
    kept = np.concatenate([mask[k].ravel() for k in weights])
    assert mask.num_pruned == round(sparsity * everything.size)
    if 0 < mask.num_pruned < everything.size:
        assert everything[~kept].max() <= everything[kept].min()


def test_from_magnitudes_per_layer_and_ties():
    weights = random_weights()
    weights["a"][:, :5] = 0.0  # 40 exact ties
    mask = tf_rpp.SparsityMask.from_magnitudes(weights, 0.25, scope="per_layer")
    for key, w in weights.items():
        assert (~mask[key]).sum() == round(0.25 * w.size)
    # The 20 pruned entries of `a` are all among the exact zeros.
    assert np.all(weights["a"][~mask["a"]] == 0)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_from_magnitudes_rejects_bad_targets(bad):
    with pytest.raises(ValueError, match=r"in \[0, 1\)"):
        tf_rpp.SparsityMask.from_magnitudes(random_weights(), bad)


def test_save_load_round_trip_keeps_masks_and_metadata(tmp_mask_path):
    mask = tf_rpp.SparsityMask.from_magnitudes(random_weights(), 0.6, source="test")
    mask.save(tmp_mask_path)
    loaded = tf_rpp.SparsityMask.load(tmp_mask_path)
    assert loaded == mask
    assert loaded.metadata["source"] == "test"
    assert loaded.metadata["sparsity"] == pytest.approx(mask.sparsity)
    with np.load(tmp_mask_path, allow_pickle=False) as data:  # no pickle needed to read it
        assert "__metadata__" in data.files


def test_truncated_and_tampered_files_are_rejected(tmp_path):
    mask = tf_rpp.SparsityMask.from_magnitudes(random_weights(), 0.5)
    good = tmp_path / "good.npz"
    mask.save(good)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        tf_rpp.SparsityMask.load(truncated)
    # Flip one mask entry but keep a valid .npz: the checksum catches it.
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["m0"] = arrays["m0"].copy()
    arrays["m0"][0, 0] = ~arrays["m0"][0, 0]
    tampered = tmp_path / "tampered.npz"
    np.savez_compressed(tampered, **arrays)
    with pytest.raises(ValueError, match="SHA-256"):
        tf_rpp.SparsityMask.load(tampered)
    # Alter a recorded shape.
    metadata = json.loads(arrays.pop("__metadata__").tobytes())
    arrays["m0"] = np.ones((2, 2), bool)
    arrays["__metadata__"] = np.frombuffer(json.dumps(metadata).encode(), np.uint8)
    np.savez_compressed(tampered, **arrays)
    with pytest.raises(ValueError, match="was altered"):
        tf_rpp.SparsityMask.load(tampered)
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a tf_rpp mask"):
        tf_rpp.SparsityMask.load(plain)
    assert zipfile.is_zipfile(good)


def test_mask_learned_on_masked_lm_applies_to_a_classifier():
    mlm = tiny_masked_lm(seed=1)
    mask = tf_rpp.SparsityMask.from_magnitudes(
        {selection.weight_key(v): v.numpy() for v in selection.select_weights(mlm)}, 0.7
    )
    mask.apply(mlm)
    extracted = tf_rpp.SparsityMask.from_model(mlm)
    assert extracted == mask
    classifier = tiny_classifier(seed=2)
    mask.apply(classifier)
    assert tf_rpp.SparsityMask.from_model(classifier) == mask
    assert mask.sparsity == pytest.approx(0.7, abs=1e-4)


def test_incompatible_models_get_errors_naming_the_weight():
    mask = tf_rpp.SparsityMask.from_model(tiny_backbone(hidden=16))
    with pytest.raises(ValueError, match=r"transformer_layer_0/self_attention_layer/query/kernel.*shape"):
        mask.apply(tiny_backbone(hidden=8))
    with pytest.raises(ValueError, match="has no weight 'transformer_layer_2/"):
        tf_rpp.SparsityMask.from_model(tiny_backbone(layers=3)).apply(tiny_backbone(layers=2))


def test_constructor_validation_and_summary():
    with pytest.raises(ValueError, match="boolean"):
        tf_rpp.SparsityMask({"a": np.ones((2, 2))})
    with pytest.raises(ValueError, match="at least one"):
        tf_rpp.SparsityMask({})
    mask = tf_rpp.SparsityMask({"x/kernel": np.array([[True, False], [False, False]])})
    table = mask.summary(print_fn=False)
    lines = table.splitlines()
    assert lines[0].split() == ["weight", "shape", "kept", "pruned", "sparsity"]
    assert lines[1].split() == ["x/kernel", "(2,", "2)", "1", "3", "75.00%"]
    assert lines[-1].split() == ["total", "1", "3", "75.00%"]
    assert mask.layer_sparsity() == {"x/kernel": 0.75}
