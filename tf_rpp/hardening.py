"""Hardening: turning the pruning state into the final, frozen mask.

At a schedule's `end_step` the pattern is settled to exactly the final target
(`harden`: the optimizer's `final_mask`, i.e. the smallest magnitudes for
unstructured pruning, the weakest groups for structured) and frozen; in the
paper's mode (no schedule) the exact zeros RPP made become the mask
(`freeze_zeros`). `rewind` then returns the kept weights to earlier values
(the proximal steps shrink what they keep). Frozen is the optimizer's `frozen` variable: from then on it
only enforces the mask, and a resumed run knows it.

Example:

```python
mask = tf_rpp.hardening.harden(optimizer, target=0.8)   # optimizer.frozen is now True
```
"""

import numpy as np

from tf_rpp import selection
from tf_rpp.masks import SparsityMask


def harden(optimizer, target, scope="global", metadata=None):
    """Sets `optimizer`'s mask to its `final_mask(target, scope)` and freezes it; returns the mask.

    Args:
        optimizer: a built `tf_rpp.MaskedOptimizer` (or a subclass).
        target: the final sparsity (for `GroupRPPOptimizer`: fraction of groups removed), in [0, 1).
        scope: `"global"` or `"per_layer"` ranking of magnitudes.
        metadata: a dict stored with the mask (step, schedule, ...).

    Example: see the module docstring.
    """
    before = optimizer.sparsity()
    optimizer.sparsity_before_hardening_variable.assign(before)
    mask = optimizer.final_mask(target, scope, sparsity_before_hardening=before, **(metadata or {}))
    optimizer.set_mask(mask, freeze=True)
    return mask


def freeze_zeros(optimizer, metadata=None):
    """The paper's mode: the pruned weights' exact zeros become the frozen mask; returns it.

    Example:

    ```python
    tf_rpp.hardening.freeze_zeros(optimizer)   # after training at a fixed lambda
    ```
    """
    weights = optimizer.weights_by_key()
    mask = SparsityMask({key: w != 0 for key, w in weights.items()}, {"method": "exact zeros", **(metadata or {})})
    optimizer.set_mask(mask, freeze=True)
    return mask


def rewind(optimizer, values):
    """Sets every pruned weight to `values` under the optimizer's mask (kept: the value; pruned: 0).

    Proximal steps shrink the weights they keep as well as those they remove;
    after the pattern is chosen, rewinding the kept weights to their values
    before pruning (the dense fine-tuned model's, when pruning one) starts the
    recovery from unshrunk weights, the debiasing step of the relaxed lasso
    (Meinshausen 2007) and the rewinding of Renda et al. 2020.

    Args:
        optimizer: a built `tf_rpp.MaskedOptimizer` (or a subclass).
        values: a dict from key to array, e.g. `optimizer.weights_by_key()`
            taken before pruning; it must hold every pruned weight's key.

    Example:

    ```python
    before = optimizer.weights_by_key()
    ...                                     # prune
    tf_rpp.hardening.harden(optimizer, 0.8)
    tf_rpp.hardening.rewind(optimizer, before)
    ```
    """
    mask = optimizer.get_mask()
    missing = sorted(set(mask.keys) - set(values))
    if missing:
        raise ValueError(f"`values` lacks {len(missing)} pruned weight(s), e.g. {missing[:3]}.")
    for variable in optimizer.pruned_variables:
        key = selection.weight_key(variable)
        variable.assign(np.where(mask[key], values[key], 0.0).astype(values[key].dtype))
