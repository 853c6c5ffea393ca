"""Shrinking: a group-pruned keras-hub BERT made physically smaller.

After structured pruning (`GroupRPPOptimizer`), removed heads and neurons are
exactly zero but still stored and multiplied. `shrink_classifier` drops them:
each encoder layer keeps only its live heads (at the original head size) and
live feed-forward units, possibly a different number per layer, so the model
has fewer weights and does less work on any runtime, TFLite included. It
computes the same function as the masked model (a removed head's output rows
are zero, so it adds nothing; likewise a removed neuron's output row).

keras-hub's `TransformerEncoder` derives the head size as
`hidden_dim // num_heads`, so a layer with 5 of 12 heads cannot be expressed
with it; `PrunedTransformerEncoder` takes the head size explicitly and keeps
keras-hub's layer and weight names, so masks and weight keys still line up.
A layer with no live head (or no live feed-forward unit) loses the whole
block: only the block's output bias stays on the residual path.

Example:

```python
shrunk = tf_rpp.structured.shrink.shrink_classifier(classifier)   # a BertTextClassifier
shrunk.save("small.keras")                               # loads with keras.models.load_model
tf_rpp.export.export_tflite(shrunk, "small.tflite", labels=["negative", "positive"])
```
"""

import keras
import keras_hub
import numpy as np

from tf_rpp.structured import groups
from tf_rpp import selection


@keras.saving.register_keras_serializable(package="tf_rpp")
class BlockBias(keras.layers.Layer):
    """What a removed attention or feed-forward block adds to the residual: its output bias.

    Stands in for the block's last sublayer (keras-hub calls it as it calls
    the attention layer, `layer(query=x, value=x, ...)`, or the output dense,
    `layer(x)`), so `TransformerEncoder.call` runs unchanged.

    Example:

    >>> import numpy as np
    >>> layer = BlockBias()
    >>> tuple(layer(np.ones((2, 3, 4), "float32")).shape)
    (2, 3, 4)
    """

    def build(self, query_shape, value_shape=None):
        self.bias = self.add_weight(shape=(query_shape[-1],), initializer="zeros", name="bias")
        self.built = True

    def call(self, query, value=None, attention_mask=None, training=None):
        return keras.ops.zeros_like(query) + keras.ops.cast(self.bias, query.dtype)

    def compute_output_shape(self, query_shape, value_shape=None):
        return query_shape


@keras.saving.register_keras_serializable(package="tf_rpp")
class PrunedTransformerEncoder(keras_hub.layers.TransformerEncoder):
    """keras-hub's `TransformerEncoder` with an explicit head size, and blocks that may be gone.

    Args:
        key_dim: the size of each attention head (keras-hub uses
            `hidden_dim // num_heads`, which changes when heads are removed).
        **kwargs: as `keras_hub.layers.TransformerEncoder`. `num_heads=0`
            removes the attention block and `intermediate_dim=0` the
            feed-forward block: each leaves its output bias (`BlockBias`)
            on the residual path, then the block's LayerNorm.

    Example:

    >>> import numpy as np
    >>> layer = PrunedTransformerEncoder(intermediate_dim=5, num_heads=1, key_dim=4)
    >>> tuple(layer(np.zeros((2, 3, 8), "float32")).shape)
    (2, 3, 8)
    >>> no_attention = PrunedTransformerEncoder(intermediate_dim=5, num_heads=0, key_dim=4)
    >>> tuple(no_attention(np.zeros((2, 3, 8), "float32")).shape)
    (2, 3, 8)
    """

    def __init__(self, key_dim, **kwargs):
        super().__init__(**kwargs)
        self.key_dim = int(key_dim)

    def build(self, inputs_shape):
        # The same sublayers and names as keras-hub's build, with `key_dim` given.
        hidden_dim = inputs_shape[-1]
        if self.num_heads < 0 or self.key_dim < 1 or self.intermediate_dim < 0:
            raise ValueError(
                f"{self.name}: a pruned encoder layer needs num_heads >= 0, key_dim >= 1 and "
                f"intermediate_dim >= 0; received num_heads={self.num_heads}, key_dim={self.key_dim}, "
                f"intermediate_dim={self.intermediate_dim}."
            )
        common = dict(
            kernel_initializer=keras.initializers.get(keras.initializers.serialize(self.kernel_initializer)),
            bias_initializer=keras.initializers.get(keras.initializers.serialize(self.bias_initializer)),
            dtype=self.dtype_policy,
        )
        if self.num_heads:
            self._self_attention_layer = keras.layers.MultiHeadAttention(
                num_heads=self.num_heads, key_dim=self.key_dim, dropout=self.dropout,
                name="self_attention_layer", **common,
            )
            self._self_attention_layer.build(query_shape=inputs_shape, value_shape=inputs_shape)
        else:
            self._self_attention_layer = BlockBias(dtype=self.dtype_policy, name="self_attention_layer")
            self._self_attention_layer.build(inputs_shape)
        self._self_attention_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="self_attention_layer_norm",
        )
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="self_attention_dropout",
        )
        self._feedforward_layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name="feedforward_layer_norm",
        )
        self._feedforward_layer_norm.build(inputs_shape)
        if self.intermediate_dim:
            self._feedforward_intermediate_dense = keras.layers.Dense(
                self.intermediate_dim, activation=self.activation, name="feedforward_intermediate_dense", **common,
            )
            self._feedforward_intermediate_dense.build(inputs_shape)
            self._feedforward_output_dense = keras.layers.Dense(hidden_dim, name="feedforward_output_dense", **common)
            self._feedforward_output_dense.build((*inputs_shape[:-1], self.intermediate_dim))
        else:
            self._feedforward_intermediate_dense = keras.layers.Identity(name="feedforward_intermediate_dense")
            self._feedforward_output_dense = BlockBias(dtype=self.dtype_policy, name="feedforward_output_dense")
            self._feedforward_output_dense.build(inputs_shape)
        self._feedforward_dropout = keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name="feedforward_dropout",
        )
        self.built = True

    def get_config(self):
        config = super().get_config()
        config["key_dim"] = self.key_dim
        return config


