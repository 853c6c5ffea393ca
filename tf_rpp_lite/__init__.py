"""Run an exported tf_rpp `.tflite` classifier without TensorFlow or Keras.

Needs only NumPy and a TFLite interpreter, tried in this order:
`ai_edge_litert`, `tflite_runtime`, then `tensorflow.lite` (last resort). The
WordPiece tokenizer here is pure Python and gives exactly the token ids of
keras-hub's `BertTokenizer`; its settings and vocabulary travel in the JSON
file that `tf_rpp.export.export_tflite` writes next to the model
(`model.tflite` -> `model.tokenizer.json`).

    from tf_rpp_lite import TFLiteClassifier
    classifier = TFLiteClassifier("model.tflite")
    labels, probabilities = classifier.classify(["a wonderful film", "a dull mess"])

Command line: `tf-rpp-classify model.tflite "a wonderful film"`.
"""

import argparse
import json
import os
import sys
import unicodedata

import numpy as np

__all__ = ["BertPacker", "TFLiteClassifier", "WordPieceTokenizer", "load_interpreter", "main"]

TOKENIZER_FORMAT = "tf_rpp.tokenizer/1"
MAX_BYTES_PER_WORD = 100  # keras-hub / tensorflow-text: longer words become the OOV token

# Unicode default-ignorable code points, dropped by NFKC_Casefold (as keras-hub).
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5),
    (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164),
    (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
_CJK = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F),
)


def _in_ranges(char, ranges):
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


def _is_whitespace(char):
    # keras-hub's split regex: [ \t\n\r\f], \p{Cc}, \p{Cf}
    return char in " \t\n\r\f" or unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
    # All non-letter/number ASCII, and \p{P}.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _casefold(text):
    # tensorflow-text's case_fold_utf8: NFKC_Casefold, which drops default ignorables.
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return "".join(c for c in text if not _in_ranges(c, _DEFAULT_IGNORABLE))


class WordPieceTokenizer:
    """keras-hub's WordPiece tokenization, in pure Python.

    Args:
        vocabulary: the token list (index = id).
        lowercase, strip_accents, split_on_cjk: as keras-hub's `BertTokenizer`.
        oov_token, suffix_indicator: as keras-hub.

    Example:

    >>> tokenizer = WordPieceTokenizer(["[UNK]", "a", "wonder", "##ful", "film", "!"], lowercase=True)
    >>> tokenizer.tokenize("A wonderful film!")
    ['a', 'wonder', '##ful', 'film', '!']
    >>> tokenizer.encode("A wonderful film!")
    [1, 2, 3, 4, 5]
    """

    def __init__(self, vocabulary, lowercase=False, strip_accents=True, split_on_cjk=True,
                 oov_token="[UNK]", suffix_indicator="##"):
        self.vocabulary = list(vocabulary)
        self.ids = {token: i for i, token in enumerate(self.vocabulary)}
        if oov_token not in self.ids:
            raise ValueError(f"The vocabulary has no OOV token {oov_token!r}.")
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.split_on_cjk = split_on_cjk
        self.oov_token = oov_token
        self.suffix_indicator = suffix_indicator
        self._cache = {}

    def words(self, text):
        """Pre-tokenization: accents, splitting on whitespace/punctuation/CJK, case folding."""
        if self.strip_accents:
            text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
        words, current = [], []
        for char in text:
            separate = _is_punctuation(char) or (self.split_on_cjk and _in_ranges(char, _CJK))
            if separate or _is_whitespace(char):
                if current:
                    words.append("".join(current))
                    current = []
                if separate:
                    words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
        if self.lowercase:
            words = [_casefold(w) for w in words]
        return [w for w in words if w]

    def _word_pieces(self, word):
        if len(word.encode("utf-8")) > MAX_BYTES_PER_WORD:
            return [self.oov_token]
        pieces, start = [], 0
        while start < len(word):
            end, piece = len(word), None
            while start < end:
                candidate = word[start:end] if start == 0 else self.suffix_indicator + word[start:end]
                if candidate in self.ids:
                    piece = candidate
                    break
                end -= 1
            if piece is None:
                return [self.oov_token]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text):
        """Word pieces of `text`."""
        pieces = []
        for word in self.words(text):
            if word not in self._cache:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[word] = self._word_pieces(word)
            pieces.extend(self._cache[word])
        return pieces

    def encode(self, text):
        """Token ids of `text`."""
        return [self.ids[p] for p in self.tokenize(text)]


