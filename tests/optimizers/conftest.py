import pytest


@pytest.fixture(autouse=True)
def every_sparse_apply_path(sparse_apply_path):
    """Every optimizer test runs on the pure-TF path and on the fused custom op."""
    return sparse_apply_path
