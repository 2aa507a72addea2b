"""--strategy: both examples train on localhost clusters started by examples/local_cluster.py and
reach the metrics of the same run in one process; a cluster's checkpoint resumes in one process."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from example_runner import EXAMPLES_DIR, NOISE, TINY

CLUSTER_ARGS = (*TINY, "--optimizer=counter_sgd")
# Tables over 64 KiB (tf_freqsgd.models.distribute.MIN_SHARD_BYTES) are split over the parameter
# servers: at d = 32 both tables. Smaller ones stay whole, and start from the one-process values.
SHARDED = "--embedding_dim=32"
TIMEOUT = 300


def local_cluster(tmp_path, strategy, example, *args, **cluster_flags):
    """Runs ``example`` through local_cluster.py; returns its output and metrics record. The
    cluster prints none of TensorFlow's or TFRA's own lines."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    metrics = tmp_path / f"{strategy}.json"
    command = [sys.executable, os.path.join(EXAMPLES_DIR, "local_cluster.py"), f"--strategy={strategy}",
               *(f"--{name}={value}" for name, value in cluster_flags.items()), "--",
               os.path.join(EXAMPLES_DIR, f"movielens_{example}.py"), *CLUSTER_ARGS, f"--metrics_json={metrics}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                            env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not [word for word in NOISE if word in result.stdout + result.stderr], result.stdout + result.stderr
    with open(metrics) as file:
        return result.stdout, json.load(file)


def assert_same_training(record, expected):
    for name, value in expected["metrics"].items():
        # Two workers sum gradients in another order: predictions differ by ~1e-7, enough to swap
        # a near-tie or two among the ~10^4 pairs of the tiny test split's AUC (1e-4 each).
        tolerance = 1e-3 if name == "auc" else 1e-6
        assert record["metrics"][name] == pytest.approx(value, abs=tolerance), name
    validation = [key for key in expected["history"] if key.startswith("val_")]
    assert validation
    for key in validation:
        np.testing.assert_allclose(record["history"][key], expected["history"][key], rtol=1e-5, atol=1e-6,
                                   err_msg=key)


def test_parameter_server_cluster_trains_as_one_process(run_tiny, tmp_path):
    """Coordinator + 2 parameter servers + 1 worker (tf_freqsgd.server processes): the same test
    and validation recall as one process, and a serving export."""
    output, record = local_cluster(tmp_path, "parameter_server", "retrieval", f"--export_dir={tmp_path / 'export'}",
                                   num_ps=2, num_workers=1)
    assert "2 parameter servers and 1 workers" in output
    assert record["table_shards"] == {"user_embedding": 1, "item_embedding": 1}
    expected, _, _ = run_tiny("retrieval", *CLUSTER_ARGS[len(TINY):])
    assert_same_training(record, expected)
    assert os.path.exists(tmp_path / "export" / "saved_model.pb")


def test_sharded_tables_checkpoint_resumes_in_one_process(run_tiny, tmp_path):
    """Both tables in 2 shards, log-Q from their sharded counters: one epoch on the cluster, then
    the rerun of the same command in one process (no strategy) ends where two epochs straight
    on the cluster end. (Partitioned initializers draw per shard: a sharded run starts from other
    values than one process.)"""
    _, straight = local_cluster(tmp_path / "a", "parameter_server", "retrieval", SHARDED, "--epochs=2", num_ps=2)
    assert straight["table_shards"] == {"user_embedding": 2, "item_embedding": 2}
    assert straight["config"]["logq"] == "counter"
    local_cluster(tmp_path / "b", "parameter_server", "retrieval", SHARDED, f"--checkpoint_dir={tmp_path / 'ckpt'}",
                  num_ps=2)
    resumed, _, _ = run_tiny("retrieval", *CLUSTER_ARGS[len(TINY):], SHARDED, "--epochs=2",
                             f"--checkpoint_dir={tmp_path / 'ckpt'}")
    assert resumed["first_epoch_this_run"] == 1 and resumed["table_shards"] == {"user_embedding": 1,
                                                                                 "item_embedding": 1}
    for name, value in straight["metrics"].items():
        assert resumed["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_multi_worker_cluster_trains_as_one_process_on_the_global_batch(run_tiny, tmp_path):
    """Two workers, each half of every batch: the metrics of one process on the whole batches;
    only worker 0 writes files; every process started is gone afterwards."""
    output, record = local_cluster(tmp_path, "multi_worker", "ranking", f"--checkpoint_dir={tmp_path / 'mw'}",
                                   num_workers=2, worker_log_dir=tmp_path / "logs")
    expected, _, _ = run_tiny("ranking", *CLUSTER_ARGS[len(TINY):])
    assert_same_training(record, expected)
    assert record["config"]["strategy"] == "multi_worker"
    # Worker 1 checkpoints beside worker 0's, and writes no metrics of its own.
    assert os.path.exists(tmp_path / "mw" / "worker_1" / "checkpoint")
    assert "Metrics written" not in (tmp_path / "logs" / "worker_1.log").read_text()
    pids = json.loads(re.search(r"worker pids (\[[\d, ]+\])", output).group(1))
    assert len(pids) == 2
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read()


def test_mirrored_strategy_on_one_device_trains_as_one(run_tiny):
    mirrored, _, _ = run_tiny("ranking", "--strategy=mirrored")
    one, _, _ = run_tiny("ranking")
    assert_same_training(mirrored, one)


@pytest.mark.parametrize("strategy, command", [("parameter_server", "python -m tf_freqsgd.server"),
                                               ("multi_worker", "local_cluster.py")])
def test_cluster_strategies_without_tf_config_say_what_to_start(run_tiny, monkeypatch, strategy, command):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=re.escape(command)):
        run_tiny("retrieval", f"--strategy={strategy}")
