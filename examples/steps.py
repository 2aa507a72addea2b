"""The steps both examples' ``run`` takes: load and split the data, make the optimizer, train with
checkpoints, TensorBoard and the PEP callback, and report the metrics as a table, JSON and a
learning-curve plot. ``run`` imports this module (and with it TensorFlow); the flags are common.py's.
"""

import dataclasses
import json
import math
import os
import re
import shlex
import sys
import tempfile
import time

import tensorflow as tf

from common import UserError
from tf_freqsgd.data import as_dataset, load_movielens, train_val_test_split
from tf_freqsgd.layers import PEPSparsityCallback
from tf_freqsgd.models import distribute, embeddings, row_state, training

EVALUATION_BATCH_SIZE = 4096
# Flags that do not change what is trained: a resumed run may change them (a checkpoint written on
# a cluster restores into one process, and the reverse).
_RESUMABLE_CHANGES = ("epochs", "checkpoint_dir", "export_dir", "tensorboard_dir", "metrics_json", "run_eagerly",
                      "top_k", "exclude_rated", "verbose", "pep_mask_dir", "strategy")


def load_splits(config):
    """The dataset, and the 80/10/10 random split of its ratings (by ``config.seed``); prints what
    was read. A directory or file that cannot be read is a `UserError`."""
    try:
        data = load_movielens(config.dataset, config.data_dir, num_ratings=config.num_ratings, seed=config.seed)
    except (OSError, ValueError) as error:  # MovieLensFormatError is a ValueError
        raise UserError(error) from error
    origin = (f"synthetic ({data.name}, generated; --data_dir reads a MovieLens release)"
              if data.source == "synthetic" else f"{data.name} from {data.source}")
    print(f"Data: {origin}: {data.num_users:,} users, {data.num_items:,} items, {len(data.ratings['rating']):,} "
          "ratings", flush=True)
    return data, train_val_test_split(data.ratings, seed=config.seed)


