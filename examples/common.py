"""Flags shared by movielens_retrieval.py and movielens_ranking.py, and their absl ``main``.

Each example turns its flags into a `Config` and calls its ``run(config)``; tests build a
`Config` directly. Nothing here imports TensorFlow: ``--help`` answers without loading it (3-4 s),
and what TensorFlow reads when imported (its C++ log level) is set from the flags first. The
steps of a run (TensorFlow's side) are in steps.py, which ``run`` imports.
"""

import contextlib
import dataclasses
import importlib.util
import io
import logging as python_logging
import os
import re
import sys
import tempfile
from typing import Optional, Union

from absl import app, flags, logging

# TFRS and TFRA need tf_keras (Keras 2) as tf.keras: chosen before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def _read_choices():
    """tf_freqsgd.choices read from its file: importing it by name would run tf_freqsgd/__init__.py,
    which imports TensorFlow."""
    package = importlib.util.find_spec("tf_freqsgd")
    spec = importlib.util.spec_from_file_location(
        "tf_freqsgd_choices", os.path.join(package.submodule_search_locations[0], "choices.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


choices = _read_choices()
FLAGS = flags.FLAGS


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
    exclude_rated: bool = False  # retrieval only
    task: str = "rating"  # ranking only


def define_flags(example, *, epochs, batch_size, learning_rates, flag_values=FLAGS):
    """Defines the flags both examples share in ``flag_values``, with ``example``'s defaults.

    ``learning_rates``: the default rate of each optimizer (used when --learning_rate is unset).
    """
    def define(define_function, name, default, help_text, *args, **kwargs):
        define_function(name, default, *args, help=help_text, flag_values=flag_values, **kwargs)

    optimizers = "; ".join(f"{name}: {choices.OPTIMIZER_DESCRIPTIONS[name]} (default lr {learning_rates[name]:g})"
                           for name in choices.OPTIMIZERS)
    define(flags.DEFINE_enum, "dataset", None,
           "The data: the built-in synthetic MovieLens-shaped ratings (100K or 1M sizes), a MovieLens release read "
           "from --data_dir, or 'auto' (the release whose files are in --data_dir). Default: auto with --data_dir, "
           "else synthetic.", enum_values=choices.DATASETS)
    define(flags.DEFINE_string, "data_dir", None,
           "Directory of a MovieLens release's raw files (e.g. ../shared/data/ml-100k); without --dataset, the "
           "release found there is read.")
    define(flags.DEFINE_integer, "num_ratings", None,
           "Synthetic: ratings to draw; a release: a random sample of this many (default: all).", lower_bound=1)
    define(flags.DEFINE_enum, "optimizer", "counter_sgd", f"The optimizer. {optimizers}.",
           enum_values=choices.OPTIMIZERS)
    define(flags.DEFINE_float, "learning_rate", None,
           "Base learning rate (default: the optimizer's, listed under --optimizer).")
    define(flags.DEFINE_enum, "embedding", "table",
           "Embedding kind: table (tf.keras Embedding), dynamic (TFRA hash table keyed by id), mlet (factorised "
           "table, served collapsed), pep (learned pruning, served as the pruned table).",
           enum_values=choices.EMBEDDING_KINDS)
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
           enum_values=choices.STRATEGIES)
    define(flags.DEFINE_enum, "verbose", "auto",
           "Keras fit verbosity (1: progress bars, 2: a line per epoch). TensorFlow's, TFRA's and Keras' own log "
           "lines are hidden unless absl's --verbosity is given (-1: warnings, 0: info).",
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
    if values["dataset"] is None:
        values["dataset"] = "auto" if values["data_dir"] is not None else "synthetic"
    if values["dataset"].startswith("synthetic") and values["data_dir"] is not None:
        raise app.UsageError(f"--data_dir is read by a MovieLens release; --dataset={values['dataset']} is generated "
                             "(drop --dataset to read the release in --data_dir).")
    if values["dataset"] == "auto" and values["data_dir"] is None:
        raise app.UsageError("--dataset=auto needs --data_dir, the directory of a MovieLens release's files.")
    values["verbose"] = values["verbose"] if values["verbose"] == "auto" else int(values["verbose"])
    if values["learning_rate"] is None:
        values["learning_rate"] = learning_rates[values["optimizer"]]
    return Config(example=example, **values)


class UserError(Exception):
    """A run that cannot go on for a reason its user can fix (a flag, the data, the learning rate):
    an example's ``main`` prints the message alone, with no traceback, and exits with status 2."""


def _exit_with(error):
    message = str(error).replace("\n", " ")
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(2)


# absl's help flags: each prints its help and exits with status 1.
_HELP_FLAGS = frozenset({"?", "help", "helpshort", "helpfull", "helpxml"})


def parse_flags(argv):
    """absl's flag parsing, as ``app.run``'s ``flags_parser``: a bad flag value ends the program as a
    `UserError` does, on one line with status 2 (absl's own parser: two lines, status 1); help asked
    for ends it with status 0."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        _exit_with(f"{error} (see --help)")
    except SystemExit as exit:
        if exit.code == 1 and any(arg.lstrip("-") in _HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise


# Lines that every run of a TFRA model, or every evaluation, would print whatever the run does: TFRA
# deprecating collections the examples never use and finding no horovod (whose import it tries),
# tf.function retracing the evaluation's steps. Each is matched whole; other warnings pass.
_KNOWN_LOG_LINES = re.compile(
    r"dynamic_embedding\.GraphKeys has already been deprecated\."
    r"|An exception occurred when import horovod\.tensorflow: No module named 'horovod'"
    r"|\d+ out of the last \d+ calls to .* triggered tf\.function retracing\.")
# TFRA 0.8.1 prints it to stdout when imported: TensorFlow 2.16 lacks the class it would patch.
_TFRA_IMPORT_LINE = " _SingleDeviceSaver removed after tf version 2.15\n"


class _KnownLines(python_logging.Filter):
    def filter(self, record):
        return _KNOWN_LOG_LINES.match(record.getMessage()) is None


def quiet_logs():
    """Hides TensorFlow's C++ log lines (plugin registration, CPU features, oneDNN, TF-TRT; a value
    of TF_CPP_MIN_LOG_LEVEL already set is kept), its INFO lines logged through absl (saver
    shards, assets) and ``_KNOWN_LOG_LINES``. Before TensorFlow is imported: it reads the level
    once, then."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.set_verbosity(logging.WARNING)
    # TensorFlow's logger, which TFRA's and tf.function's warnings go through (to absl's handler).
    python_logging.getLogger("tensorflow").addFilter(_KnownLines())


def import_tfra_quietly():
    """Imports TFRA without ``_TFRA_IMPORT_LINE`` (anything else it prints is kept)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        import tensorflow_recommenders_addons.dynamic_embedding  # noqa: F401
    sys.stdout.write(printed.getvalue().replace(_TFRA_IMPORT_LINE, "", 1))


def main_of(example, learning_rates, run):
    """An example's absl ``main``: one ``run`` of the configuration its flags give, quiet unless
    --verbosity is given; a `UserError` or a flag that does not apply ends it with status 2."""
    def main(argv):
        try:
            if len(argv) > 1:
                raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
            config = config_from_flags(example, learning_rates)
            if not FLAGS["verbosity"].present:
                quiet_logs()
                if config.embedding == "dynamic":
                    import_tfra_quietly()
            run(config)
        except (app.UsageError, UserError) as error:
            _exit_with(error)

    return main
