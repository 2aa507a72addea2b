"""Flags and steps shared by movielens_retrieval.py and movielens_ranking.py.

Each example turns its flags into a `Config` and calls its ``run(config)``; tests build a
`Config` directly. The steps here: load and split the data, make the optimizer, train with
checkpoints, TensorBoard and the PEP callback, and report the metrics as a table and JSON.
"""

import dataclasses
import json
import math
import os
import shlex
import sys
import tempfile
import time
from typing import Optional, Union

# TensorFlow's C++ INFO and WARNING lines (end-of-dataset notices, CPU features); 0 shows them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TFRS and TFRA need tf_keras (Keras 2) as tf.keras: chosen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from tf_freqsgd.data import DATASETS, as_dataset, load_movielens, train_val_test_split  # noqa: E402
from tf_freqsgd.layers import PEPSparsityCallback  # noqa: E402
from tf_freqsgd.models import distribute, embeddings, row_state, training  # noqa: E402

FLAGS = flags.FLAGS
EVALUATION_BATCH_SIZE = 4096
# Flags that do not change what is trained: a resumed run may change them.
# Flags that do not change what is trained: a resumed run may change them (a checkpoint written on
# a cluster restores into one process, and the reverse).
_RESUMABLE_CHANGES = ("epochs", "checkpoint_dir", "export_dir", "tensorboard_dir", "metrics_json", "run_eagerly",
                      "top_k", "verbose", "pep_mask_dir", "strategy")


@dataclasses.dataclass(frozen=True)
class Config:
    """One run of an example; the fields are the flags of the same names."""

    example: str
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str = "counter_sgd"
    dataset: str = "synthetic"
    data_dir: Optional[str] = None
    num_ratings: Optional[int] = None
    embedding: str = "table"
    embedding_dim: int = 32
    mlet_inner_dim: int = 64
    pep_target_sparsity: float = 0.5
    pep_mask_dir: Optional[str] = None
    seed: int = 0
    checkpoint_dir: Optional[str] = None
    export_dir: Optional[str] = None
    tensorboard_dir: Optional[str] = None
    metrics_json: Optional[str] = None
    run_eagerly: bool = False
    strategy: str = "one"
    verbose: Union[str, int] = "auto"
    logq: str = "auto"  # retrieval only
    top_k: int = 10  # retrieval only
    task: str = "rating"  # ranking only


def define_flags(example, *, epochs, batch_size, learning_rates, flag_values=FLAGS):
    """Defines the flags both examples share in ``flag_values``, with ``example``'s defaults.

    ``learning_rates``: the default rate of each optimizer (used when --learning_rate is unset).
    """
    def define(define_function, name, default, help_text, *args, **kwargs):
        define_function(name, default, *args, help=help_text, flag_values=flag_values, **kwargs)

    optimizers = "; ".join(f"{name}: {training.OPTIMIZER_DESCRIPTIONS[name]} (default lr {learning_rates[name]:g})"
                           for name in training.OPTIMIZERS)
    define(flags.DEFINE_enum, "dataset", "synthetic",
           "The data: the built-in synthetic MovieLens-shaped ratings (100K or 1M sizes), a MovieLens release read "
           "from --data_dir, or 'auto' (the release whose files are in --data_dir).", enum_values=DATASETS)
    define(flags.DEFINE_string, "data_dir", None, "Directory of the release's raw files (e.g. ../shared/data/ml-100k).")
    define(flags.DEFINE_integer, "num_ratings", None,
           "Synthetic: ratings to draw; a release: a random sample of this many (default: all).", lower_bound=1)
    define(flags.DEFINE_enum, "optimizer", "counter_sgd", f"The optimizer. {optimizers}.",
           enum_values=training.OPTIMIZERS)
    define(flags.DEFINE_float, "learning_rate", None,
           "Base learning rate (default: the optimizer's, listed under --optimizer).")
    define(flags.DEFINE_enum, "embedding", "table",
           "Embedding kind: table (tf.keras Embedding), dynamic (TFRA hash table keyed by id), mlet (factorised "
           "table, served collapsed), pep (learned pruning, served as the pruned table).",
           enum_values=embeddings.EMBEDDING_KINDS)
    define(flags.DEFINE_integer, "embedding_dim", 32, "Embedding width.", lower_bound=1)
    define(flags.DEFINE_integer, "mlet_inner_dim", 64, "--embedding=mlet: width of the trained inner table.",
           lower_bound=1)
    define(flags.DEFINE_float, "pep_target_sparsity", 0.5,
           "--embedding=pep: sparsity at which PEPSparsityCallback saves the pruning masks, in (0, 1).")
    define(flags.DEFINE_string, "pep_mask_dir", None,
           "--embedding=pep: where the masks and initial tables go (default: a new temporary directory).")
    define(flags.DEFINE_integer, "epochs", epochs, "Training epochs, those of a resumed checkpoint included.",
           lower_bound=1)
    define(flags.DEFINE_integer, "batch_size", batch_size, "Training batch size.", lower_bound=1)
    define(flags.DEFINE_integer, "seed", 0, "Seed of the data, the split, the initialisation and the batch order.")
    define(flags.DEFINE_string, "checkpoint_dir", None,
           "Save model, optimizer and epoch here after every epoch; rerunning the same command resumes after the "
           "last saved epoch.")
    define(flags.DEFINE_string, "export_dir", None, "Write the serving SavedModel here (replaced if present).")
    define(flags.DEFINE_string, "tensorboard_dir", None,
           "TensorBoard logs: losses and metrics, and per-epoch histograms of the counters and of the effective "
           "per-row learning rates (under row_state/).")
    define(flags.DEFINE_string, "metrics_json", os.path.join(tempfile.gettempdir(), f"{example}_metrics.json"),
           "Write the final metrics, the configuration and the per-epoch history here.")
    define(flags.DEFINE_bool, "run_eagerly", False, "Run Keras steps eagerly (debugging).")
    define(flags.DEFINE_enum, "strategy", "one",
           "tf.distribute strategy: one (one device); mirrored (this machine's GPUs); multi_worker (every worker runs "
           "this command with its TF_CONFIG; worker 0 writes the files); parameter_server (this process is the "
           "coordinator, TF_CONFIG's chief; start the ps and worker tasks with `python -m tf_freqsgd.server`). "
           "examples/local_cluster.py runs a cluster on this machine; README \"Training on a cluster\".",
           enum_values=distribute.STRATEGIES)
    define(flags.DEFINE_enum, "verbose", "auto", "Keras fit verbosity (1: progress bars, 2: a line per epoch).",
           enum_values=["auto", "0", "1", "2"])
    flags.register_validator("learning_rate", lambda value: value is None or value > 0,
                             message="--learning_rate must be > 0.", flag_values=flag_values)
    flags.register_validator("pep_target_sparsity", lambda value: 0.0 < value < 1.0,
                             message="--pep_target_sparsity must be in (0, 1).", flag_values=flag_values)