class BertPacker:
    """Packs one or two token-id lists as `[CLS] a [SEP] (b [SEP])`, like keras-hub.

    Truncation is keras-hub's `round_robin`: one token per segment in turn
    until the sequence is full.

    Example:

    >>> BertPacker(cls_id=101, sep_id=102, pad_id=0, sequence_length=6).pack([[7, 8, 9, 10]])
    (array([101,   7,   8,   9,  10, 102], dtype=int32), array([0, 0, 0, 0, 0, 0], dtype=int32), array([1, 1, 1, 1, 1, 1], dtype=int32))
    """

    def __init__(self, cls_id, sep_id, pad_id, sequence_length):
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.sequence_length = sequence_length

    def pack(self, segments):
        budget = self.sequence_length - 1 - len(segments)
        if budget < 0:
            raise ValueError(f"sequence_length {self.sequence_length} cannot hold {len(segments)} segments.")
        keep = [0] * len(segments)
        while budget > 0 and any(keep[i] < len(s) for i, s in enumerate(segments)):
            for i, segment in enumerate(segments):
                if budget > 0 and keep[i] < len(segment):
                    keep[i] += 1
                    budget -= 1
        ids, types = [self.cls_id], [0]
        for i, segment in enumerate(segments):
            part = list(segment[: keep[i]]) + [self.sep_id]
            ids += part
            types += [i] * len(part)
        mask = [1] * len(ids)
        pad = self.sequence_length - len(ids)
        ids += [self.pad_id] * pad
        types += [0] * pad
        mask += [0] * pad
        return (np.asarray(ids, np.int32), np.asarray(types, np.int32), np.asarray(mask, np.int32))


