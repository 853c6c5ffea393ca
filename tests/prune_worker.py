"""A small, deterministic RPP pruning run in its own process, for the reliability tests.

    python tests/prune_worker.py OUT [--strategy none|multiworker] [--batch-sleep S]

Trains a tiny keras-hub BERT masked LM with `RPPOptimizer` + `RPPCallback`
(PolynomialDecay to 70%) under `keras.callbacks.BackupAndRestore(OUT/backup)`,
so a killed run continues when started again with the same OUT. Writes
`OUT/progress` after every completed epoch and, at the end, `OUT/final.npz`
(the mask and every trainable weight) and `OUT/mask.npz`. Under
`--strategy multiworker` it reads `TF_CONFIG`; only the chief writes results.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

GLOBAL_BATCH = 16
EPOCHS = 8


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--strategy", choices=("none", "multiworker"), default="none")
    p.add_argument("--batch-sleep", type=float, default=0.0, help="seconds slept after each batch")
    args = p.parse_args()

    # Before any op runs: collectives need the strategy created first.
    strategy = (tf.distribute.MultiWorkerMirroredStrategy() if args.strategy == "multiworker"
                else tf.distribute.get_strategy())
    tf.config.experimental.enable_op_determinism()

    import keras

    keras.config.disable_traceback_filtering()
    import tensorflow_model_optimization as tfmot
    from tiny import compile_mlm
    from tiny import mlm_arrays
    from tiny import tiny_masked_lm

    import tf_rpp

    is_chief = args.strategy == "none" or json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0
    os.makedirs(args.out, exist_ok=True)

    keras.utils.set_random_seed(0)
    # Fixed batches in a fixed order: an epoch replays identically after a restart.
    dataset = tf.data.Dataset.from_tensor_slices(mlm_arrays(n=160, seed=3)).batch(GLOBAL_BATCH, drop_remainder=True)
    with strategy.scope():
        model = tiny_masked_lm(seed=5, hidden=32)
        optimizer = tf_rpp.RPPOptimizer(keras.optimizers.AdamW(2e-3), reweight_every=5)
        compile_mlm(model, optimizer)

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if args.batch_sleep:
                time.sleep(args.batch_sleep)

        def on_epoch_end(self, epoch, logs=None):
            if is_chief:
                with open(os.path.join(args.out, "progress"), "a") as f:
                    f.write(f"{epoch}\n")

    schedule = tfmot.sparsity.keras.PolynomialDecay(0.0, 0.7, 0, 40, frequency=5)
    if args.strategy == "none":
        model.fit(dataset, epochs=EPOCHS, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),
            tf_rpp.RPPCallback(schedule),
            Progress(),
        ])
    else:
        # Keras 3.15's fit() cannot run under MultiWorkerMirroredStrategy with
        # any (x, y) dataset (keras-team/keras#20329: its symbolic build reduces
        # a nested batch), so the standard tf.distribute custom loop is used:
        # the same optimizer, callback and loss, driven by hand.
        with strategy.scope():  # optimizer variables are mirrored like the model's
            optimizer.build(model.trainable_variables)
        distributed = strategy.experimental_distribute_dataset(dataset)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

        @tf.function
        def train_step(batch):
            def replica_step(x, y, sample_weight):
                with tf.GradientTape() as tape:
                    per_replica = loss_fn(y, model(x, training=True), sample_weight)
                    # The global mean, as one device computes it: divide by all elements.
                    loss = per_replica / float(GLOBAL_BATCH * y.shape[-1])
                optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                              model.trainable_variables))
                return loss
            return strategy.reduce("SUM", strategy.run(replica_step, args=batch), axis=None)

        callbacks = keras.callbacks.CallbackList([tf_rpp.RPPCallback(schedule), Progress()], model=model)
        callbacks.on_train_begin()
        for epoch in range(EPOCHS):
            for i, batch in enumerate(distributed):
                callbacks.on_train_batch_begin(i)
                callbacks.on_train_batch_end(i, {"loss": float(train_step(batch))})
            callbacks.on_epoch_end(epoch, {})
        callbacks.on_train_end()
    if is_chief:
        mask = optimizer.get_mask()
        mask.save(os.path.join(args.out, "mask.npz"))
        arrays = {f"mask:{k}": v for k, v in mask.items()}
        arrays.update({f"weight:{w.path}": np.asarray(w.numpy()) for w in model.trainable_weights})
        arrays["iterations"] = np.asarray(int(optimizer.iterations.numpy()))
        np.savez(os.path.join(args.out, "final.npz"), **arrays)


if __name__ == "__main__":
    main()
