"""Two Horovod ranks (Gloo, localhost) train a TFRA ``HvdAllToAllEmbedding`` with CounterSGD as one
process trains a ``de.keras.layers.Embedding`` on the global batch: the ranks' tables together hold
the same ids and rows (to 1e-6) and the same counters (exactly), each rank's counters sit in a table
keyed by the ids of its own shard, and the loss falls on every rank.

Horovod sums the ranks' gradients, it does not average them: the all-to-all's gradient adds every
rank's gradient of a row at its owner, and TFRA's ``synchronous=True`` allreduces the dense layer's
gradients with ``hvd.Sum``. Each rank's loss is the mean over its share, so the ranks take the steps
of one process on the global batch whose mean loss is multiplied by the number of ranks.

Occurrence counts need the layer's ``with_unique`` off (``layer.with_unique = False``; TFRA's
constructor argument of that name does not reach it): with it on, each rank sends an id once per batch
and the owner counts the ranks that hold the id. Presence counts are right with the layer as built.

Runs where horovod is importable (``make test-horovod`` builds it in .venv-horovod); ``horovodrun`` is
the one beside this interpreter. The ranks are started here, in a session of their own, and killed by
its id when they fail or overrun."""

import contextlib
import importlib.util
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

if importlib.util.find_spec("horovod") is None:
    pytest.skip("horovod is not installed in this interpreter (make test-horovod builds it in .venv-horovod)",
                allow_module_level=True)

SCRIPT = pathlib.Path(__file__).with_name("horovod_scenario.py")
HOROVODRUN = pathlib.Path(sys.executable).with_name("horovodrun")
RANKS = 2
TIMEOUT = 300


def run(command):
    """Runs ``command`` in a session of its own within TIMEOUT; when it fails or overruns, kills that
    session by its id (horovodrun's ranks are in it)."""
    process = subprocess.Popen(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    succeeded = False
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
        succeeded = process.returncode == 0
        assert succeeded, output[-5000:]
    finally:
        if not succeeded:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.parametrize("counting", ["occurrence", "presence"])
def test_two_ranks_train_as_one_process_on_the_global_batch(counting, tmp_path):
    scenario = [str(SCRIPT), f"--counting={counting}", f"--out={tmp_path}"]
    run([str(HOROVODRUN), "-np", str(RANKS), "-H", f"localhost:{RANKS}", "--gloo",
         sys.executable, *scenario, "--mode=horovod"])
    run([sys.executable, *scenario, "--mode=one", f"--ranks={RANKS}"])
    one = dict(np.load(tmp_path / "one.npz"))
    ranks = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(RANKS)]

    for rank, result in enumerate(ranks):
        assert len(result["keys"]) and np.all(result["keys"] % RANKS == rank), "a rank holds the ids of its shard only"
        np.testing.assert_array_equal(result["counter_keys"], result["keys"], err_msg="counters beside their rows")
        np.testing.assert_allclose(result["dense"], one["dense"], rtol=1e-6, atol=1e-6)
        assert int(result["applied_steps"]) == int(one["applied_steps"]) == 18
        assert result["losses"][-1] < result["losses"][0], result["losses"]
    keys = np.concatenate([result["keys"] for result in ranks])
    order = np.argsort(keys)
    np.testing.assert_array_equal(keys[order], one["keys"])
    np.testing.assert_allclose(np.concatenate([result["table"] for result in ranks])[order], one["table"],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([result["counts"] for result in ranks])[order], one["counts"])
