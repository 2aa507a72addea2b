// Kernels of ResourceSparseApplyCounterSGD and ResourceSparseApplyRowwiseAdagradCounter: the op
// class, the CPU functor, and the registrations (GPU ones when built with GOOGLE_CUDA; the GPU
// functor is in sparse_apply_counter_gpu.cu.cc).
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA
#define EIGEN_USE_GPU
#endif
#include "tf_freqsgd/cc/kernels/sparse_apply_counter.h"

#include <functional>
#include <type_traits>
#include <vector>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"
#include "tf_freqsgd/cc/kernels/counter_apply_cpu.h"

namespace tensorflow {

using CPUDevice = Eigen::ThreadPoolDevice;
#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;
#endif

namespace functor {

template <typename T, typename Tindex>
struct SparseApplyCounter<CPUDevice, T, Tindex> {
  Status operator()(OpKernelContext* ctx, const tf_freqsgd::CounterRule& rule, float epsilon,
                    typename TTypes<T>::Matrix var, const tf_freqsgd::CounterState& state, float lr,
                    int64_t step, typename TTypes<T>::ConstMatrix grad,
                    typename TTypes<Tindex>::ConstFlat indices) {
    const auto* workers = ctx->device()->tensorflow_cpu_worker_threads();
    auto shard = [workers](int64_t total, int64_t cost, const std::function<void(int64_t, int64_t)>& body) {
      Shard(workers->num_threads, workers->workers, total, cost, body);
    };
    tf_freqsgd::ApplyCounterCpu(rule, epsilon, var.data(), var.dimension(1), state, lr, step, grad.data(),
                                indices.data(), indices.size(), shard);
    return OkStatus();
  }
};

}  // namespace functor

#if GOOGLE_CUDA
// Defined in sparse_apply_counter_gpu.cu.cc, which nvcc compiles.
namespace functor {
#define DECLARE_GPU_FUNCTOR(T)                                    \
  extern template struct SparseApplyCounter<GPUDevice, T, int32>; \
  extern template struct SparseApplyCounter<GPUDevice, T, int64_t>;
DECLARE_GPU_FUNCTOR(float);
DECLARE_GPU_FUNCTOR(Eigen::half);
DECLARE_GPU_FUNCTOR(bfloat16);
#undef DECLARE_GPU_FUNCTOR
}  // namespace functor
#endif  // GOOGLE_CUDA

namespace {

// Locks one variable input for a sparse in-place update and returns its tensor.
template <typename Device, typename T>
Status LockForUpdate(OpKernelContext* ctx, int input, std::vector<VariableInputLockHolder>* locks,
                     Tensor* out) {
  locks->push_back(MaybeLockVariableInputMutexesInOrder<Device, T>(ctx, /*do_lock=*/true,
                                                                   /*sparse=*/true, {input}));
  TF_RETURN_IF_ERROR(GetInputTensorFromVariable<Device, T>(ctx, input, /*lock_held=*/true,
                                                           /*sparse=*/true, out));
  if (!out->IsInitialized()) {
    return errors::FailedPrecondition("Variable input ", input, " is not initialized.");
  }
  return OkStatus();
}

Status CheckRowState(const Tensor& state, const char* name, DataType dtype, int64_t rows) {
  if (state.dtype() != dtype) {
    return errors::InvalidArgument(name, " must be ", DataTypeString(dtype), "; got ",
                                   DataTypeString(state.dtype()), ".");
  }
  if (state.dims() != 1 || state.dim_size(0) != rows) {
    return errors::InvalidArgument(name, " must have shape [", rows, "] (one value per row); got ",
                                   state.shape().DebugString(), ".");
  }
  return OkStatus();
}

}  // namespace

template <typename Device, typename T, typename Tindex, bool kRowwiseAdagrad>
class SparseApplyCounterOp : public OpKernel {
 public:
  explicit SparseApplyCounterOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("count_occurrences", &rule_.count_occurrences));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("halflife", &rule_.halflife));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("estimate_frequency", &rule_.estimate_frequency));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("power", &rule_.power));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("min_scale", &rule_.min_scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_scale", &rule_.max_scale));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("warmup_steps", &rule_.warmup_steps));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("tail_id_threshold", &rule_.tail_id_threshold));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("weight_decay", &rule_.weight_decay));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("decoupled_weight_decay", &rule_.decoupled_weight_decay));
    if (kRowwiseAdagrad) OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    const int counter_input = kRowwiseAdagrad ? 2 : 1;
    const int lr_input = counter_input + 1;
    std::vector<VariableInputLockHolder> locks;
    Tensor var, accumulator, counter;
    OP_REQUIRES_OK(ctx, LockForUpdate<Device, T>(ctx, 0, &locks, &var));
    if (kRowwiseAdagrad) OP_REQUIRES_OK(ctx, LockForUpdate<Device, float>(ctx, 1, &locks, &accumulator));
    const bool decays = rule_.halflife > 0.0f;
    if (decays) {
      OP_REQUIRES_OK(ctx, LockForUpdate<Device, double>(ctx, counter_input, &locks, &counter));
    } else {
      OP_REQUIRES_OK(ctx, LockForUpdate<Device, int32>(ctx, counter_input, &locks, &counter));
    }
    const Tensor& lr = ctx->input(lr_input);
    const Tensor& step = ctx->input(lr_input + 1);
    const Tensor& grad = ctx->input(lr_input + 2);
    const Tensor& indices = ctx->input(lr_input + 3);

    OP_REQUIRES(ctx, var.dims() >= 1,
                errors::InvalidArgument("var must have rank >= 1; got shape ", var.shape().DebugString()));
    const int64_t rows = var.dim_size(0);
    OP_REQUIRES_OK(ctx, CheckRowState(counter, "counter", decays ? DT_DOUBLE : DT_INT32, rows));
    if (kRowwiseAdagrad) OP_REQUIRES_OK(ctx, CheckRowState(accumulator, "accumulator", DT_FLOAT, rows));
    OP_REQUIRES(ctx, TensorShapeUtils::IsScalar(lr.shape()) && TensorShapeUtils::IsScalar(step.shape()),
                errors::InvalidArgument("lr and step must be scalars; got ", lr.shape().DebugString(),
                                        " and ", step.shape().DebugString()));
    OP_REQUIRES(ctx, TensorShapeUtils::IsVector(indices.shape()),
                errors::InvalidArgument("indices must be a vector; got ", indices.shape().DebugString()));
    const int64_t n = indices.dim_size(0);
    OP_REQUIRES(ctx, grad.dims() == var.dims() && grad.dim_size(0) == n,
                errors::InvalidArgument("grad must have shape [", n, ", ...] matching var ",
                                        var.shape().DebugString(), "; got ", grad.shape().DebugString()));
    for (int d = 1; d < var.dims(); ++d) {
      OP_REQUIRES(ctx, grad.dim_size(d) == var.dim_size(d),
                  errors::InvalidArgument("grad dimension ", d, " is ", grad.dim_size(d), "; var's is ",
                                          var.dim_size(d), "."));
    }
    const auto ids = indices.flat<Tindex>();
    // GPU ids live in device memory: that kernel skips a batch holding an id out of range instead,
    // and the optimizer's own check reports it.
    if (std::is_same<Device, CPUDevice>::value) {
      for (int64_t i = 0; i < n; ++i) {
        OP_REQUIRES(ctx, ids(i) >= 0 && ids(i) < rows,
                    errors::InvalidArgument("indices[", i, "] = ", ids(i), " is out of range: the table has ",
                                            rows, " rows, ids must lie in [0, ", rows, ")."));
      }
    }
    if (n == 0) return;
    const tf_freqsgd::CounterState state{decays ? nullptr : counter.flat<int32>().data(),
                                         decays ? counter.flat<double>().data() : nullptr,
                                         kRowwiseAdagrad ? accumulator.flat<float>().data() : nullptr};
    functor::SparseApplyCounter<Device, T, Tindex> apply;
    OP_REQUIRES_OK(ctx, apply(ctx, rule_, epsilon_, var.flat_outer_dims<T>(), state, lr.scalar<float>()(),
                              step.scalar<int64_t>()(), grad.flat_outer_dims<T>(), ids));
  }

 private:
  tf_freqsgd::CounterRule rule_;
  float epsilon_ = 0.0f;
};

