"""Vocabulary trimming: keep only the tokens a task's text uses (a smaller phone file).

Example:

```python
small, kept = tf_rpp.export.trim_vocabulary(classifier, train_texts)
tf_rpp.export.export_tflite(small, "model.tflite", quantize="dynamic", labels=["negative", "positive"])
```
"""

import numpy as np

from tf_rpp.structured import shrink


def trim_vocabulary(classifier, texts, keep_characters=True, batch_size=512):
    """A copy of `classifier` whose vocabulary holds only the tokens `texts` use.

    The token embedding is most of a small BERT's file (MiniLM: 30522 x 384,
    half of all weights), and one task's text uses a fraction of it. Trimming
    keeps the special tokens, every token that tokenizing `texts` produces,
    and (with `keep_characters`) every single-character piece, so any word
    made of known characters still tokenizes, into shorter pieces, instead of
    becoming `[UNK]`. Rows are kept in their original order.

    On texts whose tokens were all kept the trimmed model gives the original
    logits exactly; other texts are tokenized differently (more, shorter
    pieces), so measure the accuracy on held-out data (the TFLite bench does).
    Pass training texts only, never the evaluation set.

    Args:
        classifier: a keras-hub BERT text classifier with a preprocessor
            (`BertBackbone` or `ShrunkBertBackbone`).
        texts: strings: the task's training texts, or any corpus to cover.
        keep_characters: also keep all single-character pieces (`a`, `##a`).
        batch_size: texts tokenized at a time.

    Returns:
        `(trimmed_classifier, kept_ids)`: a new classifier with a new
        tokenizer and preprocessor, and the original ids of its vocabulary.

    Example:

    ```python
    small, kept = tf_rpp.export.trim_vocabulary(classifier, train_texts)
    tf_rpp.export.export_tflite(small, "model.tflite", quantize="dynamic", labels=["negative", "positive"])
    ```
    """
    preprocessor = getattr(classifier, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("trim_vocabulary needs a classifier with a preprocessor and its tokenizer.")
    texts = [t for t in texts if isinstance(t, str)]
    if not texts:
        raise ValueError("trim_vocabulary needs at least one text to know which tokens to keep.")
    vocabulary = list(tokenizer.get_vocabulary())
    keep = np.zeros(len(vocabulary), bool)
    for token in tokenizer.special_tokens + [tokenizer.oov_token]:
        keep[vocabulary.index(token)] = True
    if keep_characters:
        keep |= np.array([len(t) == 1 or (t.startswith("##") and len(t) == 3) for t in vocabulary])
    for i in range(0, len(texts), batch_size):
        ids = tokenizer(texts[i:i + batch_size])
        rows = ids.to_list() if hasattr(ids, "to_list") else ids
        for row in rows:
            keep[np.asarray(row, dtype=np.int64)] = True
    kept_ids = np.flatnonzero(keep)

    new_tokenizer = type(tokenizer).from_config(tokenizer.get_config())
    new_tokenizer.set_vocabulary([vocabulary[i] for i in kept_ids])
    new_preprocessor = type(preprocessor).from_config({**preprocessor.get_config(), "tokenizer": new_tokenizer})

    backbone = classifier.backbone
    config = backbone.get_config()
    config["vocabulary_size"] = int(len(kept_ids))
    new_backbone = type(backbone).from_config(config)
    weights = []
    for variable, value in zip(backbone.weights, backbone.get_weights()):
        weights.append(value[kept_ids] if variable is backbone.token_embedding.embeddings else value)
    new_backbone.set_weights(weights)
    return shrink.with_backbone(classifier, new_backbone, new_preprocessor), kept_ids
