"""The examples as importable modules, their flags and tiny runs, shared by tests/examples."""

import os
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
