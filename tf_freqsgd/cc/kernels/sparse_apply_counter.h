// The functor behind the fused sparse-apply ops, templated on device as TF's training_ops are.
#ifndef TF_FREQSGD_CC_KERNELS_SPARSE_APPLY_COUNTER_H_
#define TF_FREQSGD_CC_KERNELS_SPARSE_APPLY_COUNTER_H_

#include <cstdint>

#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/tensor_types.h"
#include "tf_freqsgd/cc/kernels/counter_rule.h"

namespace tensorflow {
namespace functor {

template <typename Device, typename T, typename Tindex>
struct SparseApplyCounter {
  // Applies one step. The CPU functor expects ids checked to lie in [0, var.dimension(0)); the GPU
  // one checks them on the device and leaves every row untouched when one does not.
  Status operator()(OpKernelContext* ctx, const tf_freqsgd::CounterRule& rule, float epsilon,
                    typename TTypes<T>::Matrix var, const tf_freqsgd::CounterState& state, float lr,
                    int64_t step, typename TTypes<T>::ConstMatrix grad,
                    typename TTypes<Tindex>::ConstFlat indices);
};

}  // namespace functor
}  // namespace tensorflow

#endif  // TF_FREQSGD_CC_KERNELS_SPARSE_APPLY_COUNTER_H_
