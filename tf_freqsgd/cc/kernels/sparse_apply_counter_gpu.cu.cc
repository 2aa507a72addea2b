// GPU functor of the fused sparse apply: scratch from TensorFlow's allocator, the kernel body from
// counter_apply_gpu.cu.h, enqueued on the op's stream.
#if GOOGLE_CUDA
#define EIGEN_USE_GPU

#include <limits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tf_freqsgd/cc/kernels/counter_apply_gpu.cu.h"
#include "tf_freqsgd/cc/kernels/sparse_apply_counter.h"

namespace tensorflow {
namespace functor {

using GPUDevice = Eigen::GpuDevice;

template <typename T, typename Tindex>
struct SparseApplyCounter<GPUDevice, T, Tindex> {
  Status operator()(OpKernelContext* ctx, const tf_freqsgd::CounterRule& rule, float epsilon,
                    typename TTypes<T>::Matrix var, const tf_freqsgd::CounterState& state, float lr,
                    int64_t step, typename TTypes<T>::ConstMatrix grad,
                    typename TTypes<Tindex>::ConstFlat indices) {
    const int64_t n = indices.size();
    if (n > std::numeric_limits<int32_t>::max()) {
      return errors::InvalidArgument("a batch holds at most 2^31 - 1 ids on the GPU; got ", n, ".");
    }
    Tensor scratch;
    const int64_t scratch_bytes = tf_freqsgd::gpu::ApplyCounterTempBytes<Tindex>(static_cast<int>(n));
    TF_RETURN_IF_ERROR(ctx->allocate_temp(DT_INT8, TensorShape({scratch_bytes}), &scratch));
    const cudaError_t status = tf_freqsgd::gpu::LaunchApplyCounter(
        rule, epsilon, var.data(), var.dimension(0), var.dimension(1), state, lr, step, grad.data(),
        indices.data(), static_cast<int>(n), scratch.flat<int8>().data(), ctx->eigen_device<GPUDevice>().stream());
    if (status != cudaSuccess) {
      return errors::Internal("the fused sparse apply failed to launch: ", cudaGetErrorString(status));
    }
    return OkStatus();
  }
};

#define INSTANTIATE(T)                                   \
  template struct SparseApplyCounter<GPUDevice, T, int32>; \
  template struct SparseApplyCounter<GPUDevice, T, int64_t>;
INSTANTIATE(float);
INSTANTIATE(Eigen::half);
INSTANTIATE(bfloat16);
#undef INSTANTIATE

}  // namespace functor
}  // namespace tensorflow

#endif  // GOOGLE_CUDA
