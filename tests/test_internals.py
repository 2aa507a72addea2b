"""Private TensorFlow, tf_keras and TFRA attributes are read in their internals modules only."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tf_freqsgd")
INTERNALS = {"_tf_internals.py", "_tf_keras_internals.py", "_tfra_internals.py"}
# The libraries' private attributes tf_freqsgd needs (see the internals modules).
LIBRARY_PRIVATES = {"_create_all_weights", "_decayed_lr", "_get_default_variable_store", "_get_hyper",
                    "_optimizer_vars", "_shared_name", "_sharded_container", "_track_trackable"}


def package_modules():
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def names_read(tree):
    """Attribute names, and strings (``getattr(x, "_name")``), in a module's syntax tree."""
    return ({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
            | {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)})


def test_the_internals_modules_hold_every_library_private():
    found = set()
    for path in package_modules():
        if os.path.basename(path) in INTERNALS:
            with open(path) as f:
                found |= names_read(ast.parse(f.read()))
    assert LIBRARY_PRIVATES <= found


@pytest.mark.parametrize("path", sorted(p for p in package_modules() if os.path.basename(p) not in INTERNALS))
def test_no_other_module_reads_a_library_private(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    used = names_read(tree) & LIBRARY_PRIVATES
    assert not used, f"{os.path.relpath(path, PACKAGE)} reads {sorted(used)}: go through an internals module"