def config_from_flags(example, learning_rates, flag_values=FLAGS):
    """The `Config` of the parsed flags; raises ``app.UsageError`` for flags that do not apply."""
    for name, kind in (("mlet_inner_dim", "mlet"), ("pep_target_sparsity", "pep"), ("pep_mask_dir", "pep")):
        if flag_values[name].present and flag_values.embedding != kind:
            raise app.UsageError(f"--{name} applies to --embedding={kind} only "
                                 f"(got --embedding={flag_values.embedding}).")
    values = {field.name: flag_values[field.name].value for field in dataclasses.fields(Config)
              if field.name in flag_values}
    values["verbose"] = values["verbose"] if values["verbose"] == "auto" else int(values["verbose"])
    if values["learning_rate"] is None:
        values["learning_rate"] = learning_rates[values["optimizer"]]
    return Config(example=example, **values)


def quiet_tensorflow_logs():
    """Keeps TensorFlow's INFO lines (saver shards, assets), which it logs through absl, out of
    the output unless --verbosity is given."""
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def main_of(example, learning_rates, run):
    """An example's absl ``main``: one ``run`` of the configuration its flags give."""
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        quiet_tensorflow_logs()
        run(config_from_flags(example, learning_rates))

    return main


def load_splits(config):
    """The dataset, and the 80/10/10 random split of its ratings (by ``config.seed``)."""
    data = load_movielens(config.dataset, config.data_dir, num_ratings=config.num_ratings, seed=config.seed)
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
        if "non-finite value" not in error.message:
            raise
        raise _diverged(config) from error
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
            raise _diverged(self.config)


def _diverged(config):
    return RuntimeError(
        f"Training diverged: {config.optimizer} at --learning_rate={config.learning_rate:g} met a non-finite loss or "
        "gradient. Lower --learning_rate (the defaults suit --embedding=table; an MLET projection, updated by every "
        "batch, may need a few times less).")


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
            raise ValueError(f"{config.checkpoint_dir} holds a checkpoint of another configuration ({changes}); "
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
    """Prints the final metrics as a table and writes them, with the configuration and the
    per-epoch history, to ``config.metrics_json``. Returns the record written."""
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
          f"{data.num_users:,} users, {data.num_items:,} items): {config.optimizer}, lr {config.learning_rate:g}, {config.embedding} "
          f"embedding d={config.embedding_dim}, {config.epochs} epochs, batch {config.batch_size}, seed {config.seed}"
          + ("" if config.strategy == "one" else f", {config.strategy} strategy (table shards: "
             f"{', '.join(f'{name} {count}' for name, count in record['table_shards'].items())})"))
    print("\n| metric | value |\n|---|---|")
    for name, value in model_metrics.items():
        print(f"| {name} | {value:,} |" if isinstance(value, int) else f"| {name} | {value:.4f} |")
    print(f"| train seconds (this run) | {trained['train_seconds']:.1f} |")
    if config.metrics_json:
        os.makedirs(os.path.dirname(os.path.abspath(config.metrics_json)), exist_ok=True)
        with open(config.metrics_json, "w") as file:
            json.dump(record, file, indent=2)
        print(f"\nMetrics written to {config.metrics_json}")
    if config.export_dir:
        print(f"SavedModel written to {config.export_dir}")
    return record
