"""The whole flow as Python calls: compress, or its stages prune and finetune.

`compress(...)` runs the measured recipe end to end on a task or your own files
(dense fine-tune, upstream RPP, pruned fine-tune distilling the dense model,
phone-ready `.tflite` files, a table). Its stages are public too:
`prune(PruneConfig(...))` learns the universal mask (RPP or magnitude on a
pre-training objective); `finetune(FinetuneConfig(...))` trains a task with
that mask fixed (or structured RPP), evaluates, checks the mask held and
exports. Each returns a result object and writes a JSON report; the `tf-rpp`
command calls exactly these.

Example:

```python
from tf_rpp import pipeline
pruned = pipeline.prune(out="runs/prune", target_sparsity=0.6)
result = pipeline.finetune(task="rt_polarity", preset=pruned.preset_dir, mask=pruned.mask_path,
                           out="runs/rt", export_tflite=True)
```
"""

from tf_rpp.pipeline.compression import CompressConfig
from tf_rpp.pipeline.compression import CompressResult
from tf_rpp.pipeline.compression import compress
from tf_rpp.pipeline.configs import FinetuneConfig
from tf_rpp.pipeline.configs import FinetuneResult
from tf_rpp.pipeline.configs import PruneConfig
from tf_rpp.pipeline.configs import PruneResult
from tf_rpp.pipeline.finetuning import finetune
from tf_rpp.pipeline.pruning import prune

__all__ = ["CompressConfig", "CompressResult", "FinetuneConfig", "FinetuneResult", "PruneConfig", "PruneResult",
           "compress", "finetune", "prune"]
