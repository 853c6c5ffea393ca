"""Which weights get pruned."""

import re

import pytest
from conftest import tiny_backbone
from conftest import tiny_classifier

from tf_rpp import selection


def keys(variables):
    return [selection.weight_key(v) for v in variables]


def test_bert_default_selects_six_kernels_per_encoder_layer():
    backbone = tiny_backbone(layers=3)
    chosen = keys(selection.select_weights(backbone))
    assert len(chosen) == 6 * 3
    for layer in range(3):
        for part in ("query", "key", "value", "attention_output"):
            assert f"transformer_layer_{layer}/self_attention_layer/{part}/kernel" in chosen
        assert f"transformer_layer_{layer}/feedforward_intermediate_dense/kernel" in chosen
        assert f"transformer_layer_{layer}/feedforward_output_dense/kernel" in chosen
    assert not any("embedding" in k or "pooled" in k for k in chosen)


def test_embeddings_are_opt_in():
    chosen = keys(selection.select_weights(tiny_backbone(), include_embeddings=True))
    assert {"token_embedding/embeddings", "position_embedding/embeddings", "segment_embedding/embeddings"} <= set(chosen)
    assert len(chosen) == 6 * 2 + 3


def test_keys_are_the_same_in_every_bert_task():
    backbone_keys = keys(selection.select_weights(tiny_backbone()))
    assert keys(selection.select_weights(tiny_classifier())) == backbone_keys


def test_regex_callable_and_list_selections():
    backbone = tiny_backbone()
    by_regex = keys(selection.select_weights(backbone, prune=r"transformer_layer_1/.*"))
    # Biases and LayerNorm parameters are skipped even when a pattern matches them.
    assert by_regex and all(k.startswith("transformer_layer_1/") and k.endswith("kernel") for k in by_regex)
    by_callable = keys(selection.select_weights(backbone, prune=lambda v: "query" in v.path))
    assert by_callable == [k for k in keys(backbone.weights) if "query/kernel" in k]
    listed = ["transformer_layer_0/feedforward_output_dense/kernel", "pooled_dense/kernel"]
    assert keys(selection.select_weights(backbone, prune=listed)) == ["transformer_layer_0/feedforward_output_dense/kernel", "pooled_dense/kernel"]


def test_biases_and_layernorm_are_never_pruned():
    backbone = tiny_backbone()
    everything = keys(selection.select_weights(backbone, prune=".*"))
    assert not any(re.search(r"(bias|gamma|beta)$", k) for k in everything)
    with pytest.raises(ValueError, match="never pruned"):
        selection.select_weights(backbone, prune=["transformer_layer_0/self_attention_layer/query/bias"])
    with pytest.raises(ValueError, match="never pruned"):
        selection.select_weights(backbone, prune=["embeddings_layer_norm/gamma"])


def test_clear_errors():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="No prunable weight matches") as error:
        selection.select_weights(backbone, prune="does_not_exist")
    # The message lists the model's prunable weights and shows a pattern to pass.
    assert "'transformer_layer_0/self_attention_layer/query/kernel'" in str(error.value)
    assert 'prune=r"' in str(error.value)
    with pytest.raises(ValueError, match="has no weight 'transformer_layer_9/"):
        selection.select_weights(backbone, prune=["transformer_layer_9/feedforward_output_dense/kernel"])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        selection.select_weights(backbone, prune="([")
    with pytest.raises(ValueError, match="must be None, 'encoder', 'kernels'"):
        selection.select_weights(backbone, prune=3)


def test_match_keys_accepts_a_unique_suffix_and_rejects_ambiguity():
    backbone = tiny_backbone()
    matched = selection.match_keys(["transformer_layer_0/self_attention_layer/query/kernel"], backbone)
    assert list(matched) == ["transformer_layer_0/self_attention_layer/query/kernel"]
    one_layer = tiny_backbone(layers=1)
    suffix = selection.match_keys(["self_attention_layer/query/kernel"], one_layer)
    assert selection.weight_key(suffix["self_attention_layer/query/kernel"]) == "transformer_layer_0/self_attention_layer/query/kernel"
    # Suffixes match at path boundaries only.
    with pytest.raises(ValueError, match="has no weight"):
        selection.match_keys(["0/self_attention_layer/query/kernel"], one_layer)
    with pytest.raises(ValueError, match="ambiguous"):
        selection.match_keys(["self_attention_layer/query/kernel"], backbone)
