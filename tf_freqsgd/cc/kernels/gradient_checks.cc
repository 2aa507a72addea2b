// Kernel of GradientChecks: whether each gradient is finite, and each id vector's smallest and
// largest id, in one pass over each tensor. It replaces a dozen small TensorFlow ops a step
// (multiply by zero, sum, is_finite, min, max) whose temporaries and dispatch cost more than the
// pass itself (docs/fused-op.md).
#define EIGEN_USE_THREADS
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/util/work_sharder.h"

namespace tensorflow {
namespace {

// The bits of a floating-point type that are all set in infinities and NaNs only (its exponent).
template <typename T>
struct ExponentBits;
template <>
struct ExponentBits<Eigen::half> {
  using Bits = uint16_t;
  static constexpr Bits kMask = 0x7c00;
};
template <>
struct ExponentBits<bfloat16> {
  using Bits = uint16_t;
  static constexpr Bits kMask = 0x7f80;
};
template <>
struct ExponentBits<float> {
  using Bits = uint32_t;
  static constexpr Bits kMask = 0x7f800000u;
};
template <>
struct ExponentBits<double> {
  using Bits = uint64_t;
  static constexpr Bits kMask = 0x7ff0000000000000ull;
};

// Whether elements [begin, end) are all finite: integer tests on the bits, which the compiler
// vectorizes (a float comparison loop that must keep NaN semantics it does not).
template <typename T>
bool RangeIsFinite(const T* data, int64_t begin, int64_t end) {
  using Traits = ExponentBits<T>;
  typename Traits::Bits all_exponent_bits = 0;
  for (int64_t i = begin; i < end; ++i) {
    typename Traits::Bits bits;
    std::memcpy(&bits, data + i, sizeof(bits));
    all_exponent_bits |= static_cast<typename Traits::Bits>((bits & Traits::kMask) == Traits::kMask);
  }
  return all_exponent_bits == 0;
}

template <typename T>
bool IsFinite(const Tensor& values, const DeviceBase::CpuWorkerThreads& workers) {
  const T* data = values.flat<T>().data();
  std::atomic<bool> finite(true);
  // A few cycles an element: the sharder keeps small gradients on one thread.
  Shard(workers.num_threads, workers.workers, values.NumElements(), /*cost_per_unit=*/2,
        [&](int64_t begin, int64_t end) {
          if (finite.load(std::memory_order_relaxed) && !RangeIsFinite(data, begin, end)) {
            finite.store(false, std::memory_order_relaxed);
          }
        });
  return finite.load();
}

template <typename Tindex>
void IdRange(const Tensor& ids, int64_t* smallest, int64_t* largest) {
  const auto flat = ids.flat<Tindex>();
  if (flat.size() == 0) {
    *smallest = 0;
    *largest = -1;
    return;
  }
  Tindex low = std::numeric_limits<Tindex>::max(), high = std::numeric_limits<Tindex>::min();
  for (int64_t i = 0; i < flat.size(); ++i) {
    low = std::min(low, flat(i));
    high = std::max(high, flat(i));
  }
  *smallest = low;
  *largest = high;
}

class GradientChecksOp : public OpKernel {
 public:
  explicit GradientChecksOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    OpInputList values, ids;
    OP_REQUIRES_OK(ctx, ctx->input_list("values", &values));
    OP_REQUIRES_OK(ctx, ctx->input_list("ids", &ids));
    Tensor* finite = nullptr;
    Tensor* id_range = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({values.size()}), &finite));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({ids.size(), 2}), &id_range));
    const auto& workers = *ctx->device()->tensorflow_cpu_worker_threads();
    auto finite_flags = finite->vec<bool>();
    for (int i = 0; i < values.size(); ++i) {
      switch (values[i].dtype()) {
        case DT_HALF: finite_flags(i) = IsFinite<Eigen::half>(values[i], workers); break;
        case DT_BFLOAT16: finite_flags(i) = IsFinite<bfloat16>(values[i], workers); break;
        case DT_FLOAT: finite_flags(i) = IsFinite<float>(values[i], workers); break;
        case DT_DOUBLE: finite_flags(i) = IsFinite<double>(values[i], workers); break;
        default:
          ctx->SetStatus(errors::InvalidArgument("values[", i, "] has an unsupported dtype ",
                                                 DataTypeString(values[i].dtype()), "."));
          return;
      }
    }
    auto ranges = id_range->matrix<int64_t>();
    for (int j = 0; j < ids.size(); ++j) {
      if (ids[j].dtype() == DT_INT32) {
        IdRange<int32>(ids[j], &ranges(j, 0), &ranges(j, 1));
      } else {
        IdRange<int64_t>(ids[j], &ranges(j, 0), &ranges(j, 1));
      }
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("GradientChecks").Device(DEVICE_CPU), GradientChecksOp);

}  // namespace
}  // namespace tensorflow
