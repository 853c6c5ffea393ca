"""Pictures of pruning: sparsity sweeps, mask patterns, per-layer bars, embedding t-SNE,
accuracy against latency and speed-up.

Each function draws one matplotlib figure, writes it to `path` when given
(PNG, written atomically) and returns the figure. Nothing here trains or
changes a model. The figures follow the paper's: Figure 2 (accuracy against
sparsity, one line per method), Figure 3 (the pattern of query/key masks),
Figure 4 (t-SNE of word representations around a word, dense vs pruned).

    from tf_rpp import viz
    viz.plot_layer_sparsity(tf_rpp.SparsityMask.load("mask.npz"), "layers.png")
"""

import io
import os

import numpy as np

from tf_rpp._files import atomic_write
from tf_rpp._optional import require


def _pyplot():
    # A headless backend: recipes run on servers and in CI without a display.
    matplotlib = require("matplotlib", "figures")
    if os.environ.get("MPLBACKEND") is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight")
        atomic_write(path, buffer.getvalue())
    return fig


def matrix_view(mask_array):
    """A 2-D view of a kernel mask: keras-hub's rank-3 attention kernels flattened.

    Query/key/value kernels are `(hidden, heads, head_dim)`: the columns become
    `heads * head_dim`, so each head is a band of columns, as in the paper's
    Figure 3. The output kernel `(heads, head_dim, hidden)` becomes rows.

    >>> import numpy as np
    >>> matrix_view(np.ones((384, 12, 32), bool)).shape
    (384, 384)
    """
    array = np.asarray(mask_array)
    if array.ndim == 2:
        return array
    if array.ndim == 3 and array.shape[0] > array.shape[-1]:
        return array.reshape(array.shape[0], -1)
    if array.ndim == 3:
        return array.reshape(-1, array.shape[-1])
    raise ValueError(f"Cannot draw a rank-{array.ndim} mask as a matrix; expected rank 2 or 3.")


def plot_mask_pattern(mask, keys, path=None, title=None):
    """Kept (black) and pruned (white) weights of chosen kernels, side by side.

    Args:
        mask: a `tf_rpp.SparsityMask`.
        keys: weight keys (or unique suffixes) to draw, e.g.
            `["transformer_layer_1/self_attention_layer/query/kernel"]`.
        path: optional PNG path.

    Example:

    >>> import numpy as np, tf_rpp
    >>> m = tf_rpp.SparsityMask({"q/kernel": np.random.rand(8, 2, 4) > 0.5})
    >>> fig = plot_mask_pattern(m, ["q/kernel"])
    """
    plt = _pyplot()
    keys = list(keys)
    if not keys:
        raise ValueError("plot_mask_pattern needs at least one key.")
    resolved = [_resolve_key(mask, key) for key in keys]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], resolved):
        view = matrix_view(mask[key])
        ax.imshow(view, cmap="gray_r", interpolation="nearest", aspect="auto", vmin=0, vmax=1)
        short = key.replace("transformer_layer_", "layer ").replace("/self_attention_layer/", " ").replace("/kernel", "")
        ax.set_title(f"{short}\n{1 - view.mean():.0%} pruned", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10, y=1.06)
    return _finish(fig, path)


def _resolve_key(mask, key):
    if key in mask:
        return key
    found = [k for k in mask.keys if k.endswith("/" + key.lstrip("/"))]
    if len(found) != 1:
        raise ValueError(f"{key!r} matches {len(found)} weights of the mask; use a full key such as "
                         f"{mask.keys[0]!r}.")
    return found[0]


