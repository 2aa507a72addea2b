"""The examples as importable modules, their flags and tiny runs, shared by tests/examples."""

import os
import subprocess
import sys

from absl import flags

EXAMPLES_DIR = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES_DIR))

import common  # noqa: E402
import movielens_ranking  # noqa: E402
import movielens_retrieval  # noqa: E402

EXAMPLES = {"retrieval": movielens_retrieval, "ranking": movielens_ranking}
# A few seconds a run: 1,500 synthetic ratings (1,200 to train), one epoch.
TINY = ("--num_ratings=1500", "--epochs=1", "--batch_size=128", "--embedding_dim=8", "--verbose=0")
# What TensorFlow, TFRA and tf.function print on every run, hidden unless --verbosity is given.
NOISE = ("cuda_fft", "cuda_dnn", "cuda_blas", "cudart", "oneDNN", "cpu_feature_guard", "TF-TRT", "GraphKeys",
         "_SingleDeviceSaver", "horovod", "retracing")


def flag_values(example):
    """A fresh set of the example's flags (the scripts define theirs only when run as programs)."""
    values = flags.FlagValues()
    EXAMPLES[example].define_flags(values)
    return values


def parse(example, *args):
    """The `Config` the example's command line ``args`` gives."""
    values = flag_values(example)
    values([example, *args])
    module = EXAMPLES[example]
    return common.config_from_flags(module.EXAMPLE, module.LEARNING_RATES, values)


def run_example(example, *args, python_options=(), timeout=300):
    """Runs ``example`` as a user does, ``python examples/movielens_<example>.py args``, in a fresh
    Python whose environment leaves TensorFlow's log level unset; returns the CompletedProcess."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [sys.executable, *python_options, os.path.join(EXAMPLES_DIR, f"movielens_{example}.py"), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
