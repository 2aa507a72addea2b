import pytest

from example_runner import EXAMPLES, TINY, parse


@pytest.fixture
def run_tiny(tmp_path):
    """Runs an example in this process on tiny data; returns (record, model, config)."""
    def run(example, *args):
        config = parse(example, *TINY, f"--metrics_json={tmp_path / 'metrics.json'}", *args)
        record, model = EXAMPLES[example].run(config)
        return record, model, config

    return run
