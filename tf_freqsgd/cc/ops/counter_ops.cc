// Fused frequency-scaled sparse-apply ops: count, de-duplicate and apply in one op.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace tensorflow {

using shape_inference::InferenceContext;
using shape_inference::ShapeHandle;

static Status SparseApplyCounterShape(InferenceContext* c, int first_dense_input) {
  ShapeHandle unused;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(first_dense_input), 0, &unused));      // lr
  TF_RETURN_IF_ERROR(c->WithRank(c->input(first_dense_input + 1), 0, &unused));  // step
  ShapeHandle grad = c->input(first_dense_input + 2);
  ShapeHandle indices;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(first_dense_input + 3), 1, &indices));
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(grad, 1, &grad));
  shape_inference::DimensionHandle unused_dim;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(grad, 0), c->Dim(indices, 0), &unused_dim));
  return OkStatus();
}

#define FREQSGD_RULE_ATTRS                                  \
  Attr("T: {float, half, bfloat16}")                        \
      .Attr("Tindices: {int32, int64}")                     \
      .Attr("count_occurrences: bool = true")               \
      .Attr("halflife: float = 0")                          \
      .Attr("estimate_frequency: bool = true")              \
      .Attr("power: float = 0.5")                           \
      .Attr("min_scale: float = 0")                         \
      .Attr("max_scale: float = -1")                        \
      .Attr("warmup_steps: int = 0")                        \
      .Attr("tail_id_threshold: float = 0")                 \
      .Attr("weight_decay: float = 0")                      \
      .Attr("decoupled_weight_decay: bool = true")

REGISTER_OP("ResourceSparseApplyCounterSGD")
    .Input("var: resource")
    .Input("counter: resource")
    .Input("lr: float")
    .Input("step: int64")
    .Input("grad: T")
    .Input("indices: Tindices")
    .FREQSGD_RULE_ATTRS
    .SetShapeFn([](InferenceContext* c) { return SparseApplyCounterShape(c, 2); })
    .Doc(R"doc(
CounterSGD's sparse step: w_k <- rho_k w_k - lr * scale_k * g_k for each distinct id k of
`indices`, g_k the sum of its rows of `grad`; updates the `counter` first: int32 count codes, or
with `halflife` > 0 float64 log-counts. See tf_freqsgd/optimizers/counter.py and frequency_rule.py.
)doc");

REGISTER_OP("ResourceSparseApplyRowwiseAdagradCounter")
    .Input("var: resource")
    .Input("accumulator: resource")
    .Input("counter: resource")
    .Input("lr: float")
    .Input("step: int64")
    .Input("grad: T")
    .Input("indices: Tindices")
    .FREQSGD_RULE_ATTRS
    .Attr("epsilon: float = 1e-7")
    .SetShapeFn([](InferenceContext* c) { return SparseApplyCounterShape(c, 3); })
    .Doc(R"doc(
RowwiseAdagradCounter's sparse step: G_k += mean(g_k^2);
w_k <- rho_k w_k - lr / (sqrt(G_k) + epsilon) * scale_k * g_k, counters as
ResourceSparseApplyCounterSGD.
)doc");

}  // namespace tensorflow
