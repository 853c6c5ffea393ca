"""Extractive question answering: a span head on any keras-hub backbone, windows, and the best span.

`SpanClassifier` puts one dense layer on the backbone's token outputs and
returns `[batch, 2, sequence_length]` logits: row 0 scores each token as the
answer's start, row 1 as its end. Trained with plain
`SparseCategoricalCrossentropy(from_logits=True)` on labels `[start, end]`.

A context longer than the sequence leaves room for is cut into overlapping
windows (`windows`, BERT's doc-stride scheme): each window is
`[CLS] question [SEP] context piece [SEP]`; a window that does not hold the
whole answer is labelled `[0, 0]` (the first token, "no answer here").
`best_answers` takes, for each question, the best-scoring span over all its
windows (start <= end, both in the context, at most `max_answer_tokens`) and
maps it back to the context's characters.

Contexts are split into words (runs of letters/digits, and single
punctuation marks, as BERT's basic tokenizer does) and each word is
tokenized on its own, so every token knows the characters it came from.

Example:

```python
backbone = tf_rpp.models.backbone("minilm")
tokenizer = tf_rpp.models.tokenizer("minilm")
model = SpanClassifier(backbone)
train = windows(tf_rpp.data.squad.read_json("train-v1.1.json"), tokenizer, 384)
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(to_dataset(train, model).shuffle(10_000).batch(32), epochs=2)
dev_examples = tf_rpp.data.squad.read_json("dev-v1.1.json")
dev = windows(dev_examples, tokenizer, 384)
answers = best_answers(dev_examples, dev, model.predict(to_dataset(dev, model, labels=False).batch(64)))
print(tf_rpp.data.squad.evaluate(answers, dev_examples))
```
"""

import dataclasses
import re