def evaluation_data(config, ratings, label=None):
    """``(dataset, steps)`` for ``model.evaluate`` (``steps`` None: the whole dataset).

    Under ParameterServerStrategy each worker reads its own copy of the dataset, repeated, and
    the coordinator asks for one pass's steps: exact with one worker; with several, the steps are
    spread over them and batches may be read twice or not at all (tf_keras' exact evaluation
    refuses TFRS models, whose metrics are added with ``add_metric``)."""
    dataset = as_dataset(ratings, EVALUATION_BATCH_SIZE, shuffle=False, label=label)
    if config.strategy != "parameter_server":
        return dataset, None
    return dataset.repeat(), -(-len(ratings["user_id"]) // EVALUATION_BATCH_SIZE)


def embedding_options(config, strategy):
    """The options of ``config.embedding`` (``embeddings.make_embedding``) under ``strategy``."""
    if config.embedding == "dynamic":
        return {"devices": distribute.parameter_servers(strategy)}
    return {"mlet": {"inner_dim": config.mlet_inner_dim}}.get(config.embedding, {})


def for_this_task(config, strategy):
    """``config`` as this process runs it under ``strategy``: a worker of a multi-worker cluster
    other than the chief trains alike but writes no export, metrics or TensorBoard logs, and
    keeps its checkpoints (every worker saves, in step) in a directory of its own."""
    if distribute.is_chief(strategy):
        return config
    resolver = strategy.cluster_resolver
    checkpoint_dir = config.checkpoint_dir and os.path.join(
        config.checkpoint_dir, f"{resolver.task_type}_{resolver.task_id}")
    return dataclasses.replace(config, checkpoint_dir=checkpoint_dir, export_dir=None, metrics_json=None,
                               tensorboard_dir=None, verbose=0)


def steps_per_epoch(config, train):
    return -(-len(train["user_id"]) // config.batch_size)


def compile_model(model, config, train, num_users, num_items):
    """Compiles ``model`` (built) with ``config``'s optimizer; ``FrequencySGD`` gets the id
    frequencies of the training split."""
    frequencies = None
    if config.optimizer == "frequency_sgd":
        frequencies = training.known_frequencies(
            [(model.user_embedding, train["user_id"], num_users), (model.item_embedding, train["item_id"], num_items)],
            steps_per_epoch(config, train))
    optimizer = training.make_optimizer(config.optimizer, config.learning_rate, frequencies=frequencies)
    model.compile(optimizer, run_eagerly=config.run_eagerly)


def fit(model, config, train, *, label=None, validation=None):
    """Trains ``model`` (compiled) on ``train`` with checkpoints, TensorBoard and the PEP callback;
    ``validation``: ``evaluation_data``'s ``(dataset, steps)``, evaluated after every epoch.
    Returns ``{"first_epoch", "history", "train_seconds", "pep", "layers"}``."""
    validation_data, validation_steps = validation or (None, None)
    if config.checkpoint_dir:
        _check_resumable(config)
    # ParameterServerStrategy runs no batch-level callback; the optimizers' own step checks stop
    # a non-finite step there.
    callbacks = [] if config.strategy == "parameter_server" else [_RaiseOnNonFiniteLoss(config)]
    if config.tensorboard_dir:
        tables = {"user": model.user_embedding, "item": model.item_embedding}
        callbacks += [tf.keras.callbacks.TensorBoard(config.tensorboard_dir),
                      row_state.RowStateHistograms(config.tensorboard_dir, tables)]
    pep = None
    if config.embedding == "pep":
        pep = PEPSparsityCallback(config.pep_target_sparsity, config.pep_mask_dir or tempfile.mkdtemp(prefix="pep-"))
        callbacks.append(pep)
    features = {key: train[key] for key in ("user_id", "item_id") + ((label,) if label else ())}
    started = time.perf_counter()
    try:
        first_epoch, history = training.fit_resumable(
            model, features, epochs=config.epochs, batch_size=config.batch_size, seed=config.seed, label=label,
            checkpoint_dir=config.checkpoint_dir, callbacks=callbacks, validation_data=validation_data,
            validation_steps=validation_steps,
            verbose=config.verbose)
    except tf.errors.InvalidArgumentError as error:  # tf_freqsgd's optimizers check every gradient
        # TensorFlow's message: assertion failed: [CounterSGD: gradient for variable \'user_embedding/
        # embeddings:0\' has a non-finite value.]
        found = re.search(r"([^\[\]]*) has a non-finite value", error.message)
        if found is None:
            raise
        raise _diverged(config, found.group(1).replace("\\'", "'") + " has a non-finite value") from error
    return {"first_epoch": first_epoch, "history": history.history if history else {},
            "train_seconds": time.perf_counter() - started, "pep": pep,
            "layers": (model.user_embedding, model.item_embedding)}


class _RaiseOnNonFiniteLoss(tf.keras.callbacks.Callback):
    """Stops a diverged run at once, before its evaluation reads NaN weights."""

    def __init__(self, config):
        super().__init__()
        self.config = config

    def on_train_batch_end(self, batch, logs=None):
        if logs and not math.isfinite(float(logs["loss"])):
            raise _diverged(self.config, f"the loss of batch {batch + 1} is {float(logs['loss'])}")


def _diverged(config, what):
    return UserError(
        f"Training diverged: {config.optimizer} at --learning_rate={config.learning_rate:g} met a non-finite loss or "
        f"gradient ({what}). Lower --learning_rate (the defaults suit --embedding=table; an MLET projection, updated "
        "by every batch, may need a few times less).")


def _check_resumable(config):
    """Refuses to resume a checkpoint written by a run that trained something else."""
    os.makedirs(config.checkpoint_dir, exist_ok=True)
    path = os.path.join(config.checkpoint_dir, "config.json")
    current = {key: value for key, value in dataclasses.asdict(config).items() if key not in _RESUMABLE_CHANGES}
    if os.path.exists(path):
        with open(path) as file:
            saved = json.load(file)
        differing = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
        if differing:
            changes = ", ".join(f"--{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in differing)
            raise UserError(f"{config.checkpoint_dir} holds a checkpoint of another configuration ({changes}); "
                             "rerun with the same flags to resume, or use a new --checkpoint_dir.")
    else:
        with open(path, "w") as file:
            json.dump(current, file, indent=2)


def served_parameters(layer):
    """Embedding parameters served after export: ``rows · d`` (MLET: collapsed; PEP: non-zero)."""
    if hasattr(layer, "inference_parameter_count"):
        return layer.inference_parameter_count()
    if embeddings.is_dynamic_layer(layer):
        return int(layer.params.size()) * layer.embedding_size
    return int(layer.embeddings.shape.num_elements())


def table_shards(layer):
    """The number of parts of ``layer``'s table: its variable's shards under a partitioner, or
    the devices a TFRA table is spread over."""
    if embeddings.is_dynamic_layer(layer):
        return len(layer.params.devices)
    return len(getattr(embeddings.id_table(layer), "variables", [None]))


def report(config, data, metrics, trained):
    """Prints the final metrics (``metrics``: those of the test split) as a table and writes them,
    with the configuration and the per-epoch history, to ``config.metrics_json``, and the
    learning curve beside it (``learning_curve_path``). Returns the record written."""
    model_metrics = dict(metrics)
    model_metrics["embedding parameters served"] = sum(map(served_parameters, trained["layers"]))
    if trained["pep"] is not None and trained["pep"].history:
        model_metrics["pep_sparsity"] = trained["pep"].history[-1]["sparsity"]
    record = {
        "command": " ".join(shlex.quote(arg) for arg in sys.argv),
        "config": dataclasses.asdict(config),
        "dataset": {"name": data.name, "source": data.source, "ratings": len(data.ratings["rating"]),
                    "users": data.num_users, "items": data.num_items, "duplicate_ratings": data.duplicate_ratings},
        "metrics": model_metrics,
        "table_shards": {layer.name: table_shards(layer) for layer in trained["layers"]},
        "train_seconds": trained["train_seconds"],
        "first_epoch_this_run": trained["first_epoch"],
        "history": {key: [float(v) for v in values] for key, values in trained["history"].items()},
    }
    duplicates = f", {data.duplicate_ratings:,} duplicates dropped" if data.duplicate_ratings else ""
    print(f"\n{config.example} on {data.name} ({record['dataset']['ratings']:,} ratings{duplicates}, "
          f"{data.num_users:,} users, {data.num_items:,} items): {config.optimizer}, lr {config.learning_rate:g}, "
          f"{config.embedding} embedding d={config.embedding_dim}, {config.epochs} epochs, batch {config.batch_size}, "
          f"seed {config.seed}"
          + ("" if config.strategy == "one" else f", {config.strategy} strategy (table shards: "
             f"{', '.join(f'{name} {count}' for name, count in record['table_shards'].items())})"))
    print("\n| metric | value |\n|---|---|")
    for name, value in model_metrics.items():
        shown = f"test {name}" if name in metrics else name
        print(f"| {shown} | {value:,} |" if isinstance(value, int) else f"| {shown} | {value:.4f} |")
    print(f"| train seconds (this run) | {trained['train_seconds']:.1f} |")
    if config.metrics_json:
        os.makedirs(os.path.dirname(os.path.abspath(config.metrics_json)), exist_ok=True)
        with open(config.metrics_json, "w") as file:
            json.dump(record, file, indent=2)
        print(f"\nMetrics written to {config.metrics_json}")
        if record["history"]:
            plot_learning_curve(record, learning_curve_path(config))
            print(f"Learning curve written to {learning_curve_path(config)}")
    if config.export_dir:
        print(f"SavedModel written to {config.export_dir}")
    return record


def learning_curve_path(config):
    """The learning curve's PNG: ``config.metrics_json`` with the extension .png."""
    return os.path.splitext(config.metrics_json)[0] + ".png"


def plot_learning_curve(record, path):
    """Writes the loss (training and validation) and the validation metrics of each epoch this run
    trained (``record["history"]``) as a PNG."""
    import matplotlib  # here: only a run that trained and writes its metrics plots

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    history = record["history"]
    first = record["first_epoch_this_run"] + 1
    epochs = range(first, first + len(history["loss"]))
    figure, (losses, metrics) = pyplot.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "training"), ("val_loss", "validation")):
        if key in history:
            losses.plot(epochs, history[key], marker="o", label=label)
    for key in history:
        if key.startswith("val_") and key != "val_loss":
            metrics.plot(epochs, history[key], marker="o", label=key[len("val_"):])
    for axes, title in ((losses, "loss"), (metrics, "validation metrics")):
        axes.set(title=title, xlabel="epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.legend()
    config = record["config"]
    figure.suptitle(f"{config['example']} on {record['dataset']['name']}: {config['optimizer']}, "
                    f"lr {config['learning_rate']:g}, {config['embedding']} embedding")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
