import os
import sys

# The NumPy reference lives beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
# The suite runs against tf_keras (Keras 2) unless the environment says otherwise: `make test` runs
# tests/keras3 with TF_USE_LEGACY_KERAS=0 in its second environment.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest  # noqa: E402

import tf_freqsgd  # noqa: E402,F401
from tf_freqsgd import ops  # noqa: E402


@pytest.fixture(params=["tf", "custom"], ids=["pure_tf", "fused_op"])
def sparse_apply_path(request, monkeypatch):
    """Runs a test on the pure-TF path and on the fused custom op."""
    if request.param == "custom" and not ops.custom_op_available():
        pytest.skip("the fused op is not built for this TensorFlow (make install builds it)")
    monkeypatch.setenv(ops.PATH_ENV, request.param)
    return request.param
