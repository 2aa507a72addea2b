"""One training run for test_clusters.py, in a process of its own: one device, MirroredStrategy over
two logical CPUs, one worker of a MultiWorkerMirroredStrategy (TF_CONFIG), or the coordinator of a
ParameterServerStrategy (TF_CONFIG names servers started by the test). Writes the model's weights and
the optimizer's counters to an npz file (worker 0 / the coordinator only).

The data is fixed and unshuffled: 6 global batches of 64, so every strategy sees the same steps.
"""

import argparse
import itertools
import json
import os

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import tf_freqsgd  # noqa: E402
import tensorflow as tf  # noqa: E402

VOCAB, WIDTH, GLOBAL_BATCH, STEPS = 1000, 8, 64, 6

OPTIMIZERS = {
    "CounterSGD": lambda: tf_freqsgd.CounterSGD(0.5, momentum=0.5),
    "CounterSGD_halflife": lambda: tf_freqsgd.CounterSGD(0.5, counter_halflife=3.0, counting="presence"),
    "RowwiseAdagradCounter": lambda: tf_freqsgd.RowwiseAdagradCounter(0.5),
    # Bounds under most rows' gradient norms: the clip sees each id's occurrences.
    "CounterSGD_cowclip": lambda: tf_freqsgd.CounterSGD(0.5, cowclip_ratio=0.01, cowclip_min_norm=0.0),
    "CounterSGD_adam": lambda: tf_freqsgd.CounterSGD(0.5, dense_optimizer=tf.keras.optimizers.Adam(0.01)),
    "FrequencySGD": lambda: tf_freqsgd.FrequencySGD({"items/embeddings": np.linspace(0.01, 2.0, VOCAB)}, 0.5,
                                                    estimate="count", momentum=0.5),
}


def data():
    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, (GLOBAL_BATCH * STEPS, 3)), VOCAB) - 1
    return ids.astype(np.int64), rng.normal(size=(GLOBAL_BATCH * STEPS, 1)).astype(np.float32)


def ps_tasks():
    """The parameter servers of TF_CONFIG's cluster, as devices."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return [f"/job:ps/replica:0/task:{index}" for index in range(len(cluster.get("ps", [])))]


def build(optimizer_name, dynamic=False):
    tf.keras.utils.set_random_seed(0)
    ids = tf.keras.Input((3,), dtype=tf.int64)
    if dynamic:
        from tensorflow_recommenders_addons import dynamic_embedding as de

        # A constant initializer: TFRA draws a missing id's row anew at each lookup.
        embedding = de.keras.layers.Embedding(WIDTH, initializer=tf.keras.initializers.Constant(0.05), name="items",
                                              devices=ps_tasks() or None)
        score = tf.keras.layers.Dense(1, kernel_initializer="ones")(
            tf.keras.layers.GlobalAveragePooling1D()(embedding(ids)))
        model = tf.keras.Model(ids, score)
        model.compile(OPTIMIZERS[optimizer_name](), "mse")
        return model
    rows = tf.keras.layers.Embedding(VOCAB, WIDTH, name="items")(ids)
    score = tf.keras.layers.Dense(1)(tf.keras.layers.GlobalAveragePooling1D()(rows))
    model = tf.keras.Model(ids, score)
    # The same starting weights however the variables are sharded (initializers draw per shard).
    rng = np.random.default_rng(1)
    values = iter([rng.uniform(-0.1, 0.1, shape).astype(np.float32) for shape in ((VOCAB, WIDTH), (WIDTH, 1), (1,))])
    for _, shards in itertools.groupby(model.weights, key=lambda v: v.name.split("/part_")[0]):
        value, offset = next(values), 0
        for shard in shards:
            shard.assign(value[offset:offset + shard.shape[0]])
            offset += shard.shape[0]
    model.compile(OPTIMIZERS[optimizer_name](), "mse")
    return model


def strategy_of(kind, partitions):
    if kind == "one":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    partitioner = tf.distribute.experimental.partitioners.FixedShardsPartitioner(partitions) if partitions else None
    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def table_rows(model):
    """The embedding table's variables (its shards in order, under a partitioner)."""
    return [v for v in model.trainable_variables if "items" in v.name]