import keras
import numpy as np
import tensorflow as tf

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@keras.saving.register_keras_serializable(package="tf_rpp")
class SpanClassifier(keras.Model):
    """A backbone and a start/end span head: `[batch, 2, sequence_length]` logits.

    Args:
        backbone: a keras-hub backbone (BERT, DistilBERT, RoBERTa, XLM-R,
            ELECTRA, ALBERT, DeBERTaV3, or a shrunk one) whose output is the
            token states or a dict with `sequence_output`.

    Example:

    >>> import keras_hub, numpy as np
    >>> backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2,
    ...                                          hidden_dim=8, intermediate_dim=16, max_sequence_length=8)
    >>> model = SpanClassifier(backbone)
    >>> x = {"token_ids": np.ones((3, 8), "int32"), "segment_ids": np.zeros((3, 8), "int32"),
    ...      "padding_mask": np.ones((3, 8), "int32")}
    >>> tuple(model.predict(x, verbose=0).shape)
    (3, 2, 8)
    """

    def __init__(self, backbone, **kwargs):
        inputs = backbone.input
        outputs = backbone(inputs)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
                                    name="span_logits")(sequence)
        logits = keras.layers.Permute((2, 1), name="start_end_logits")(logits)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        self.backbone = backbone

    def get_config(self):
        return {"backbone": keras.saving.serialize_keras_object(self.backbone), "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(backbone=keras.saving.deserialize_keras_object(config.pop("backbone")), **config)


@dataclasses.dataclass(eq=False)
class Window:
    """One model input cut from one question's context.

    Attributes:
        example: the index of its `QAExample`.
        features: `token_ids`, `segment_ids`, `padding_mask` (int32 arrays).
        char_spans: per position, the `(start, end)` characters of the
            context word the token came from, or `None` outside the context.
        label: `[start, end]` token positions of the answer, `[0, 0]` when
            the window does not hold it.
    """

    example: int
    features: dict
    char_spans: list
    label: tuple


def _special_ids(tokenizer):
    def first(*names):
        for name in names:
            value = getattr(tokenizer, name, None)
            if value is not None:
                return int(value)
        raise ValueError(f"{type(tokenizer).__name__} has none of {names}: which token starts (ends, pads) a "
                         "sequence is unknown.")

    return first("cls_token_id", "start_token_id"), first("sep_token_id", "end_token_id"), first("pad_token_id")


def _tokenize(tokenizer, texts):
    ids = tokenizer(texts)
    return [list(map(int, row)) for row in (ids.to_list() if hasattr(ids, "to_list") else ids)]


def windows(examples, tokenizer, sequence_length, stride=None, max_question_tokens=64):
    """Cuts each example into windows of `sequence_length` tokens (see the module docstring).

    Args:
        examples: `tf_rpp.data.squad.QAExample`s.
        tokenizer: the backbone's keras-hub tokenizer.
        sequence_length: tokens per window.
        stride: context tokens between the starts of two windows of one
            question (default: half of what a window holds).
        max_question_tokens: longer questions are cut to this many tokens
            (at most a third of the sequence).

    Returns:
        A list of `Window`, the windows of each example in order.

    Example:

    ```python
    train = windows(tf_rpp.data.squad.fixture(), tf_rpp.models.tokenizer(), 128)
    ```
    """
    start_id, end_id, pad_id = _special_ids(tokenizer)
    max_question_tokens = min(max_question_tokens, sequence_length // 3)
    if max_question_tokens < 1:
        raise ValueError(f"sequence_length {sequence_length} leaves no room for a question and its context.")
    questions = _tokenize(tokenizer, [e.question for e in examples])
    result = []
    for index, (example, question) in enumerate(zip(examples, questions)):
        question = question[:max_question_tokens]
        words = [(m.start(), m.end()) for m in _WORD.finditer(example.context)]
        pieces = _tokenize(tokenizer, [example.context[a:b] for a, b in words]) if words else []
        tokens, spans = [], []
        for (a, b), ids in zip(words, pieces):
            tokens += ids
            spans += [(a, b)] * len(ids)
        answer_start = example.answer_starts[0]
        answer_end = answer_start + len(example.answers[0])
        inside = [i for i, (a, b) in enumerate(spans) if a < answer_end and b > answer_start]
        room = sequence_length - len(question) - 3
        step = max(1, stride or room // 2)
        offset = 0
        while True:
            piece = slice(offset, min(offset + room, len(tokens)))
            first = len(question) + 2
            ids = [start_id, *question, end_id, *tokens[piece], end_id]
            segments = [0] * first + [1] * (len(ids) - first)
            char_spans = [None] * first + spans[piece] + [None]
            label = (0, 0)
            if inside and inside[0] >= piece.start and inside[-1] < piece.stop:
                label = (first + inside[0] - offset, first + inside[-1] - offset)
            padding = sequence_length - len(ids)
            features = {"token_ids": np.asarray(ids + [pad_id] * padding, "int32"),
                        "segment_ids": np.asarray(segments + [0] * padding, "int32"),
                        "padding_mask": np.asarray([1] * len(ids) + [0] * padding, "int32")}
            result.append(Window(index, features, char_spans + [None] * padding, label))
            if piece.stop >= len(tokens):
                break
            offset += step
    return result


def to_dataset(window_list, model=None, labels=True):
    """`tf.data` of `(features, [start, end])` (or features alone) from windows, unbatched.

    Args:
        window_list: from `windows`.
        model: keep only the inputs this model takes (RoBERTa-style models
            have no `segment_ids`).
        labels: include the labels.

    Example:

    ```python
    batches = to_dataset(train_windows, model).shuffle(10_000).repeat().batch(32)
    ```
    """
    if not window_list:
        raise ValueError("No windows: no examples were given.")
    names = [n for n in window_list[0].features if model is None or n in model.input]
    x = {n: np.stack([w.features[n] for w in window_list]) for n in names}
    if not labels:
        return tf.data.Dataset.from_tensor_slices(x)
    y = np.asarray([w.label for w in window_list], "int32")
    return tf.data.Dataset.from_tensor_slices((x, y))


def best_answers(examples, window_list, logits, max_answer_tokens=30, top_k=20):
    """The best context span of each question over its windows, as text.

    Args:
        examples: the `QAExample`s the windows were cut from.
        window_list: from `windows`.
        logits: the model's `[len(window_list), 2, sequence_length]` outputs.
        max_answer_tokens: the longest span considered.
        top_k: start and end candidates tried per window.

    Returns:
        `{question id: answer text}`, for `tf_rpp.data.squad.evaluate`.

    Example: see the module docstring.
    """
    logits = np.asarray(logits)
    if len(logits) != len(window_list):
        raise ValueError(f"{len(logits)} logit rows for {len(window_list)} windows.")
    best = {}
    for window, (start_logits, end_logits) in zip(window_list, logits):
        spans = window.char_spans
        starts = [i for i in np.argsort(start_logits)[::-1][:top_k] if spans[i] is not None]
        ends = [i for i in np.argsort(end_logits)[::-1][:top_k] if spans[i] is not None]
        for s in starts:
            for e in ends:
                if s <= e < s + max_answer_tokens:
                    score = float(start_logits[s] + end_logits[e])
                    if window.example not in best or score > best[window.example][0]:
                        best[window.example] = (score, spans[s][0], spans[e][1])
    return {example.id: example.context[best[i][1]:best[i][2]] if i in best else ""
            for i, example in enumerate(examples)}
