"""tf_rpp.viz: the figures show the mask they are given, and bad input is refused."""

import numpy as np
import pytest
from tiny import tiny_backbone

import tf_rpp
from tf_rpp import viz

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def mask():
    rng = np.random.default_rng(0)
    return tf_rpp.SparsityMask({
        "transformer_layer_0/self_attention_layer/query/kernel": rng.random((16, 2, 8)) > 0.7,
        "transformer_layer_0/self_attention_layer/attention_output/kernel": rng.random((2, 8, 16)) > 0.5,
        "transformer_layer_0/feedforward_intermediate_dense/kernel": rng.random((16, 32)) > 0.2,
    })


def test_mask_pattern_image_is_the_mask(mask, tmp_path):
    path = tmp_path / "patterns.png"
    fig = viz.plot_mask_pattern(mask, ["query/kernel", "attention_output/kernel"], path)
    assert path.read_bytes().startswith(PNG)
    query = fig.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(query), mask["transformer_layer_0/self_attention_layer/query/kernel"]
                                  .reshape(16, 16))
    assert fig.axes[1].images[0].get_array().shape == (16, 16)  # (heads*head_dim, hidden)
    expected = 1 - mask["transformer_layer_0/self_attention_layer/query/kernel"].mean()
    assert fig.axes[0].get_title().endswith(f"{expected:.0%} pruned")
    with pytest.raises(ValueError, match="matches 0 weights"):
        viz.plot_mask_pattern(mask, ["value/kernel"])
    with pytest.raises(ValueError, match="at least one key"):
        viz.plot_mask_pattern(mask, [])
    with pytest.raises(ValueError, match="rank-4"):
        viz.matrix_view(np.ones((2, 2, 2, 2), bool))


def test_layer_sparsity_bars_match_the_mask(mask, tmp_path):
    fig = viz.plot_layer_sparsity(mask, tmp_path / "layers.png")
    widths = sorted(round(p.get_width(), 6) for p in fig.axes[0].patches)
    assert widths == sorted(round(v, 6) for v in mask.layer_sparsity().values())
    assert (tmp_path / "layers.png").read_bytes().startswith(PNG)


def test_sparsity_sweep_plot_draws_one_line_per_method(tmp_path):
    rows = [{"method": "dense", "sparsity": 0.0, "acc": 0.85},
            {"method": "rpp", "sparsity": 0.5, "acc": 0.83}, {"method": "rpp", "sparsity": 0.8, "acc": 0.8},
            {"method": "nip", "sparsity": 0.5, "acc": 0.8}, {"method": "nip", "sparsity": 0.8, "acc": 0.7}]
    fig = viz.plot_sparsity_sweep(rows, {"acc": "accuracy"}, tmp_path / "sweep.png")
    lines = {line.get_label(): line.get_ydata().tolist() for line in fig.axes[0].lines
             if not line.get_label().startswith("_")}
    assert lines == {"NIP (magnitude)": [0.85, 0.8, 0.7], "RPP": [0.85, 0.83, 0.8]}


def test_word_tsne_on_a_real_tokenizer_and_backbone(tmp_path):
    import keras_hub

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(59)]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    words = vocabulary[5:]
    vectors = viz.word_representations(tiny_backbone(), tokenizer, words, batch_size=16)
    assert vectors.shape == (59, 16) and np.all(np.isfinite(vectors))
    fig = viz.plot_embedding_tsne({"dense": vectors, "pruned": vectors * 0.5}, words, "w3", neighbors=20,
                                  path=tmp_path / "tsne.png")
    assert len(fig.axes) == 2 and (tmp_path / "tsne.png").read_bytes().startswith(PNG)
    shown = {t.get_text() for t in fig.axes[0].texts}
    assert "w3" in shown and len(shown) == 21
    with pytest.raises(ValueError, match="is not among"):
        viz.plot_embedding_tsne({"dense": vectors}, words, "nope")


def test_frontier_plot_places_each_row_and_names_budgets_only_when_they_differ(tmp_path):
    def row(cell, steps, ms, mb, acc):
        return {"task": "rt_polarity", "cell": cell, "steps": steps, "kind": "down",
                "accuracy": {"mean": acc, "std": 0.01},
                "tflite": {"int8": {"latency_ms_1_thread": ms, "bytes": mb * 1e6}}}

    rows = [row("dense", 300, 20.0, 23.0, 0.86), row("structured_50_rewind", 300, 10.0, 18.0, 0.85),
            {"task": "rt_polarity", "cell": "rpp_up_80", "steps": 300, "accuracy": {"mean": 0.8, "std": 0.0}}]
    fig = viz.plot_frontier(rows, tmp_path / "one.png")
    assert (tmp_path / "one.png").read_bytes().startswith(PNG)
    latency, size = fig.axes
    assert sorted(t.get_text() for t in latency.texts) == ["dense", "structured_50_rewind"]  # no tflite: no point
    assert sorted(t.xy for t in size.texts) == [(18.0, 0.85), (23.0, 0.86)]
    assert latency.get_xlabel() == "batch-1 latency, 1 thread, int8 (ms)"  # not a point's name
    assert size.get_xlabel() == ".tflite size, int8 (MB)"
    fig = viz.plot_frontier(rows[:2] + [row("structured_50_rewind", 600, 10.5, 18.0, 0.87)])
    assert sorted(t.get_text() for t in fig.axes[0].texts) == [
        "dense (300 steps)", "structured_50_rewind (300 steps)", "structured_50_rewind (600 steps)"]
