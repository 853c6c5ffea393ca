"""Whole encoder layers removed: the smaller dense model of the same family (Sajjad et al. 2023).

The cheapest way to a faster BERT is to keep fewer of its transformer layers
and fine-tune what is left ("On the Effect of Dropping Layers of Pre-trained
Transformer Models": dropping the top layers keeps most of the accuracy). It
is the baseline structured pruning must beat at equal latency, and a recipe
of its own: `tf-rpp finetune --keep-layers 0,1,2`.

Example:

>>> import keras_hub
>>> backbone = keras_hub.models.BertBackbone(
...     vocabulary_size=50, num_layers=4, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=8)
>>> layers_to_keep(6, 3, "top"), layers_to_keep(6, 3, "bottom"), layers_to_keep(6, 3, "alternate")
([0, 1, 2], [3, 4, 5], [0, 2, 4])
>>> len(drop_layers(backbone, [0, 2]).transformer_layers)
2
"""

STRATEGIES = ("top", "bottom", "alternate")


def layers_to_keep(num_layers, keep, strategy="top"):
    """Which of `num_layers` encoder layers to keep, `keep` of them, by a layer-dropping strategy.

    Args:
        num_layers: the encoder's depth.
        keep: how many layers to keep, 1 to `num_layers`.
        strategy: `"top"` drops the top layers (keeps the first `keep`),
            `"bottom"` drops the bottom ones, `"alternate"` keeps evenly
            spaced layers from the first.

    Returns:
        The kept layers' indices, ascending.

    Example:

    >>> layers_to_keep(6, 2, "alternate")
    [0, 3]
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; received {strategy!r}.")
    if not (isinstance(keep, int) and 1 <= keep <= num_layers):
        raise ValueError(f"`keep` must be an integer from 1 to {num_layers} (the encoder's layers); received {keep!r}.")
    if strategy == "top":
        return list(range(keep))
    if strategy == "bottom":
        return list(range(num_layers - keep, num_layers))
    return [round(i * num_layers / keep) for i in range(keep)]


def check_kept(kept, num_layers=None):
    """`kept` (an iterable of layer indices) as a validated ascending list.

    Args:
        kept: layer indices.
        num_layers: the encoder's layers, when known (indices must be below it).

    Example:

    >>> check_kept((0, 2), 6)
    [0, 2]
    """
    kept = [int(i) for i in kept]
    where = ">= 0" if num_layers is None else f"in [0, {num_layers})"
    if (not kept or sorted(set(kept)) != kept or kept[0] < 0
            or (num_layers is not None and kept[-1] >= num_layers)):
        raise ValueError(f"The layers to keep must be distinct, ascending indices {where}; received {kept}.")
    return kept


def drop_layers(backbone, kept):
    """A new backbone of the same class with only the encoder layers `kept`, their weights copied.

    Embeddings, the pooler and every other non-encoder weight are copied as
    they are; kept layer `kept[i]` becomes layer `i`. Works for the keras-hub
    backbones whose config has `num_layers` and whose encoder layers are
    `backbone.transformer_layers` (BERT, RoBERTa, DistilBERT, ...).

    Args:
        backbone: a keras-hub backbone.
        kept: ascending layer indices (see `layers_to_keep`).

    Returns:
        The smaller backbone.

    Example:

    ```python
    small = drop_layers(classifier.backbone, layers_to_keep(6, 3, "top"))
    ```
    """
    config = backbone.get_config()
    if "num_layers" not in config or not hasattr(backbone, "transformer_layers"):
        raise ValueError(f"{type(backbone).__name__} has no `num_layers` setting or `transformer_layers`; "
                         "layers can be dropped from keras-hub backbones such as BertBackbone.")
    kept = check_kept(kept, config["num_layers"])
    config = {k: v for k, v in config.items() if k not in ("name", "trainable")}
    small = type(backbone).from_config({**config, "num_layers": len(kept)})
    encoder = {id(layer) for layer in backbone.transformer_layers}
    for layer in backbone.layers:
        if id(layer) not in encoder and layer.weights:
            small.get_layer(layer.name).set_weights(layer.get_weights())
    for target, index in zip(small.transformer_layers, kept):
        target.set_weights(backbone.transformer_layers[index].get_weights())
    return small


def drop_classifier_layers(classifier, kept):
    """The classifier with only the encoder layers `kept` (`drop_layers` on its backbone; same head).

    Example:

    ```python
    small = drop_classifier_layers(dense_classifier, [0, 1, 2])
    small.compile(...); small.fit(...)
    ```
    """
    from tf_rpp.structured.shrink import with_backbone

    return with_backbone(classifier, drop_layers(classifier.backbone, kept), classifier.preprocessor)
