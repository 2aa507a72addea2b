"""``python -m tf_freqsgd.server``: a server from TF_CONFIG or flags, with the fused op loaded, that
stops cleanly on SIGTERM; and its errors."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from tf_freqsgd import server
from tf_freqsgd.server import free_ports, local_cluster


def test_servers_start_say_what_they_loaded_and_stop_on_sigterm():
    port = free_ports(1)[0]
    cluster = json.dumps({"ps": [f"127.0.0.1:{port}"]})
    process = subprocess.Popen([sys.executable, "-m", "tf_freqsgd.server", f"--cluster={cluster}", "--job_name=ps",
                                "--task_index=0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "listening" in line:
                break
        assert f"tf_freqsgd server ps:0 listening at grpc://127.0.0.1:{port} (fused op: True" in lines[-1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()


def test_local_cluster_stops_every_process_it_started():
    with local_cluster(num_ps=1, num_workers=1) as cluster:
        assert set(cluster) == {"ps", "worker", "chief"}
    # Each address is free again: its server is gone.
    for address in cluster["ps"] + cluster["worker"]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", int(address.rsplit(":", 1)[1])))


@pytest.mark.parametrize("tf_config,flags,message", [
    (None, {}, "needs the cluster and this task"),
    (json.dumps({"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 3}}), {}, "ps:3 is not a task"),
    (None, {"cluster": json.dumps({"ps": ["h:1"]}), "job_name": "boss", "task_index": 0}, "--job_name must be one of"),
])
def test_bad_cluster_descriptions_are_refused(tf_config, flags, message):
    with pytest.raises(ValueError, match=message):
        server.task_of(tf_config, **flags)


def test_flags_override_tf_config():
    config = json.dumps({"cluster": {"ps": ["h:1", "h:2"]}, "task": {"type": "ps", "index": 0}})
    assert server.task_of(config, task_index=1) == ({"ps": ["h:1", "h:2"]}, "ps", 1)
