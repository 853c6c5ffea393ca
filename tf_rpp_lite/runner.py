"""Running an exported tf_rpp `.tflite` classifier: interpreter, tokenizer, packing, scores."""

import json
import os
import zipfile

import numpy as np

from tf_rpp_lite.formats import EMBEDDED_FORMAT
from tf_rpp_lite.formats import INPUT_NAMES
from tf_rpp_lite.formats import TOKENIZER_FORMAT
from tf_rpp_lite.packing import BertPacker
from tf_rpp_lite.tokenizer import WordPieceTokenizer



def packed_files(model_path):
    """The files packed at the end of a `.tflite` with its TFLite metadata (name -> bytes; {} if none).

    Example:

    ```python
    packed_files("model.tflite")["labels.txt"]    # b'negative\npositive'
    ```
    """
    try:
        with zipfile.ZipFile(model_path) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_tokenizer_config(model_path, tokenizer_path=None):
    """The tokenizer settings, vocabulary, labels and output kind of an export, from the file itself or beside it.

    Returns a dict with `vocabulary`, `labels`, `lowercase`, `strip_accents`,
    `split_on_cjk`, `oov_token` and `scores` (`"probabilities"` or `"logits"`).
    Exports with TFLite metadata carry it inside; `metadata=False` ones have
    `<model>.tokenizer.json` beside them.

    Example:

    ```python
    read_tokenizer_config("model.tflite")["labels"]    # ['negative', 'positive']
    ```
    """
    files = {} if tokenizer_path else packed_files(model_path)
    if "tokenizer.json" in files:
        config = json.loads(files["tokenizer.json"])
        if config.get("format") != EMBEDDED_FORMAT:
            raise ValueError(f"{model_path!r} packs a tokenizer.json that is not {EMBEDDED_FORMAT}.")
        config["vocabulary"] = files[config["vocabulary_file"]].decode("utf-8").split("\n")
        labels = config.get("labels_file")
        config["labels"] = files[labels].decode("utf-8").split("\n") if labels in files else None
        return config
    tokenizer_path = tokenizer_path or os.path.splitext(model_path)[0] + ".tokenizer.json"
    if not os.path.exists(tokenizer_path):
        raise FileNotFoundError(f"{model_path!r} has no TFLite metadata and no tokenizer file at {tokenizer_path!r}; "
                                "tf_rpp.export.export_tflite writes the metadata into the file.")
    with open(tokenizer_path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("format") != TOKENIZER_FORMAT:
        raise ValueError(f"{tokenizer_path!r} is not a {TOKENIZER_FORMAT} file.")
    if config.get("scores") not in ("probabilities", "logits"):
        raise ValueError(f"{tokenizer_path!r} does not say whether the model outputs probabilities or logits "
                         "(`scores`); export the model again.")
    return config


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
        tokenizer_path: a tokenizer JSON to use instead of what the file
            carries (default: the file's metadata, else `<model>.tokenizer.json`).
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
        config = read_tokenizer_config(model_path, tokenizer_path)
        self.scores_kind = config["scores"]
        self.tokenizer = WordPieceTokenizer(
            config["vocabulary"], config["lowercase"], config["strip_accents"], config["split_on_cjk"],
            config.get("oov_token", "[UNK]"))
        ids = self.tokenizer.ids
        self.labels = config.get("labels")
        inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self._inputs = {key: next(d for n, d in inputs.items() if key in n) for key in INPUT_NAMES}
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

    def scores(self, texts):
        """The model's outputs for texts, `[len(texts), num_classes]`: probabilities or logits (`scores_kind`)."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts:
            return np.zeros((0, int(self._output["shape"][-1])), np.float32)
        return self.run(*self.encode(texts)[0])

    def feed(self, token_ids, segment_ids, padding_mask):
        """Sets one batch of packed inputs (exactly the signature's batch size) on the interpreter."""
        for key, value in zip(INPUT_NAMES, (token_ids, segment_ids, padding_mask)):
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
        """`(labels, probabilities)`: label names (or indices) and class probabilities."""
        probabilities = self.scores(texts).astype(np.float32)
        if self.scores_kind == "logits":  # exported with scores="logits": softmax here
            shifted = np.exp(probabilities - probabilities.max(axis=-1, keepdims=True))
            probabilities = shifted / shifted.sum(axis=-1, keepdims=True)
        indices = probabilities.argmax(axis=-1)
        labels = [self.labels[i] for i in indices] if self.labels else indices.tolist()
        return labels, probabilities
