"""TFLite metadata: what MediaPipe Tasks reads from a `.tflite` to run it as is.

MediaPipe's `TextClassifier` (the successor of the TFLite Task Library's
`BertNLClassifier`, the same C++ core on Android, iOS and the web) runs a BERT
`.tflite` only when the file carries TFLite metadata: which input tensor holds
the token ids, the mask and the segment ids, a `BertTokenizer` process unit
with the WordPiece vocabulary, and the label names of the output scores.
`write_classifier_metadata` adds exactly that, in the layout of MediaPipe's own
`text_classifier.MetadataWriter.create_for_bert_model`:

- a `TFLITE_METADATA` entry in the model's flatbuffer, a `ModelMetadata`
  table (file identifier `M001`, minimum parser version 1.1.0, the version
  that introduced tokenizer process units);
- the associated files appended to the model as a zip archive (a `.tflite`
  stays a valid flatbuffer; the runtimes find the archive at its end):
  `vocab.txt` (VOCABULARY), `labels.txt` (TENSOR_AXIS_LABELS of the output)
  and `tokenizer.json` (DESCRIPTIONS: the tokenizer settings MediaPipe's
  schema has no field for, such as lowercasing, and whether the output is
  probabilities or logits, for `tf_rpp_lite`).

It is written with the metadata schema's flatc-generated Python
(`tf_rpp.export._metadata_schema`, copied from the mediapipe 0.10.21
wheel) and the TFLite model schema that `ai-edge-litert` ships, not with
MediaPipe's metadata writer: mediapipe pins `numpy<2` and `protobuf<5`, which
TensorFlow 2.21 cannot share an environment with, and mediapipe 1.2.2's writer
fails to import.

Example:

```python
tf_rpp.export.metadata.write_classifier_metadata(
    "model.tflite", vocabulary=tokenizer.get_vocabulary(), labels=["negative", "positive"],
    tokenizer_settings={"lowercase": True}, scores="probabilities")
tf_rpp_lite.packed_files("model.tflite")["labels.txt"]   # b"negative\\npositive"
```
"""

import io
import json
import os
import zipfile

import flatbuffers

from tf_rpp.export import _metadata_schema as fb
from tf_rpp._files import atomic_write
from tf_rpp_lite.formats import EMBEDDED_FORMAT

METADATA_NAME = b"TFLITE_METADATA"
MIN_PARSER_VERSION = "1.1.0"
SCORES = ("probabilities", "logits")
# Input roles by the names tf_rpp's export gives the signature's inputs, and the
# metadata names MediaPipe's BertInputTensorsMd uses for them.
INPUT_ROLES = (("token_ids", "ids", "Tokenized ids of the input text."),
               ("padding_mask", "mask", "Mask with 1 for real tokens and 0 for padding tokens."),
               ("segment_ids", "segment_ids", "0 for the first sequence, 1 for the second sequence if exists."))


def _model_schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def _file(name, kind, description):
    associated = fb.AssociatedFileT()
    associated.name, associated.type, associated.description = name, kind, description
    return associated


def _tensor(name, description, files=(), feature=True, score_range=None):
    tensor = fb.TensorMetadataT()
    tensor.name, tensor.description = name, description
    tensor.content = fb.ContentT()
    tensor.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    tensor.content.contentProperties = fb.FeaturePropertiesT()
    tensor.stats = fb.StatsT()
    if score_range is not None:
        tensor.stats.min, tensor.stats.max = [score_range[0]], [score_range[1]]
    if files:
        tensor.associatedFiles = list(files)
    return tensor


def input_roles(tensor_names):
    """Maps each of the model's input tensor names to its role (`token_ids`, `padding_mask`, `segment_ids`).

    The converter names inputs `serving_default_<name>:0`; a name is matched by
    the role it contains.

    Example:

    >>> input_roles(["serving_default_padding_mask:0", "serving_default_segment_ids:0",
    ...              "serving_default_token_ids:0"])
    ['padding_mask', 'segment_ids', 'token_ids']
    """
    roles = []
    for name in tensor_names:
        found = [role for role, _, _ in INPUT_ROLES if role in name]
        if len(found) != 1:
            raise ValueError(f"Cannot tell the role of input tensor {name!r}: expected one of "
                             f"{[r for r, _, _ in INPUT_ROLES]} in its name (tf_rpp.export names them so).")
        roles.append(found[0])
    if sorted(roles) != sorted(r for r, _, _ in INPUT_ROLES):
        raise ValueError(f"A BERT classifier has the three inputs {[r for r, _, _ in INPUT_ROLES]}; "
                         f"the model has {list(tensor_names)}.")
    return roles


def check_classifier_inputs(vocabulary, labels, scores):
    """Validates what `write_classifier_metadata` needs, before any file is written.

    Example:

    >>> check_classifier_inputs(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good"], ["neg", "pos"], "probabilities")
    """
    if scores not in SCORES:
        raise ValueError(f"`scores` must be one of {SCORES}; received {scores!r}.")
    vocabulary = list(vocabulary or [])
    missing = [t for t in ("[CLS]", "[SEP]", "[PAD]") if t not in vocabulary]
    if not vocabulary or missing:
        raise ValueError("TFLite metadata needs the model's WordPiece vocabulary (a tokenizer with [CLS], [SEP], "
                         f"[PAD]); missing: {missing or 'the whole vocabulary'}. Pass tokenizer= or metadata=False.")
    if not labels or any(not isinstance(label, str) or not label.strip() or "\n" in label for label in labels):
        raise ValueError("TFLite metadata needs one non-empty name per class (labels=['negative', 'positive']); "
                         f"received {labels!r}. Pass labels= or metadata=False.")


