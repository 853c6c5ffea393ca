"""Structured pruning: whole attention heads, feed-forward neurons and encoder layers, removed for speed.

`groups` says which weights a head or a neuron owns; `GroupRPPOptimizer`
(`tf_rpp.optimizers`) drives whole groups to zero; `shrink` then builds the
physically smaller model that computes the same function. `layer_drop` keeps
some of the encoder layers: the smaller dense model structured pruning is
measured against.

Example:

```python
optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-4))
classifier.compile(optimizer=optimizer, loss=...)
classifier.fit(ds, callbacks=[tf_rpp.RPPCallback(tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 400))])
small = tf_rpp.structured.shrink_classifier(classifier)
```
"""

from tf_rpp.structured import groups
from tf_rpp.structured import layer_drop
from tf_rpp.structured import shrink
from tf_rpp.structured.groups import GroupSet
from tf_rpp.structured.groups import bert_groups
from tf_rpp.structured.layer_drop import drop_classifier_layers
from tf_rpp.structured.layer_drop import drop_layers
from tf_rpp.structured.layer_drop import layers_to_keep
from tf_rpp.structured.shrink import ShrunkBertBackbone
from tf_rpp.structured.shrink import parameter_counts
from tf_rpp.structured.shrink import shrink_backbone
from tf_rpp.structured.shrink import shrink_classifier

__all__ = [
    "GroupSet",
    "ShrunkBertBackbone",
    "bert_groups",
    "drop_classifier_layers",
    "drop_layers",
    "groups",
    "layer_drop",
    "layers_to_keep",
    "parameter_counts",
    "shrink",
    "shrink_backbone",
    "shrink_classifier",
]
