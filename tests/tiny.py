"""Tiny keras-hub BERT models and synthetic data, importable without touching devices.

`conftest.py` re-exports these for the tests; `prune_worker.py` (a separate
process that creates its own distribution strategy first) imports them here.
"""

import keras
import keras_hub
import numpy as np
import tensorflow as tf

VOCAB = 64
SEQ = 16


def tiny_backbone(hidden=16, layers=2):
    """A 2-layer keras-hub BERT small enough for a unit test step in ~10 ms."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB, num_layers=layers, num_heads=2, hidden_dim=hidden,
        intermediate_dim=2 * hidden, max_sequence_length=SEQ, dropout=0.0,
    )


def mlm_arrays(n=128, seed=0):
    """Masked-LM batches with learnable structure: odd tokens follow even ones."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    tokens[:, 1::2] = (tokens[:, 0::2] + 1) % VOCAB
    positions = np.tile(np.arange(1, SEQ, 4, dtype="int32"), (n, 1))
    labels = np.take_along_axis(tokens, positions, 1)
    masked = tokens.copy()
    np.put_along_axis(masked, positions, 4, 1)
    x = {
        "token_ids": masked,
        "segment_ids": np.zeros_like(tokens),
        "padding_mask": np.ones_like(tokens),
        "mask_positions": positions,
    }
    return x, labels, np.ones_like(labels, dtype="float32")


def mlm_dataset(n=128, batch=16, seed=0):
    return tf.data.Dataset.from_tensor_slices(mlm_arrays(n, seed)).batch(batch)


def classification_dataset(n=128, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    labels = (tokens[:, 1] > VOCAB // 2).astype("int32")
    x = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens), "padding_mask": np.ones_like(tokens)}
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch)


def tiny_masked_lm(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertMaskedLM(backbone=tiny_backbone(**kwargs), preprocessor=None)


def tiny_classifier(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertTextClassifier(backbone=tiny_backbone(**kwargs), num_classes=2, preprocessor=None)


def compile_mlm(model, optimizer, jit_compile=False):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def compile_classifier(model, optimizer, jit_compile=False):
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model


def save_small_preset(folder):
    """A 2-layer, hidden-64 BERT preset folder with MiniLM's real tokenizer (30,522 words), random weights.

    What the end-to-end tests run the pipeline on: every step of the real flow
    (presets, tokenizer, data, export) at a fraction of MiniLM's cost.
    """
    from tf_rpp import models

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=30522, num_layers=2, num_heads=4, hidden_dim=64, intermediate_dim=128,
        max_sequence_length=64, dropout=0.0)
    backbone.save_to_preset(str(folder))
    models.tokenizer().save_to_preset(str(folder))
    return str(folder)


def _encoder_configs():
    kh = keras_hub.models
    common = dict(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
                  max_sequence_length=SEQ, dropout=0.0)
    return {
        "bert": (kh.BertBackbone, common, kh.BertTextClassifier),
        "distil_bert": (kh.DistilBertBackbone, common, kh.DistilBertTextClassifier),
        "roberta": (kh.RobertaBackbone, common, kh.RobertaTextClassifier),
        "xlm_roberta": (kh.XLMRobertaBackbone, common, kh.XLMRobertaTextClassifier),
        # keras-hub has no ELECTRA classifier task; its backbone has BERT's outputs.
        "electra": (kh.ElectraBackbone, dict(vocab_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
                                             embedding_dim=16, intermediate_dim=32, max_sequence_length=SEQ,
                                             dropout=0.0), kh.BertTextClassifier),
        "albert": (kh.AlbertBackbone, dict(common, embedding_dim=8, num_groups=1, num_inner_repetitions=1),
                   kh.AlbertTextClassifier),
        "deberta_v3": (kh.DebertaV3Backbone, dict(common, bucket_size=8), kh.DebertaV3TextClassifier),
    }


ENCODERS = tuple(_encoder_configs())


def tiny_encoder(name, seed=0):
    """A tiny random keras-hub backbone of the family `name` (one of `ENCODERS`)."""
    keras.utils.set_random_seed(seed)
    backbone_cls, config, _ = _encoder_configs()[name]
    return backbone_cls(**config)


def tiny_encoder_classifier(name, seed=0, num_classes=2):
    """The family's keras-hub text classifier on `tiny_encoder(name)`, no preprocessor."""
    backbone = tiny_encoder(name, seed)
    return _encoder_configs()[name][2](backbone=backbone, num_classes=num_classes, preprocessor=None)


def token_batches(model, n=64, batch=16, seed=0):
    """Random token inputs with the model's input names and a learnable label."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(n, SEQ)).astype("int32")
    features = {"token_ids": tokens, "padding_mask": np.ones_like(tokens), "segment_ids": np.zeros_like(tokens)}
    x = {k: v for k, v in features.items() if k in model.input}
    labels = (tokens[:, 1] > VOCAB // 2).astype("int32")
    return tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch)
