"""Weight groups for structured pruning: heads, neurons and whole blocks.

A group is everything one unit of a keras-hub BERT encoder layer owns:

- a head (`"heads"`): its columns of the query, key and value kernels
  (`[hidden, heads, head_dim]`, axis 1) and its rows of the attention output
  kernel (`[heads, head_dim, hidden]`, axis 0);
- a neuron (`"neurons"`): its column of the intermediate kernel
  (`[hidden, intermediate]`, axis 1) and its row of the output kernel
  (`[intermediate, hidden]`, axis 0);
- an attention block (`"attention"`): all four attention kernels of a layer,
  one group per layer (a member axis of `None` means the whole weight);
- a feed-forward block (`"feedforward"`): both feed-forward kernels of a layer.

A head whose output rows are zero adds nothing to the layer, whatever its query,
key, value or biases hold, and likewise a neuron whose output row is zero; so a
model whose removed groups are zero computes exactly what the model without them
computes (`tf_rpp.structured.shrink` builds that smaller model). A removed block
leaves only its output bias on the residual path: the block becomes a residual
connection plus a constant, the way CoFi pruning (Xia et al. 2022) removes
whole attention and feed-forward layers. Blocks nest heads and neurons, so the
kinds combine: the blocks a step removes count as removed heads and neurons.

Example:

>>> import keras_hub
>>> backbone = keras_hub.models.BertBackbone(
...     vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
...     intermediate_dim=16, max_sequence_length=8)
>>> [(g.kind, g.layer, g.size) for g in bert_groups(backbone)]
[('heads', 'transformer_layer_0', 2), ('neurons', 'transformer_layer_0', 16)]
"""

import dataclasses
import re

import keras
import numpy as np

from tf_rpp import selection
from tf_rpp.masks import SparsityMask

KINDS = ("heads", "neurons", "attention", "feedforward")
BLOCK_KINDS = ("attention", "feedforward")

_MEMBERS = {
    "heads": (
        ("self_attention_layer/query/kernel", 1),
        ("self_attention_layer/key/kernel", 1),
        ("self_attention_layer/value/kernel", 1),
        ("self_attention_layer/attention_output/kernel", 0),
    ),
    "neurons": (
        ("feedforward_intermediate_dense/kernel", 1),
        ("feedforward_output_dense/kernel", 0),
    ),
}
# A block is one group per layer: the same kernels, each taken whole.
_MEMBERS["attention"] = tuple((key, None) for key, _ in _MEMBERS["heads"])
_MEMBERS["feedforward"] = tuple((key, None) for key, _ in _MEMBERS["neurons"])
_LAYER = re.compile(r"^(.*?transformer_layer_\d+)/")


@dataclasses.dataclass(frozen=True)
class GroupSet:
    """The groups of one kind in one layer: `size` groups over `members`.

    Attributes:
        kind: one of `KINDS`.
        layer: the encoder layer's key prefix, e.g. `"transformer_layer_0"`.
        members: `((weight_key, axis), ...)`: slice `i` along `axis` of each
            weight belongs to group `i`; an axis of `None` puts the whole
            weight in the set's single group (a block).
        size: the number of groups.
        weights_per_group: how many weights one group holds.

    Example:

    >>> GroupSet("neurons", "transformer_layer_0",
    ...          (("transformer_layer_0/feedforward_output_dense/kernel", 0),), 4, 384).name
    'transformer_layer_0/neurons'
    """

    kind: str
    layer: str
    members: tuple
    size: int
    weights_per_group: int = 0

    @property
    def name(self):
        return f"{self.layer}/{self.kind}"


