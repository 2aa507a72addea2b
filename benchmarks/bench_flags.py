"""Flags every benchmark script shares: `--quick`, the reduced sizes of `make bench-quick`; and the
default directory of MovieLens 100K that the scripts reading it take (`ML100K_DIR`).

A script defines its own flags with their full-run defaults, imports this module (which defines
`--quick`) and calls `apply_quick({...})` first thing in `main`: with `--quick`, each flag named
there takes its quick value unless the command line gave it, so `--quick --seeds=2` keeps 2 seeds.
"""

import os

from absl import flags

# Beside the repository: ../shared/data/ml-100k (MovieLens files are never part of this project).
ML100K_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                                           "ml-100k"))

flags.DEFINE_bool("quick", False, "Reduced sizes for a smoke run (`make bench-quick`, minutes); flags "
                  "given on the command line keep their values.")


def apply_quick(quick_values, flag_values=flags.FLAGS):
    """With `--quick`, sets each flag of `quick_values` (flag name: value) not given on the command
    line. Names that are not flags are an error, so a renamed flag cannot be skipped silently."""
    unknown = sorted(set(quick_values) - set(flag_values))
    if unknown:
        raise ValueError(f"apply_quick: no flags named {unknown}.")
    if not flag_values.quick:
        return
    for name, value in quick_values.items():
        if not flag_values[name].present:
            flag_values[name].value = value
