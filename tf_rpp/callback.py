"""`RPPCallback`: drives pruning from a tfmot `PruningSchedule`.

The callback reads the schedule exactly as tfmot does
(`should_prune, target = schedule(step)`, `step` = optimizer steps taken so
far), asks the optimizer to act, and logs:

- on the schedule's pruning steps it asks the optimizer to steer towards the
  target (`optimizer.steer`, rules in `tf_rpp.controller`: lambda for
  `RPPOptimizer`, planned group lambdas for `GroupRPPOptimizer`, the
  magnitude mask for the `MaskedOptimizer` baseline);
- once `step >= end_step` it hardens the pattern to exactly the final target
  and freezes the mask (`tf_rpp.hardening`); from then on the optimizer only
  enforces it;
- it logs sparsity and the optimizer's `pruning_logs()` to the progress bar,
  `History` and TensorBoard, and stops at once on a NaN or infinite loss.

All the state it steers lives in the optimizer's variables, so a run resumed by
`BackupAndRestore` continues exactly.
"""

import math

import keras
import tensorflow as tf
from keras.src.utils import io_utils

from tf_rpp import controller
from tf_rpp import hardening
from tf_rpp import masks as masks_lib
from tf_rpp.optimizers import unwrap


def _pruning_schedule_class():
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

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
        rewind: at hardening, the weights kept return to earlier values
            (`tf_rpp.hardening.rewind`): the proximal steps chose the pattern,
            and the kept weights start recovery unshrunk. `True`: their values
            when this `fit` began (e.g. the dense fine-tuned model's when
            pruning it); a dict from key to array (`optimizer.weights_by_key()`
            taken earlier): those values, which stay right when a resumed
            `fit` (`keras.callbacks.BackupAndRestore`) begins from pruned ones.

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

    def __init__(self, schedule=None, scope="global", adapt_rate=8.0, log_every=100, log_dir=None, rewind=False):
        super().__init__()
        schedule_class = _pruning_schedule_class()
        if schedule is not None and not isinstance(schedule, schedule_class):
            raise ValueError(
                f"`schedule` must be a tfmot.sparsity.keras.PruningSchedule (for example "
                f"PolynomialDecay(0.0, 0.8, 0, 2000)) or None; received {type(schedule).__name__}."
            )
        if scope not in ("global", "per_layer"):
            raise ValueError(f"`scope` must be 'global' or 'per_layer'; received {scope!r}.")
        if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
            raise ValueError(f"`log_every` must be an integer >= 1; received {log_every!r}.")
        self.schedule = schedule
        self.scope = scope
        self.controller = controller.LambdaController(adapt_rate)
        self.log_every = log_every
        self.log_dir = log_dir
        self.end_step = _end_step(schedule)
        if schedule is not None and self.end_step is not None:
            _check_target(schedule(tf.constant(self.end_step, tf.int64))[1], self.end_step)
        if not isinstance(rewind, (bool, dict)):
            raise ValueError(f"`rewind` must be True, False or a dict from key to array; received "
                             f"{type(rewind).__name__}.")
        self.rewind = rewind
        self._start = rewind if isinstance(rewind, dict) else None
        self._writer = None
        self._last = {}

    @property
    def adapt_rate(self):
        """The lambda controller's gain."""
        return self.controller.adapt_rate

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
        if self.rewind is True and not optimizer.frozen:
            self._start = optimizer.weights_by_key()
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
        elif bool(should_prune):
            optimizer.steer(self._steering(optimizer, step, target))
            self._measure(step, target)

    def _steering(self, optimizer, step, target):
        # The next pruning step's target and the learning rates until then let
        # structured RPP plan its lambdas ahead (tf_rpp.controller).
        horizon = int(getattr(self.schedule, "frequency", 100) or 100)
        next_target = _check_target(self.schedule(tf.constant(step + horizon, tf.int64))[1], step + horizon)
        return controller.Steering(
            step=step, target=target, next_target=next_target,
            learning_rate_mass=controller.learning_rate_mass(optimizer.inner_optimizer, step, horizon),
            scope=self.scope, controller=self.controller,
        )

    def _harden(self, optimizer, step, target):
        hardening.harden(optimizer, target, self.scope, metadata=dict(
            step=step, optimizer=type(optimizer).__name__,
            schedule=type(self.schedule).__name__ if self.schedule is not None else None,
        ))
        if self._start is not None:
            hardening.rewind(optimizer, self._start)
            self._start = None
        self._measure(step, target)

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.optimizer
        if optimizer.frozen or self.schedule is None:  # between pruning steps, measure once an epoch
            self._measure(int(optimizer.iterations.numpy()), self._last.get("target_sparsity"))
        if logs is not None:
            logs.update(self._last)

    def on_train_end(self, logs=None):
        optimizer = self.optimizer
        step = int(optimizer.iterations.numpy())
        if optimizer.frozen:
            self._measure(step, self._last.get("target_sparsity"))
        elif self.schedule is None:
            hardening.freeze_zeros(optimizer)  # the paper's mode: the exact zeros are the pattern
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
        total = masks_lib.total_sparsity(counts)
        self._last["sparsity"] = total
        if target is not None:
            self._last["target_sparsity"] = float(target)
        pruning_logs = optimizer.pruning_logs()
        if optimizer.sparsity_before_hardening is not None:
            pruning_logs["sparsity_before_hardening"] = optimizer.sparsity_before_hardening
        self._last.update(pruning_logs)
        if self._writer is not None:
            with self._writer.as_default(step=step):
                tf.summary.scalar("sparsity/total", total)
                for key, value in masks_lib.layer_sparsity(counts).items():
                    tf.summary.scalar(f"sparsity/{key}", value)
                if target is not None:
                    tf.summary.scalar("target_sparsity", float(target))
                for name, value in pruning_logs.items():
                    tf.summary.scalar(name, value)


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
