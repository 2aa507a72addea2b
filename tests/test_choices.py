"""tf_freqsgd.choices: the names the examples' flags choose from, readable without TensorFlow."""

import os
import subprocess
import sys

import tf_freqsgd
from tf_freqsgd import choices
from tf_freqsgd.data import movielens


def test_the_file_alone_imports_no_tensorflow():
    path = os.path.join(os.path.dirname(tf_freqsgd.__file__), "choices.py")
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('choices', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec)); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_freqsgd', 'numpy')))")
    completed = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_datasets_are_those_load_movielens_reads():
    assert set(choices.DATASETS) == {*movielens._SYNTHETIC_SIZES, *movielens._RELEASE_FORMAT, "auto"}