def dynamic_record(model):
    """The TFRA table's keys and rows, the counters by key and the counter tables' devices."""
    embedding = model.get_layer("items")
    keys, rows = embedding.params.export()
    order = np.argsort(keys.numpy())
    keys = keys.numpy()[order]
    counter = model.optimizer.row_state(embedding.params)["counter"]
    return {"keys": keys, "table": rows.numpy()[order],
            "counts": model.optimizer.counts(embedding.params, tf.constant(keys)).numpy(),
            "dense": np.concatenate([v.numpy().ravel() for v in model.layers[-1].weights]),
            "applied_steps": np.array(int(model.optimizer.applied_steps.numpy())),
            "table_devices": np.array(sorted(embedding.params.devices)),
            "counter_devices": np.array(sorted(counter.devices))}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", choices=["one", "mirrored", "multi_worker", "parameter_server"], required=True)
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), required=True)
    parser.add_argument("--partitions", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--save_to", help="Writes a checkpoint here after training.")
    parser.add_argument("--restore_from", help="Restores this checkpoint and trains no step.")
    parser.add_argument("--dynamic", action="store_true", help="A TFRA table (on the parameter servers).")
    parser.add_argument("--export_to", help="Exports the trained model for serving here.")
    args = parser.parse_args()

    strategy = strategy_of(args.strategy, args.partitions)
    with strategy.scope():
        model = build(args.optimizer, args.dynamic)
        if args.restore_from:
            model.optimizer.build(model.trainable_variables)
    ids, labels = data()
    if args.restore_from:
        # (expect_partial: a written checkpoint has no save_counter; the test compares every value.)
        tf.train.Checkpoint(model=model).restore(args.restore_from).expect_partial()
        if args.dynamic:
            from tf_freqsgd.dynamic import saving

            print("re-sharded:", saving.reshard_tables(args.restore_from, model))
    elif args.strategy == "parameter_server":
        def dataset_fn(_):
            return tf.data.Dataset.from_tensor_slices((ids, labels)).batch(GLOBAL_BATCH).repeat()

        model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=1, steps_per_epoch=STEPS, verbose=0)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((ids, labels)).batch(GLOBAL_BATCH)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        model.fit(dataset.with_options(options), epochs=1, verbose=0)

    if args.save_to:
        tf.train.Checkpoint(model=model).write(args.save_to)
    optimizer = model.optimizer
    if args.export_to:
        from tf_freqsgd.export import export_for_serving

        export_for_serving(model, args.export_to)
    if args.dynamic:
        np.savez(args.out, **dynamic_record(model))
        return
    shards = table_rows(model)
    # Read through the table as the layer holds it (a ShardedVariable under a partitioner) too.
    table = model.get_layer("items").embeddings
    counted = hasattr(optimizer, "counts")
    record = {
        "table": np.concatenate([v.numpy() for v in shards]),
        "counts": np.concatenate([optimizer.counts(v).numpy() for v in shards]) if counted else np.zeros(0),
        "table_counts": optimizer.counts(table).numpy() if counted else np.zeros(0),
        "batch_frequency": optimizer.batch_frequency(table, tf.constant(ids[:GLOBAL_BATCH])).numpy() if counted
        else np.zeros(0),
        "dense": np.concatenate([v.numpy().ravel() for v in model.trainable_variables if "items" not in v.name]),
        "applied_steps": np.array(int(optimizer.applied_steps.numpy())),
        "shards": np.array(len(shards)),
    }
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    if task.get("index", 0) == 0:
        np.savez(args.out, **record)


if __name__ == "__main__":
    main()
