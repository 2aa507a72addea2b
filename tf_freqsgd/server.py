"""``python -m tf_freqsgd.server``: a tf.distribute server (ps, worker, chief or evaluator) with
tf_freqsgd's fused op, and TFRA's ops where TFRA is installed, loaded.

A ``ParameterServerStrategy`` runs each variable's update on the parameter server that holds it: a
server must have the ops its graph names. The optimizers' updates there are TensorFlow ops (the
worker sums a batch's repeated ids and sends their occurrences, which the fused op does not take),
so plain TensorFlow servers train them too; these servers also hold the fused op (a plain one lacks
it, and ``import tf_freqsgd`` does not load it: the library loads on first use) for graphs that
name it, and TFRA's ops.

The cluster and this task come from ``TF_CONFIG`` (``{"cluster": {...}, "task": {"type": "ps",
"index": 0}}``), or from ``--cluster`` (the cluster as JSON), ``--job_name`` and ``--task_index``.
The server prints one line when it listens, and stops on SIGTERM or SIGINT.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# TFRA's Python package needs tf_keras; the server runs no Keras model itself.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import app, flags  # noqa: E402

flags.DEFINE_string("cluster", None, "The cluster as JSON ({\"ps\": [\"host:port\"], ...}); default: TF_CONFIG's.")
flags.DEFINE_string("job_name", None, "This task's job (ps, worker, chief, evaluator); default: TF_CONFIG's.")
flags.DEFINE_integer("task_index", None, "This task's index in its job; default: TF_CONFIG's.")
flags.DEFINE_string("protocol", "grpc", "The server protocol.")
FLAGS = flags.FLAGS

JOBS = ("ps", "worker", "chief", "evaluator")


def task_of(tf_config, cluster=None, job_name=None, task_index=None):
    """``(cluster dict, job, index)`` from flags, falling back to ``TF_CONFIG``; errors name what is missing."""
    config = json.loads(tf_config) if tf_config else {}
    cluster = json.loads(cluster) if cluster else config.get("cluster")
    job_name = job_name or config.get("task", {}).get("type")
    task_index = task_index if task_index is not None else config.get("task", {}).get("index")
    if not cluster or job_name is None or task_index is None:
        raise ValueError("tf_freqsgd.server needs the cluster and this task: TF_CONFIG, or --cluster, --job_name "
                         "and --task_index.")
    if job_name not in JOBS:
        raise ValueError(f"--job_name must be one of {JOBS}; got {job_name!r}.")
    if job_name not in cluster or not 0 <= int(task_index) < len(cluster[job_name]):
        raise ValueError(f"{job_name}:{task_index} is not a task of the cluster {cluster}.")
    return cluster, job_name, int(task_index)


def load_ops():
    """Loads the fused op and, where installed, TFRA's ops; returns what was loaded."""
    from tf_freqsgd import ops

    loaded = {"fused op": ops.custom_op_available()}
    try:
        import tensorflow_recommenders_addons.dynamic_embedding  # noqa: F401  (registers TFRA's ops)
        loaded["TFRA"] = True
    except ImportError:
        loaded["TFRA"] = False
    return loaded


def free_ports(count):
    """``count`` localhost ports free now (bound to port 0, then released)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def local_cluster(num_ps, num_workers=0, chief=True, timeout=120, env=None, command=None):
    """Starts ``num_ps`` parameter servers and ``num_workers`` workers on localhost, each a
    ``python -m tf_freqsgd.server`` process (or ``command``, which must print a line holding
    "listening" once it serves), and yields the cluster (a dict of job -> addresses,
    with a chief address when ``chief``: for the coordinator, which is the caller's). Every process
    started is stopped (SIGTERM, then SIGKILL) by its pid on exit."""
    jobs = {"ps": num_ps, "worker": num_workers, "chief": int(chief)}
    ports = iter(free_ports(sum(jobs.values())))
    cluster = {job: [f"127.0.0.1:{next(ports)}" for _ in range(n)] for job, n in jobs.items() if n}
    processes = []
    try:
        for job in ("ps", "worker"):
            for index in range(jobs[job]):
                config = json.dumps({"cluster": cluster, "task": {"type": job, "index": index}})
                processes.append(subprocess.Popen(
                    command or [sys.executable, "-m", "tf_freqsgd.server"], env={**os.environ, **(env or {}), "TF_CONFIG": config},
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        deadline = time.monotonic() + timeout
        for process in processes:
            if not _wait_until_listening(process, deadline):
                raise RuntimeError(f"a tf_freqsgd server did not start in {timeout} s (exit status {process.poll()}).")
        yield cluster
    finally:
        stop_processes(processes)


def stop_processes(processes, grace=10):
    """Stops each of ``processes`` (``subprocess.Popen``) still running: SIGTERM, then SIGKILL to
    those not gone after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process, deadline):
    """Reads the server's output (TFRA writes some of its own) until its "listening" line; the
    rest is drained in the background so the pipe never fills."""
    listening = threading.Event()

    def read():
        for line in process.stdout:
            if "listening" in line:
                listening.set()

    threading.Thread(target=read, daemon=True).start()
    return listening.wait(max(0.0, deadline - time.monotonic()))


def main(argv):
    del argv
    cluster, job_name, task_index = task_of(os.environ.get("TF_CONFIG"), FLAGS.cluster, FLAGS.job_name,
                                            FLAGS.task_index)
    import tensorflow as tf

    loaded = load_ops()
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster), job_name=job_name, task_index=task_index,
                                  protocol=FLAGS.protocol, start=True)
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    print(f"tf_freqsgd server {job_name}:{task_index} listening at {server.target} "
          f"({', '.join(f'{name}: {yes}' for name, yes in loaded.items())})", flush=True)
    # Not server.join(): it blocks in C++, where no signal handler runs.
    while not stop.wait(0.5):
        pass
    print(f"tf_freqsgd server {job_name}:{task_index} stopping", flush=True)
    sys.stdout.flush()
    os._exit(0)  # TensorFlow servers cannot be stopped in-process


if __name__ == "__main__":
    app.run(main)
