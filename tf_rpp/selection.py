"""Which weights are pruned, and how a weight is named across models.

A weight is named by its Keras path relative to the backbone, for example
`transformer_layer_0/self_attention_layer/query/kernel`. keras-hub builds its
backbones functionally with fixed layer names, so the same weight has the same
key in `BertBackbone`, `BertMaskedLM` and `BertTextClassifier`: a mask learned on
one applies to the others (the paper's universal pattern).

The default selection (`prune=None`) is the encoder kernels of any keras-hub
text encoder: every encoder layer of BERT, DistilBERT, RoBERTa, XLM-RoBERTa,
ELECTRA (`TransformerEncoder`), ALBERT (its shared layer groups) and DeBERTaV3
(`DisentangledAttentionEncoder`) names its attention and feed-forward
sublayers alike. A model with no such layer (any other Keras model) gets the
kernels of all its layers instead: `Dense`, `EinsumDense` and convolutions.

ALBERT shares one set of kernels between all the layers of a group (one group
by default): each shared kernel is one variable, pruned and masked once, and
the mask's sparsity counts its stored weights once. The pruned fraction of the
compute is the same, since every layer of the group runs the same sparse
kernels.
"""

import re

import keras

#: Attention query/key/value/output kernels and both feed-forward kernels of
#: every encoder layer of a keras-hub text encoder: the weights the paper prunes.
ENCODER_KERNELS = (
    r"(^|/)(self_attention_layer/(query|key|value|attention_output)"
    r"|feedforward_(intermediate|output)_dense)/kernel$"
)
#: The same weights (the name of the first release, where only BERT was known).
BERT_ENCODER_KERNELS = ENCODER_KERNELS
#: keras-hub token, position and segment embedding tables (opt-in).
EMBEDDINGS = r"(token|position|segment)_embedding/embeddings$"
BERT_EMBEDDINGS = EMBEDDINGS
#: Any layer's kernel: `Dense`, `EinsumDense`, convolutions (the default of a
#: model that is not a keras-hub text encoder).
KERNELS = r"(^|/)kernel$"

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
            - `None` (default): `"encoder"` if the model has keras-hub encoder
              layers, otherwise `"kernels"`.
            - `"encoder"` (or `"bert"`): the attention query/key/value/output
              kernels and the two feed-forward kernels of every encoder layer
              of a keras-hub text encoder (`ENCODER_KERNELS`).
            - `"kernels"`: every layer's kernel (`Dense`, `EinsumDense`,
              convolutions).
            - a string: a regular expression searched in each weight key.
            - a list or tuple of keys: exactly those weights; a key that names no
              weight, or names a bias or LayerNorm parameter, is an error.
            - a callable `variable -> bool`.
        include_embeddings: with the encoder default, also prune the token,
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
    if prune is None:
        encoder = re.compile(ENCODER_KERNELS).search
        prune = "encoder" if any(is_prunable(v) and encoder(weight_key(v)) for v in variables) else "kernels"
    if prune in ("encoder", "bert"):
        pattern = f"({ENCODER_KERNELS})|({EMBEDDINGS})" if include_embeddings else ENCODER_KERNELS
        predicate = re.compile(pattern).search
        description = "the keras-hub encoder kernels"
    elif prune == "kernels":
        predicate = re.compile(KERNELS).search
        description = "any layer's kernel"
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
            "`prune` must be None, 'encoder', 'kernels', a regular expression, a list of weight "
            f"keys or a callable; received {prune!r}."
        )
    selected = [v for v in variables if is_prunable(v) and predicate(weight_key(v))]
    if not selected:
        sample = ", ".join(repr(weight_key(v)) for v in variables[:6])
        candidates = [weight_key(v) for v in variables if is_prunable(v)]
        example = re.escape(candidates[0]).replace("\\/", "/") if candidates else "dense.*/kernel"
        raise ValueError(
            f"No prunable weight matches {description}. The model's prunable weights: "
            f"{', '.join(repr(k) for k in candidates[:12]) or 'none'}"
            f"{f' (and {len(candidates) - 12} more)' if len(candidates) > 12 else ''}; all weight keys "
            f"look like {sample}. Pass `prune=` a regular expression searched in these keys, e.g. "
            f"`prune=r\"{example}\"`, or a list of keys."
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
    a model whose paths carry a prefix (a subclassed wrapper, say), and a mask
    whose keys carry the model's name find the weights of the same model
    loaded from a `.keras` file (a loaded `keras.Sequential` names its weights
    without its own name).

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
        if not candidates:
            # A model's own name prefixes its paths when it is built, not when
            # it is loaded (keras.Sequential): the key may carry a prefix too.
            candidates = [v for k, v in by_key.items() if key.endswith("/" + k)]
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
