"""`GroupMagnitudeOptimizer`: structured gradual magnitude pruning of heads and neurons."""

import keras

from tf_rpp.structured import groups
from tf_rpp.optimizers.masked import MaskedOptimizer


@keras.saving.register_keras_serializable(package="tf_rpp")
class GroupMagnitudeOptimizer(MaskedOptimizer):
    """The structured baseline: remove the heads and neurons of smallest L2 norm, no shrinkage.

    On every pruning step of `RPPCallback`'s schedule the mask becomes the
    schedule's target of each kind's weakest groups (ranked across layers, as
    `GroupRPPOptimizer`'s hardening ranks them); in between, the inner
    optimizer trains the kept groups freely. It is to `GroupRPPOptimizer` what
    gradual magnitude pruning (`MaskedOptimizer`) is to `RPPOptimizer`: the
    same choice by norm, without the proximal steps that shrink every group on
    the way, so comparing the two separates choosing from shrinking.
    `GroupRPPOptimizer` extends it with those steps.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        kinds: which groups, a subset of `("heads", "neurons", "attention", "feedforward")`.
        relative_targets: as in `GroupRPPOptimizer`: a dict from kind to a
            factor > 0 on the schedule's target.
        prune, include_embeddings, mask_gradients, name: as in `MaskedOptimizer`.

    Example:

    ```python
    optimizer = tf_rpp.optimizers.GroupMagnitudeOptimizer(keras.optimizers.AdamW(1e-4))
    classifier.compile(optimizer=optimizer, loss=..., metrics=["accuracy"])
    classifier.fit(ds, callbacks=[tf_rpp.RPPCallback(
        tfmot.sparsity.keras.PolynomialDecay(0.0, 0.5, 0, 400, frequency=10))])
    optimizer.removed_groups()  # {'heads': 0.5, 'neurons': 0.5}
    ```
    """

    def __init__(self, inner_optimizer, kinds=("heads", "neurons"), relative_targets=None, prune=None,
                 include_embeddings=False, mask_gradients="auto", name=None, **kwargs):
        kinds = groups.check_kinds(kinds)
        relative_targets = groups.check_relative_targets(relative_targets, kinds)
        super().__init__(inner_optimizer, prune=prune, include_embeddings=include_embeddings,
                         mask_gradients=mask_gradients, name=name, **kwargs)
        self.kinds = kinds
        self.relative_targets = relative_targets
        self._group_sets = []

    def _build_pruning_state(self, variables):
        self._group_sets = groups.bert_groups(variables, self.kinds)

    @property
    def group_sets(self):
        """The `tf_rpp.structured.groups.GroupSet`s this optimizer prunes (after `build`)."""
        return list(self._group_sets)

    def kind_targets(self, target):
        """Each kind's fraction of groups to remove when the schedule's target is `target`.

        Example:

        >>> import keras
        >>> GroupMagnitudeOptimizer(keras.optimizers.AdamW(), relative_targets={"heads": 0.5}).kind_targets(0.6)
        {'heads': 0.3, 'neurons': 0.6}
        """
        return groups.kind_targets(target, self.kinds, self.relative_targets)

    def group_norms(self):
        """Per kind, the L2 norms of all its groups (layer by layer), as one NumPy vector."""
        self._require_built("group_norms()")
        return groups.norms_by_kind(self.weights_by_key(), self._group_sets)

    def removed_groups(self):
        """Per kind, the fraction of groups that are exactly zero now.

        Example:

        ```python
        optimizer.removed_groups()  # {'heads': 0.25, 'neurons': 0.5}
        ```
        """
        self._require_built("removed_groups()")
        return groups.removed_fraction(self.weights_by_key(), self._group_sets)

    def steer(self, steering):
        """One pruning step: the mask removes each kind's weakest groups at `steering.target`."""
        self.set_mask(self.final_mask(steering.target))

    def final_mask(self, target, scope="global", **metadata):
        """Removes `kind_targets(target)` of each kind's groups, smallest norms first (`scope` unused)."""
        return groups.structured_mask(self.weights_by_key(), self._group_sets, self.kind_targets(target),
                                      **metadata)

    def pruning_logs(self):
        """`heads_removed`, `neurons_removed` (fractions)."""
        return {f"{kind}_removed": fraction for kind, fraction in self.removed_groups().items()}

    def get_config(self):
        config = super().get_config()
        config.update(kinds=list(self.kinds), relative_targets=dict(self.relative_targets) or None)
        return config
