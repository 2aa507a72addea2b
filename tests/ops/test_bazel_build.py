"""`make bazel-op` builds the fused op with Bazel, and that library passes the op's parity tests."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
BAZEL_OP = REPO / "build" / "bazel-op" / "_freqsgd_ops.so"

pytestmark = pytest.mark.skipif(
    shutil.which("bazel") is None,
    reason="no bazel on PATH (apt-get install -y bazel-bootstrap bazel-platforms)",
)


def run(command, env=None, timeout=600):
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-5000:]}"
    return result


@pytest.fixture(scope="module")
def bazel_op():
    # A cold build (Bazel's server, the TensorFlow headers, both sources at -O3) takes about a minute.
    run(["make", "bazel-op"], timeout=1800)
    assert BAZEL_OP.is_file()
    return BAZEL_OP


@pytest.fixture
def custom_env(bazel_op):
    # `custom`: the op tests error instead of falling back to the pure-TF path.
    return {**os.environ, "TF_FREQSGD_OPS_LIBRARY": str(bazel_op), "TF_FREQSGD_OPS": "custom"}


def test_the_bazel_library_is_the_one_loaded(bazel_op, custom_env):
    check = "from tf_freqsgd import ops; print(ops.library_path(), ops.custom_op_available())"
    assert run([sys.executable, "-c", check], env=custom_env).stdout.split() == [str(bazel_op), "True"]


def test_the_bazel_library_passes_the_op_tests(custom_env):
    output = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/ops/test_fused_op.py"],
                 env=custom_env).stdout
    summary = output.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary, output[-5000:]
