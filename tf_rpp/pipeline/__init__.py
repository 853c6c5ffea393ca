"""The whole flow as Python calls: upstream pruning and downstream fine-tuning.

`prune(PruneConfig(...))` learns the universal mask (RPP or magnitude on the
masked-LM objective); `finetune(FinetuneConfig(...))` trains a task with that
mask fixed (or structured RPP), evaluates, checks the mask held and exports.
Both return result objects and write JSON reports; the `tf-rpp` command and
the recipes call exactly these.

Example:

```python
from tf_rpp import pipeline
pruned = pipeline.prune(out="runs/prune", target_sparsity=0.6)
result = pipeline.finetune(task="rt_polarity", preset=pruned.preset_dir, mask=pruned.mask_path,
                           out="runs/rt", export_tflite=True)
```
"""

from tf_rpp.pipeline.finetuning import FinetuneConfig
from tf_rpp.pipeline.finetuning import FinetuneResult
from tf_rpp.pipeline.finetuning import finetune
from tf_rpp.pipeline.pruning import PruneConfig
from tf_rpp.pipeline.pruning import PruneResult
from tf_rpp.pipeline.pruning import prune

__all__ = ["FinetuneConfig", "FinetuneResult", "PruneConfig", "PruneResult", "finetune", "prune"]