@keras.saving.register_keras_serializable(package="tf_rpp")
class ShrunkBertBackbone(keras_hub.models.Backbone):
    """A BERT backbone whose layers may each have their own heads and widths.

    The same graph, inputs, outputs and layer names as
    `keras_hub.models.BertBackbone`, so `keras_hub.models.BertTextClassifier`
    (and its preprocessor) take it as they take a `BertBackbone`.

    Args:
        vocabulary_size, hidden_dim, dropout, max_sequence_length,
            num_segments: as in `BertBackbone`.
        num_heads: a list, the heads of each layer.
        intermediate_dims: a list, the feed-forward width of each layer.
        key_dim: the head size (the original `hidden_dim // num_heads`).
        activation: the feed-forward activation; default BERT's approximate
            GELU (keras-hub's registered `gelu_approximate`).

    Example:

    >>> backbone = ShrunkBertBackbone(vocabulary_size=50, hidden_dim=8, num_heads=[2, 1],
    ...                               intermediate_dims=[16, 3], key_dim=4, max_sequence_length=8)
    >>> backbone.count_params() < keras_hub.models.BertBackbone(
    ...     vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16,
    ...     max_sequence_length=8).count_params()
    True
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_heads,
        intermediate_dims,
        key_dim,
        activation=None,
        dropout=0.1,
        max_sequence_length=512,
        num_segments=2,
        dtype=None,
        **kwargs,
    ):
        num_heads = [int(h) for h in num_heads]
        intermediate_dims = [int(d) for d in intermediate_dims]
        if len(num_heads) != len(intermediate_dims) or not num_heads:
            raise ValueError(
                f"`num_heads` and `intermediate_dims` need one entry per layer; received {num_heads} and "
                f"{intermediate_dims}."
            )
        if activation is None:
            activation = keras.saving.get_registered_object("keras_hub>gelu_approximate")
        elif not callable(activation):
            activation = keras.activations.get(activation)
        initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            input_dim=vocabulary_size, output_dim=hidden_dim, embeddings_initializer=initializer,
            dtype=dtype, name="token_embedding",
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            initializer=initializer, sequence_length=max_sequence_length, dtype=dtype, name="position_embedding",
        )
        self.segment_embedding = keras.layers.Embedding(
            input_dim=num_segments, output_dim=hidden_dim, embeddings_initializer=initializer,
            dtype=dtype, name="segment_embedding",
        )
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            axis=-1, epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm",
        )
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=dtype, name="embeddings_dropout")
        self.transformer_layers = [
            PrunedTransformerEncoder(
                key_dim=key_dim, num_heads=heads, intermediate_dim=width, activation=activation,
                dropout=dropout, layer_norm_epsilon=1e-12, kernel_initializer=initializer, dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i, (heads, width) in enumerate(zip(num_heads, intermediate_dims))
        ]
        self.pooled_dense = keras.layers.Dense(
            hidden_dim, kernel_initializer=initializer, activation="tanh", dtype=dtype, name="pooled_dense",
        )
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        segment_ids = keras.Input(shape=(None,), dtype="int32", name="segment_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        tokens = self.token_embedding(token_ids)
        x = self.embeddings_add((tokens, self.position_embedding(tokens), self.segment_embedding(segment_ids)))
        x = self.embeddings_dropout(self.embeddings_layer_norm(x))
        for layer in self.transformer_layers:
            x = layer(x, padding_mask=padding_mask)
        super().__init__(
            inputs={"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask},
            outputs={"sequence_output": x, "pooled_output": self.pooled_dense(x[:, 0, :])},
            dtype=dtype,
            **kwargs,
        )
        self.vocabulary_size = vocabulary_size
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.intermediate_dims = intermediate_dims
        self.key_dim = int(key_dim)
        self.activation = keras.activations.serialize(activation)
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments
        self.num_layers = len(num_heads)
        self.cls_token_index = 0

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary_size=self.vocabulary_size, hidden_dim=self.hidden_dim, num_heads=self.num_heads,
            intermediate_dims=self.intermediate_dims, key_dim=self.key_dim, activation=self.activation,
            dropout=self.dropout, max_sequence_length=self.max_sequence_length, num_segments=self.num_segments,
        )
        return config


# Backbone attributes keras-hub tasks read besides the graph (RoBERTa's
# classifier reads `start_token_index`, DistilBERT's `cls_token_index`).
_COPIED_ATTRIBUTES = ("cls_token_index", "start_token_index", "vocabulary_size", "vocab_size", "hidden_dim",
                      "embedding_dim", "max_sequence_length", "num_segments", "dropout")


@keras.saving.register_keras_serializable(package="tf_rpp")
class ShrunkBackbone(keras_hub.models.Backbone):
    """Any keras-hub backbone whose encoder layers are `TransformerEncoder`s, with fewer heads and units.

    The graph of the `source` backbone (RoBERTa, XLM-RoBERTa, DistilBERT,
    ELECTRA, BERT: embeddings, pooler, inputs and outputs, layer names) with
    each `keras_hub.layers.TransformerEncoder` replaced by a
    `PrunedTransformerEncoder` of its own number of heads and feed-forward
    units. The family's keras-hub task (`RobertaTextClassifier`, ...) takes
    it as it takes the source backbone. Weights are not copied here:
    `shrink_backbone` copies the live ones.

    Args:
        source: the original backbone, or its `keras.saving.serialize_keras_object`
            form (what `get_config` stores; loading rebuilds it, then shrinks).
        num_heads: a list, the heads of each encoder layer.
        intermediate_dims: a list, the feed-forward width of each layer.
        key_dim: the head size (the source's `hidden_dim // num_heads`).

    Example:

    >>> import keras_hub
    >>> source = keras_hub.models.RobertaBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
    ...                                           hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
    >>> small = ShrunkBackbone(source, num_heads=[2, 1], intermediate_dims=[16, 3], key_dim=4)
    >>> small.count_params() < source.count_params(), small.start_token_index
    (True, 0)
    """

    def __init__(self, source, num_heads, intermediate_dims, key_dim, dtype=None, **kwargs):
        if not isinstance(source, keras.Model):
            source = keras.saving.deserialize_keras_object(source)
        encoders = check_shrinkable(source)
        num_heads = [int(h) for h in num_heads]
        intermediate_dims = [int(d) for d in intermediate_dims]
        if not len(num_heads) == len(intermediate_dims) == len(encoders):
            raise ValueError(
                f"`num_heads` and `intermediate_dims` need one entry per encoder layer ({len(encoders)}); "
                f"received {num_heads} and {intermediate_dims}.")
        sizes = {id(layer): (heads, width) for layer, heads, width in zip(encoders, num_heads, intermediate_dims)}
        replaced = []

        def clone(layer):
            if id(layer) in sizes:
                heads, width = sizes[id(layer)]
                config = dict(layer.get_config(), num_heads=heads, intermediate_dim=width, key_dim=key_dim)
                replaced.append(PrunedTransformerEncoder.from_config(config))
                return replaced[-1]
            return layer.__class__.from_config(layer.get_config())

        graph = keras.models.clone_model(source, clone_function=clone)
        self.transformer_layers = replaced
        super().__init__(inputs=graph.input, outputs=graph.output, dtype=dtype, **kwargs)
        self.source_config = keras.saving.serialize_keras_object(source)
        self.num_heads, self.intermediate_dims, self.key_dim = num_heads, intermediate_dims, int(key_dim)
        self.num_layers = len(num_heads)
        for name in _COPIED_ATTRIBUTES:
            if hasattr(source, name):
                setattr(self, name, getattr(source, name))

    def get_config(self):
        config = super().get_config()
        config.update(source=self.source_config, num_heads=self.num_heads,
                      intermediate_dims=self.intermediate_dims, key_dim=self.key_dim)
        return config


def check_shrinkable(backbone):
    """The encoder layers of `backbone`, if every one is a keras-hub `TransformerEncoder`; else a clear error.

    Example:

    >>> import keras_hub
    >>> backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
    ...                                                hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
    >>> len(check_shrinkable(backbone))
    2
    """
    layers = list(getattr(backbone, "transformer_layers", None) or [])
    kind = type(backbone).__name__
    if not layers:
        raise ValueError(
            f"{kind} cannot be shrunk: it has no `transformer_layers` list of keras-hub TransformerEncoder layers "
            "(shrinking supports BERT, RoBERTa, XLM-RoBERTa, DistilBERT and ELECTRA).")
    if any(isinstance(layer, (list, tuple)) for layer in layers):
        raise ValueError(
            f"{kind} cannot be shrunk: its encoder layers are groups of shared layers (ALBERT), whose weights "
            "every layer of a group runs, so one layer cannot lose heads that another keeps. Its unstructured "
            "masks still work.")
    other = sorted({type(layer).__name__ for layer in layers
                    if not isinstance(layer, keras_hub.layers.TransformerEncoder)})
    if other:
        raise ValueError(
            f"{kind} cannot be shrunk: its encoder layers are {', '.join(other)}, not keras-hub "
            "TransformerEncoder, and tf_rpp only knows how to drop heads and units from TransformerEncoder "
            "(BERT, RoBERTa, XLM-RoBERTa, DistilBERT, ELECTRA). Its unstructured masks still work.")
    if len({id(layer) for layer in layers}) != len(layers):
        raise ValueError(f"{kind} cannot be shrunk: its encoder layers share weights (ALBERT-style), so one "
                         "layer cannot lose heads that another keeps.")
    return layers


def _kept(weights, sets, prefix, kind):
    # A layer whose block is already gone (a shrunk model shrunk again) has no groups of that kind.
    group_set = sets.get((prefix, kind))
    return np.zeros(0, int) if group_set is None else np.flatnonzero(groups.kept_groups(weights, group_set))


def shrink_backbone(backbone):
    """A smaller backbone holding only the live heads and neurons of `backbone`.

    A BERT backbone becomes a `ShrunkBertBackbone`; RoBERTa, XLM-RoBERTa,
    DistilBERT and ELECTRA (any backbone whose encoder layers are keras-hub
    `TransformerEncoder`s) a `ShrunkBackbone`. Others (ALBERT's shared layers,
    DeBERTaV3's disentangled attention) get an error naming what is missing.

    A head or neuron is live when any of its kernel entries is nonzero (see
    `tf_rpp.structured.groups`); everything else (embeddings, biases, LayerNorms, the
    pooler) is copied. A layer with no live head loses its attention block and
    one with no live unit its feed-forward block (their output biases stay).

    Args:
        backbone: a keras-hub backbone of one of those families (or a shrunk one).

    Returns:
        The smaller backbone; on the same inputs its outputs equal the
        original's up to float rounding.

    Example:

    ```python
    small = tf_rpp.structured.shrink.shrink_backbone(classifier.backbone)
    print(small.num_heads, small.intermediate_dims)
    ```
    """
    layers = check_shrinkable(backbone)
    weights = {selection.weight_key(v): np.asarray(v.numpy()) for v in backbone.weights}
    sets = {(gs.layer, gs.kind): gs for gs in groups.bert_groups(backbone.weights)}
    key_dim = int(getattr(layers[0], "key_dim", 0) or layers[0]._self_attention_layer._key_dim)
    plan = []
    for layer in layers:
        prefix = _prefix_of(layer)
        plan.append((layer, _kept(weights, sets, prefix, "heads"), _kept(weights, sets, prefix, "neurons")))
    num_heads, widths = [len(h) for _, h, _ in plan], [len(n) for _, _, n in plan]
    if not isinstance(backbone, (keras_hub.models.BertBackbone, ShrunkBertBackbone)):
        small = ShrunkBackbone(backbone, num_heads=num_heads, intermediate_dims=widths, key_dim=key_dim,
                               dtype=backbone.dtype_policy)
        encoders = {id(layer) for layer in small.transformer_layers}
        for layer in small.layers:
            if id(layer) not in encoders and layer.weights:
                layer.set_weights(backbone.get_layer(layer.name).get_weights())
    else:
        small = ShrunkBertBackbone(
            vocabulary_size=backbone.vocabulary_size, hidden_dim=backbone.hidden_dim, num_heads=num_heads,
            intermediate_dims=widths, key_dim=key_dim,
            activation=keras.activations.serialize(layers[0].activation), dropout=backbone.dropout,
            max_sequence_length=backbone.max_sequence_length, num_segments=backbone.num_segments,
            dtype=backbone.dtype_policy,
        )
        for name in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm",
                     "pooled_dense"):
            small.get_layer(name).set_weights(backbone.get_layer(name).get_weights())
    for (layer, heads, neurons), target in zip(plan, small.transformer_layers):
        _copy_encoder(layer, target, heads, neurons)
    return small


def _prefix_of(layer):
    # The layer's key prefix as `tf_rpp.selection` names its weights (the LayerNorms exist in every layer).
    key = selection.weight_key(layer._self_attention_layer_norm.weights[0])
    return key.split("/self_attention_layer_norm/")[0]


def _copy_encoder(source, target, heads, neurons):
    attention, small_attention = source._self_attention_layer, target._self_attention_layer
    attention_bias = (attention.bias if isinstance(attention, BlockBias) else attention._output_dense.bias).numpy()
    if len(heads):
        for name in ("_query_dense", "_key_dense", "_value_dense"):
            kernel, bias = getattr(attention, name).get_weights()
            getattr(small_attention, name).set_weights([kernel[:, heads, :], bias[heads, :]])
        kernel = attention._output_dense.kernel.numpy()
        small_attention._output_dense.set_weights([kernel[heads, :, :], attention_bias])
    else:
        small_attention.set_weights([attention_bias])
    for name in ("_self_attention_layer_norm", "_feedforward_layer_norm"):
        getattr(target, name).set_weights(getattr(source, name).get_weights())
    output_bias = source._feedforward_output_dense.bias.numpy()
    if len(neurons):
        kernel, bias = source._feedforward_intermediate_dense.get_weights()
        target._feedforward_intermediate_dense.set_weights([kernel[:, neurons], bias[neurons]])
        kernel = source._feedforward_output_dense.kernel.numpy()
        target._feedforward_output_dense.set_weights([kernel[neurons, :], output_bias])
    else:
        target._feedforward_output_dense.set_weights([output_bias])


def shrink_classifier(classifier):
    """The same keras-hub task (e.g. `BertTextClassifier`, `RobertaTextClassifier`) on the shrunk backbone.

    The classification head and the preprocessor are carried over, so the
    result predicts from raw text, saves with `model.save` and loads with
    `keras.models.load_model`, and exports with `tf_rpp.export.export_tflite`.

    Args:
        classifier: a keras-hub task of a family `shrink_backbone` knows, whose removed groups are
            exactly zero (after `GroupRPPOptimizer` and its hardened mask).

    Example:

    ```python
    small = tf_rpp.structured.shrink.shrink_classifier(classifier)
    small.predict(["a wonderful film"])
    ```
    """
    return with_backbone(classifier, shrink_backbone(classifier.backbone), classifier.preprocessor)


def with_backbone(classifier, backbone, preprocessor):
    """The same task head (settings and weights) on another backbone and preprocessor.

    Example:

    ```python
    rebuilt = with_backbone(classifier, shrink_backbone(classifier.backbone), classifier.preprocessor)
    ```
    """
    settings = {k: v for k, v in classifier.get_config().items()
                if k not in ("backbone", "preprocessor", "name", "trainable", "dtype")}
    rebuilt = type(classifier)(backbone=backbone, preprocessor=preprocessor, **settings)
    skip = {id(classifier.backbone), id(classifier.preprocessor)}
    for layer in classifier.layers:
        if id(layer) not in skip and layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt


def parameter_counts(backbone):
    """Heads and feed-forward units per layer, and encoder parameters, of a BERT backbone.

    Example:

    >>> small = ShrunkBertBackbone(vocabulary_size=50, hidden_dim=8, num_heads=[2, 1],
    ...                            intermediate_dims=[16, 3], key_dim=4, max_sequence_length=8)
    >>> parameter_counts(small)["heads"]
    [2, 1]
    """
    layers = backbone.transformer_layers
    return {
        "heads": [int(layer.num_heads) for layer in layers],
        "intermediate": [int(layer.intermediate_dim) for layer in layers],
        "encoder_parameters": int(sum(layer.count_params() for layer in layers)),
        "total_parameters": int(backbone.count_params()),
    }
