"""Prunes tiny keras-hub BERTs on the Keras backend this process was started with; prints a JSON report.

Run by tests/test_backends.py in a fresh process per backend (Keras fixes the
backend at import): `KERAS_BACKEND=jax python tests/backend_worker.py OUT_DIR`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
from tiny import SEQ  # noqa: E402
from tiny import classification_dataset  # noqa: E402
from tiny import compile_classifier  # noqa: E402
from tiny import tiny_classifier  # noqa: E402

import tf_rpp  # noqa: E402

INPUTS = {"token_ids": np.arange(2 * SEQ, dtype="int32").reshape(2, SEQ) % 50 + 5,
          "segment_ids": np.zeros((2, SEQ), "int32"), "padding_mask": np.ones((2, SEQ), "int32")}


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _mask_held(model, mask):
    after = tf_rpp.SparsityMask.from_model(model, prune=mask.keys)
    return all(bool(np.all(~after[k] | mask[k])) for k in mask.keys)


def unstructured(out):
    model = tiny_classifier(seed=3)
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-3), reweight_every=5)
    compile_classifier(model, optimizer)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=40, frequency=5)
    model.fit(classification_dataset(n=320, batch=16), epochs=3, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    mask = optimizer.get_mask()
    model.fit(classification_dataset(n=64, batch=16, seed=1), epochs=1, verbose=0)  # the mask must hold
    path = os.path.join(out, "rpp.keras")
    model.save(path)
    mask.save(os.path.join(out, "rpp_mask.npz"))
    return {"sparsity": optimizer.sparsity(), "mask_sparsity": mask.sparsity, "frozen": optimizer.frozen,
            "sparsity_before_hardening": optimizer.sparsity_before_hardening, "mask_held": _mask_held(model, mask),
            "l1_strength": optimizer.l1_strength, "logits": _numpy(model(INPUTS)).tolist(), "path": path}


def fixed_mask(out):
    """Fine-tuning with a mask fixed (MaskedOptimizer), the mask made on this backend by magnitude."""
    model = tiny_classifier(seed=5)
    mask = tf_rpp.SparsityMask.from_magnitudes(
        {tf_rpp.selection.weight_key(v): _numpy(v.value) for v in tf_rpp.select_weights(model)}, 0.7)
    inner = keras.optimizers.AdamW(1e-3)  # on PyTorch, Keras's own multi-tensor subclass
    compile_classifier(model, tf_rpp.MaskedOptimizer(inner, mask))
    model.fit(classification_dataset(n=64, batch=16), epochs=2, verbose=0)
    return {"mask_held": _mask_held(model, mask), "sparsity": tf_rpp.SparsityMask.from_model(model).sparsity,
            "masks_gradients": tf_rpp.optimizers.gradients.needs_gradient_masking(inner)}


def structured(out):
    model = tiny_classifier(seed=4)
    # Heads, and whole feed-forward blocks (one of the two layers loses its feed-forward block).
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-3), kinds=("heads", "feedforward"))
    compile_classifier(model, optimizer)
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=40, frequency=5)
    model.fit(classification_dataset(n=320, batch=16), epochs=3, verbose=0, callbacks=[tf_rpp.RPPCallback(schedule)])
    small = tf_rpp.structured.shrink_classifier(model)
    path = os.path.join(out, "shrunk.keras")
    small.save(path)
    return {"removed": optimizer.removed_groups(), "frozen": optimizer.frozen,
            "shrunk_max_diff": float(np.max(np.abs(_numpy(model(INPUTS)) - _numpy(small(INPUTS))))),
            "heads": tf_rpp.structured.parameter_counts(small.backbone)["heads"],
            "intermediate": tf_rpp.structured.parameter_counts(small.backbone)["intermediate"],
            "logits": _numpy(small(INPUTS)).tolist(), "path": path}


def distillation(out):
    loss = tf_rpp.distill.DistillationLoss(alpha=0.5, temperature=2.0)
    y = np.array([[1.0, 0.5, -0.5], [0.0, -1.0, 1.0]], "float32")  # label, then the teacher's logits
    logits = np.array([[0.2, -0.1], [0.3, 0.4]], "float32")
    return {"value": float(_numpy(loss(y, logits)))}


def export(out):
    """A model trained on this backend, exported to .tflite (through a TensorFlow process off TensorFlow)."""
    model = tiny_classifier(seed=6)
    path = os.path.join(out, "model.tflite")
    tf_rpp.export.export_tflite(model, path, sequence_length=SEQ, metadata=False, scores="logits")
    first = {k: v[:1] for k, v in INPUTS.items()}
    return {"path": path, "logits": _numpy(model(first)).tolist()}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    report = {"backend": keras.backend.backend()}
    if os.environ.get("TF_RPP_TEST_DATA_PARALLEL"):
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        report["devices"] = len(devices)
    for name in sys.argv[2:] or ("unstructured", "fixed_mask", "structured", "distillation", "export"):
        report[name] = globals()[name](out)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
