"""Which weights are pruned, and how a weight is named across models.

A weight is named by its Keras path relative to the backbone, for example
`transformer_layer_0/self_attention_layer/query/kernel`. keras-hub builds its
backbones functionally with fixed layer names, so the same weight has the same
key in `BertBackbone`, `BertMaskedLM` and `BertTextClassifier`: a mask learned on
one applies to the others (the paper's universal pattern).
"""

import re

import keras

#: Attention query/key/value/output kernels and both feed-forward kernels of
#: every encoder layer of a keras-hub BERT backbone: the weights the paper prunes.
BERT_ENCODER_KERNELS = (
    r"transformer_layer_\d+/(self_attention_layer/(query|key|value|attention_output)"
    r"|feedforward_(intermediate|output)_dense)/kernel$"
)
#: keras-hub BERT token, position and segment embedding tables (opt-in).
BERT_EMBEDDINGS = r"(token|position|segment)_embedding/embeddings$"

# Never pruned, whatever a pattern says: zeroing a bias or a LayerNorm scale
# saves nothing on a phone and can break a layer outright.
_NEVER_PRUNED = re.compile(r"(^|/)(bias|gamma|beta|output_bias)$")


def weight_key(variable):
    """The key of a weight: its Keras path, relative to the backbone.

    Example:

    >>> import keras
    >>> layer = keras.layers.Dense(2, name="dense")
    >>> layer.build((None, 3))
    >>> weight_key(layer.kernel)
    'dense/kernel'
    """
    return variable.path


def is_prunable(variable):
    """Whether a weight may be pruned at all: a matrix, not a bias or LayerNorm.

    Example:

    >>> import keras
    >>> layer = keras.layers.Dense(2, name="dense")
    >>> layer.build((None, 3))
    >>> is_prunable(layer.kernel), is_prunable(layer.bias)
    (True, False)
    """
    return len(variable.shape) >= 2 and not _NEVER_PRUNED.search(weight_key(variable))


def _variables_of(model_or_variables):
    if isinstance(model_or_variables, (keras.Layer, keras.Model)):
        return list(model_or_variables.trainable_weights)
    return list(model_or_variables)


def select_weights(model_or_variables, prune=None, include_embeddings=False):
    """Selects the weights to prune.

    Args:
        model_or_variables: a Keras model or layer (its trainable weights are
            searched) or a list of variables.
        prune: what to prune.
            - `None` or `"bert"`: the keras-hub BERT default, the attention
              query/key/value/output kernels and the two feed-forward kernels
              of every encoder layer.
            - a string: a regular expression searched in each weight key.
            - a list or tuple of keys: exactly those weights; a key that names no
              weight, or names a bias or LayerNorm parameter, is an error.
            - a callable `variable -> bool`.
        include_embeddings: with the BERT default, also prune the token,
            position and segment embeddings.

    Returns:
        The selected variables, in the order of `model_or_variables`.
        Biases, LayerNorm parameters and vectors are never selected.

    Raises:
        ValueError: if nothing is selected, or a listed key is not prunable.

    Example:

    >>> import keras_hub
    >>> backbone = keras_hub.models.BertBackbone(
    ...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
    ...     intermediate_dim=16, max_sequence_length=8)
    >>> [weight_key(v) for v in select_weights(backbone)][:2]
    ['transformer_layer_0/self_attention_layer/query/kernel', 'transformer_layer_0/self_attention_layer/key/kernel']
    """
    variables = _variables_of(model_or_variables)
    if isinstance(prune, (list, tuple)):
        return _select_listed(variables, prune)
    by_key = {weight_key(v): v for v in variables}
    if prune is None or prune == "bert":
        pattern = BERT_ENCODER_KERNELS
        if include_embeddings:
            pattern = f"({BERT_ENCODER_KERNELS})|({BERT_EMBEDDINGS})"
        predicate = re.compile(pattern).search
        description = "the keras-hub BERT encoder kernels"
    elif isinstance(prune, str):
        try:
            predicate = re.compile(prune).search
        except re.error as e:
            raise ValueError(f"`prune={prune!r}` is not a valid regular expression: {e}.")
        description = f"the pattern {prune!r}"
    elif callable(prune):
        predicate = lambda key: prune(by_key[key])  # noqa: E731
        description = f"the predicate {getattr(prune, '__name__', prune)!r}"
    else:
        raise ValueError(
            "`prune` must be None, 'bert', a regular expression, a list of weight "
            f"keys or a callable; received {prune!r}."
        )
    selected = [v for v in variables if is_prunable(v) and predicate(weight_key(v))]
    if not selected:
        sample = ", ".join(repr(weight_key(v)) for v in variables[:6])
        raise ValueError(
            f"No prunable weight matches {description}. Weight keys look like: "
            f"{sample}. Pass `prune=` a regular expression or a list of keys."
        )
    return selected


def _select_listed(variables, keys):
    matched = match_keys(keys, variables)
    for key, variable in matched.items():
        if not is_prunable(variable):
            raise ValueError(
                f"Weight {key!r} (shape {tuple(variable.shape)}) cannot be pruned: "
                "biases, LayerNorm parameters and vectors are never pruned. "
                "Remove it from `prune`."
            )
    order = {id(v): i for i, v in enumerate(variables)}
    return sorted(matched.values(), key=lambda v: order[id(v)])


def match_keys(keys, model_or_variables):
    """Finds the weight of each key in a model, by exact key or unique suffix.

    A suffix match lets a mask keyed relative to a backbone find its weights in
    a model whose paths carry a prefix (a subclassed wrapper, say).

    Args:
        keys: weight keys, as in a `SparsityMask`.
        model_or_variables: a Keras model or layer, or a list of variables.

    Returns:
        A dict from key to variable, in the order of `keys`.

    Raises:
        ValueError: naming the key that matches no weight, or more than one.

    Example:

    >>> import keras
    >>> layer = keras.layers.Dense(2, name="dense")
    >>> layer.build((None, 3))
    >>> list(match_keys(["dense/kernel"], [layer.kernel, layer.bias]))
    ['dense/kernel']
    """
    variables = (
        list(model_or_variables.weights)
        if isinstance(model_or_variables, (keras.Layer, keras.Model))
        else list(model_or_variables)
    )
    by_key = {}
    for v in variables:
        by_key.setdefault(weight_key(v), v)
    matched = {}
    for key in keys:
        if key in by_key:
            matched[key] = by_key[key]
            continue
        candidates = [v for k, v in by_key.items() if k.endswith("/" + key)]
        if len(candidates) == 1:
            matched[key] = candidates[0]
        elif not candidates:
            close = [k for k in by_key if k.rsplit("/", 1)[-1] == key.rsplit("/", 1)[-1]][:3]
            hint = f" Weights with a similar name: {close}." if close else ""
            raise ValueError(
                f"The model has no weight {key!r}.{hint} Is this mask or selection "
                "from another architecture?"
            )
        else:
            raise ValueError(
                f"Weight key {key!r} is ambiguous in this model: it matches "
                f"{[weight_key(v) for v in candidates]}. Use the full key."
            )
    return matched
