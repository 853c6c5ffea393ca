"""The phone: `.tflite` export with MediaPipe-ready metadata, quantization, vocabulary trimming.

- `export_tflite` (`tflite`): a keras-hub classifier to one `.tflite` that
  MediaPipe Tasks' `TextClassifier` and LiteRT's interpreter load as is;
- `metadata`: the TFLite metadata (input roles, vocabulary, labels) it carries;
- `quantization`: full-integer schemes (a16w8, int8) with ai-edge-quantizer;
- `trim_vocabulary` (`vocabulary`): keep only the tokens a task uses.

Example:

```python
tf_rpp.export.export_tflite(classifier, "model.tflite", sequence_length=64, labels=["negative", "positive"])
```
"""

from tf_rpp.export import metadata
from tf_rpp.export.tflite import CALIBRATED
from tf_rpp.export.tflite import INPUT_NAMES
from tf_rpp.export.tflite import QUANTIZATIONS
from tf_rpp.export.tflite import export_tflite
from tf_rpp.export.tflite import input_names
from tf_rpp.export.tflite import input_signature
from tf_rpp.export.tflite import representative_inputs
from tf_rpp.export.tflite import tokenizer_path
from tf_rpp.export.tflite import tokenizer_settings
from tf_rpp.export.tflite import with_probabilities
from tf_rpp.export.tflite import write_tokenizer
from tf_rpp.export.vocabulary import trim_vocabulary

__all__ = [
    "CALIBRATED",
    "INPUT_NAMES",
    "QUANTIZATIONS",
    "export_tflite",
    "input_names",
    "input_signature",
    "metadata",
    "representative_inputs",
    "tokenizer_path",
    "tokenizer_settings",
    "trim_vocabulary",
    "with_probabilities",
    "write_tokenizer",
]
