// The CUDA body of the fused sparse apply, free of TensorFlow: the op's GPU functor
// (sparse_apply_counter_gpu.cu.cc) and the standalone test (tests/cc/counter_apply_gpu_test.cu)
// both launch it.
//
// One step: sort (id, position) pairs by id, stably, so each id's positions stay in batch order;
// run-length encode the sorted ids into distinct ids, their occurrence counts and their starts;
// then one warp per distinct id updates its counter and row. Summing a row's gradients in batch
// order makes the GPU bit-identical to the CPU kernel wherever the math is the same (everything
// but row-wise Adagrad's mean square, a warp reduction here). Built with --fmad=false for that.
#ifndef TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_GPU_CU_H_
#define TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_GPU_CU_H_

#include <cstddef>
#include <cstdint>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_run_length_encode.cuh>
#include <cub/device/device_scan.cuh>

#include "tf_freqsgd/cc/kernels/counter_rule.h"

namespace tf_freqsgd {
namespace gpu {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;
constexpr size_t kAlignment = 256;

inline size_t Aligned(size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

// The scratch of one step, carved from one allocation of ApplyCounterTempBytes(n) bytes.
template <typename Tindex>
struct Scratch {
  Tindex* sorted_ids;
  int32_t* positions;
  int32_t* sorted_positions;
  Tindex* distinct_ids;
  int32_t* run_lengths;
  int32_t* run_starts;
  int32_t* num_runs;
  void* cub_storage;
  size_t cub_bytes;

  Scratch(void* base, int n, size_t cub_bytes_needed) : cub_bytes(cub_bytes_needed) {
    char* next = static_cast<char*>(base);
    auto take = [&next](size_t bytes) {
      char* at = next;
      next += Aligned(bytes);
      return at;
    };
    sorted_ids = reinterpret_cast<Tindex*>(take(n * sizeof(Tindex)));
    positions = reinterpret_cast<int32_t*>(take(n * sizeof(int32_t)));
    sorted_positions = reinterpret_cast<int32_t*>(take(n * sizeof(int32_t)));
    distinct_ids = reinterpret_cast<Tindex*>(take(n * sizeof(Tindex)));
    run_lengths = reinterpret_cast<int32_t*>(take(n * sizeof(int32_t)));
    run_starts = reinterpret_cast<int32_t*>(take(n * sizeof(int32_t)));
    num_runs = reinterpret_cast<int32_t*>(take(sizeof(int32_t)));
    cub_storage = take(cub_bytes);
  }

  static size_t BufferBytes(int n) {
    return 4 * Aligned(n * sizeof(int32_t)) + 2 * Aligned(n * sizeof(Tindex)) + Aligned(sizeof(int32_t));
  }
};

// The largest scratch any of the three CUB passes needs for n ids.
template <typename Tindex>
size_t CubBytes(int n) {
  size_t sort = 0, encode = 0, scan = 0;
  cub::DeviceRadixSort::SortPairs(nullptr, sort, static_cast<const Tindex*>(nullptr),
                                  static_cast<Tindex*>(nullptr), static_cast<const int32_t*>(nullptr),
                                  static_cast<int32_t*>(nullptr), n);
  cub::DeviceRunLengthEncode::Encode(nullptr, encode, static_cast<const Tindex*>(nullptr),
                                     static_cast<Tindex*>(nullptr), static_cast<int32_t*>(nullptr),
                                     static_cast<int32_t*>(nullptr), n);
  cub::DeviceScan::ExclusiveSum(nullptr, scan, static_cast<const int32_t*>(nullptr),
                                static_cast<int32_t*>(nullptr), n);
  size_t most = sort > encode ? sort : encode;
  return most > scan ? most : scan;
}

// Bytes of device scratch a step over n ids needs.
template <typename Tindex>
size_t ApplyCounterTempBytes(int n) {
  return Scratch<Tindex>::BufferBytes(n) + Aligned(CubBytes<Tindex>(n));
}

__global__ void FillPositions(int32_t* positions, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) positions[i] = i;
}

// Column j of the sum of one id's gradient rows, added in batch order.
template <typename T>
__device__ inline float ColumnSum(const T* grad, int64_t dim, const int32_t* positions, int32_t length,
                                  int64_t j) {
  float sum = 0.0f;
  for (int32_t p = 0; p < length; ++p) sum += static_cast<float>(grad[static_cast<int64_t>(positions[p]) * dim + j]);
  return sum;
}

template <typename T, typename Tindex>
__global__ void ApplyRuns(CounterRule rule, float epsilon, T* var, int64_t rows, int64_t dim, CounterState state,
                          float lr, int64_t step, double normalizer, const T* grad, int n, Scratch<Tindex> scratch) {
  // Sorted ids: the first is the smallest, the last the largest. An id out of range leaves every
  // row untouched (the optimizer's own check reports it).
  if (scratch.sorted_ids[0] < 0 || scratch.sorted_ids[n - 1] >= rows) return;
  const int lane = threadIdx.x % kWarpSize;
  const int warps = gridDim.x * kWarpsPerBlock;
  const int num_runs = *scratch.num_runs;
  for (int run = blockIdx.x * kWarpsPerBlock + threadIdx.x / kWarpSize; run < num_runs; run += warps) {
    const Tindex id = scratch.distinct_ids[run];
    const int32_t length = scratch.run_lengths[run];
    const int32_t* positions = scratch.sorted_positions + scratch.run_starts[run];
    float mean_square = 0.0f;
    if (state.accumulator) {
      for (int64_t j = lane; j < dim; j += kWarpSize) {
        const float sum = ColumnSum(grad, dim, positions, length, j);
        mean_square += sum * sum;
      }
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        mean_square += __shfl_xor_sync(0xffffffffu, mean_square, offset);
      }
      mean_square /= static_cast<float>(dim);
    }
    float frequency = 0.0f, row_rate = 0.0f;
    if (lane == 0) {
      const double exact_count = UpdateCounter(rule, state, id, length, step);
      frequency = static_cast<float>(exact_count / normalizer);
      row_rate = RowRate(rule, state, id, lr, epsilon, mean_square, static_cast<float>(exact_count), frequency, step);
    }
    frequency = __shfl_sync(0xffffffffu, frequency, 0);
    row_rate = __shfl_sync(0xffffffffu, row_rate, 0);
    T* row = var + static_cast<int64_t>(id) * dim;
    if (rule.weight_decay > 0.0f) {
      const float decay = DecayFactor(rule, lr, row_rate, frequency, step);
      for (int64_t j = lane; j < dim; j += kWarpSize) {
        const float sum = ColumnSum(grad, dim, positions, length, j);
        row[j] = static_cast<T>(decay * static_cast<float>(row[j]) - row_rate * sum);
      }
    } else {
      for (int64_t j = lane; j < dim; j += kWarpSize) {
        const float sum = ColumnSum(grad, dim, positions, length, j);
        row[j] = static_cast<T>(static_cast<float>(row[j]) - row_rate * sum);
      }
    }
  }
}

// Enqueues one step on `stream`. `temp` holds ApplyCounterTempBytes<Tindex>(n) bytes; n > 0.
template <typename T, typename Tindex>
cudaError_t LaunchApplyCounter(const CounterRule& rule, float epsilon, T* var, int64_t rows, int64_t dim,
                               const CounterState& state, float lr, int64_t step, const T* grad,
                               const Tindex* ids, int n, void* temp, cudaStream_t stream) {
  Scratch<Tindex> scratch(temp, n, CubBytes<Tindex>(n));
  constexpr int kThreads = kWarpSize * kWarpsPerBlock;
  const int fill_blocks = (n + kThreads - 1) / kThreads;
  FillPositions<<<fill_blocks, kThreads, 0, stream>>>(scratch.positions, n);
  // Radix sort is stable: each id's positions stay in batch order.
  cudaError_t status = cub::DeviceRadixSort::SortPairs(scratch.cub_storage, scratch.cub_bytes, ids,
                                                       scratch.sorted_ids, scratch.positions,
                                                       scratch.sorted_positions, n, 0, 8 * sizeof(Tindex), stream);
  if (status != cudaSuccess) return status;
  // Only the first num_runs lengths are written: clear the rest so the scan reads defined values.
  status = cudaMemsetAsync(scratch.run_lengths, 0, n * sizeof(int32_t), stream);
  if (status != cudaSuccess) return status;
  status = cub::DeviceRunLengthEncode::Encode(scratch.cub_storage, scratch.cub_bytes, scratch.sorted_ids,
                                              scratch.distinct_ids, scratch.run_lengths, scratch.num_runs, n,
                                              stream);
  if (status != cudaSuccess) return status;
  status = cub::DeviceScan::ExclusiveSum(scratch.cub_storage, scratch.cub_bytes, scratch.run_lengths,
                                         scratch.run_starts, n, stream);
  if (status != cudaSuccess) return status;
  const int apply_blocks = (n + kWarpsPerBlock - 1) / kWarpsPerBlock;
  ApplyRuns<T, Tindex><<<apply_blocks, kThreads, 0, stream>>>(rule, epsilon, var, rows, dim, state, lr, step,
                                                              StepNormalizer(rule, step), grad, n, scratch);
  return cudaGetLastError();
}

}  // namespace gpu
}  // namespace tf_freqsgd

#endif  // TF_FREQSGD_CC_KERNELS_COUNTER_APPLY_GPU_CU_H_