def write_classifier_metadata(path, vocabulary, labels, tokenizer_settings=None, scores="probabilities",
                              name="tf_rpp text classifier", description=None):
    """Adds MediaPipe-readable TFLite metadata and associated files to a BERT classifier `.tflite`, in place.

    Args:
        path: a `.tflite` with the inputs `token_ids`, `padding_mask`,
            `segment_ids` (int32 `[1, sequence_length]`) and one output of
            class scores, as `tf_rpp.export.export_tflite` writes it.
        vocabulary: the WordPiece vocabulary, in id order.
        labels: one name per output class.
        tokenizer_settings: settings `tf_rpp_lite` needs beyond the vocabulary
            (`lowercase`, `strip_accents`, `split_on_cjk`, `oov_token`).
        scores: what the output holds, `"probabilities"` (softmax in the
            graph) or `"logits"`.
        name, description: the model's name and description in the metadata.

    Returns:
        The size of the file in bytes. The file is replaced atomically; metadata
        already in it is replaced.

    Example:

    ```python
    write_classifier_metadata("model.tflite", tokenizer.get_vocabulary(), ["negative", "positive"],
                              {"lowercase": True})
    ```
    """
    check_classifier_inputs(vocabulary, labels, scores)
    schema = _model_schema()
    with open(path, "rb") as f:
        content = f.read()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    for buffer in model.buffers:
        # ai-edge-quantizer stores constants after the flatbuffer, by offset: repacking moves
        # everything, so they come back inline (a model under 2 GB fits in the flatbuffer).
        if buffer.offset and buffer.offset > 1:
            buffer.data = bytearray(content[buffer.offset:buffer.offset + buffer.size])
            buffer.offset, buffer.size = 0, 0
    if len(model.subgraphs) != 1:
        raise ValueError(f"{path!r} has {len(model.subgraphs)} subgraphs; TFLite metadata describes one.")
    graph = model.subgraphs[0]
    input_names = [graph.tensors[i].name.decode() for i in graph.inputs]
    if len(graph.outputs) != 1:
        raise ValueError(f"{path!r} has {len(graph.outputs)} outputs; a classifier has one, its class scores.")
    classes = int(graph.tensors[graph.outputs[0]].shape[-1])
    if classes != len(labels):
        raise ValueError(f"The model scores {classes} classes but {len(labels)} labels were given: {labels!r}.")
    roles = {role: (meta_name, text) for role, meta_name, text in INPUT_ROLES}
    inputs = [_tensor(*roles[role]) for role in input_roles(input_names)]
    label_file = _file("labels.txt", fb.AssociatedFileType.TENSOR_AXIS_LABELS, "Labels for categories that the model "
                       "can recognize.")
    output = _tensor("score", "Probabilities of the labels respectively." if scores == "probabilities"
                     else "Logits of the labels respectively (no softmax in the graph).", [label_file],
                     score_range=(0.0, 1.0) if scores == "probabilities" else None)

    tokenizer = fb.ProcessUnitT()
    tokenizer.optionsType = fb.ProcessUnitOptions.BertTokenizerOptions
    tokenizer.options = fb.BertTokenizerOptionsT()
    tokenizer.options.vocabFile = [_file("vocab.txt", fb.AssociatedFileType.VOCABULARY,
                                         "Vocabulary file to convert natural language words to embedding vectors.")]
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = inputs, [output]
    subgraph.inputProcessUnits = [tokenizer]
    meta = fb.ModelMetadataT()
    meta.name = name
    meta.description = description or ("Classifies text into " + ", ".join(labels) + "; BERT pruned with tf_rpp "
                                        "(Reweighted Proximal Pruning).")
    meta.subgraphMetadata = [subgraph]
    meta.associatedFiles = [_file("tokenizer.json", fb.AssociatedFileType.DESCRIPTIONS,
                                  "tf_rpp tokenizer settings and output kind, for tf_rpp_lite.")]
    meta.minParserVersion = MIN_PARSER_VERSION
    builder = flatbuffers.Builder(0)
    builder.Finish(meta.Pack(builder), b"M001")
    metadata_buffer = schema.BufferT()
    metadata_buffer.data = bytearray(builder.Output())

    entries = [m for m in (model.metadata or []) if m.name == METADATA_NAME]
    if entries:  # replace what an earlier call wrote
        model.buffers[entries[0].buffer] = metadata_buffer
    else:
        model.buffers.append(metadata_buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
        model.metadata = (model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), b"TFL3")

    settings = {"format": EMBEDDED_FORMAT, "scores": scores, "vocabulary_file": "vocab.txt",
                "labels_file": "labels.txt", "lowercase": False, "strip_accents": False, "split_on_cjk": True,
                "oov_token": "[UNK]", **(tokenizer_settings or {})}
    archive = io.BytesIO()
    archive.write(builder.Output())
    with zipfile.ZipFile(archive, "a") as zf:  # appended after the flatbuffer, as MediaPipe's populator does
        zf.writestr("vocab.txt", "\n".join(vocabulary))
        zf.writestr("labels.txt", "\n".join(labels))
        zf.writestr("tokenizer.json", json.dumps(settings, ensure_ascii=False))
    atomic_write(path, archive.getvalue())
    return os.path.getsize(path)


def read_metadata(path):
    """The `ModelMetadataT` of a `.tflite` (None when it has none).

    Example:

    ```python
    meta = read_metadata("model.tflite")
    [t.name for t in meta.subgraphMetadata[0].inputTensorMetadata]    # [b'ids', b'mask', b'segment_ids']
    ```
    """
    schema = _model_schema()
    with open(path, "rb") as f:
        content = f.read()
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            return fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(data, 0))
    return None
