"""The fused sparse-apply custom op (C++ in tf_freqsgd/cc) and its lazy loader."""

from tf_freqsgd.ops.loader import (
    LIBRARY_ENV,
    PATH_ENV,
    custom_op_available,
    fused_ops,
    gpu_kernels_available,
    library_path,
)

__all__ = ["LIBRARY_ENV", "PATH_ENV", "custom_op_available", "fused_ops", "gpu_kernels_available", "library_path"]