def bert_groups(model_or_variables, kinds=("heads", "neurons")):
    """The head, neuron (and block) groups of every encoder layer of a keras-hub BERT.

    Args:
        model_or_variables: a keras-hub BERT backbone or task, or a list of
            its variables (the keys are found as `tf_rpp.selection` names them).
        kinds: which kinds of group, a subset of `KINDS`; default heads and neurons.

    Returns:
        A list of `GroupSet`, layer by layer, in the order of `kinds`.

    Raises:
        ValueError: for an unknown kind, or a model with no BERT encoder layer.

    Example: see the module docstring.
    """
    kinds = check_kinds(kinds)
    variables = (
        list(model_or_variables.weights)
        if isinstance(model_or_variables, keras.Layer)
        else list(model_or_variables)
    )
    shapes = {selection.weight_key(v): tuple(v.shape) for v in variables}
    layers = []
    for key in shapes:
        match = _LAYER.match(key)
        if match and match.group(1) not in layers:
            layers.append(match.group(1))
    sets = []
    for layer in layers:
        for kind in kinds:
            members = tuple((f"{layer}/{suffix}", axis) for suffix, axis in _MEMBERS[kind])
            if not all(key in shapes for key, _ in members):
                continue
            sizes = {1 if axis is None else shapes[key][axis] for key, axis in members}
            if len(sizes) != 1:
                raise ValueError(f"The {kind} weights of {layer} disagree on the number of {kind}: {sorted(sizes)}.")
            size = sizes.pop()
            per_group = sum(int(np.prod(shapes[key])) // size for key, _ in members)
            sets.append(GroupSet(kind, layer, members, size, per_group))
    if not sets:
        sample = ", ".join(repr(k) for k in list(shapes)[:4])
        raise ValueError(
            "No keras-hub BERT encoder layer found (weights like "
            f"'transformer_layer_0/self_attention_layer/query/kernel'); the model has {sample}."
        )
    return sets


def check_kinds(kinds):
    """`kinds` as a validated tuple (a subset of `KINDS`).

    Example:

    >>> check_kinds("heads")
    ('heads',)
    """
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"`kinds` must be a non-empty subset of {KINDS}; received {kinds!r}.")
    return kinds


def check_relative_targets(relative_targets, kinds):
    """`relative_targets` (kind -> factor > 0 on a schedule's target) as a validated dict.

    Example:

    >>> check_relative_targets({"heads": 0.5}, ("heads", "neurons"))
    {'heads': 0.5}
    """
    relative_targets = dict(relative_targets or {})
    for kind, factor in relative_targets.items():
        if kind not in kinds:
            raise ValueError(f"`relative_targets` names {kind!r}, which is not pruned; kinds: {list(kinds)}.")
        if not (isinstance(factor, (int, float)) and np.isfinite(factor) and factor > 0):
            raise ValueError(f"`relative_targets[{kind!r}]` must be a finite number > 0; received {factor!r}.")
    return {kind: float(factor) for kind, factor in relative_targets.items()}


def kind_targets(target, kinds, relative_targets=None):
    """Each kind's fraction of groups to remove when a schedule's target is `target`.

    Example:

    >>> kind_targets(0.6, ("heads", "neurons"), {"heads": 0.5})
    {'heads': 0.3, 'neurons': 0.6}
    """
    relative_targets = relative_targets or {}
    targets = {kind: float(target) * relative_targets.get(kind, 1.0) for kind in kinds}
    for kind, value in targets.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"A target of {target} makes {kind}'s {value:.3g} with `relative_targets` "
                             f"{relative_targets}; each kind's must be in [0, 1).")
    return targets


def group_norms(weights, group_set):
    """The L2 norm of each group of `group_set`, from a dict of NumPy weights.

    Example:

    >>> import numpy as np
    >>> gs = GroupSet("neurons", "l", (("a", 1), ("b", 0)), 2)
    >>> group_norms({"a": np.array([[3.0, 0.0]]), "b": np.array([[4.0], [0.0]])}, gs)
    array([5., 0.])
    """
    total = np.zeros(group_set.size)
    for key, axis in group_set.members:
        w = np.asarray(weights[key], dtype=np.float64)
        w = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0)
        total += np.sum(np.square(w).reshape(group_set.size, -1), axis=1)
    return np.sqrt(total)


def norms_by_kind(weights, group_sets):
    """Per kind, the L2 norms of all its groups (layer by layer) in NumPy `weights`, as one vector.

    Example:

    >>> import numpy as np
    >>> gs = GroupSet("neurons", "l", (("a", 1), ("b", 0)), 2)
    >>> norms_by_kind({"a": np.array([[3.0, 0.0]]), "b": np.array([[4.0], [0.0]])}, [gs])
    {'neurons': array([5., 0.])}
    """
    norms = {}
    for gs in group_sets:
        norms.setdefault(gs.kind, []).append(group_norms(weights, gs))
    return {kind: np.concatenate(parts) for kind, parts in norms.items()}


