"""The CUDA kernel body, built as a standalone program (no TensorFlow) and checked against the CPU
body on the GPU when there is one; and the op library's GPU kernels when setup.py had nvcc."""

import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tf_freqsgd import ops

REPO = pathlib.Path(__file__).resolve().parents[2]
PROGRAM = REPO / "tests" / "cc" / "counter_apply_gpu_test.cu"
NO_DEVICE = 77  # the program's exit code when no CUDA device is visible

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc: the CUDA kernel cannot be built here")


@pytest.fixture(scope="module")
def gpu_test_program(tmp_path_factory):
    binary = tmp_path_factory.mktemp("cuda") / "counter_apply_gpu_test"
    archs = os.environ.get("TF_FREQSGD_CUDA_ARCHS", "75,80,90").split(",")
    command = ["nvcc", "-std=c++17", "-O3", "--fmad=false", "-Xcompiler", "-ffp-contract=off", f"-I{REPO}",
               *[f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs], str(PROGRAM), "-o", str(binary)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-4000:]
    return binary


@needs_nvcc
def test_gpu_kernel_matches_the_cpu_body(gpu_test_program):
    run = subprocess.run([str(gpu_test_program)], capture_output=True, text=True, timeout=600)
    if run.returncode == NO_DEVICE:
        pytest.skip("the CUDA test program built, but there is no CUDA device here to run it on")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ALL PASSED" in run.stdout
    assert not re.search(r"^FAIL", run.stdout, re.MULTILINE)


@needs_nvcc
@pytest.mark.skipif(os.environ.get("TF_FREQSGD_CUDA") == "0", reason="TF_FREQSGD_CUDA=0: built without CUDA")
def test_the_op_library_holds_the_gpu_kernels():
    assert ops.custom_op_available()
    assert ops.gpu_kernels_available(), "setup.py found nvcc but the library has no GPU kernels"
