"""Run an exported tf_rpp `.tflite` classifier without TensorFlow or Keras.

Needs only NumPy and a TFLite interpreter, tried in this order:
`ai_edge_litert`, `tflite_runtime`, then `tensorflow.lite` (last resort). The
WordPiece tokenizer here is pure Python and gives exactly the token ids of
keras-hub's `BertTokenizer`; its settings, vocabulary and label names travel
inside the `.tflite` (TFLite metadata and packed files, what MediaPipe Tasks
reads too); exports from before that have them in `model.tokenizer.json`
beside the model, which is still read.

    from tf_rpp_lite import TFLiteClassifier
    classifier = TFLiteClassifier("model.tflite")
    labels, probabilities = classifier.classify(["a wonderful film", "a dull mess"])

Command line: `tf-rpp-classify model.tflite "a wonderful film"`.

Modules: `tokenizer` (WordPiece), `packing` (`[CLS] a [SEP] b [SEP]`),
`runner` (`TFLiteClassifier`, `load_interpreter`), `cli` (`tf-rpp-classify`).
"""

from tf_rpp_lite.cli import main
from tf_rpp_lite.packing import BertPacker
from tf_rpp_lite.formats import EMBEDDED_FORMAT
from tf_rpp_lite.formats import TOKENIZER_FORMAT
from tf_rpp_lite.runner import TFLiteClassifier
from tf_rpp_lite.runner import load_interpreter
from tf_rpp_lite.runner import packed_files
from tf_rpp_lite.runner import read_tokenizer_config
from tf_rpp_lite.tokenizer import MAX_BYTES_PER_WORD
from tf_rpp_lite.tokenizer import WordPieceTokenizer

__all__ = ["EMBEDDED_FORMAT", "MAX_BYTES_PER_WORD", "TOKENIZER_FORMAT", "BertPacker", "TFLiteClassifier",
           "WordPieceTokenizer", "load_interpreter", "main", "packed_files", "read_tokenizer_config"]
