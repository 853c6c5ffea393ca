"""`GroupRPPOptimizer`: structured RPP over attention heads, feed-forward neurons and whole blocks."""

import keras
import numpy as np
import tensorflow as tf

from tf_rpp import controller
from tf_rpp.structured import groups
from tf_rpp import proximal
from tf_rpp import selection
from tf_rpp.optimizers import distribute
from tf_rpp.optimizers.group_magnitude import GroupMagnitudeOptimizer
from tf_rpp.optimizers.rpp import ReweightedL1
from tf_rpp.optimizers.validation import check_epsilon
from tf_rpp.optimizers.validation import check_strength


@keras.saving.register_keras_serializable(package="tf_rpp")
class GroupRPPOptimizer(GroupMagnitudeOptimizer):
    """Structured RPP: reweighted proximal pruning of whole heads and neurons.

    Every step, after the inner optimizer's update, each group `g` (an
    attention head or a feed-forward neuron, see `tf_rpp.structured.groups`) is shrunk as
    a whole:

        w_g <- w_g * max(0, 1 - lr_t * lambda_k * gamma_g / ||w_g||_2)
        gamma_g = 1 / (||w_g||_2 + group_epsilon)

    so groups whose norm falls below their threshold become exactly zero
    together. The group norms are computed on every step anyway, so the
    reweighting `gamma_g` is refreshed on every step at no cost. `lambda_k` is
    one per kind (heads, neurons, blocks): `group_strength * s_k`, where `s_k` is the
    median squared group norm of that kind when the optimizer is built. Heads hold ~100x
    more weights than neurons, so one raw lambda could not fit both; with this
    scaling `lr * group_strength` is roughly the fraction of its norm a median
    group loses per step.

    `RPPCallback` sets `group_strength` per kind on every pruning step so that
    the groups the proximal steps will have zeroed by the next pruning step
    are the schedule's next target (norms shrink by about `lr * lambda * gamma`
    a step, so the weakest groups go first, unless their gradients hold them
    up), then hardens and freezes the mask at the schedule's end.

    `relative_targets` removes different shares of each kind under one
    schedule: `{"heads": 0.5}` with a schedule to 0.6 removes 30% of the heads
    and 60% of the neurons. At short sequences a head costs less latency than
    its share of the weights (the feed-forward block holds two thirds of a
    layer's multiply-adds), so sparing heads can buy the same speed for less
    accuracy.

    With `l1_strength > 0` the unstructured step of `RPPOptimizer`
    (`tf_rpp.optimizers.rpp.ReweightedL1`) runs as well, after the group step,
    at a fixed lambda, on the same kernels (both modes combined).

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        group_strength: the initial, scale-free group lambda (see above).
        kinds: which groups, a subset of `("heads", "neurons", "attention",
            "feedforward")`; the last two are whole blocks, one group per
            layer (see `tf_rpp.structured.groups`): a removed block shrinks
            to its output bias on the residual path.
        relative_targets: a dict from kind to a factor > 0 on the schedule's
            target for that kind (default 1 for every kind); a kind's target
            must stay below 1.
        group_epsilon: bounds a zero group's reweighting at `1 / group_epsilon`.
        l1_strength: unstructured lambda; 0 (the default) turns it off.
        epsilon, reweight_every: the unstructured mode's, as in `RPPOptimizer`.
        prune, include_embeddings, mask_gradients: as in `RPPOptimizer`.
        name: the optimizer's name.

    The pruned weights are the BERT encoder kernels (`RPPOptimizer`'s default),
    so masks and fine-tuning work exactly as in the unstructured case.

    Example:

    ```python
    optimizer = tf_rpp.GroupRPPOptimizer(keras.optimizers.AdamW(1e-4))
    classifier.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
    classifier.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 400, frequency=10))])
    shrunk = tf_rpp.structured.shrink.shrink_classifier(classifier)  # fewer heads and neurons
    ```
    """

    def __init__(
        self,
        inner_optimizer,
        group_strength=1.0,
        kinds=("heads", "neurons"),
        relative_targets=None,
        group_epsilon=1e-3,
        l1_strength=0.0,
        epsilon=1e-3,
        reweight_every=100,
        prune=None,
        include_embeddings=False,
        mask_gradients="auto",
        name=None,
        **kwargs,
    ):
        group_strength = check_strength(group_strength, "group_strength")
        group_epsilon = check_epsilon(group_epsilon, "group_epsilon")
        l1 = ReweightedL1(l1_strength, epsilon, reweight_every)
        super().__init__(
            inner_optimizer, kinds=kinds, relative_targets=relative_targets, prune=prune,
            include_embeddings=include_embeddings, mask_gradients=mask_gradients, name=name, **kwargs,
        )
        self.initial_group_strength = group_strength
        self.group_epsilon = group_epsilon
        # Composition: the unstructured step runs only when asked for.
        self.l1 = l1 if l1.initial_l1_strength > 0 else None
        self._l1_config = l1.get_config()

    def _build_pruning_state(self, variables):
        super()._build_pruning_state(variables)  # the group sets
        if self.l1 is not None:
            self.l1.build(self)
        by_key = {selection.weight_key(v): v for v in variables}
        self._group_members = [[(by_key[key], axis) for key, axis in gs.members] for gs in self._group_sets]
        n = len(self.kinds)
        self.group_strength_variable = self.add_variable(
            shape=(n,), dtype="float32", name="group_strength",
            initializer=keras.initializers.Constant(self.initial_group_strength),
        )
        # Each kind's median squared group norm, from the weights the optimizer
        # starts from. Read here, eagerly, and not inside the train step: a sort
        # in an XLA-compiled step made it 4x slower on CPU (8.6 s against 2.0 s
        # a MiniLM step; `bench/step_overhead.py` measures it).
        with tf.init_scope():  # eager even when the optimizer is built inside a traced step
            weights = {selection.weight_key(v): np.asarray(v.numpy()) for v in variables}
        norms = groups.norms_by_kind(weights, self._group_sets)
        scales = np.asarray([_median_squared(norms.get(kind, np.zeros(0))) for kind in self.kinds], "float32")
        self.group_scale_variable = self.add_variable(
            shape=(n,), dtype="float32", name="group_scale",
            initializer=lambda shape, dtype=None: scales,
        )

    def group_strength(self, kind):
        """The current scale-free lambda of `kind` (a Python float)."""
        if not self.built:
            return self.initial_group_strength
        return float(self.group_strength_variable.numpy()[self.kinds.index(kind)])

    def set_group_strength(self, kind, value):
        """Sets the scale-free lambda of `kind` (one of `kinds`)."""
        value = check_strength(value, "group_strength")
        self._require_built("set_group_strength()")
        values = self.group_strength_variable.numpy()
        values[self.kinds.index(kind)] = value
        self.group_strength_variable.assign(values)

    def group_scale(self, kind):
        """`s_k`: the median squared group norm of `kind` when the optimizer was built."""
        self._require_built("group_scale()")
        return float(self.group_scale_variable.numpy()[self.kinds.index(kind)])

    def _after_inner_step(self, learning_rate):
        kinds = [self.kinds.index(gs.kind) for gs in self._group_sets]
        if distribute.on_tensorflow():
            self._shrink_groups_with_tf_distribute(learning_rate, kinds)
        else:
            self._shrink_groups_with_keras_ops(learning_rate, kinds)
        if self.l1 is not None:
            self.l1.apply(self, learning_rate)  # also applies the mask
        else:
            self.enforce_mask()

    def _shrink_groups_with_tf_distribute(self, learning_rate, kinds):
        epsilon = self.group_epsilon
        active = tf.logical_not(tf.convert_to_tensor(self.frozen_variable))
        plan = [[(distribute.tf_variable(v), axis) for v, axis in members] for members in self._group_members]
        scale_variable = distribute.tf_variable(self.group_scale_variable)
        strengths = tf.convert_to_tensor(self.group_strength_variable)

        def shrink_all(distribution, plan, scale_variable, strengths, active, learning_rate):
            # A group spans several variables, so its norm is read across them
            # (in cross-replica context, where mirrored copies agree) before
            # every copy gets the same new values. Step scalars arrive per
            # replica (all equal), so one replica's copy is used.
            strengths, active, learning_rate = (
                distribution.experimental_local_results(x)[0] for x in (strengths, active, learning_rate)
            )
            members = [[(tf.convert_to_tensor(v), axis) for v, axis in group] for group in plan]
            norms = [proximal.group_norms(group) for group in members]
            scales = tf.convert_to_tensor(scale_variable)
            step_sizes = tf.where(active, learning_rate * strengths * scales, 0.0)
            for group, tensors, kind, group_norm in zip(plan, members, kinds, norms):
                gamma = proximal.reweight(group_norm, epsilon)
                shrunk = proximal.group_reweighted_prox(tensors, gamma, step_sizes[kind], norms=group_norm)
                for (variable, _), value in zip(group, shrunk):
                    distribution.extended.update(variable, lambda v, new: v.assign(new), args=(value,), group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            shrink_all, self._distribution_strategy, plan, scale_variable, strengths, active, learning_rate,
        )

    def _shrink_groups_with_keras_ops(self, learning_rate, kinds):
        # JAX and PyTorch: the same group step in keras.ops (Keras runs it on each device itself).
        ops = keras.ops
        active = ops.logical_not(self.frozen_variable.value)
        step_sizes = ops.where(
            active, learning_rate * self.group_strength_variable.value * self.group_scale_variable.value, 0.0)
        for members, kind in zip(self._group_members, kinds):
            tensors = [(variable.value, axis) for variable, axis in members]
            group_norm = proximal.group_norms(tensors)
            gamma = proximal.reweight(group_norm, self.group_epsilon)
            shrunk = proximal.group_reweighted_prox(tensors, gamma, step_sizes[kind], norms=group_norm)
            for (variable, _), value in zip(members, shrunk):
                variable.assign(value)

    def steer(self, steering):
        """Plans each kind's group lambda towards `steering.next_target` (`tf_rpp.controller`).

        Example:

        ```python
        optimizer.steer(tf_rpp.controller.Steering(step=100, target=0.2, next_target=0.25,
                                                   learning_rate_mass=1e-3))
        ```
        """
        if steering.learning_rate_mass <= 0:
            return
        sizes = {gs.kind: gs.weights_per_group for gs in self._group_sets}
        next_targets = self.kind_targets(steering.next_target)
        for kind, norms in self.group_norms().items():
            scale = self.group_scale(kind)
            if scale <= 0:
                continue
            self.set_group_strength(kind, controller.planned_group_strength(
                norms, next_targets[kind], steering.learning_rate_mass, scale, self.group_epsilon, sizes[kind]))

    def final_mask(self, target, scope="global", **metadata):
        """Removes `kind_targets(target)` of each kind's groups, ranked across layers (`scope` unused)."""
        return groups.structured_mask(self.weights_by_key(), self._group_sets, self.kind_targets(target),
                                      keep_zeros=self.l1 is not None, **metadata)

    def pruning_logs(self):
        """`heads_removed`, `neurons_removed` (fractions) and each kind's `*_strength`."""
        logs = super().pruning_logs()
        for kind in self.kinds:
            logs[f"{kind}_strength"] = self.group_strength(kind)
        return logs

    def get_config(self):
        config = super().get_config()
        config.update(
            group_strength=self.initial_group_strength,
            group_epsilon=self.group_epsilon,
            **self._l1_config,
        )
        return config


def _median_squared(norms):
    """The (lower) median of `norms`, squared; 1.0 if it is 0 (or there are none)."""
    median = np.sort(norms)[(norms.size - 1) // 2] if norms.size else 0.0
    return median ** 2 if median > 0 else 1.0
