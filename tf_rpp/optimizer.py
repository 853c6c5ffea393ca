"""Optimizer wrappers: mask enforcement and Reweighted Proximal Pruning.

Both wrap any Keras 3 optimizer the way `keras.optimizers.LossScaleOptimizer`
does: the inner optimizer takes its usual step, the wrapper adds its own work
around it, and all state lives in optimizer variables, so `model.save`,
`keras.models.load_model` and `keras.callbacks.BackupAndRestore` restore it.

- `MaskedOptimizer(inner, mask)` keeps pruned weights at exactly 0.0: it zeros
  their gradients before the inner step (so momentum never builds up there) and
  re-applies the mask after it (so weight decay or any update rule can't move
  them). Without a mask it starts all-ones and `RPPCallback` drives it as the
  magnitude-pruning (NIP) baseline.
- `RPPOptimizer(inner, ...)` adds the reweighted l1 proximal step after every
  inner step. Wrapping `keras.optimizers.AdamW` gives the paper's proximal AdamW.

The per-weight work runs inside the compiled train step, fused by XLA into one
elementwise pass per weight, and under `tf.distribute` through
`distribution.extended.update`, as Keras's own weight decay does.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils import tracking

from tf_rpp import groups
from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp.mask import SparsityMask


@tf.function(jit_compile=True)
def _prox_and_mask(weight, gamma, mask, step_size):
    # One fused XLA loop: read w, gamma, mask once, write w once.
    return proximal.apply_mask(proximal.reweighted_l1_prox(weight, gamma, step_size), mask)


def _exact_sparse_gradient(gradient, densify):
    # Keras 3's Adam, AdamW and Adafactor update IndexedSlices gradients with
    # repeated indices wrongly (0.09 off the dense update after 3 steps in
    # tests/test_optimizer.py); BERT's token-embedding gradient always repeats
    # indices. Summing repeated rows fixes it, as tf.keras's OptimizerV2 did.
    # `densify` sums them into a dense gradient instead, which is needed where
    # `tf.unique` is wrong or slow:
    # - under a multi-replica strategy the all-reduce concatenates the
    #   replicas' slices and repeats indices again;
    # - inside an XLA-compiled step `tf.unique` lowers to a sort plus a
    #   sequential loop with a dynamically sized result, and the step around
    #   it compiles several times slower (MiniLM classifier, batch 32 x 64:
    #   see bench/results/step_overhead.json). Keras's own sparse update is
    #   dense work anyway (it decays every row's moments), so XLA loses nothing.
    if not isinstance(gradient, tf.IndexedSlices):
        return gradient
    if densify:
        return tf.convert_to_tensor(gradient)
    unique, positions = tf.unique(gradient.indices)
    values = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(unique)[0])
    return tf.IndexedSlices(values, unique, gradient.dense_shape)


def _mask_gradient(gradient, mask):
    if isinstance(gradient, tf.IndexedSlices):
        rows = tf.cast(tf.gather(mask, gradient.indices), gradient.values.dtype)
        return tf.IndexedSlices(gradient.values * rows, gradient.indices, gradient.dense_shape)
    return proximal.apply_mask(gradient, mask)


# Optimizers whose update of each coordinate reads only that coordinate's
# gradient, slots and weight. For these, a pruned position's gradient can only
# reach its own slots and its weight, and the weight is re-masked after every
# step, so masking gradients changes no weight and costs a pass over them.
_ELEMENTWISE_OPTIMIZERS = tuple(
    getattr(keras.optimizers, name)
    for name in ("SGD", "Adam", "AdamW", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta", "Ftrl", "Lion")
    if hasattr(keras.optimizers, name)
)


def _needs_gradient_masking(optimizer):
    # Exact types only: a subclass may couple coordinates in its update_step.
    elementwise = type(optimizer) in _ELEMENTWISE_OPTIMIZERS
    return not elementwise or bool(optimizer.clipnorm) or bool(optimizer.global_clipnorm)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


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
        _reject_base_optimizer_kwargs(type(self).__name__, kwargs)
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
        self._masks_gradients = _needs_gradient_masking(inner_optimizer) if mask_gradients == "auto" else mask_gradients
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
        strategy = self._distribution_strategy
        with strategy.extended.colocate_vars_with(_tf_variable(variable)):
            return self.add_variable(
                shape=variable.shape, dtype="bool", initializer=initializer,
                name=f"{key.replace('/', '_')}_mask",
            )

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
        learning_rate = tf.cast(self.inner_optimizer.learning_rate, "float32")
        densify = (
            self._distribution_strategy.num_replicas_in_sync > 1
            or tf.__internal__.get_enclosing_xla_context() is not None
        )
        grads = [
            g if g is None else self._masked_gradient(_exact_sparse_gradient(g, densify), v)
            for g, v in zip(grads, trainable_variables)
        ]
        self.inner_optimizer.apply(grads, trainable_variables)
        self._after_inner_step(learning_rate)

    def _masked_gradient(self, gradient, variable):
        if not self._masks_gradients:
            return gradient
        slot = self._pruned_slots.get(self._var_key(variable))
        if slot is None:
            return gradient
        return _mask_gradient(gradient, self._mask_variables[slot])

    def _after_inner_step(self, learning_rate):
        self._enforce_mask()

    def _enforce_mask(self):
        self._update_each_pruned(lambda w, mask: w.assign(proximal.apply_mask(w, mask)), self._mask_variables)

    def _update_each_pruned(self, update_fn, *per_weight_state, args=()):
        """Runs `update_fn(weight, *state, *args)` for every pruned weight, per replica."""
        items = [
            (_tf_variable(v), [_tf_variable(s[i]) for s in per_weight_state])
            for i, v in enumerate(self._pruned_variables)
        ]

        def update_all(distribution, items, args):
            for weight, state in items:
                distribution.extended.update(weight, update_fn, args=(*state, *args), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            update_all, self._distribution_strategy, items, args
        )

    def finalize_variable_values(self, var_list):
        # Keras calls this at the end of every fit(): an EMA swap must not
        # resurrect pruned weights. Only the mask is applied; a pruning step
        # here would make two fit() calls differ from one.
        self.inner_optimizer.finalize_variable_values(var_list)
        if self.built:
            self._enforce_mask()

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
    def frozen(self):
        """True once the mask is final: no more pruning, only enforcement."""
        return bool(self.frozen_variable.numpy()) if self.built else self._initial_mask is not None

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
            weight.assign(tf.where(mask[key], weight.value, tf.zeros_like(weight.value)))
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
            selection.weight_key(v): (total_zeros(v.value), int(np.prod(v.shape)))
            for v in self._pruned_variables
        }

    def layer_sparsity(self):
        """A dict from key to the fraction of that weight that is exactly 0.0."""
        return {key: zeros / max(size, 1) for key, (zeros, size) in self.zero_counts().items()}

    def sparsity(self):
        """Fraction of all pruned-weight entries that are exactly 0.0.

        Example:

        ```python
        print(f"{optimizer.sparsity():.1%} of the encoder kernels are zero")
        ```
        """
        return _total_sparsity(self.zero_counts())

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


def _total_sparsity(zero_counts):
    zeros = sum(z for z, _ in zero_counts.values())
    return zeros / max(sum(n for _, n in zero_counts.values()), 1)


def total_zeros(tensor):
    """Number of entries of `tensor` equal to 0.0, as a Python int.

    Example:

    >>> import numpy as np
    >>> total_zeros(np.array([0.0, 1.0, 0.0]))
    2
    """
    return int(tf.size(tensor)) - int(tf.math.count_nonzero(tensor))


@keras.saving.register_keras_serializable(package="tf_rpp")
class RPPOptimizer(MaskedOptimizer):
    """Reweighted Proximal Pruning around any Keras optimizer.

    Every step: the inner optimizer's update, then for each pruned weight
    `w <- sign(w) * max(|w| - lr_t * l1_strength * gamma, 0)`; every
    `reweight_every` steps `gamma <- 1 / (|w| + epsilon)`. With
    `keras.optimizers.AdamW` this is the paper's proximal AdamW. Weights the
    step sets to exactly 0.0 form the learned sparsity pattern; `RPPCallback`
    adapts `l1_strength` to a tfmot schedule and hardens and freezes the mask,
    after which the optimizer only enforces it.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        l1_strength: lambda, the weight of the reweighted l1 term. With Adam-type
            inner optimizers, whose steps are about `lr` in size whatever the
            gradient scale, a weight is driven to zero roughly when
            `|w| + epsilon < l1_strength`. The default 2e-3 is twice `epsilon`:
            after reweighting, a zero's threshold `2 * lr` beats the largest
            Adam step (`lr`), so zeros stay zero, while at the start only
            weights below ~1e-3 go (BERT kernels have std ~0.02-0.05). With a
            schedule, `RPPCallback` adapts it.
        epsilon: bounds the penalty weight of a zero at `1 / epsilon`. Smaller
            than typical weights (1e-3 against ~0.04) so it separates small from
            large ones, and large enough that zeros stay zero: after reweighting,
            a zero's threshold `lr * l1_strength / epsilon` outweighs an Adam step.
        reweight_every: steps between reweightings. 100 (tfmot's default pruning
            frequency) costs one extra pass over the weights per 100 steps.
        prune: weight selection (default: BERT encoder kernels); see
            `tf_rpp.selection.select_weights`.
        include_embeddings: with the default selection, also prune embeddings.
        mask_gradients: as in `MaskedOptimizer` (matters once the mask is frozen).
        name: the optimizer's name.

    Example:

    ```python
    optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4), l1_strength=2e-3)
    masked_lm.compile(optimizer=optimizer, weighted_metrics=["accuracy"])
    masked_lm.fit(ds, epochs=3, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 2000))])
    optimizer.get_mask().save("mask.npz")
    ```
    """

    def __init__(
        self,
        inner_optimizer,
        l1_strength=2e-3,
        epsilon=1e-3,
        reweight_every=100,
        prune=None,
        include_embeddings=False,
        mask_gradients="auto",
        name=None,
        **kwargs,
    ):
        _check_hyperparameters(l1_strength, epsilon, reweight_every)
        super().__init__(
            inner_optimizer, prune=prune, include_embeddings=include_embeddings,
            mask_gradients=mask_gradients, name=name, **kwargs,
        )
        self.initial_l1_strength = float(l1_strength)
        self.epsilon = float(epsilon)
        self.reweight_every = int(reweight_every)
        self._gamma_variables = []

    def _build_pruning_state(self, variables):
        self.l1_strength_variable = self.add_variable(
            shape=(), dtype="float32", name="l1_strength",
            initializer=keras.initializers.Constant(self.initial_l1_strength),
        )
        # RPPCallback's memory (sparsity, target at its last pruning step; -1 =
        # none), kept here so a resumed run steers exactly like an unbroken one.
        self.controller_variable = self.add_variable(
            shape=(2,), dtype="float32", name="l1_controller", initializer=keras.initializers.Constant(-1.0),
        )
        # Ones until the first step reweights them (step 0 is a reweighting step).
        self._gamma_variables = [
            self.add_variable_from_reference(v, name="rpp_gamma", initializer="ones") for v in variables
        ]

    @property
    def l1_strength(self):
        """The current lambda (a Python float)."""
        return float(self.l1_strength_variable.numpy()) if self.built else self.initial_l1_strength

    @l1_strength.setter
    def l1_strength(self, value):
        _check_hyperparameters(value, self.epsilon, self.reweight_every)
        self._require_built("l1_strength")
        self.l1_strength_variable.assign(float(value))

    def _after_inner_step(self, learning_rate):
        active = tf.logical_not(tf.convert_to_tensor(self.frozen_variable))
        # The inner step has advanced `iterations`: step k (0-based) reweights
        # when k % reweight_every == 0, so the very first step does.
        step = tf.cast(self.iterations, "int64") - 1
        reweight_now = tf.logical_and(active, tf.equal(step % self.reweight_every, 0))
        step_size = tf.where(active, learning_rate * tf.cast(self.l1_strength_variable, "float32"), 0.0)
        epsilon = self.epsilon

        def update(weight, gamma, mask, reweight_now, step_size):
            def do_reweight():
                gamma.assign(proximal.reweight(weight, epsilon))
                return tf.constant(True)

            done = tf.cond(reweight_now, do_reweight, lambda: tf.constant(False))
            with tf.control_dependencies([done]):
                new_weight = _prox_and_mask(
                    tf.convert_to_tensor(weight), tf.convert_to_tensor(gamma), tf.convert_to_tensor(mask), step_size
                )
                return weight.assign(new_weight)

        self._update_each_pruned(
            update, self._gamma_variables, self._mask_variables, args=(reweight_now, step_size)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            l1_strength=self.initial_l1_strength,
            epsilon=self.epsilon,
            reweight_every=self.reweight_every,
        )
        return config


@keras.saving.register_keras_serializable(package="tf_rpp")
class GroupRPPOptimizer(RPPOptimizer):
    """Structured RPP: reweighted proximal pruning of whole heads and neurons.

    Every step, after the inner optimizer's update, each group `g` (an
    attention head or a feed-forward neuron, see `tf_rpp.groups`) is shrunk as
    a whole:

        w_g <- w_g * max(0, 1 - lr_t * lambda_k * gamma_g / ||w_g||_2)
        gamma_g = 1 / (||w_g||_2 + group_epsilon)

    so groups whose norm falls below their threshold become exactly zero
    together. The group norms are computed on every step anyway, so the
    reweighting `gamma_g` is refreshed on every step at no cost. `lambda_k` is
    one per kind (heads, neurons): `group_strength * s_k`, where `s_k` is the
    median squared group norm of that kind at the first step. Heads hold ~100x
    more weights than neurons, so one raw lambda could not fit both; with this
    scaling `lr * group_strength` is roughly the fraction of its norm a median
    group loses per step.

    `RPPCallback` sets `group_strength` per kind on every pruning step so that
    the groups the proximal steps will have zeroed by the next pruning step
    are the schedule's next target (norms shrink by about `lr * lambda * gamma`
    a step, so the weakest groups go first, unless their gradients hold them
    up), then hardens and freezes the mask at the schedule's end.

    With `l1_strength > 0` the unstructured RPP step of `RPPOptimizer` runs as
    well, at a fixed lambda, on the same kernels (both modes combined).

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        group_strength: the initial, scale-free group lambda (see above).
        kinds: which groups, a subset of `("heads", "neurons")`.
        group_epsilon: bounds a zero group's reweighting at `1 / group_epsilon`.
        l1_strength: unstructured lambda; 0 (the default) turns it off.
        epsilon, reweight_every: the unstructured mode's, as in `RPPOptimizer`.
        name: the optimizer's name.

    The pruned weights are the BERT encoder kernels (`RPPOptimizer`'s default),
    so masks and fine-tuning work exactly as in the unstructured case.

    Example:

    ```python
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-4))
    classifier.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
    classifier.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 400, frequency=10))])
    shrunk = tf_rpp.shrink.shrink_classifier(classifier)  # fewer heads and neurons
    ```
    """

    def __init__(
        self,
        inner_optimizer,
        group_strength=1.0,
        kinds=("heads", "neurons"),
        group_epsilon=1e-3,
        l1_strength=0.0,
        epsilon=1e-3,
        reweight_every=100,
        mask_gradients="auto",
        name=None,
        **kwargs,
    ):
        _check_hyperparameters(group_strength, group_epsilon, reweight_every, names=("group_strength", "group_epsilon"))
        super().__init__(
            inner_optimizer, l1_strength=l1_strength, epsilon=epsilon, reweight_every=reweight_every,
            mask_gradients=mask_gradients, name=name, **kwargs,
        )
        self.kinds = groups._check_kinds(kinds)
        self.initial_group_strength = float(group_strength)
        self.group_epsilon = float(group_epsilon)
        self._group_sets = []

    def _build_pruning_state(self, variables):
        super()._build_pruning_state(variables)
        self._group_sets = groups.bert_groups(variables, self.kinds)
        by_key = {selection.weight_key(v): v for v in variables}
        self._group_members = [[(by_key[key], axis) for key, axis in gs.members] for gs in self._group_sets]
        n = len(self.kinds)
        self.group_strength_variable = self.add_variable(
            shape=(n,), dtype="float32", name="group_strength",
            initializer=keras.initializers.Constant(self.initial_group_strength),
        )
        # Each kind's median squared group norm, set on the first step (0 = not yet).
        self.group_scale_variable = self.add_variable(
            shape=(n,), dtype="float32", name="group_scale", initializer="zeros",
        )

    @property
    def group_sets(self):
        """The `tf_rpp.groups.GroupSet`s this optimizer prunes (after `build`)."""
        return list(self._group_sets)

    def group_strength(self, kind):
        """The current scale-free lambda of `kind` (a Python float)."""
        if not self.built:
            return self.initial_group_strength
        return float(self.group_strength_variable.numpy()[self.kinds.index(kind)])

    def set_group_strength(self, kind, value):
        """Sets the scale-free lambda of `kind` (`"heads"` or `"neurons"`)."""
        _check_hyperparameters(value, self.group_epsilon, self.reweight_every, names=("group_strength", "group_epsilon"))
        self._require_built("set_group_strength()")
        values = self.group_strength_variable.numpy()
        values[self.kinds.index(kind)] = float(value)
        self.group_strength_variable.assign(values)

    def group_scale(self, kind):
        """`s_k`: the median squared group norm of `kind` at the first step (0 before it)."""
        self._require_built("group_scale()")
        return float(self.group_scale_variable.numpy()[self.kinds.index(kind)])

    def group_norms(self):
        """Per kind, the L2 norms of all its groups (layer by layer), as one NumPy vector."""
        self._require_built("group_norms()")
        weights = self.weights_by_key()
        norms = {}
        for gs in self._group_sets:
            norms.setdefault(gs.kind, []).append(groups.group_norms(weights, gs))
        return {kind: np.concatenate(parts) for kind, parts in norms.items()}

    def removed_groups(self):
        """Per kind, the fraction of groups that are exactly zero now.

        Example:

        ```python
        optimizer.removed_groups()  # {'heads': 0.25, 'neurons': 0.5}
        ```
        """
        self._require_built("removed_groups()")
        return groups.removed_fraction(self.weights_by_key(), self._group_sets)

    def _after_inner_step(self, learning_rate):
        active = tf.logical_not(tf.convert_to_tensor(self.frozen_variable))
        epsilon = self.group_epsilon
        kinds = [self.kinds.index(gs.kind) for gs in self._group_sets]
        plan = [[(_tf_variable(v), axis) for v, axis in members] for members in self._group_members]
        scale_variable = _tf_variable(self.group_scale_variable)
        strengths = tf.convert_to_tensor(self.group_strength_variable)

        def shrink_all(distribution, plan, scale_variable, strengths, active, learning_rate):
            # A group spans several variables, so its norm is read across them
            # (in cross-replica context, where mirrored copies agree) before
            # every copy is scaled by the same factors. Step scalars arrive per
            # replica (all equal), so one replica's copy is used.
            strengths, active, learning_rate = (
                distribution.experimental_local_results(x)[0] for x in (strengths, active, learning_rate)
            )
            norms = [proximal.group_norms([(tf.convert_to_tensor(v), axis) for v, axis in members])
                     for members in plan]
            scales = tf.convert_to_tensor(scale_variable)
            medians = tf.stack([
                _median_squared(tf.concat([n for n, k in zip(norms, kinds) if k == kind], 0))
                for kind in range(len(self.kinds))
            ])
            scales = tf.where(scales > 0, scales, medians)
            distribution.extended.update(scale_variable, lambda s, value: s.assign(value), args=(scales,), group=False)
            step_sizes = tf.where(active, learning_rate * strengths * scales, 0.0)
            for members, kind, group_norm in zip(plan, kinds, norms):
                gamma = proximal.reweight(group_norm, epsilon)
                factors = proximal.group_shrink_factors(group_norm, step_sizes[kind] * gamma)
                for variable, axis in members:
                    distribution.extended.update(
                        variable, lambda v, f, axis=axis: v.assign(proximal.scale_groups(v, f, axis)),
                        args=(factors,), group=False,
                    )

        tf.__internal__.distribute.interim.maybe_merge_call(
            shrink_all, self._distribution_strategy, plan, scale_variable, strengths, active, learning_rate,
        )
        super()._after_inner_step(learning_rate)

    def get_config(self):
        config = super().get_config()
        config.pop("prune", None)
        config.pop("include_embeddings", None)
        config.update(
            group_strength=self.initial_group_strength,
            kinds=list(self.kinds),
            group_epsilon=self.group_epsilon,
        )
        return config


def _median_squared(norms):
    ordered = tf.sort(norms)
    median = ordered[(tf.size(ordered) - 1) // 2]
    return tf.where(median > 0, tf.square(median), 1.0)


def unwrap(optimizer):
    """The tf_rpp optimizer inside `optimizer`, or None.

    Under the `"mixed_float16"` policy `model.compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer`; the pruning state lives in the
    tf_rpp optimizer inside it.

    Example:

    >>> import keras
    >>> inner = RPPOptimizer(keras.optimizers.AdamW(1e-4))
    >>> unwrap(keras.optimizers.LossScaleOptimizer(inner)) is inner
    True
    """
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer if isinstance(optimizer, MaskedOptimizer) else None


def _check_hyperparameters(strength, epsilon, reweight_every, names=("l1_strength", "epsilon")):
    strength_name, epsilon_name = names
    if not isinstance(strength, (int, float, np.floating, np.integer)) or not math.isfinite(strength) or strength < 0:
        raise ValueError(
            f"`{strength_name}` must be a finite number >= 0; received {strength!r}. "
            "Use 0 to disable that penalty, or e.g. 2e-3."
        )
    if not isinstance(epsilon, (int, float, np.floating, np.integer)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(
            f"`{epsilon_name}` must be a finite number > 0; received {epsilon!r}. It bounds "
            "the reweighting 1 / (|w| + epsilon); use e.g. 1e-3."
        )
    if isinstance(reweight_every, bool) or not isinstance(reweight_every, (int, np.integer)) or reweight_every < 1:
        raise ValueError(
            f"`reweight_every` must be an integer >= 1; received {reweight_every!r}. "
            "Use e.g. 100 to reweight every 100 steps."
        )


def _reject_base_optimizer_kwargs(cls_name, kwargs):
    if kwargs:
        raise ValueError(
            f"{cls_name} does not take {sorted(kwargs)}: set learning rate, weight decay, "
            "clipping, EMA and loss scaling on the inner optimizer."
        )
