"""Distributed training reproduces one-process training (weights to 1e-6, counters exactly):
MirroredStrategy over two logical CPUs, MultiWorkerMirroredStrategy over two processes on the global
batch, and ParameterServerStrategy with one worker and two parameter servers (a 2-shard table, its
counters and accumulators sharded with it), the servers started by ``python -m tf_freqsgd.server``.
Every process runs on localhost, is started here and stopped here by its pid, with a bounded time."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tf_freqsgd.server import free_ports, local_cluster

SCRIPT = pathlib.Path(__file__).with_name("cluster_scenario.py")
TIMEOUT = 300
OPTIMIZERS = ["CounterSGD", "CounterSGD_halflife", "RowwiseAdagradCounter", "FrequencySGD", "CounterSGD_adam"]
# CowClip on the servers clips by the occurrences the worker sends beside its summed rows.
PS_OPTIMIZERS = OPTIMIZERS + ["CounterSGD_cowclip"]


def start(strategy, optimizer, out, env=None, partitions=0, *extra):
    command = [sys.executable, str(SCRIPT), f"--strategy={strategy}", f"--optimizer={optimizer}", f"--out={out}",
               f"--partitions={partitions}", *extra]
    return subprocess.Popen(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(*processes):
    try:
        for process in processes:
            _, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err[-3000:]
    finally:
        for process in processes:
            process.kill()  # their own handles: a no-op once they have exited


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    directory = tmp_path_factory.mktemp("one_process")
    processes = {name: start("one", name, directory / f"{name}.npz") for name in PS_OPTIMIZERS}
    finish(*processes.values())
    return {name: dict(np.load(directory / f"{name}.npz")) for name in PS_OPTIMIZERS}


def assert_reproduces(result, expected):
    np.testing.assert_allclose(result["table"], expected["table"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result["dense"], expected["dense"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(result["counts"], expected["counts"])
    np.testing.assert_array_equal(result["table_counts"], expected["counts"])
    np.testing.assert_array_equal(result["batch_frequency"], expected["batch_frequency"])
    assert int(result["applied_steps"]) == int(expected["applied_steps"]) == 6


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_mirrored_over_two_devices(optimizer, one_process, tmp_path):
    finish(start("mirrored", optimizer, tmp_path / "out.npz"))
    assert_reproduces(dict(np.load(tmp_path / "out.npz")), one_process[optimizer])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_multi_worker_mirrored_over_two_processes(optimizer, one_process, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [start("multi_worker", optimizer, tmp_path / "out.npz",
                     env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})})
               for index in range(2)]
    finish(*workers)
    assert_reproduces(dict(np.load(tmp_path / "out.npz")), one_process[optimizer])


@pytest.mark.parametrize("optimizer", PS_OPTIMIZERS)
def test_parameter_servers_with_one_worker(optimizer, one_process, tmp_path):
    """The worker sums each shard's gradient over its ids and sends the occurrences beside it;
    the servers apply the pure-TF update (counters exact, as one process counts occurrences)."""
    with local_cluster(num_ps=2, num_workers=1) as cluster:
        finish(start("parameter_server", optimizer, tmp_path / "out.npz", env=ps_coordinator(cluster), partitions=2))
    result = dict(np.load(tmp_path / "out.npz"))
    assert int(result["shards"]) == 2
    assert_reproduces(result, one_process[optimizer])


# A stock TensorFlow server: no fused op.
PLAIN_SERVER = ("import json, os, tensorflow as tf; c = json.loads(os.environ['TF_CONFIG']); "
                "s = tf.distribute.Server(tf.train.ClusterSpec(c['cluster']), job_name=c['task']['type'], "
                "task_index=c['task']['index'], protocol='grpc', start=True); print('listening', flush=True); s.join()")


def test_plain_tensorflow_servers_train_on_the_pure_tf_path(one_process, tmp_path):
    """Under ParameterServerStrategy the updates keep to ops every server has."""
    with local_cluster(num_ps=2, num_workers=1, command=[sys.executable, "-c", PLAIN_SERVER]) as cluster:
        finish(start("parameter_server", "CounterSGD", tmp_path / "out.npz", env=ps_coordinator(cluster), partitions=2))
    assert_reproduces(dict(np.load(tmp_path / "out.npz")), one_process["CounterSGD"])


def ps_coordinator(cluster):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "chief", "index": 0}})}


@pytest.mark.parametrize("optimizer", ["CounterSGD", "RowwiseAdagradCounter"])
def test_a_cluster_checkpoint_restores_into_one_process_and_into_other_shards(optimizer, tmp_path):
    """Saved from 2 parameter-server shards; restored exactly into one process and into 3 shards
    (tables, counters, accumulators and momentum re-sharded)."""
    checkpoint = str(tmp_path / "ckpt")
    with local_cluster(num_ps=2, num_workers=1) as cluster:
        finish(start("parameter_server", optimizer, tmp_path / "trained.npz", ps_coordinator(cluster), 2,
                     f"--save_to={checkpoint}"))
    trained = dict(np.load(tmp_path / "trained.npz"))
    finish(start("one", optimizer, tmp_path / "one.npz", None, 0, f"--restore_from={checkpoint}"))
    with local_cluster(num_ps=3, num_workers=1) as cluster:
        finish(start("parameter_server", optimizer, tmp_path / "three.npz", ps_coordinator(cluster), 3,
                     f"--restore_from={checkpoint}"))
    for name in ("one", "three"):
        restored = dict(np.load(tmp_path / f"{name}.npz"))
        for key in ("table", "dense", "counts", "applied_steps"):
            np.testing.assert_array_equal(restored[key], trained[key], err_msg=f"{name}: {key}")
    assert int(dict(np.load(tmp_path / "three.npz"))["shards"]) == 3


def test_tfra_tables_on_the_parameter_servers_train_as_in_one_process_and_export(tmp_path):
    """A TFRA table whose devices are the PS tasks, its counter table on the same tasks; the
    trained model exported for serving from the coordinator loads in stock TensorFlow."""
    pytest.importorskip("tensorflow_recommenders_addons")
    finish(start("one", "CounterSGD", tmp_path / "one.npz", None, 0, "--dynamic"))
    with local_cluster(num_ps=2, num_workers=1) as cluster:
        finish(start("parameter_server", "CounterSGD", tmp_path / "ps.npz", ps_coordinator(cluster), 0, "--dynamic",
                     f"--export_to={tmp_path / 'serving' / '1'}"))
    one, ps = dict(np.load(tmp_path / "one.npz")), dict(np.load(tmp_path / "ps.npz"))
    np.testing.assert_array_equal(ps["keys"], one["keys"])
    np.testing.assert_allclose(ps["table"], one["table"], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ps["counts"], one["counts"])
    assert list(ps["table_devices"]) == list(ps["counter_devices"]) == [
        "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"]
    served = subprocess.run(
        [sys.executable, "-c", "import sys, numpy as np, tensorflow as tf; f = tf.saved_model.load(sys.argv[1])"
         ".signatures['serving_default']; print(list(f(**{k: tf.constant([[5, 7, 9]], v.dtype) for k, v in "
         "f.structured_input_signature[1].items()}).values())[0].numpy().ravel()[0])", str(tmp_path / "serving" / "1")],
        capture_output=True, text=True, timeout=TIMEOUT, env={k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"})
    assert served.returncode == 0, served.stderr[-3000:]
    rows = [one["table"][list(one["keys"]).index(k)] if k in one["keys"] else np.full(8, 0.05) for k in (5, 7, 9)]
    expected = np.mean(rows, axis=0) @ one["dense"][:8] + one["dense"][8]
    assert float(served.stdout.strip().splitlines()[-1]) == pytest.approx(expected, rel=1e-5)


def test_a_tfra_checkpoint_restores_into_one_process_and_into_other_shards(tmp_path):
    """A TFRA table saved from 2 parameter servers with its optimizer's tables (counter, momentum): restored
    into one process and into 3 servers, ``saving.reshard_tables`` puts every row in the shard its
    id now belongs to (TFRA alone restores shard i from shard i: rows lost or misrouted)."""
    pytest.importorskip("tensorflow_recommenders_addons")
    checkpoint = str(tmp_path / "ckpt")
    with local_cluster(num_ps=2, num_workers=1) as cluster:
        finish(start("parameter_server", "CounterSGD", tmp_path / "trained.npz", ps_coordinator(cluster), 0,
                     "--dynamic", f"--save_to={checkpoint}"))
    finish(start("one", "CounterSGD", tmp_path / "one.npz", None, 0, "--dynamic", f"--restore_from={checkpoint}"))
    with local_cluster(num_ps=3, num_workers=1) as cluster:
        finish(start("parameter_server", "CounterSGD", tmp_path / "three.npz", ps_coordinator(cluster), 0,
                     "--dynamic", f"--restore_from={checkpoint}"))
    trained = dict(np.load(tmp_path / "trained.npz"))
    assert len(trained["keys"]) > 100
    for name in ("one", "three"):
        restored = dict(np.load(tmp_path / f"{name}.npz"))
        for key in ("keys", "table", "counts", "dense", "applied_steps"):
            np.testing.assert_array_equal(restored[key], trained[key], err_msg=f"{name}: {key}")
    assert len(dict(np.load(tmp_path / "three.npz"))["table_devices"]) == 3
