"""`RPPOptimizer`: Reweighted Proximal Pruning around any Keras optimizer.

The unstructured step itself is `ReweightedL1`, a small composable piece that
`GroupRPPOptimizer` reuses when both modes are combined.
"""

import keras
import numpy as np
import tensorflow as tf

from tf_rpp import controller
from tf_rpp import proximal
from tf_rpp.optimizers import distribute
from tf_rpp.optimizers.masked import MaskedOptimizer
from tf_rpp.optimizers.validation import check_epsilon
from tf_rpp.optimizers.validation import check_period
from tf_rpp.optimizers.validation import check_strength


@tf.function(jit_compile=True)
def _prox_and_mask(weight, gamma, mask, step_size):
    # One fused XLA loop: read w, gamma, mask once, write w once.
    return proximal.apply_mask(proximal.reweighted_l1_prox(weight, gamma, step_size), mask)


class ReweightedL1:
    """The reweighted l1 proximal step over an optimizer's pruned weights.

    After every inner step: `w <- reweighted_l1_prox(w, gamma, lr_t * lambda)`
    and the mask; every `reweight_every` steps first `gamma <- 1 / (|w| + epsilon)`.
    Its state (lambda, gamma) lives in variables of the optimizer that owns it,
    so it is saved and restored with that optimizer.

    Args:
        l1_strength: the initial lambda.
        epsilon: bounds a zero's reweighting at `1 / epsilon`.
        reweight_every: steps between reweightings.

    Example:

    ```python
    step = ReweightedL1(2e-3, 1e-3, 100)
    step.build(optimizer)                  # inside the optimizer's build()
    step.apply(optimizer, learning_rate)   # after each inner step
    ```
    """

    def __init__(self, l1_strength=2e-3, epsilon=1e-3, reweight_every=100):
        self.initial_l1_strength = check_strength(l1_strength, "l1_strength")
        self.epsilon = check_epsilon(epsilon, "epsilon")
        self.reweight_every = check_period(reweight_every)
        self.strength_variable = None
        self.gamma_variables = []

    def build(self, optimizer):
        """Creates lambda and one gamma per pruned weight as `optimizer`'s variables."""
        self.strength_variable = optimizer.add_variable(
            shape=(), dtype="float32", name="l1_strength",
            initializer=keras.initializers.Constant(self.initial_l1_strength),
        )
        # Ones until the first step reweights them (step 0 is a reweighting step).
        self.gamma_variables = [
            optimizer.add_variable_from_reference(v, name="rpp_gamma", initializer="ones")
            for v in optimizer.pruned_variables
        ]

    def apply(self, optimizer, learning_rate):
        """The step, after `optimizer`'s inner step; also applies the mask."""
        if not distribute.on_tensorflow():
            return self._apply_with_keras_ops(optimizer, learning_rate)
        active = tf.logical_not(tf.convert_to_tensor(optimizer.frozen_variable))
        # The inner step has advanced `iterations`: step k (0-based) reweights
        # when k % reweight_every == 0, so the very first step does.
        step = tf.cast(optimizer.iterations, "int64") - 1
        reweight_now = tf.logical_and(active, tf.equal(step % self.reweight_every, 0))
        step_size = tf.where(active, learning_rate * tf.cast(self.strength_variable, "float32"), 0.0)
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

        optimizer.update_each_pruned(
            update, self.gamma_variables, optimizer.mask_variables, args=(reweight_now, step_size)
        )

    def _apply_with_keras_ops(self, optimizer, learning_rate):
        # The same step in keras.ops for JAX and PyTorch: no branches around assignments (they are stateless
        # there), so gamma is computed every step and kept only on reweighting steps.
        ops = keras.ops
        active = ops.logical_not(optimizer.frozen_variable.value)
        step = ops.cast(optimizer.iterations.value, "int32") - 1
        reweight_now = ops.logical_and(active, ops.equal(step % self.reweight_every, 0))
        step_size = ops.where(active, learning_rate * ops.cast(self.strength_variable.value, "float32"), 0.0)
        if keras.backend.backend() == "torch":  # eager: a Python branch skips gamma between reweightings
            reweight = bool(ops.convert_to_numpy(reweight_now))
            for weight, gamma in zip(optimizer.pruned_variables, self.gamma_variables):
                if reweight:
                    gamma.assign(proximal.reweight(weight.value, self.epsilon))
                weight.assign(proximal.reweighted_l1_prox(weight.value, gamma.value, step_size))
            optimizer.enforce_mask()
            return
        for weight, gamma, mask in zip(optimizer.pruned_variables, self.gamma_variables, optimizer.mask_variables):
            new_gamma = ops.where(reweight_now, proximal.reweight(weight.value, self.epsilon), gamma.value)
            gamma.assign(new_gamma)
            weight.assign(proximal.apply_mask(proximal.reweighted_l1_prox(weight.value, new_gamma, step_size),
                                              mask.value))

    def get_config(self):
        """The constructor arguments (the initial lambda)."""
        return {"l1_strength": self.initial_l1_strength, "epsilon": self.epsilon,
                "reweight_every": self.reweight_every}


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
        l1 = ReweightedL1(l1_strength, epsilon, reweight_every)
        super().__init__(
            inner_optimizer, prune=prune, include_embeddings=include_embeddings,
            mask_gradients=mask_gradients, name=name, **kwargs,
        )
        self.l1 = l1

    def _build_pruning_state(self, variables):
        self.l1.build(self)
        # The lambda controller's memory (its last measurement), kept here so a
        # resumed run steers exactly like an unbroken one.
        self.steered_variable = self.add_variable(
            shape=(), dtype="bool", name="controller_steered", initializer=keras.initializers.Constant(False))
        self.last_sparsity_variable = self.add_variable(
            shape=(), dtype="float32", name="controller_last_sparsity", initializer="zeros")
        self.last_target_variable = self.add_variable(
            shape=(), dtype="float32", name="controller_last_target", initializer="zeros")
        # The feedback factor on the planned lambda (what the plan cannot see: gradients holding weights up).
        self.correction_variable = self.add_variable(
            shape=(), dtype="float32", name="controller_correction", initializer="ones")

    @property
    def initial_l1_strength(self):
        return self.l1.initial_l1_strength

    @property
    def epsilon(self):
        return self.l1.epsilon

    @property
    def reweight_every(self):
        return self.l1.reweight_every

    @property
    def l1_strength(self):
        """The current lambda (a Python float)."""
        return float(self.l1.strength_variable.numpy()) if self.built else self.l1.initial_l1_strength

    @l1_strength.setter
    def l1_strength(self, value):
        value = check_strength(value, "l1_strength")
        self._require_built("l1_strength")
        self.l1.strength_variable.assign(value)

    def _after_inner_step(self, learning_rate):
        self.l1.apply(self, learning_rate)

    def last_measurement(self):
        """The controller's last `(sparsity, target)` as a `tf_rpp.controller.Measurement`, or None."""
        self._require_built("last_measurement()")
        if not bool(self.steered_variable.numpy()):
            return None
        return controller.Measurement(float(self.last_sparsity_variable.numpy()),
                                      float(self.last_target_variable.numpy()))

    def steer(self, steering):
        """Sets lambda so the proximal steps reach the schedule's next target (`tf_rpp.controller`).

        With the learning rates until the next pruning step known
        (`steering.learning_rate_mass`, as `RPPCallback` gives them), lambda is
        planned: the proximal steps alone zero the smallest weights up to
        `steering.next_target` (`controller.planned_strength`), times a
        correction that the measured sparsity adapts (`LambdaController`).
        Without them, lambda is only adapted from the measurement.

        Example:

        ```python
        optimizer.steer(tf_rpp.controller.Steering(step=100, target=0.3, next_target=0.35,
                                                   learning_rate_mass=1e-3))
        optimizer.l1_strength   # the lambda that zeroes 35% of the weights within those steps
        ```
        """
        sparsity = self.sparsity()
        last = self.last_measurement()
        if steering.learning_rate_mass > 0:
            correction = float(self.correction_variable.numpy())
            if last is not None:
                factor = steering.controller.factor(sparsity, steering.target, last)
                correction = min(max(correction * factor, 1.0 / 64), 64.0)
            self.correction_variable.assign(correction)
            distances = np.concatenate([
                (np.abs(w.numpy()) / g.numpy()).ravel()
                for w, g in zip(self.pruned_variables, self.l1.gamma_variables)])
            planned = controller.planned_strength(distances, steering.next_target, steering.learning_rate_mass)
            # Never below 1.5 epsilon: a zero's threshold lr * lambda / epsilon then exceeds an Adam-type step (lr).
            strength = max(correction * planned, 1.5 * self.epsilon)
        else:
            strength = steering.controller.next_strength(self.l1_strength, sparsity, steering.target, last)
        self.steered_variable.assign(True)
        self.last_sparsity_variable.assign(sparsity)
        self.last_target_variable.assign(steering.target)
        self.l1_strength = strength

    def pruning_logs(self):
        """`{"l1_strength": lambda}`.

        Example:

        >>> import keras
        >>> RPPOptimizer(keras.optimizers.AdamW(1e-4), l1_strength=1e-3).pruning_logs()
        {'l1_strength': 0.001}
        """
        return {"l1_strength": self.l1_strength}

    def get_config(self):
        config = super().get_config()
        config.update(self.l1.get_config())
        return config
