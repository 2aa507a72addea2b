"""The tf.distribute strategies the examples train under, from ``TF_CONFIG`` where they need a cluster.

* ``one``: TensorFlow's default strategy (one device).
* ``mirrored``: ``MirroredStrategy`` over this machine's GPUs (one replica on a CPU-only machine).
* ``multi_worker``: ``MultiWorkerMirroredStrategy``; every worker runs the same program with its own
  ``TF_CONFIG`` (``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}``) and
  trains on its share of each global batch; worker 0 is the chief.
* ``parameter_server``: ``ParameterServerStrategy``; this program is the coordinator (task type
  ``chief``), the ``ps`` and ``worker`` tasks are ``python -m tf_freqsgd.server`` processes. Tables
  are partitioned over the parameter servers (``MinSizePartitioner``: shards of at least 64 KiB,
  at most one per server); the optimizers' per-row state follows each shard.

See README "Training on a cluster".
"""

import json
import os

import tensorflow as tf

from tf_freqsgd.choices import STRATEGIES

# Smaller tables stay whole: sharding a few rows costs a remote call per shard for nothing.
MIN_SHARD_BYTES = 64 << 10


def cluster_config():
    """``TF_CONFIG`` as a dict (empty when unset)."""
    text = os.environ.get("TF_CONFIG", "")
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error}): {text!r}") from None


def make_strategy(kind):
    """The strategy ``kind`` (one of ``STRATEGIES``); the cluster ones check ``TF_CONFIG`` first."""
    if kind not in STRATEGIES:
        raise ValueError(f"Unknown strategy {kind!r}; expected one of {STRATEGIES}.")
    if kind == "one":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    config = cluster_config()
    cluster, task = config.get("cluster", {}), config.get("task", {})
    if kind == "multi_worker":
        if not cluster.get("worker") or task.get("type") != "worker":
            raise ValueError("--strategy=multi_worker needs TF_CONFIG naming the workers and this worker's task, "
                             'e.g. {"cluster": {"worker": ["host0:port", "host1:port"]}, '
                             '"task": {"type": "worker", "index": 0}} (examples/local_cluster.py starts one here).')
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not cluster.get("ps") or not cluster.get("worker") or task.get("type") != "chief":
        raise ValueError("--strategy=parameter_server needs TF_CONFIG naming ps and worker tasks, with this process as "
                         'the chief, e.g. {"cluster": {"chief": ["host0:port"], "ps": ["host1:port"], '
                         '"worker": ["host2:port"]}, "task": {"type": "chief", "index": 0}}; start the others with '
                         "`python -m tf_freqsgd.server` (examples/local_cluster.py starts them here).")
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=MIN_SHARD_BYTES, max_shards=len(cluster["ps"]))
    return tf.distribute.experimental.ParameterServerStrategy(resolver, variable_partitioner=partitioner)


def is_chief(strategy):
    """Whether this process writes the run's files: always, except on workers of a
    ``MultiWorkerMirroredStrategy`` other than worker 0."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0
                                                     and "chief" not in resolver.cluster_spec().as_dict())


def parameter_servers(strategy):
    """The parameter servers' devices under a ``ParameterServerStrategy``, else None: where a TFRA
    table (and its optimizer's counter tables) is placed."""
    if not isinstance(strategy, tf.distribute.experimental.ParameterServerStrategy):
        return None
    num_ps = len(cluster_config()["cluster"]["ps"])
    return [f"/job:ps/replica:0/task:{index}" for index in range(num_ps)]
