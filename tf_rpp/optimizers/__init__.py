"""The tf_rpp optimizers: wrappers around any Keras optimizer, one per module.

- `MaskedOptimizer` (`masked.py`): keeps pruned weights at exactly 0.0; the
  magnitude-pruning baseline and the fine-tuning optimizer.
- `RPPOptimizer` (`rpp.py`): adds the reweighted l1 proximal step
  (`ReweightedL1`); with AdamW it is the paper's proximal AdamW.
- `GroupRPPOptimizer` (`group_rpp.py`): the group step over heads and neurons,
  optionally composed with `ReweightedL1`.
- `GroupMagnitudeOptimizer` (`group_magnitude.py`): the structured baseline,
  the weakest heads and neurons by norm, no shrinkage.

Example:

```python
optimizer = tf_rpp.optimizers.RPPOptimizer(keras.optimizers.AdamW(1e-4))
```
"""

from tf_rpp.optimizers.group_magnitude import GroupMagnitudeOptimizer
from tf_rpp.optimizers.group_rpp import GroupRPPOptimizer
from tf_rpp.optimizers.masked import MaskedOptimizer
from tf_rpp.optimizers.masked import unwrap
from tf_rpp.optimizers.rpp import ReweightedL1
from tf_rpp.optimizers.rpp import RPPOptimizer

__all__ = ["GroupMagnitudeOptimizer", "GroupRPPOptimizer", "MaskedOptimizer", "RPPOptimizer", "ReweightedL1", "unwrap"]
