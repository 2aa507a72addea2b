"""Step checks under MirroredStrategy (two logical CPUs, in a process of its own): a non-finite
gradient raises and writes nothing on any replica; the skip policy drops the step everywhere."""

import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("mirrored_checks.py")


@pytest.mark.parametrize("class_name", ["CounterSGD", "RowwiseAdagradCounter"])
def test_mirrored_strategy_steps_are_all_or_nothing(class_name):
    process = subprocess.Popen([sys.executable, str(SCRIPT), class_name], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=240)
    finally:
        process.kill()  # by its own handle: a no-op once it has exited
    assert process.returncode == 0, err[-3000:]
    findings = json.loads(out.strip().splitlines()[-1])
    assert findings["replicas"] == 2
    assert findings["raised"] and "non-finite" in findings["raised"]
    assert findings["unchanged_after_raise"]
    assert findings["skip_equals_clean"] and findings["skip_iterations"] == 2
