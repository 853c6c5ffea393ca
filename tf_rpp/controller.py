"""Steering pruning towards a schedule's targets: the lambda controller and the group planner.

`RPPCallback` reads the tfmot schedule and, on its pruning steps, hands the
optimizer a `Steering` request; the optimizer answers with its own rule:

- `RPPOptimizer` (unstructured): `planned_strength` sets lambda so the
  proximal steps until the next pruning step zero the weights up to the next
  target, and `LambdaController` corrects that plan multiplicatively from the
  measured exact-zero fraction (what the plan cannot see: the gradients that
  hold weights up), remembering its last `Measurement` in the optimizer's
  variables (so a resumed run steers exactly like an unbroken one);
- `GroupRPPOptimizer` (heads, neurons): `planned_group_strength` sets each
  kind's lambda so the proximal steps erase the weakest groups up to the next
  target;
- `MaskedOptimizer` (the magnitude baseline): the mask at the target.

Example:

>>> c = LambdaController(adapt_rate=8.0)
>>> round(c.next_strength(1e-3, sparsity=0.10, target=0.20), 6)   # behind: lambda up
0.002
>>> c.next_strength(1e-3, 0.10, 0.20, last=Measurement(0.0, 0.15))  # catching up: held
0.001
"""

import dataclasses
import math

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The sparsity measured at a pruning step and the target it was steered to."""

    sparsity: float
    target: float


@dataclasses.dataclass(frozen=True)
class LambdaController:
    """Multiplicative lambda control: `lambda <- lambda * exp(adapt_rate * (target - sparsity))`.

    The factor is clipped to [1/2, 2] so one noisy measurement cannot swing
    lambda far. Lambda is not raised while sparsity grows faster than the
    target (anti-windup): RPP's zeros are sticky and lambda shrinks every kept
    weight too, so an overshoot is slow to undo and costs accuracy (measured on
    MiniLM). The price is some lag, closed by the exact hardening at the end.

    Attributes:
        adapt_rate: the gain (> 0).
        min_strength: the smallest lambda it moves from: multiplicative steps
            cannot leave 0, and a run started at `l1_strength=0` with a
            schedule should still prune.

    Example: see the module docstring.
    """

    adapt_rate: float = 8.0
    min_strength: float = 1e-6

    def __post_init__(self):
        if not (isinstance(self.adapt_rate, (int, float)) and math.isfinite(self.adapt_rate) and self.adapt_rate > 0):
            raise ValueError(f"`adapt_rate` must be a positive number; received {self.adapt_rate!r}. Try 8.0.")

    def factor(self, sparsity, target, last=None):
        """The multiplicative change of lambda at this pruning step."""
        factor = min(max(math.exp(self.adapt_rate * (target - sparsity)), 0.5), 2.0)
        if factor > 1 and last is not None and sparsity - last.sparsity > target - last.target:
            factor = 1.0  # already catching up: more lambda overshoots
        return factor

    def next_strength(self, strength, sparsity, target, last=None):
        """The next lambda, from the current one and this step's measurement."""
        return max(strength, self.min_strength) * self.factor(sparsity, target, last)


@dataclasses.dataclass(frozen=True)
class Steering:
    """What `RPPCallback` asks of an optimizer at a pruning step (`optimizer.steer(steering)`).

    Attributes:
        step: optimizer steps taken so far.
        target: the schedule's sparsity now (for groups: the fraction removed).
        next_target: the schedule's target `horizon` steps ahead (its next pruning step).
        learning_rate_mass: the sum of the inner optimizer's learning rates over those steps.
        scope: `"global"` or `"per_layer"` ranking of magnitudes (the baseline).
        controller: the `LambdaController` of unstructured RPP.

    Example:

    >>> Steering(step=10, target=0.2).next_target
    0.2
    """

    step: int
    target: float
    next_target: float = None
    learning_rate_mass: float = 0.0
    scope: str = "global"
    controller: LambdaController = LambdaController()

    def __post_init__(self):
        if self.next_target is None:
            object.__setattr__(self, "next_target", self.target)


def planned_group_strength(norms, next_target, learning_rate_mass, scale, group_epsilon, weights_per_group):
    """A kind's scale-free group lambda that erases its weakest groups up to `next_target`.

    Groups shrink together (each loses ~lr*lambda*s*gamma of norm a step, so
    its squared norm drops ~2*lr*lambda*s a step), and a kind's norms are close
    to each other, so they all vanish within a few steps: a feedback controller
    that waits to see removed groups overshoots (measured on MiniLM: 89% of
    heads gone at a 39% target). So lambda is planned ahead: the squared norm
    the next steps erase, given their learning rates (warm-up included), is
    the next target's quantile, so the weakest groups go first; gradients that
    hold a group up keep it, and the hardening settles the exact count.

    Args:
        norms: the kind's group norms (all layers).
        next_target: fraction of groups to have removed at the next pruning step.
        learning_rate_mass: the sum of the learning rates until then (> 0).
        scale: the kind's median squared group norm at the first step (> 0).
        group_epsilon: the group reweighting bound.
        weights_per_group: weights one group holds.

    Example:

    >>> round(planned_group_strength([1.0, 2.0, 3.0], 0.5, 0.1, 4.0, 1e-3, 100), 4)
    5.0
    """
    erase = float(np.quantile(np.square(np.asarray(norms, float)), next_target)) / (2.0 * learning_rate_mass)
    # A removed group must stay removed: Adam-type steps regrow a zero group by
    # about lr*sqrt(size) a step; its threshold, lr*lambda*s / group_epsilon, is
    # kept twice that (as l1_strength = 2*epsilon does for single weights).
    hold = 2.0 * group_epsilon * math.sqrt(weights_per_group)
    return max(erase, hold) / scale


def planned_strength(distances, next_target, learning_rate_mass):
    """The unstructured lambda whose proximal steps zero the weights up to `next_target` within the horizon.

    With reweighting, a weight shrinks by `lr_t * lambda * gamma` a step, so
    over steps whose learning rates sum to `learning_rate_mass` it reaches zero
    when `|w| / gamma < learning_rate_mass * lambda` (with `gamma = 1 / (|w| +
    epsilon)`, `|w| (|w| + epsilon) < learning_rate_mass * lambda`). Lambda is
    that distance's `next_target` quantile over the mass, so the smallest
    weights go first and the exact zeros reach the target by the proximal
    steps themselves; zeros count as distance 0.

    Args:
        distances: `|w| / gamma` of every pruned weight (any shape; flattened).
        next_target: the fraction of weights to be zero at the next pruning step.
        learning_rate_mass: the sum of the learning rates until then (> 0).

    Example:

    >>> round(planned_strength([0.0, 1e-6, 4e-6, 9e-6], next_target=0.5, learning_rate_mass=1e-3), 6)
    0.001
    """
    distances = np.ravel(np.asarray(distances, np.float32))
    if distances.size == 0 or next_target <= 0:
        return 0.0
    k = min(distances.size - 1, max(0, int(math.ceil(next_target * distances.size)) - 1))
    return float(np.partition(distances, k)[k]) / learning_rate_mass


def learning_rate_mass(optimizer, step, horizon):
    """The sum of `optimizer`'s learning rates over steps `step .. step + horizon - 1`.

    Example:

    >>> learning_rate_mass(keras.optimizers.SGD(0.5), step=0, horizon=10)
    5.0
    """
    schedule = getattr(optimizer, "_learning_rate", None)  # where Keras keeps a schedule
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(sum(keras.ops.convert_to_numpy(schedule(step + i)) for i in range(horizon)))
    return horizon * float(keras.ops.convert_to_numpy(optimizer.learning_rate))
