"""`MaskedOptimizer`: keeps pruned weights at exactly 0.0 around any Keras optimizer.

It wraps the inner optimizer the way `keras.optimizers.LossScaleOptimizer`
does: the inner optimizer takes its usual step, the wrapper adds its own work
around it, and all state lives in optimizer variables, so `model.save`,
`keras.models.load_model` and `keras.callbacks.BackupAndRestore` restore it.
It zeros pruned positions' gradients before the inner step where the update
rule couples coordinates (so momentum never builds up there) and re-applies
the mask after it (so weight decay or any update rule can't move them).

It is also the base of the pruning optimizers (`RPPOptimizer`,
`GroupRPPOptimizer`): they add their proximal step after the inner one. Without
a mask it starts all-ones and `RPPCallback` steers it as the magnitude-pruning
(NIP) baseline. The per-weight work runs inside the compiled train step and,
under `tf.distribute`, through `distribution.extended.update`, as Keras's own
weight decay does.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils import tracking

from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp import masks as masks_lib
from tf_rpp.masks import SparsityMask
from tf_rpp.optimizers import distribute
from tf_rpp.optimizers import gradients
from tf_rpp.optimizers.validation import reject_base_optimizer_kwargs


@keras.saving.register_keras_serializable(package="tf_rpp")
class MaskedOptimizer(keras.optimizers.Optimizer):
    """Wraps an optimizer so that masked weights stay exactly 0.0.

    Use it to fine-tune a pruned model with its mask fixed (the paper's
    downstream step). Works with any inner Keras optimizer, momentum and weight
    decay included, with `jit_compile` on or off and under `tf.distribute`.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        mask: a `SparsityMask`, or the path of one saved as `.npz`. Its keys
            choose the weights. When omitted, the weights chosen by `prune` start
            with an all-ones mask (use with `RPPCallback` for magnitude pruning).
        prune: weight selection when there is no mask; see
            `tf_rpp.selection.select_weights` (default: the BERT encoder kernels).
        include_embeddings: with the default selection, also prune embeddings.
        mask_gradients: zero the pruned positions' gradients before the inner
            step. `"auto"` (default) does it unless the inner optimizer is a
            plain SGD, Adam, AdamW, Adamax, Nadam, RMSprop, Adagrad, Adadelta,
            Ftrl or Lion without `clipnorm`/`global_clipnorm`: those update
            each weight from its own gradient only, so after re-masking the
            weights are bit-identical either way and the pass (~8 ms a step on
            MiniLM's encoder) is saved. Adafactor, Lamb, norm clipping or any
            other optimizer couple coordinates and get masked gradients.
        name: the optimizer's name.

    Example:

    ```python
    mask = tf_rpp.SparsityMask.load("mask.npz")
    classifier.compile(
        optimizer=tf_rpp.MaskedOptimizer(keras.optimizers.AdamW(2e-5), mask),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    classifier.fit(train_ds)  # pruned weights are 0.0 after every step
    ```
    """

    def __init__(
        self, inner_optimizer, mask=None, prune=None, include_embeddings=False, mask_gradients="auto", name=None, **kwargs
    ):
        reject_base_optimizer_kwargs(type(self).__name__, kwargs)
        super().__init__(learning_rate=0.0, name=name)
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise ValueError(
                f"`inner_optimizer` must be a keras.optimizers.Optimizer instance, such as "
                f"keras.optimizers.AdamW(1e-4); received {inner_optimizer!r}."
            )
        if isinstance(inner_optimizer, MaskedOptimizer):
            raise ValueError(f"Do not nest tf_rpp optimizers: the inner optimizer is already a {type(inner_optimizer).__name__}.")
        if isinstance(inner_optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError(
                "Put the LossScaleOptimizer outside: LossScaleOptimizer(MaskedOptimizer(AdamW(...))), "
                "which is what model.compile does by itself under the 'mixed_float16' policy. Inside, "
                "compile would wrap it a second time and the gradients would be unscaled twice."
            )
        if inner_optimizer.gradient_accumulation_steps:
            raise ValueError(
                "The inner optimizer uses `gradient_accumulation_steps`, which tf_rpp does not "
                "support yet: the mask and proximal step would run on every micro-batch. "
                "Use a larger batch instead."
            )
        if isinstance(mask, (str, os.PathLike)):
            mask = SparsityMask.load(mask)
        if mask is not None and not isinstance(mask, SparsityMask):
            raise ValueError(f"`mask` must be a tf_rpp.SparsityMask or a path to one; received {type(mask).__name__}.")
        if mask is not None and prune is not None:
            raise ValueError("Pass either `mask` (its keys choose the weights) or `prune`, not both.")
        if mask_gradients not in ("auto", True, False):
            raise ValueError(f"`mask_gradients` must be 'auto', True or False; received {mask_gradients!r}.")
        self.inner_optimizer = inner_optimizer
        self.mask_gradients = mask_gradients
        self._masks_gradients = gradients.needs_gradient_masking(inner_optimizer) if mask_gradients == "auto" else mask_gradients
        self.prune = mask.keys if mask is not None else prune
        self.include_embeddings = bool(include_embeddings)
        self._initial_mask = mask
        self._pruned_variables = []
        self._mask_variables = []

    # Keras optimizer plumbing, delegated to the inner optimizer like
    # LossScaleOptimizer does.

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    # Keras saves `inner_optimizer` as a child object of its own; saving its
    # variables here too would store AdamW's moments twice (a 465 MB .keras
    # file for MiniLM instead of 280 MB).
    def save_own_variables(self, store):
        for i, variable in enumerate(self._variables):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store):
        if len(store.keys()) != len(self._variables):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has {len(self._variables)} variables of its own but the "
                f"file holds {len(store.keys())}: it was saved with another selection of pruned weights."
            )
        for i, variable in enumerate(self._variables):
            variable.assign(store[str(i)])

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    # Plain Python that creates variables: autograph must not convert it when
    # the first apply() happens inside a tf.function (it mis-binds the helper
    # methods' `self` depending on what it converted earlier).
    @tf.autograph.experimental.do_not_convert
    @tracking.no_automatic_dependency_tracking
    def build(self, var_list):
        var_list = list(var_list)
        self._pruned_variables = selection.select_weights(var_list, self.prune, self.include_embeddings)
        if self._initial_mask is not None:
            self._initial_mask.check_compatible(self._pruned_variables)
        self.frozen_variable = self.add_variable(
            shape=(), dtype="bool", name="frozen",
            initializer=keras.initializers.Constant(self._initial_mask is not None),
        )
        # The exact-zero fraction the training steps made before the mask was hardened (-1: not hardened
        # by a schedule); kept here so a resumed run still reports it.
        self.sparsity_before_hardening_variable = self.add_variable(
            shape=(), dtype="float32", name="sparsity_before_hardening",
            initializer=keras.initializers.Constant(-1.0),
        )
        self._mask_variables = [self._add_mask_variable(v) for v in self._pruned_variables]
        if self._initial_mask is not None:
            # The first forward pass must already see the pruned model.
            for weight, mask in zip(self._pruned_variables, self._mask_variables):
                weight.assign(proximal.apply_mask(weight.value, mask.value))
        self._build_pruning_state(self._pruned_variables)
        self.inner_optimizer.build(var_list)
        super().build(var_list)
        self._pruned_slots = {self._var_key(v): i for i, v in enumerate(self._pruned_variables)}

    def _add_mask_variable(self, variable):
        key = selection.weight_key(variable)
        if self._initial_mask is not None:
            initial = self._initial_mask[key]
            initializer = lambda shape, dtype=None: initial  # noqa: E731
        else:
            initializer = "ones"
        settings = dict(shape=variable.shape, dtype="bool", initializer=initializer,
                        name=f"{key.replace('/', '_')}_mask")
        if not distribute.on_tensorflow():
            return self.add_variable(**settings)
        strategy = self._distribution_strategy
        with strategy.extended.colocate_vars_with(distribute.tf_variable(variable)):
            return self.add_variable(**settings)

    def _build_pruning_state(self, variables):
        """Hook for subclasses to add per-weight state."""

    # The step.

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
            self.built = True
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        # lr_t of this step: read before the inner step advances its schedule.
        learning_rate = keras.ops.cast(self.inner_optimizer.learning_rate, "float32")
        if distribute.on_tensorflow():  # only TensorFlow has sparse (IndexedSlices) gradients
            densify = (
                self._distribution_strategy.num_replicas_in_sync > 1
                or tf.__internal__.get_enclosing_xla_context() is not None
            )
            grads = [g if g is None else gradients.exact_sparse_gradient(g, densify) for g in grads]
        grads = [g if g is None else self._masked_gradient(g, v) for g, v in zip(grads, trainable_variables)]
        self.inner_optimizer.apply(grads, trainable_variables)
        self._after_inner_step(learning_rate)

    def _masked_gradient(self, gradient, variable):
        if not self._masks_gradients:
            return gradient
        slot = self._pruned_slots.get(self._var_key(variable))
        if slot is None:
            return gradient
        return gradients.mask_gradient(gradient, self._mask_variables[slot])

    def _after_inner_step(self, learning_rate):
        self.enforce_mask()

    def enforce_mask(self):
        """Zeros every pruned weight where the mask is False (the pruning steps call it after their update).

        Example:

        ```python
        optimizer.enforce_mask()   # after changing weights by hand
        ```
        """
        if keras.backend.backend() == "torch":
            _mask_in_place(self._pruned_variables, self._mask_variables)
            return
        self.update_each_pruned(lambda w, mask: w.assign(proximal.apply_mask(w, mask)), self._mask_variables)

    def update_each_pruned(self, update_fn, *per_weight_state, args=()):
        """Runs `update_fn(weight, *state, *args)` for every pruned weight, per replica.

        For pruning steps that run after the inner step (inside the train
        step): `per_weight_state` are lists of variables aligned with
        `pruned_variables`, `args` tensors shared by all weights.

        Example:

        ```python
        optimizer.update_each_pruned(lambda w, m: w.assign(tf.where(m, w, 0.0)), mask_variables)
        ```
        """
        if not distribute.on_tensorflow():  # JAX and PyTorch: Keras runs the step on each device itself
            for i, variable in enumerate(self._pruned_variables):
                update_fn(variable, *[state[i] for state in per_weight_state], *args)
            return
        distribute.update_each(self._distribution_strategy, self._pruned_variables, update_fn, per_weight_state, args)

    def finalize_variable_values(self, var_list):
        # Keras calls this at the end of every fit(): an EMA swap must not
        # resurrect pruned weights. Only the mask is applied; a pruning step
        # here would make two fit() calls differ from one.
        self.inner_optimizer.finalize_variable_values(var_list)
        if self.built:
            self.enforce_mask()

    # Mask access, used by RPPCallback and by people.

    def _require_built(self, what):
        if not self.built:
            raise ValueError(
                f"{type(self).__name__}.{what} needs the optimizer built: call "
                "`optimizer.build(model.trainable_variables)` or train one step first."
            )

    @property
    def pruned_variables(self):
        """The weights this optimizer prunes (after `build`)."""
        return list(self._pruned_variables)

    @property
    def mask_variables(self):
        """The boolean mask variables, aligned with `pruned_variables` (after `build`)."""
        return list(self._mask_variables)

    @property
    def frozen(self):
        """True once the mask is final: no more pruning, only enforcement."""
        return bool(self.frozen_variable.numpy()) if self.built else self._initial_mask is not None

    @property
    def sparsity_before_hardening(self):
        """The exact-zero fraction the steps themselves made before a schedule hardened the mask (None before).

        For RPP this is what the proximal steps chose; the rest of the final
        sparsity was a magnitude cut at hardening.

        Example:

        ```python
        optimizer.sparsity_before_hardening   # e.g. 0.598 with a final sparsity of 0.6
        ```
        """
        if not self.built:
            return None
        value = float(self.sparsity_before_hardening_variable.numpy())
        return None if value < 0 else value

    def get_mask(self):
        """The current mask as a `SparsityMask`.

        Example:

        ```python
        optimizer.get_mask().save("mask.npz")
        ```
        """
        self._require_built("get_mask()")
        return SparsityMask(
            {selection.weight_key(v): np.asarray(m.numpy()) for v, m in zip(self._pruned_variables, self._mask_variables)},
            {"method": type(self).__name__, "frozen": self.frozen},
        )

    def set_mask(self, mask, freeze=False):
        """Sets the mask (a `SparsityMask` over the pruned weights) and applies it now.

        Args:
            mask: a `SparsityMask` with the keys of `pruned_variables`.
            freeze: also mark the mask final.

        Example:

        ```python
        optimizer.set_mask(tf_rpp.SparsityMask.from_magnitudes(weights, 0.8), freeze=True)
        ```
        """
        self._require_built("set_mask()")
        keys = [selection.weight_key(v) for v in self._pruned_variables]
        if sorted(mask.keys) != sorted(keys):
            missing = sorted(set(keys) - set(mask.keys))[:3]
            extra = sorted(set(mask.keys) - set(keys))[:3]
            raise ValueError(f"The mask does not cover the pruned weights: missing {missing}, unexpected {extra}.")
        mask.check_compatible(self._pruned_variables)
        for key, weight, mask_variable in zip(keys, self._pruned_variables, self._mask_variables):
            mask_variable.assign(mask[key])
            weight.assign(proximal.apply_mask(weight.value, mask[key]))
        if freeze:
            self.frozen_variable.assign(True)

    def weights_by_key(self):
        """A dict from key to a NumPy copy of each pruned weight."""
        self._require_built("weights_by_key()")
        return {selection.weight_key(v): np.asarray(v.numpy()) for v in self._pruned_variables}

    def zero_counts(self):
        """A dict from key to `(zeros, size)` of each pruned weight: one pass over them."""
        self._require_built("zero_counts()")
        return {
selection.weight_key(v): masks_lib.zero_count(v.value) for v in self._pruned_variables}

    def layer_sparsity(self):
        """A dict from key to the fraction of that weight that is exactly 0.0."""
        return masks_lib.layer_sparsity(self.zero_counts())

    def sparsity(self):
        """Fraction of all pruned-weight entries that are exactly 0.0.

        Example:

        ```python
        print(f"{optimizer.sparsity():.1%} of the encoder kernels are zero")
        ```
        """
        return masks_lib.total_sparsity(self.zero_counts())

    # Pruning, steered by RPPCallback (or by people).

    def steer(self, steering):
        """One pruning step towards `steering.target` (a `tf_rpp.controller.Steering`).

        The magnitude baseline (NIP): the mask becomes the largest-magnitude
        weights at the target, as tfmot's `prune_low_magnitude` does.

        Example:

        ```python
        optimizer.steer(tf_rpp.controller.Steering(step=100, target=0.3))
        ```
        """
        self.set_mask(SparsityMask.from_magnitudes(self.weights_by_key(), steering.target, steering.scope))

    def final_mask(self, target, scope="global", **metadata):
        """The mask at `target` that hardening freezes: the smallest magnitudes pruned.

        Args:
            target: the fraction of the pruned weights to remove, in [0, 1).
            scope: `"global"` (ranked across all pruned weights) or `"per_layer"`.
            **metadata: stored with the mask.

        Example:

        ```python
        optimizer.set_mask(optimizer.final_mask(0.8), freeze=True)  # what tf_rpp.hardening.harden does
        ```
        """
        return SparsityMask.from_magnitudes(self.weights_by_key(), target, scope, **metadata)

    def pruning_logs(self):
        """What this optimizer's pruning state adds to the training logs (none for the baseline).

        Example:

        >>> import keras
        >>> MaskedOptimizer(keras.optimizers.SGD()).pruning_logs()
        {}
        """
        return {}

    # Serialization.

    def get_config(self):
        # Like LossScaleOptimizer: only our own arguments and the inner config.
        # After build the selection is stored as the exact keys, so a callable
        # or pattern round-trips and the saved variables line up on load.
        prune = [selection.weight_key(v) for v in self._pruned_variables] if self.built else self.prune
        if callable(prune):
            prune = keras.saving.serialize_keras_object(prune)
        return {
            "name": self.name,
            "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "prune": prune,
            "include_embeddings": self.include_embeddings,
            "mask_gradients": self.mask_gradients,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["inner_optimizer"] = keras.saving.deserialize_keras_object(
            config["inner_optimizer"], custom_objects=custom_objects
        )
        if isinstance(config.get("prune"), dict):
            config["prune"] = keras.saving.deserialize_keras_object(config["prune"], custom_objects=custom_objects)
        return cls(**config)


def _mask_in_place(weights, mask_variables):
    # PyTorch only: PyTorch runs the optimizer eagerly, so a multiply in place is one pass over each
    # weight, a quarter of the time of `where` and an assignment.
    import torch

    with torch.no_grad():
        for weight, mask in zip(weights, mask_variables):
            value = weight.value
            if keras.backend.standardize_dtype(value.dtype) == weight.dtype:
                value.mul_(mask.value)
            else:  # read through an autocast scope: a copy, so assign
                weight.assign(proximal.apply_mask(value, mask.value))


def unwrap(optimizer):
    """The tf_rpp optimizer inside `optimizer`, or None.

    Under the `"mixed_float16"` policy `model.compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer`; the pruning state lives in the
    tf_rpp optimizer inside it.

    Example:

    >>> import keras
    >>> inner = MaskedOptimizer(keras.optimizers.AdamW(1e-4))
    >>> unwrap(keras.optimizers.LossScaleOptimizer(inner)) is inner
    True
    """
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer if isinstance(optimizer, MaskedOptimizer) else None