def load_interpreter(model_path, num_threads=None):
    """A TFLite interpreter for `model_path` and the name of the runtime that provides it.

    Tries `ai_edge_litert`, then `tflite_runtime`, then `tensorflow.lite`.

    Raises:
        FileNotFoundError, ValueError: a missing, truncated or non-TFLite file.
        ImportError: no TFLite runtime is installed.
    """
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"No model at {model_path!r}.")
    with open(model_path, "rb") as f:
        header = f.read(8)
    if len(header) < 8 or header[4:8] != b"TFL3":
        raise ValueError(f"{model_path!r} is not a TFLite model (no TFL3 identifier): wrong or corrupt file.")
    errors = []
    for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        try:
            if name == "ai_edge_litert":
                from ai_edge_litert.interpreter import Interpreter
                from ai_edge_litert.interpreter import OpResolverType
            elif name == "tflite_runtime":
                from tflite_runtime.interpreter import Interpreter
                from tflite_runtime.interpreter import OpResolverType
            else:
                import tensorflow

                Interpreter = tensorflow.lite.Interpreter
                OpResolverType = tensorflow.lite.experimental.OpResolverType
        except ImportError as e:
            errors.append(f"{name}: {e}")
            continue
        try:
            interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            if "delegate" not in str(e):
                raise ValueError(f"{model_path!r} could not be loaded as a TFLite model ({name}): {e}") from None
            # XNNPACK (the default delegate) has no kernel for some layouts, e.g.
            # sparse full-integer FULLY_CONNECTED; the builtin kernels run them.
            try:
                interpreter = Interpreter(model_path=model_path, num_threads=num_threads,
                                          experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as e2:
                raise ValueError(f"{model_path!r} could not be loaded as a TFLite model ({name}): {e2}") from None
            name += " (builtin kernels, XNNPACK declined the model)"
        return interpreter, name
    raise ImportError("No TFLite runtime found: pip install ai-edge-litert (or tflite-runtime). " + "; ".join(errors))


class TFLiteClassifier:
    """Raw text in, labels and probabilities out, from a tf_rpp `.tflite` export.

    Args:
        model_path: the `.tflite` file.
        tokenizer_path: its tokenizer JSON (default: `<model>.tokenizer.json`).
        num_threads: interpreter threads (default: the runtime's).

    Example:

    ```python
    classifier = TFLiteClassifier("runs/main/pruned/model.tflite")
    labels, probabilities = classifier.classify(["a wonderful film"])
    print(classifier.runtime)   # which interpreter ran it
    ```
    """

    def __init__(self, model_path, tokenizer_path=None, num_threads=None):
        self.interpreter, self.runtime = load_interpreter(model_path, num_threads)
        tokenizer_path = tokenizer_path or os.path.splitext(model_path)[0] + ".tokenizer.json"
        if not os.path.exists(tokenizer_path):
            raise FileNotFoundError(f"No tokenizer file at {tokenizer_path!r}; tf_rpp.export.export_tflite writes it.")
        with open(tokenizer_path, encoding="utf-8") as f:
            config = json.load(f)
        if config.get("format") != TOKENIZER_FORMAT:
            raise ValueError(f"{tokenizer_path!r} is not a {TOKENIZER_FORMAT} file.")
        self.tokenizer = WordPieceTokenizer(
            config["vocabulary"], config["lowercase"], config["strip_accents"], config["split_on_cjk"],
            config.get("oov_token", "[UNK]"))
        ids = self.tokenizer.ids
        self.labels = config.get("labels")
        inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self._inputs = {key: next(d for n, d in inputs.items() if key in n) for key in ("token_ids", "segment_ids", "padding_mask")}
        self.batch_size, self.sequence_length = (int(x) for x in self._inputs["token_ids"]["shape"])
        self.packer = BertPacker(ids["[CLS]"], ids["[SEP]"], ids["[PAD]"], self.sequence_length)
        self._output = self.interpreter.get_output_details()[0]

    def encode(self, texts):
        """Packed model inputs for texts (strings, or `(a, b)` pairs), and how many were truncated."""
        rows, truncated = [], 0
        for text in texts:
            segments = [self.tokenizer.encode(t) for t in ((text,) if isinstance(text, str) else text)]
            if sum(len(s) for s in segments) + 1 + len(segments) > self.sequence_length:
                truncated += 1
            rows.append(self.packer.pack(segments))
        return tuple(np.stack(column) for column in zip(*rows)), truncated

    def logits(self, texts):
        """Model outputs for texts, `[len(texts), num_classes]`."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, int(self._output["shape"][-1])), np.float32)
        return self.run(*self.encode(texts)[0])

    def feed(self, token_ids, segment_ids, padding_mask):
        """Sets one batch of packed inputs (exactly the signature's batch size) on the interpreter."""
        for key, value in zip(("token_ids", "segment_ids", "padding_mask"), (token_ids, segment_ids, padding_mask)):
            self.interpreter.set_tensor(self._inputs[key]["index"], value)

    def run(self, token_ids, segment_ids, padding_mask):
        """Model outputs for packed inputs of any length, as `encode` returns them."""
        outputs = []
        for start in range(0, len(token_ids), self.batch_size):
            end = start + self.batch_size
            batch = [token_ids[start:end], segment_ids[start:end], padding_mask[start:end]]
            real = len(batch[0])
            if real < self.batch_size:  # pad the last batch to the signature's size
                batch = [np.concatenate([b, np.repeat(b[-1:], self.batch_size - real, 0)]) for b in batch]
            self.feed(*batch)
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self._output["index"])[:real].copy())
        return np.concatenate(outputs)

    def classify(self, texts):
        """`(labels, probabilities)`: label names (or indices) and softmax probabilities."""
        logits = self.logits(texts)
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        indices = probabilities.argmax(axis=-1)
        labels = [self.labels[i] for i in indices] if self.labels else indices.tolist()
        return labels, probabilities


def main(argv=None):
    """`tf-rpp-classify model.tflite TEXT [TEXT ...]`: one line per text."""
    parser = argparse.ArgumentParser(prog="tf-rpp-classify", description=main.__doc__)
    parser.add_argument("model", help="a .tflite file exported by tf_rpp (its .tokenizer.json beside it)")
    parser.add_argument("texts", nargs="+", help="texts to classify; 'premise ||| hypothesis' for pairs")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads")
    args = parser.parse_args(argv)
    try:
        classifier = TFLiteClassifier(args.model, num_threads=args.threads)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(f"tf-rpp-classify: {e}")
    texts = [tuple(t.split(" ||| ", 1)) if " ||| " in t else t for t in args.texts]
    labels, probabilities = classifier.classify(texts)
    print(f"# runtime: {classifier.runtime}", file=sys.stderr)
    for text, label, p in zip(args.texts, labels, probabilities):
        print(f"{label}\t{p.max():.4f}\t{text}")


if __name__ == "__main__":
    main()
