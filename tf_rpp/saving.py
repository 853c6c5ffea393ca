"""Loading `.keras` files with their pruning state, keras-hub tasks included.

`keras.models.load_model` restores the optimizer (and so RPP's gamma, lambda,
step and mask) only for models whose `compile` Keras can replay. keras-hub
tasks (`BertMaskedLM`, `BertTextClassifier`, ...) override `compile`, so Keras
skips it with a warning and the saved optimizer state is dropped. `load_model`
here replays that compile from the file and restores the optimizer variables.
"""

import io
import json
import warnings
import zipfile

import h5py
import keras


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """`keras.models.load_model`, plus the optimizer state of keras-hub tasks.

    Args:
        filepath: a `.keras` file written by `model.save`.
        custom_objects, safe_mode: as in `keras.models.load_model` (safe mode
            stays on by default: nothing is unpickled or run from the file).
        compile: restore the compiled state (optimizer, loss, metrics).

    Returns:
        The model; when the file holds an optimizer, `model.optimizer` is that
        optimizer with every variable as saved, so training continues exactly.

    Example:

    ```python
    masked_lm.save("pruning.keras")
    masked_lm = tf_rpp.load_model("pruning.keras")
    masked_lm.fit(ds, callbacks=[tf_rpp.RPPCallback(schedule)])  # resumes
    ```
    """
    with warnings.catch_warnings():
        # The warning this module exists to act on.
        warnings.filterwarnings("ignore", message=".*compile\\(\\)` was not called as part of model loading.*")
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer.*")
        model = keras.models.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)
    if not compile:
        return model
    with zipfile.ZipFile(filepath) as archive:
        config = json.loads(archive.read("config.json"))
        compile_config = config.get("compile_config")
        if not compile_config or not compile_config.get("optimizer"):
            return model
        saved_class = compile_config["optimizer"].get("class_name")
        if type(model.optimizer).__name__ == saved_class and _optimizer_restored(model.optimizer):
            return model
        with keras.saving.custom_object_scope(custom_objects or {}):
            arguments = keras.saving.deserialize_keras_object(compile_config, safe_mode=safe_mode)
        model.compile(**arguments)
        model.optimizer.build(model.trainable_variables)
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            _load_optimizer_group(model.optimizer, weights.get("optimizer"))
    return model


def _load_optimizer_group(optimizer, group):
    """Loads an optimizer's saved variables, and those of a wrapped inner optimizer."""
    if group is None:
        return
    if "vars" in group:
        saved = group["vars"]
        optimizer.load_own_variables({key: saved[key][()] for key in saved.keys()})
    inner = getattr(optimizer, "inner_optimizer", None)
    if inner is not None:
        _load_optimizer_group(inner, group.get("inner_optimizer"))


def _optimizer_restored(optimizer):
    return bool(getattr(optimizer, "built", False)) and int(optimizer.iterations.numpy()) > 0
