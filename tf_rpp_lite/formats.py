"""Names of the file formats that `tf_rpp.export` writes and `tf_rpp_lite` reads.

One small module both packages import, so the writer and the reader cannot
drift apart; it imports nothing (tf_rpp_lite runs without TensorFlow).

Example:

>>> TOKENIZER_FORMAT, EMBEDDED_FORMAT
('tf_rpp.tokenizer/1', 'tf_rpp.tokenizer/2')
"""

# The tokenizer JSON written beside a `.tflite` exported with metadata=False.
TOKENIZER_FORMAT = "tf_rpp.tokenizer/1"
# The tokenizer.json packed inside the `.tflite` with vocab.txt and labels.txt.
EMBEDDED_FORMAT = "tf_rpp.tokenizer/2"
# The three int32 inputs of an exported BERT-style classifier, in signature order.
INPUT_NAMES = ("token_ids", "segment_ids", "padding_mask")
