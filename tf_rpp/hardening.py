"""Hardening: turning the pruning state into the final, frozen mask.

At a schedule's `end_step` the pattern is settled to exactly the final target
(`harden`: the optimizer's `final_mask`, i.e. the smallest magnitudes for
unstructured pruning, the weakest groups for structured) and frozen; in the
paper's mode (no schedule) the exact zeros RPP made become the mask
(`freeze_zeros`). Frozen is the optimizer's `frozen` variable: from then on it
only enforces the mask, and a resumed run knows it.

Example:

```python
mask = tf_rpp.hardening.harden(optimizer, target=0.8)   # optimizer.frozen is now True
```
"""

from tf_rpp.mask import SparsityMask


def harden(optimizer, target, scope="global", metadata=None):
    """Sets `optimizer`'s mask to its `final_mask(target, scope)` and freezes it; returns the mask.

    Args:
        optimizer: a built `tf_rpp.MaskedOptimizer` (or a subclass).
        target: the final sparsity (for `GroupRPPOptimizer`: fraction of groups removed), in [0, 1).
        scope: `"global"` or `"per_layer"` ranking of magnitudes.
        metadata: a dict stored with the mask (step, schedule, ...).

    Example: see the module docstring.
    """
    mask = optimizer.final_mask(target, scope, **(metadata or {}))
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
