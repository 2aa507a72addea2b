"""Runs an example on a tf.distribute cluster of processes on this machine, then stops them.

  # ParameterServerStrategy: 2 parameter servers and 1 worker (`python -m tf_freqsgd.server`
  # processes); the example is the coordinator.
  .venv/bin/python examples/local_cluster.py --strategy=parameter_server --num_ps=2 --num_workers=1 -- \\
      examples/movielens_retrieval.py --dataset=ml-100k --data_dir=../shared/data/ml-100k

  # MultiWorkerMirroredStrategy: the example runs as 2 workers (worker 0 prints and writes the
  # files; the others' output goes to --log_dir).
  .venv/bin/python examples/local_cluster.py --strategy=multi_worker --num_workers=2 -- \\
      examples/movielens_ranking.py --dataset=ml-100k --data_dir=../shared/data/ml-100k

Each process gets its ``TF_CONFIG`` (localhost ports free at the start) and the example its
``--strategy`` flag. Every process started here is stopped by its pid when the example ends, fails
or is interrupted. The exit status is the example's (worker 0's under multi_worker).
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

# TensorFlow's C++ log lines hidden in every process of the cluster, as the examples hide them
# (TF_CPP_MIN_LOG_LEVEL=0 shows them).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from tf_freqsgd import server  # noqa: E402

STRATEGIES = ("multi_worker", "parameter_server")

flags.DEFINE_enum("strategy", None, STRATEGIES, "The cluster's strategy.", required=True)
flags.DEFINE_integer("num_workers", 1, "Workers (parameter_server: servers; multi_worker: copies of the example).",
                     lower_bound=1)
flags.DEFINE_integer("num_ps", 2, "Parameter servers (parameter_server only).", lower_bound=1)
flags.DEFINE_integer("timeout", 600, "Seconds the example may run before the cluster is stopped.", lower_bound=1)
flags.DEFINE_string("worker_log_dir", None, "Where the other workers' output goes (multi_worker; default: a new temporary "
                                     "directory).")
FLAGS = flags.FLAGS


def task_environment(cluster, task_type, index):
    return {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})}


def run_parameter_server(example):
    with server.local_cluster(FLAGS.num_ps, FLAGS.num_workers, chief=True) as cluster:
        print(f"local_cluster: {FLAGS.num_ps} parameter servers and {FLAGS.num_workers} workers "
              f"({', '.join(cluster['ps'] + cluster['worker'])}); the example is the chief at {cluster['chief'][0]}",
              flush=True)
        return _wait(subprocess.Popen(example + ["--strategy=parameter_server"],
                                      env=task_environment(cluster, "chief", 0)), [])


def run_multi_worker(example):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in server.free_ports(FLAGS.num_workers)]}
    log_dir = FLAGS.worker_log_dir or tempfile.mkdtemp(prefix="local_cluster-")
    os.makedirs(log_dir, exist_ok=True)
    print(f"local_cluster: {FLAGS.num_workers} workers ({', '.join(cluster['worker'])}); worker 0 prints, the "
          f"others write to {log_dir}", flush=True)
    others = []
    try:
        for index in range(1, FLAGS.num_workers):
            with open(os.path.join(log_dir, f"worker_{index}.log"), "w") as log:
                others.append(subprocess.Popen(example + ["--strategy=multi_worker"], stdout=log,
                                               stderr=subprocess.STDOUT, env=task_environment(cluster, "worker", index)))
        chief = subprocess.Popen(example + ["--strategy=multi_worker"], env=task_environment(cluster, "worker", 0))
        print(f"local_cluster: worker pids {[chief.pid] + [process.pid for process in others]}", flush=True)
    except BaseException:
        server.stop_processes(others)
        raise
    return _wait(chief, others)


def _wait(chief, others):
    """The chief's exit status once it and the other processes end; all of them stopped on a
    timeout, an interruption or when one of the others fails."""
    try:
        status = chief.wait(timeout=FLAGS.timeout)
        for process in others:
            process.wait(timeout=60)
        failed = [process for process in others if process.returncode]
        if failed and not status:
            print(f"local_cluster: worker pids {[p.pid for p in failed]} failed (see their logs)", file=sys.stderr)
            return 1
        return status
    except subprocess.TimeoutExpired:
        print(f"local_cluster: stopped after --timeout={FLAGS.timeout} s", file=sys.stderr)
        return 1
    finally:
        server.stop_processes([chief, *others])


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("Name the example to run after `--`, e.g. `-- examples/movielens_retrieval.py`.")
    if any(arg.startswith("--strategy") for arg in argv[2:]):
        raise app.UsageError("Give --strategy to local_cluster.py only: it passes it on to the example.")
    example = [sys.executable, *argv[1:]]
    run = run_parameter_server if FLAGS.strategy == "parameter_server" else run_multi_worker
    sys.exit(run(example))


if __name__ == "__main__":
    app.run(main)
