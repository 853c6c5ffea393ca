"""`RPPCallback`: drives pruning from a tfmot `PruningSchedule`.

The callback calls the schedule exactly as tfmot does
(`should_prune, target = schedule(step)`) with `step` the number of optimizer
steps taken so far. On pruning steps it steers the optimizer towards the target:

- with `RPPOptimizer`, it adapts lambda (`l1_strength`) multiplicatively so the
  exact-zero fraction tracks the target;
- with `GroupRPPOptimizer`, the target is the fraction of groups (heads,
  neurons) removed; it plans each kind's group lambda so the proximal steps
  erase the weakest groups up to the next target;
- with a plain `MaskedOptimizer` (the NIP baseline), it sets the mask to the
  largest-magnitude weights at the target, as tfmot's `prune_low_magnitude`.

Once `step >= end_step` it hardens the pattern to exactly the final target
(smallest magnitudes pruned, globally or per layer) and freezes the mask; from
then on the optimizer only enforces it. All the state it steers lives in the
optimizer's variables, so a run resumed by `BackupAndRestore` continues exactly.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras.src.utils import io_utils

from tf_rpp import groups
from tf_rpp.mask import SparsityMask
from tf_rpp.optimizer import GroupRPPOptimizer
from tf_rpp.optimizer import RPPOptimizer
from tf_rpp.optimizer import _total_sparsity
from tf_rpp.optimizer import unwrap

# The smallest lambda the controller moves from: multiplicative steps cannot
# leave 0, and a run started at l1_strength=0 with a schedule should still prune.
_MIN_L1_STRENGTH = 1e-6


def _pruning_schedule_class():
    try:
        from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule
    except ImportError:  # pragma: no cover - tfmot is a hard dependency
        return None
    return pruning_schedule.PruningSchedule


class RPPCallback(keras.callbacks.Callback):
    """Prunes to a tfmot schedule with `RPPOptimizer` (or the magnitude baseline).

    Args:
        schedule: a `tfmot.sparsity.keras.PruningSchedule` (`ConstantSparsity`,
            `PolynomialDecay`, or your subclass), or `None` for the paper's mode:
            lambda stays fixed and, at the end of training, the exact zeros
            become the frozen mask.
        scope: how the final hardening ranks magnitudes: `"global"` (all pruned
            weights together, the default: layers that RPP found more prunable
            stay sparser) or `"per_layer"` (every weight at the target, tfmot's
            behaviour). Also used by the magnitude baseline's updates.
        adapt_rate: gain of the lambda controller:
            `lambda <- lambda * exp(adapt_rate * (target - sparsity))` on each
            pruning step, the factor clipped to [1/2, 2] so one noisy
            measurement cannot swing lambda far. Lambda is not raised while
            sparsity grows faster than the target (anti-windup): RPP's zeros
            are sticky and lambda shrinks every kept weight too, so an
            overshoot is slow to undo and costs accuracy. The price is some
            lag, closed by the exact hardening at `end_step`.
        log_every: steps between sparsity measurements when no schedule is
            pruning (paper mode, or once the mask is frozen); with a schedule
            they also happen on its pruning steps.
        log_dir: if given, per-layer sparsity, total sparsity, target and lambda
            are written there as TensorBoard scalars, like tfmot's
            `PruningSummaries`.

    A NaN or infinite loss stops training at once with a `FloatingPointError`
    (before any mask is derived from the broken weights).

    Each batch's logs (so the progress bar and `History`) get `sparsity`,
    `target_sparsity` (with a schedule) and `l1_strength` (with RPP), or
    `heads_removed`, `neurons_removed` and their `*_strength` (with
    `GroupRPPOptimizer`, whose targets are fractions of groups).

    Example:

    ```python
    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, begin_step=0,
                                                   end_step=2000, frequency=50)
    model.compile(optimizer=tf_rpp.RPPOptimizer(keras.optimizers.AdamW(1e-4)))
    model.fit(ds, epochs=4, callbacks=[tf_rpp.RPPCallback(schedule, log_dir="logs")])
    ```
    """

    def __init__(self, schedule=None, scope="global", adapt_rate=8.0, log_every=100, log_dir=None):
        super().__init__()
        schedule_class = _pruning_schedule_class()
        if schedule is not None and not isinstance(schedule, schedule_class):
            raise ValueError(
                f"`schedule` must be a tfmot.sparsity.keras.PruningSchedule (for example "
                f"PolynomialDecay(0.0, 0.8, 0, 2000)) or None; received {type(schedule).__name__}."
            )
        if scope not in ("global", "per_layer"):
            raise ValueError(f"`scope` must be 'global' or 'per_layer'; received {scope!r}.")
        if not (isinstance(adapt_rate, (int, float)) and math.isfinite(adapt_rate) and adapt_rate > 0):
            raise ValueError(f"`adapt_rate` must be a positive number; received {adapt_rate!r}. Try 8.0.")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"`log_every` must be an integer >= 1; received {log_every!r}.")
        self.schedule = schedule
        self.scope = scope
        self.adapt_rate = float(adapt_rate)
        self.log_every = log_every
        self.log_dir = log_dir
        self.end_step = _end_step(schedule)
        if schedule is not None and self.end_step is not None:
            _check_target(schedule(tf.constant(self.end_step, tf.int64))[1], self.end_step)
        self._writer = None
        self._last = {}

    @property
    def optimizer(self):
        compiled = getattr(self.model, "optimizer", None)
        optimizer = unwrap(compiled)  # inside Keras's LossScaleOptimizer under mixed_float16
        if optimizer is None:
            raise ValueError(
                "RPPCallback needs the model compiled with tf_rpp.RPPOptimizer (or "
                f"tf_rpp.MaskedOptimizer for the magnitude baseline); it has {type(compiled).__name__}."
            )
        return optimizer

    def on_train_begin(self, logs=None):
        optimizer = self.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._measure(int(optimizer.iterations.numpy()), target=None)

    def on_train_batch_end(self, batch, logs=None):
        optimizer = self.optimizer
        step = int(optimizer.iterations.numpy())
        _check_finite_loss(logs, step)
        if self.schedule is not None and not optimizer.frozen:
            self._follow_schedule(optimizer, step)
        elif step % self.log_every == 0:
            self._measure(step, target=self._last.get("target_sparsity"))
        if logs is not None:
            logs.update(self._last)

    def _follow_schedule(self, optimizer, step):
        should_prune, target = self.schedule(tf.constant(step, tf.int64))
        target = _check_target(target, step)
        if self.end_step is not None and step >= self.end_step:
            self._harden(optimizer, step, target)
            return
        if not bool(should_prune):
            return
        if isinstance(optimizer, GroupRPPOptimizer):
            self._plan_group_strengths(optimizer, step)
        elif isinstance(optimizer, RPPOptimizer):
            sparsity = optimizer.sparsity()
            factor = self._controller_factor(sparsity, target, optimizer.controller_variable.numpy())
            optimizer.controller_variable.assign([sparsity, target])
            optimizer.l1_strength = max(optimizer.l1_strength, _MIN_L1_STRENGTH) * factor
        else:
            optimizer.set_mask(SparsityMask.from_magnitudes(optimizer.weights_by_key(), target, self.scope))
        self._measure(step, target)

    def _plan_group_strengths(self, optimizer, step):
        # Groups shrink together (each loses ~lr*lambda*s*gamma of norm a step,
        # so its squared norm drops ~2*lr*lambda*s a step), and a kind's norms
        # are close to each other, so they all vanish within a few steps: a
        # feedback controller that waits to see removed groups overshoots
        # (measured on MiniLM: 89% of heads gone at a 39% target). So lambda is
        # planned ahead: the squared norm the next `frequency` steps erase,
        # given their learning rates (warm-up included), is the next target's
        # quantile, so the weakest groups go first; gradients that hold a group
        # up keep it, and the hardening at end_step settles the exact count.
        horizon = int(getattr(self.schedule, "frequency", 100) or 100)
        next_target = _check_target(self.schedule(tf.constant(step + horizon, tf.int64))[1], step + horizon)
        rate_mass = _learning_rate_mass(optimizer.inner_optimizer, step, horizon)
        if rate_mass <= 0:
            return
        sizes = {gs.kind: gs.weights_per_group for gs in optimizer.group_sets}
        for kind, norms in optimizer.group_norms().items():
            scale = optimizer.group_scale(kind)
            if scale <= 0:
                continue
            erase = float(np.quantile(np.square(norms), next_target)) / (2.0 * rate_mass)
            # A removed group must stay removed: Adam-type steps regrow a zero
            # group by about lr*sqrt(size) a step; its threshold, lr*lambda*s
            # / group_epsilon, is kept twice that (as l1_strength = 2*epsilon
            # does for single weights).
            hold = 2.0 * optimizer.group_epsilon * math.sqrt(sizes[kind])
            optimizer.set_group_strength(kind, max(erase, hold) / scale)

    def _controller_factor(self, sparsity, target, last):
        factor = math.exp(self.adapt_rate * (target - sparsity))
        factor = min(max(factor, 0.5), 2.0)
        last_sparsity, last_target = (float(v) for v in last)
        if factor > 1 and last_sparsity >= 0 and sparsity - last_sparsity > target - last_target:
            factor = 1.0  # already catching up: more lambda overshoots (measured on MiniLM)
        return factor

    def _harden(self, optimizer, step, target):
        metadata = dict(
            step=step, schedule=type(self.schedule).__name__ if self.schedule is not None else None,
            optimizer=type(optimizer).__name__,
        )
        if isinstance(optimizer, GroupRPPOptimizer):
            # Target = fraction of groups removed, each kind ranked across layers.
            mask = groups.structured_mask(
                optimizer.weights_by_key(), optimizer.group_sets, target,
                keep_zeros=optimizer.initial_l1_strength > 0, **metadata,
            )
        else:
            mask = SparsityMask.from_magnitudes(optimizer.weights_by_key(), target, self.scope, **metadata)
        optimizer.set_mask(mask, freeze=True)
        self._measure(step, target)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._last)

    def on_train_end(self, logs=None):
        optimizer = self.optimizer
        step = int(optimizer.iterations.numpy())
        if optimizer.frozen:
            self._measure(step, self._last.get("target_sparsity"))
        elif self.schedule is None:
            # The paper's mode: the exact zeros are the pattern.
            mask = SparsityMask({k: w != 0 for k, w in optimizer.weights_by_key().items()})
            optimizer.set_mask(mask, freeze=True)
            self._measure(step, None)
        elif self.end_step is None:
            # A schedule that prunes forever: harden at the last target.
            self._harden(optimizer, step, _check_target(self.schedule(tf.constant(step, tf.int64))[1], step))
        else:
            self._measure(step, None)
            io_utils.print_msg(
                f"RPPCallback: training stopped at step {step}, before the schedule's end_step "
                f"{self.end_step}; the mask is not final yet (sparsity {optimizer.sparsity():.4f}). "
                "Continue training to harden it."
            )
        if self._writer is not None:
            self._writer.flush()

    def _measure(self, step, target):
        optimizer = self.optimizer
        counts = optimizer.zero_counts()
        layers = {key: zeros / max(size, 1) for key, (zeros, size) in counts.items()}
        total = _total_sparsity(counts)
        self._last["sparsity"] = total
        if target is not None:
            self._last["target_sparsity"] = float(target)
        if isinstance(optimizer, GroupRPPOptimizer):
            for kind, fraction in optimizer.removed_groups().items():
                self._last[f"{kind}_removed"] = fraction
                self._last[f"{kind}_strength"] = optimizer.group_strength(kind)
        elif isinstance(optimizer, RPPOptimizer):
            self._last["l1_strength"] = optimizer.l1_strength
        if self._writer is not None:
            with self._writer.as_default(step=step):
                tf.summary.scalar("sparsity/total", total)
                for key, value in layers.items():
                    tf.summary.scalar(f"sparsity/{key}", value)
                if target is not None:
                    tf.summary.scalar("target_sparsity", float(target))
                for name in self._last:
                    if name.endswith(("_removed", "_strength")):  # l1_strength too
                        tf.summary.scalar(name, self._last[name])


def _learning_rate_mass(optimizer, step, horizon):
    """The sum of the learning rates of the next `horizon` steps."""
    # Keras keeps a schedule (or the fixed rate) in `_learning_rate`.
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(sum(keras.ops.convert_to_numpy(schedule(step + i)) for i in range(horizon)))
    return horizon * float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _check_finite_loss(logs, step):
    # Raised here, inside the batch, so no later hook (hardening, the paper
    # mode's freeze, BackupAndRestore's epoch-end save) ever sees the broken
    # weights: the last good backup and any mask on disk stay as they were.
    loss = (logs or {}).get("loss")
    if loss is None:
        return
    loss = float(loss)
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"RPPCallback: the loss became {loss} at step {step}. Pruning stopped before the broken "
            "weights could shape a mask; nothing was hardened or saved. Lower the learning rate or "
            "l1_strength, add clipnorm to the inner optimizer, or look for bad rows in the data. "
            "With keras.callbacks.BackupAndRestore (the recipes' --resume) training restarts from the "
            "last good epoch."
        )


def _end_step(schedule):
    if schedule is None:
        return None
    end = getattr(schedule, "end_step", None)
    if end is None:
        end = schedule.get_config().get("config", {}).get("end_step") if hasattr(schedule, "get_config") else None
    if end is None or int(end) < 0:
        return None
    return int(end)


def _check_target(target, step):
    target = float(target)
    if not 0.0 <= target < 1.0:
        raise ValueError(
            f"The pruning schedule asks for sparsity {target} at step {step}; targets must be "
            "in [0, 1). Lower the schedule's final_sparsity/target_sparsity below 1, e.g. 0.9."
        )
    return target
