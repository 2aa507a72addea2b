"""tf_freqsgd: frequency-aware optimizers for embedding training in TensorFlow / tf_keras.

Installing builds the fused sparse-apply op (tf_freqsgd/cc) against the TensorFlow already
installed, so install TensorFlow first and build without isolation, as `make install` does:
`pip install -r requirements.txt && pip install --no-build-isolation -e .` (the pinned TFRA stack),
or `pip install tensorflow && pip install --no-build-isolation .`. Extras: `tf_keras`, `tfra`,
`examples`, `jax`.
Without a C++ compiler the op is skipped with a warning and the optimizers use the pure-TF path.
With nvcc on PATH the library also holds the CUDA kernel (TF_FREQSGD_CUDA=0 skips it, =1 requires
it; TF_FREQSGD_CUDA_ARCHS lists the compute capabilities, default 75,80,90).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).parent.resolve()
OP_SOURCES = ["tf_freqsgd/cc/ops/counter_ops.cc", "tf_freqsgd/cc/kernels/sparse_apply_counter.cc"]
GPU_SOURCE = "tf_freqsgd/cc/kernels/sparse_apply_counter_gpu.cu.cc"
# TF_FREQSGD_CUDA: "auto" builds the GPU kernel when nvcc is found, "1" requires it, "0" skips it.
CUDA_ENV = "TF_FREQSGD_CUDA"
CUDA_ARCHS_ENV = "TF_FREQSGD_CUDA_ARCHS"
DEFAULT_CUDA_ARCHS = "75,80,90"
# No fused multiply-add contraction on either compiler: the CPU kernel rounds as TensorFlow's own
# ops do, and the GPU kernel as the CPU one.
CXX_FLAGS = ["-std=c++17", "-fPIC", "-O3", "-DNDEBUG", "-ffp-contract=off", f"-I{HERE}"]
NVCC_FLAGS = ["-std=c++17", "-O3", "-DNDEBUG", "--fmad=false", "-Xcompiler", "-fPIC,-ffp-contract=off",
              "--expt-relaxed-constexpr", f"-I{HERE}"]


def op_extensions():
    """The op library, named for the TensorFlow it is built against (the loader reads the name);
    none when TensorFlow is not importable here (an isolated build): the package then installs
    without it and uses its pure-TF path."""
    try:
        import tensorflow as tf
    except ImportError:
        return []
    return [Extension("tf_freqsgd.ops._freqsgd_ops_tf" + tf.__version__.replace(".", "_"), sources=OP_SOURCES)]


def cuda_home():
    """The CUDA toolkit (a folder with bin/nvcc and include/cuda_runtime.h): CUDA_HOME, else the
    toolkit of the nvcc on PATH, else /usr/local/cuda; None when there is none."""
    candidates = [os.environ.get("CUDA_HOME")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(pathlib.Path(nvcc).resolve().parent.parent)
    candidates.append("/usr/local/cuda")
    for candidate in filter(None, candidates):
        home = pathlib.Path(candidate).resolve()
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda_runtime.h").exists():
            return home
    return None


def nvcc_arch_flags():
    archs = os.environ.get(CUDA_ARCHS_ENV, DEFAULT_CUDA_ARCHS).split(",")
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    # PTX of the newest architecture too, so newer GPUs can JIT it.
    return flags + [f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}"]


class BuildTensorFlowOps(build_ext):
    """Compiles the op library with the flags and ABI of the installed TensorFlow: the CPU kernels
    always, and the GPU kernel when nvcc is there (see TF_FREQSGD_CUDA)."""

    def build_extension(self, ext):
        import tensorflow as tf  # importable: op_extensions() declared the extension

        output = pathlib.Path(self.get_ext_fullpath(ext.name))
        output.parent.mkdir(parents=True, exist_ok=True)
        tf_compile, tf_link = tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()
        choice = os.environ.get(CUDA_ENV, "auto")
        if choice not in ("auto", "0", "1"):
            raise SystemExit(f"{CUDA_ENV} must be auto, 0 or 1; got {choice!r}.")
        cuda = cuda_home() if choice != "0" else None
        if choice == "1" and cuda is None:
            raise SystemExit(f"{CUDA_ENV}=1 but no nvcc on PATH (or in CUDA_HOME/bin).")
        if cuda is not None:
            try:
                self._build(output, tf_compile, tf_link, cuda)
                return
            except (OSError, subprocess.CalledProcessError) as error:
                if choice == "1":
                    raise
                self.warn(f"the GPU kernel did not build ({error}); building the CPU kernels only.")
        try:
            self._build(output, tf_compile, tf_link, None)
        except (OSError, subprocess.CalledProcessError) as error:
            self.warn(f"the fused op did not build ({error}); the optimizers use the pure-TF path.")

    def _build(self, output, tf_compile, tf_link, cuda):
        """Compiles every source in parallel (nvcc's pass over TF's headers is the slow one), then links."""
        temp = pathlib.Path(self.build_temp).resolve() / ("gpu" if cuda else "cpu")
        temp.mkdir(parents=True, exist_ok=True)
        gpu_flags, link_cuda, compiles = [], [], []
        if cuda:
            # TF's headers include CUDA as third_party/gpus/cuda/include/...: point that at the toolkit.
            shim = temp / "cuda_shim" / "third_party" / "gpus" / "cuda"
            shim.mkdir(parents=True, exist_ok=True)
            (shim / "include").unlink(missing_ok=True)
            (shim / "include").symlink_to(cuda / "include")
            gpu_flags = ["-DGOOGLE_CUDA=1", f"-I{temp / 'cuda_shim'}", f"-I{cuda / 'include'}"]
            # Static CUDA runtime: the library still loads on machines without CUDA.
            link_cuda = [str(cuda / "lib64" / "libcudart_static.a"), "-lrt", "-ldl", "-lpthread",
                         "-l:libtensorflow_cc.so.2"]
            gpu_object = temp / "sparse_apply_counter_gpu.o"
            compiles.append([str(cuda / "bin" / "nvcc"), *NVCC_FLAGS, *nvcc_arch_flags(), "-x", "cu", *gpu_flags,
                             "-c", str(HERE / GPU_SOURCE), "-o", str(gpu_object), *tf_compile])
        objects = [temp / (pathlib.Path(source).stem + ".o") for source in OP_SOURCES]
        for source, obj in zip(OP_SOURCES, objects):
            compiles.append([os.environ.get("CXX", "g++"), *CXX_FLAGS, *gpu_flags, "-c", str(HERE / source),
                             "-o", str(obj), *tf_compile])
        if cuda:
            objects.append(gpu_object)
        running = []
        for command in compiles:
            print(" ".join(command), file=sys.stderr)
            running.append((command, subprocess.Popen(command)))
        failed = [(command, process.returncode) for command, process in running if process.wait() != 0]
        if failed:
            raise subprocess.CalledProcessError(failed[0][1], failed[0][0])
        link = [os.environ.get("CXX", "g++"), "-shared", *map(str, objects), "-o", str(output), *tf_link, *link_cuda]
        print(" ".join(link), file=sys.stderr)
        subprocess.check_call(link)


setup(
    name="tf_freqsgd",
    version=re.search(r'__version__ = "(.+)"', (HERE / "tf_freqsgd" / "__init__.py").read_text()).group(1),
    description="Frequency-aware SGD (FA-SGD / CF-SGD) optimizers for embeddings in Keras 3 and tf_keras",
    long_description=(HERE / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["tf_freqsgd", "tf_freqsgd.*"]),
    ext_modules=op_extensions(),
    cmdclass={"build_ext": BuildTensorFlowOps},
    python_requires=">=3.11,<3.14",
    # The core: the optimizers (tf_keras and Keras 3 fronts), the fused op, the layers, the data.
    install_requires=["tensorflow>=2.16,<2.22", "numpy"],
    extras_require={
        # The tf_keras (Keras 2) front: tf_keras of TensorFlow's minor version.
        "tf_keras": ["tf-keras>=2.16,<2.22"],
        # TFRA dynamic embeddings: TFRA 0.8.1 exists for Python 3.11 and TensorFlow 2.16.2 only.
        "tfra": ["tensorflow==2.16.2", "tf-keras~=2.16.0", "tensorflow-recommenders-addons==0.8.1", "setuptools<82"],
        # The MovieLens examples and the benchmarks.
        "examples": ["tf-keras>=2.16,<2.22", "tensorflow-recommenders==0.7.7", "absl-py>=1.0", "matplotlib>=3.7"],
        "jax": ["jax"],
    },
)
