"""Batching preprocessed text by length: less padding, fewer wasted matmuls.

Example:

```python
batches = length_grouped(features.shuffle(10_000).repeat(), 32)
```
"""

import tensorflow as tf


def length_grouped(dataset, batch_size, widths=(16, 32, 48)):
    """Batches preprocessed examples of similar length, each batch cut to its group's width.

    Most sentences are far shorter than the sequence length (`rt_polarity`:
    27 of 64 tokens on average), so a fixed-width batch spends most of its
    matmuls on padding. Each example goes to the narrowest group that holds
    its real tokens (`padding_mask`); a batch is `batch_size` examples of one
    group, padded only to that group's width (the last group is the full
    sequence length). Under XLA each width compiles once. The order of the
    groups' batches follows the input order, so shuffle before.

    Args:
        dataset: unbatched `(x, y)` with `x` a keras-hub BERT feature dict of
            fixed length (`token_ids`, `padding_mask`, `segment_ids`), as a
            `BertTextClassifierPreprocessor` makes; `y` any fixed-shape label.
        batch_size: examples per batch (every batch is full).
        widths: group widths below the sequence length, increasing.

    Example:

    ```python
    features = train.map(lambda x, y: (classifier.preprocessor(x), y))
    batches = length_grouped(features.shuffle(10_000).repeat(), 32)
    classifier.preprocessor = None      # the batches are preprocessed
    classifier.fit(batches, steps_per_epoch=300)
    ```
    """
    x_spec = dataset.element_spec[0]
    full = int(x_spec["token_ids"].shape[-1])
    widths = sorted(w for w in set(int(w) for w in widths) if 0 < w < full)

    def trim(x, y):
        length = tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32))
        return {k: v[:length] for k, v in x.items()}, y

    # bucket_by_sequence_length pads each bucket to its boundary - 1: boundaries are widths + 1.
    boundaries = [w + 1 for w in widths] + [full + 1]
    return dataset.map(trim, num_parallel_calls=tf.data.AUTOTUNE).bucket_by_sequence_length(
        element_length_func=lambda x, y: tf.shape(x["token_ids"])[0],
        bucket_boundaries=boundaries, bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        pad_to_bucket_boundary=True, drop_remainder=True)
