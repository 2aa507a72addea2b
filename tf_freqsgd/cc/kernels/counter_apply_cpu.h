// The CPU body of the fused sparse apply, free of TensorFlow: the op's CPU functor runs it on TF's
// thread pool, and the standalone CUDA test runs it as the reference for the GPU kernel.
#ifndef TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_CPU_H_
#define TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_CPU_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "tf_freqsgd/cc/kernels/counter_rule.h"

namespace tf_freqsgd {

// Open addressing over a power-of-two table of at least twice the batch: ids are checked to be
// non-negative before, so -1 marks an empty slot. Several times faster than a general hash map
// for the few thousand ids of a batch, which this op groups serially.
template <typename Tindex>
class BatchGroups {
 public:
  explicit BatchGroups(int64_t n) {
    int64_t size = 16;
    while (size < 2 * n) size <<= 1;
    mask_ = size - 1;
    keys_.assign(size, Tindex(-1));
    groups_.resize(size);
  }

  // The group of `id`, or `next_group` after recording it as the group of a new id.
  int32_t FindOrInsert(Tindex id, int32_t next_group) {
    uint64_t slot = (static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull) >> 20;
    for (;; ++slot) {
      slot &= mask_;
      if (keys_[slot] == id) return groups_[slot];
      if (keys_[slot] == Tindex(-1)) {
        keys_[slot] = id;
        groups_[slot] = next_group;
        return next_group;
      }
    }
  }

 private:
  uint64_t mask_;
  std::vector<Tindex> keys_;
  std::vector<int32_t> groups_;
};

// Applies one step to the rows of `var` (rows x dim, row-major) named by `ids`; ids must already
// lie in [0, rows). `parallel_for(num_groups, cost_per_group, body)` runs body(begin, end) over
// disjoint ranges of distinct ids, so no two workers touch one row.
template <typename T, typename Tindex, typename ParallelFor>
void ApplyCounterCpu(const CounterRule& rule, float epsilon, T* var, int64_t dim, const CounterState& state,
                     float lr, int64_t step, const T* grad, const Tindex* ids, int64_t n,
                     ParallelFor parallel_for) {
  // Group the batch by id, distinct ids in order of first occurrence, each id's positions in
  // batch order: the sums below then add rows in the order the batch gives them (deterministic).
  BatchGroups<Tindex> group_of(n);
  std::vector<int32_t> group(n);
  std::vector<int32_t> offsets(1, 0);
  for (int64_t i = 0; i < n; ++i) {
    group[i] = group_of.FindOrInsert(ids[i], static_cast<int32_t>(offsets.size() - 1));
    if (group[i] == static_cast<int32_t>(offsets.size() - 1)) offsets.push_back(0);
    ++offsets[group[i] + 1];
  }
  const int64_t num_groups = static_cast<int64_t>(offsets.size()) - 1;
  for (int64_t g = 0; g < num_groups; ++g) offsets[g + 1] += offsets[g];
  std::vector<int32_t> positions(n);
  {
    std::vector<int32_t> fill(offsets.begin(), offsets.end() - 1);
    for (int64_t i = 0; i < n; ++i) positions[fill[group[i]]++] = static_cast<int32_t>(i);
  }
  const double normalizer = StepNormalizer(rule, step);

  auto apply_groups = [&](int64_t begin, int64_t end) {
    std::vector<float> sum(dim);
    for (int64_t g = begin; g < end; ++g) {
      const int32_t first = offsets[g], last = offsets[g + 1];
      const Tindex id = ids[positions[first]];
      if (g + 1 < end) {
        // Rows of a large table are cache misses: fetch the next group's while this one works.
        const Tindex next = ids[positions[last]];
        __builtin_prefetch(var + static_cast<int64_t>(next) * dim, 1);
        if (state.count_code) __builtin_prefetch(state.count_code + next, 1);
        if (state.log_count) __builtin_prefetch(state.log_count + next, 1);
        if (state.accumulator) __builtin_prefetch(state.accumulator + next, 1);
      }
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int32_t p = first; p < last; ++p) {
        const T* grad_row = grad + static_cast<int64_t>(positions[p]) * dim;
        for (int64_t j = 0; j < dim; ++j) sum[j] += static_cast<float>(grad_row[j]);
      }
      const double exact_count = UpdateCounter(rule, state, id, last - first, step);
      const float count = static_cast<float>(exact_count);
      const float frequency = static_cast<float>(exact_count / normalizer);
      float mean_square = 0.0f;
      if (state.accumulator) {
        for (int64_t j = 0; j < dim; ++j) mean_square += sum[j] * sum[j];
        mean_square /= static_cast<float>(dim);
      }
      const float row_rate = RowRate(rule, state, id, lr, epsilon, mean_square, count, frequency, step);
      T* row = var + static_cast<int64_t>(id) * dim;
      if (rule.weight_decay > 0.0f) {
        const float decay = DecayFactor(rule, lr, row_rate, frequency, step);
        for (int64_t j = 0; j < dim; ++j) row[j] = static_cast<T>(decay * static_cast<float>(row[j]) - row_rate * sum[j]);
      } else {
        // The common case without decay: one loop the compiler vectorizes.
        for (int64_t j = 0; j < dim; ++j) row[j] = static_cast<T>(static_cast<float>(row[j]) - row_rate * sum[j]);
      }
    }
  };
  const int64_t cost_per_group = 8 * dim * std::max<int64_t>(1, n / std::max<int64_t>(1, num_groups));
  parallel_for(num_groups, cost_per_group, apply_groups);
}

}  // namespace tf_freqsgd

#endif  // TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_CPU_H_