def plot_layer_sparsity(mask, path=None, title=None):
    """A horizontal bar per pruned weight: its sparsity, grouped by layer.

    >>> import numpy as np, tf_rpp
    >>> m = tf_rpp.SparsityMask({"a/kernel": np.eye(4, dtype=bool), "b/kernel": np.ones((4, 4), bool)})
    >>> fig = plot_layer_sparsity(m)
    """
    plt = _pyplot()
    items = sorted(mask.layer_sparsity().items())
    names = [k.replace("transformer_layer_", "L").replace("/kernel", "") for k, _ in items]
    values = [v for _, v in items]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(items) + 1.2))
    ax.barh(range(len(items)), values, color="#3b75af")
    ax.set_yticks(range(len(items)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.axvline(mask.sparsity, color="k", linestyle="--", linewidth=1, label=f"overall {mask.sparsity:.1%}")
    ax.set_xlabel("sparsity (fraction of weights pruned)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Per-weight sparsity", fontsize=10)
    return _finish(fig, path)


def plot_sparsity_sweep(rows, metrics, path=None, title=None, dense_method="dense"):
    """Metric against sparsity, one line per method (the paper's Figure 2).

    Args:
        rows: dicts with keys `method`, `sparsity` and each metric name.
        metrics: a dict from metric name (a key of the rows) to a panel title.
        dense_method: rows with this method are drawn as a horizontal reference.

    Example:

    >>> rows = [{"method": "rpp", "sparsity": 0.5, "acc": 0.8},
    ...         {"method": "nip", "sparsity": 0.5, "acc": 0.7},
    ...         {"method": "dense", "sparsity": 0.0, "acc": 0.85}]
    >>> fig = plot_sparsity_sweep(rows, {"acc": "accuracy"})
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    methods = sorted({r["method"] for r in rows if r["method"] != dense_method})
    styles = {"rpp": ("RPP", "o-", "#c0392b"), "nip": ("NIP (magnitude)", "s--", "#2c7fb8")}
    for ax, (metric, label) in zip(axes[0], metrics.items()):
        dense = [r[metric] for r in rows if r["method"] == dense_method and r.get(metric) is not None]
        for method in methods:
            points = sorted((r["sparsity"], r[metric]) for r in rows
                            if r["method"] == method and r.get(metric) is not None)
            if dense:  # every method starts from the same dense point
                points = [(0.0, dense[0])] + points
            name, style, color = styles.get(method, (method, "^-", None))
            ax.plot([p[0] for p in points], [p[1] for p in points], style, color=color, label=name)
        for value in dense:
            ax.axhline(value, color="gray", linewidth=0.8, linestyle=":")
        ax.set_xlabel("encoder-kernel sparsity")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.06)
    return _finish(fig, path)


def plot_speed_accuracy(rows, path=None, title=None):
    """Accuracy against TFLite latency, one marker per model, one panel per variant.

    Args:
        rows: dicts with keys `model`, `variant`, `latency_ms_1_thread` and
            `accuracy` (what `bench/structured_speed.py` measures).

    Example:

    >>> rows = [{"model": "dense", "variant": "float32", "latency_ms_1_thread": 17.0, "accuracy": 0.84},
    ...         {"model": "structured 50%", "variant": "float32", "latency_ms_1_thread": 8.0, "accuracy": 0.82}]
    >>> fig = plot_speed_accuracy(rows)
    """
    plt = _pyplot()
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, len(variants), figsize=(4.6 * len(variants), 3.6), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        points = [r for r in rows if r["variant"] == variant]
        structured = sorted((r for r in points if r["model"].startswith("structured")),
                            key=lambda r: r["latency_ms_1_thread"])
        if structured:
            ax.plot([r["latency_ms_1_thread"] for r in structured], [r["accuracy"] for r in structured],
                    "o-", color="#c0392b", label="structured RPP, shrunk")
        for r in points:
            if r["model"].startswith("structured"):
                ax.annotate(r["model"].split()[-1], (r["latency_ms_1_thread"], r["accuracy"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=7)
                continue
            marker, color = ("s", "#555555") if r["model"] == "dense" else ("^", "#2c7fb8")
            ax.plot([r["latency_ms_1_thread"]], [r["accuracy"]], marker, color=color, label=r["model"])
        ax.set_xlabel("batch-1 latency, 128 tokens, 1 thread (ms)")
        ax.set_ylabel("dev accuracy (.tflite)")
        ax.set_title(variant, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10, y=1.04)
    return _finish(fig, path)


def plot_frontier(rows, path=None, variant="int8", title=None):
    """Accuracy (seed mean +- std) against `.tflite` latency and file size, one point per method.

    Args:
        rows: dicts as `bench/frontier.py` writes: `task`, `cell`, `accuracy`
            (`mean`, `std`) and `tflite[variant]` (`latency_ms_1_thread`,
            `bytes`); rows without `tflite` are skipped. With rows of several
            fine-tuning budgets (`steps`), each label names its budget.
        variant: `"int8"` (dynamic range) or `"float32"`.

    Example:

    >>> rows = [{"task": "rt_polarity", "cell": "dense", "accuracy": {"mean": 0.87, "std": 0.004},
    ...          "tflite": {"int8": {"latency_ms_1_thread": 6.8, "bytes": 23e6}}},
    ...         {"task": "rt_polarity", "cell": "structured_50", "accuracy": {"mean": 0.85, "std": 0.01},
    ...          "tflite": {"int8": {"latency_ms_1_thread": 3.5, "bytes": 17e6}}}]
    >>> fig = plot_frontier(rows)
    """
    plt = _pyplot()
    points = [r for r in rows if variant in r.get("tflite", {})]
    tasks = list(dict.fromkeys(r["task"] for r in points))
    several_budgets = len({r.get("steps") for r in points}) > 1  # then each label names its budget
    fig, axes = plt.subplots(len(tasks) or 1, 2, figsize=(10, 3.8 * max(1, len(tasks))), squeeze=False)
    styles = {"dense": ("s", "#555555"), "down": ("^", "#2c7fb8"), "up": ("v", "#7b3294"), "structured": ("o", "#c0392b")}
    for row_axes, task in zip(axes, tasks):
        for ax, key, label in ((row_axes[0], "latency_ms_1_thread", f"batch-1 latency, 1 thread, {variant} (ms)"),
                               (row_axes[1], "bytes", f".tflite size, {variant} (MB)")):
            for r in (p for p in points if p["task"] == task):
                kind = "structured" if r["cell"].startswith("structured") else r.get("kind", "down")
                marker, color = styles.get(kind, ("o", "#333333"))
                x = r["tflite"][variant][key] / (1e6 if key == "bytes" else 1.0)
                ax.errorbar([x], [r["accuracy"]["mean"]], yerr=[r["accuracy"]["std"]], fmt=marker, color=color,
                            capsize=3)
                name = r["cell"] + (f" ({r['steps']} steps)" if several_budgets else "")
                ax.annotate(name, (x, r["accuracy"]["mean"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{task} dev accuracy (seed mean +- std)")
            ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    return _finish(fig, path)


def plot_speedup_frontier(points, path=None, title=None):
    """Accuracy lost against `.tflite` speed-up (float32, dynamic int8) and file size, one point per recipe.

    The picture a user reads to choose a model: how many points each recipe
    loses (seed mean, error bar one standard deviation) for how much lower
    latency than the dense file, with each family (structured pruning, whole
    blocks, smaller models by layer dropping) in its own colour.

    Args:
        points: dicts with `label`, `family` (any string; one colour each),
            `drop` (`mean`, `std`, points lost against dense), `speedup` and
            `megabytes` (each a dict from `"float32"` / `"int8"` to a number).

    Example:

    >>> points = [{"label": "heads+neurons 50%", "family": "structured", "drop": {"mean": 0.6, "std": 0.3},
    ...            "speedup": {"float32": 2.1, "int8": 1.7}, "megabytes": {"float32": 69.0, "int8": 17.7}},
    ...           {"label": "3 of 6 layers", "family": "layer drop", "drop": {"mean": 1.4, "std": 0.5},
    ...            "speedup": {"float32": 2.0, "int8": 2.0}, "megabytes": {"float32": 69.2, "int8": 17.8}}]
    >>> fig = plot_speedup_frontier(points)
    """
    plt = _pyplot()
    families = list(dict.fromkeys(p["family"] for p in points))
    colors = ["#c0392b", "#2c7fb8", "#555555", "#7b3294", "#e67e22", "#27ae60"]
    markers = ["o", "s", "^", "v", "D", "P"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = ((axes[0], "speedup", "float32", "speed-up vs dense, float32 (1 thread, 64 tokens)"),
              (axes[1], "speedup", "int8", "speed-up vs dense, dynamic int8 (1 thread, 64 tokens)"),
              (axes[2], "megabytes", "int8", ".tflite size, dynamic int8 (MB)"))
    for ax, field, variant, label in panels:
        for i, family in enumerate(families):
            chosen = [p for p in points if p["family"] == family and variant in p.get(field, {})]
            if not chosen:
                continue
            ax.errorbar([p[field][variant] for p in chosen], [p["drop"]["mean"] for p in chosen],
                        yerr=[p["drop"].get("std", 0.0) for p in chosen], fmt=markers[i % len(markers)],
                        color=colors[i % len(colors)], capsize=3, label=family)
            for p in chosen:
                ax.annotate(p["label"], (p[field][variant], p["drop"]["mean"]), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
        ax.axhline(0.0, color="#999999", linewidth=0.8)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy points lost vs dense (seed mean +- std)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    return _finish(fig, path)


def word_representations(backbone, tokenizer, words, batch_size=64):
    """Each word's final-layer vector when the encoder reads it alone.

    `[CLS] word [SEP]`, the vector at the word's first piece. Unlike the
    input token embedding (which RPP leaves unpruned by default), this passes
    through every pruned kernel, so it shows what pruning did to the encoder.

    >>> vectors = word_representations(backbone, tokenizer, ["good", "bad"])  # doctest: +SKIP
    """
    import keras_hub
    import tensorflow as tf

    packer = keras_hub.layers.StartEndPacker(
        start_value=tokenizer.cls_token_id, end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id, sequence_length=8, return_padding_mask=True)
    vectors = []
    for i in range(0, len(words), batch_size):
        ids, padding_mask = packer(tokenizer(list(words[i:i + batch_size])))
        outputs = backbone({"token_ids": ids, "padding_mask": padding_mask,
                            "segment_ids": tf.zeros_like(ids)}, training=False)
        vectors.append(np.asarray(outputs["sequence_output"])[:, 1, :])
    return np.concatenate(vectors)


def plot_embedding_tsne(representations, words, center, neighbors=40, path=None, seed=0):
    """t-SNE of word vectors around `center`, one panel per model (the paper's Figure 4).

    The neighbourhood is chosen once, by cosine similarity in the first model,
    and the same words are embedded in every panel, so the panels compare alike.

    Args:
        representations: a dict from model name to a `(len(words), d)` array.
        words: the words, in row order.
        center: the word to zoom around (must be in `words`).
        neighbors: how many nearest words to show.

    Example:

    >>> import numpy as np
    >>> words = [f"w{i}" for i in range(60)]
    >>> reps = {"dense": np.random.rand(60, 8), "pruned": np.random.rand(60, 8)}
    >>> fig = plot_embedding_tsne(reps, words, "w0", neighbors=20)
    """
    TSNE = require("sklearn.manifold", "figures").TSNE

    plt = _pyplot()
    words = list(words)
    if center not in words:
        raise ValueError(f"{center!r} is not among the {len(words)} words given.")
    if not 5 <= neighbors < len(words):
        raise ValueError(f"neighbors must be in [5, {len(words)}); received {neighbors}.")
    first = np.asarray(next(iter(representations.values())), np.float64)
    unit = first / np.maximum(np.linalg.norm(first, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit[words.index(center)]
    chosen = np.argsort(-similarity)[: neighbors + 1]
    fig, axes = plt.subplots(1, len(representations), figsize=(5 * len(representations), 4.6), squeeze=False)
    for ax, (name, matrix) in zip(axes[0], representations.items()):
        points = TSNE(n_components=2, perplexity=min(10, neighbors // 3), random_state=seed,
                      init="pca").fit_transform(np.asarray(matrix, np.float64)[chosen])
        ax.scatter(points[:, 0], points[:, 1], s=10, color="#3b75af")
        for (x, y), index in zip(points, chosen):
            is_center = words[index] == center
            ax.annotate(words[index], (x, y), fontsize=9 if is_center else 7,
                        color="#c0392b" if is_center else "black", weight="bold" if is_center else None)
        ax.set_title(f"{name}: {neighbors} nearest words to '{center}'", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, path)


def write_figures(mask, out, prefix="", layers=(1, 2, 5), preset=None, dense_preset="minilm", word="film",
                  neighbors=40, vocabulary_sample=3000):
    """Writes the mask figures (and, with `preset`, the word t-SNE) as PNG files; returns their paths.

    `<prefix>mask_patterns.png` (query and key masks of `layers`, the paper's
    Figure 3), `<prefix>layer_sparsity.png` (a bar per pruned weight) and, with
    the pruned backbone's `preset`, `<prefix>tsne.png`: final-layer vectors of
    single words in the dense model and the pruned one around `word` (Figure 4).

    Example:

    ```python
    tf_rpp.viz.write_figures(tf_rpp.SparsityMask.load("mask.npz"), "figures", preset="runs/prune/preset")
    ```
    """
    from tf_rpp import models

    os.makedirs(out, exist_ok=True)
    keys = [f"transformer_layer_{i}/self_attention_layer/{part}/kernel" for i in layers for part in ("query", "key")]
    written = [os.path.join(out, f"{prefix}mask_patterns.png"), os.path.join(out, f"{prefix}layer_sparsity.png")]
    plot_mask_pattern(mask, keys, written[0], title=f"kept (black) and pruned (white) weights, {mask.sparsity:.0%} overall")
    plot_layer_sparsity(mask, written[1])
    if preset:
        tokenizer = models.tokenizer(dense_preset)
        # Whole, alphabetic words only: pieces (##ing) and [unused] slots say little.
        words = [w for w in tokenizer.get_vocabulary()[1000:] if w.isalpha() and len(w) > 2][:vocabulary_sample]
        if word not in words:
            words.append(word)
        representations = {
            name: word_representations(models.backbone(p), tokenizer, words)
            for name, p in (("dense", dense_preset), (f"RPP {mask.sparsity:.0%}", preset))
        }
        written.append(os.path.join(out, f"{prefix}tsne.png"))
        plot_embedding_tsne(representations, words, word, neighbors=neighbors, path=written[-1])
    return written