def kept_groups(weights, group_set):
    """A boolean vector: True for the groups with any nonzero weight.

    Example:

    >>> import numpy as np
    >>> gs = GroupSet("neurons", "l", (("a", 1), ("b", 0)), 2)
    >>> kept_groups({"a": np.array([[3.0, 0.0]]), "b": np.array([[4.0], [0.0]])}, gs)
    array([ True, False])
    """
    return group_norms(weights, group_set) > 0


def removed_fraction(weights, group_sets):
    """Per kind, the fraction of groups whose weights are all exactly zero.

    Example:

    >>> import numpy as np
    >>> gs = GroupSet("neurons", "l", (("a", 1), ("b", 0)), 2)
    >>> removed_fraction({"a": np.array([[3.0, 0.0]]), "b": np.array([[4.0], [0.0]])}, [gs])
    {'neurons': 0.5}
    """
    removed, total = {}, {}
    for gs in group_sets:
        removed[gs.kind] = removed.get(gs.kind, 0) + int(np.sum(~kept_groups(weights, gs)))
        total[gs.kind] = total.get(gs.kind, 0) + gs.size
    return {kind: removed[kind] / total[kind] for kind in total}


def structured_mask(weights, group_sets, target, keep_per_layer=1, keep_zeros=False, **metadata):
    """A mask removing the `target` fraction of each kind's groups, smallest norms first.

    Groups are ranked across all layers within a kind (heads with heads,
    neurons with neurons), so layers that RPP found more prunable lose more;
    every layer keeps at least `keep_per_layer` heads and neurons (blocks,
    one per layer, are ranked across layers with no such floor).

    Args:
        weights: a dict from key to NumPy weight, covering the group members
            (other keys get an all-True mask, or their exact zeros kept).
        group_sets: from `bert_groups`.
        target: fraction of groups to remove, in [0, 1); a float, or a dict
            from kind to fraction.
        keep_per_layer: heads and neurons every layer keeps.
        keep_zeros: also mask the weights that are already exactly zero (for
            structured and unstructured pruning combined); by default only the
            removed groups are masked, so exactly `target` of them go.
        **metadata: stored with the mask.

    Returns:
        A `SparsityMask` over the keys of `weights`, False on the removed
        groups' slices.

    Example:

    >>> import numpy as np
    >>> gs = GroupSet("neurons", "l", (("a", 1), ("b", 0)), 4)
    >>> w = {"a": np.array([[4.0, 1.0, 3.0, 2.0]]), "b": np.ones((4, 1))}
    >>> structured_mask(w, [gs], 0.5)["a"]
    array([[ True, False,  True, False]])
    """
    if keep_per_layer < 0:
        raise ValueError(f"`keep_per_layer` must be >= 0; received {keep_per_layer!r}.")
    masks = {key: (np.asarray(w) != 0) if keep_zeros else np.ones(np.shape(w), bool) for key, w in weights.items()}
    kinds = sorted({gs.kind for gs in group_sets})
    targets = target if isinstance(target, dict) else {kind: target for kind in kinds}
    for kind in kinds:
        fraction = float(targets.get(kind, 0.0))
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"The target fraction of {kind} to remove must be in [0, 1); received {fraction}.")
        sets = [gs for gs in group_sets if gs.kind == kind]
        norms = [group_norms(weights, gs) for gs in sets]
        keep = 0 if kind in BLOCK_KINDS else keep_per_layer
        # Rank every group of this kind; the strongest `keep` of each layer
        # are ranked last so they are never removed.
        ranks = []
        for i, n in enumerate(norms):
            protected = set(np.argsort(-n, kind="stable")[:keep].tolist())
            ranks += [(j in protected, float(n[j]), i, j) for j in range(len(n))]
        total = sum(gs.size for gs in sets)
        count = min(int(round(fraction * total)), total - keep * len(sets))
        removed = sorted(ranks)[:max(count, 0)]
        drop = [np.zeros(gs.size, bool) for gs in sets]
        for _, _, i, j in removed:
            drop[i][j] = True
        for gs, d in zip(sets, drop):
            for key, axis in gs.members:
                shape = [1] * masks[key].ndim
                if axis is not None:
                    shape[axis] = gs.size
                masks[key] = masks[key] & ~d.reshape(shape)
    return SparsityMask(masks, {"method": "structured", "target": targets, **metadata})