#define REGISTER_CPU_KERNELS(T, Tindex)                                                               \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyCounterSGD")                                       \
                              .Device(DEVICE_CPU)                                                     \
                              .TypeConstraint<T>("T")                                                 \
                              .TypeConstraint<Tindex>("Tindices"),                                    \
                          SparseApplyCounterOp<CPUDevice, T, Tindex, false>);                         \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyRowwiseAdagradCounter")                            \
                              .Device(DEVICE_CPU)                                                     \
                              .TypeConstraint<T>("T")                                                 \
                              .TypeConstraint<Tindex>("Tindices"),                                    \
                          SparseApplyCounterOp<CPUDevice, T, Tindex, true>);
#define REGISTER_CPU_KERNELS_FOR_TYPE(T) \
  REGISTER_CPU_KERNELS(T, int32);        \
  REGISTER_CPU_KERNELS(T, int64_t);
REGISTER_CPU_KERNELS_FOR_TYPE(float);
REGISTER_CPU_KERNELS_FOR_TYPE(Eigen::half);
REGISTER_CPU_KERNELS_FOR_TYPE(bfloat16);
#undef REGISTER_CPU_KERNELS_FOR_TYPE
#undef REGISTER_CPU_KERNELS

#if GOOGLE_CUDA
#define REGISTER_GPU_KERNELS(T, Tindex)                                                               \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyCounterSGD")                                       \
                              .Device(DEVICE_GPU)                                                     \
                              .HostMemory("lr")                                                       \
                              .HostMemory("step")                                                     \
                              .TypeConstraint<T>("T")                                                 \
                              .TypeConstraint<Tindex>("Tindices"),                                    \
                          SparseApplyCounterOp<GPUDevice, T, Tindex, false>);                         \
  REGISTER_KERNEL_BUILDER(Name("ResourceSparseApplyRowwiseAdagradCounter")                            \
                              .Device(DEVICE_GPU)                                                     \
                              .HostMemory("lr")                                                       \
                              .HostMemory("step")                                                     \
                              .TypeConstraint<T>("T")                                                 \
                              .TypeConstraint<Tindex>("Tindices"),                                    \
                          SparseApplyCounterOp<GPUDevice, T, Tindex, true>);
#define REGISTER_GPU_KERNELS_FOR_TYPE(T) \
  REGISTER_GPU_KERNELS(T, int32);        \
  REGISTER_GPU_KERNELS(T, int64_t);
REGISTER_GPU_KERNELS_FOR_TYPE(float);
REGISTER_GPU_KERNELS_FOR_TYPE(Eigen::half);
REGISTER_GPU_KERNELS_FOR_TYPE(bfloat16);
#undef REGISTER_GPU_KERNELS_FOR_TYPE
#undef REGISTER_GPU_KERNELS
#endif  // GOOGLE_CUDA

}  // namespace tensorflow
