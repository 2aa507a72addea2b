// Standalone check of the GPU kernel body (no TensorFlow): the same steps on the CPU body
// (counter_apply_cpu.h, run serially) and on the GPU (counter_apply_gpu.cu.h), on random ids with
// duplicates, for every rule option; then its throughput as a fraction of memory bandwidth.
//
// Build: nvcc -std=c++17 -O3 --fmad=false -Xcompiler -ffp-contract=off -I<repo> this.cu -o test
// Exit codes: 0 all passed, 1 a check failed, 77 no CUDA device to run on.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tf_freqsgd/cc/kernels/counter_apply_cpu.h"
#include "tf_freqsgd/cc/kernels/counter_apply_gpu.cu.h"

namespace {

using tf_freqsgd::CounterRule;
using tf_freqsgd::CounterState;

#define CHECK_CUDA(call)                                                                      \
  do {                                                                                        \
    cudaError_t error = (call);                                                               \
    if (error != cudaSuccess) {                                                               \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(error)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

template <typename T>
struct DeviceArray {
  T* data = nullptr;
  size_t size = 0;
  explicit DeviceArray(const std::vector<T>& host) : size(host.size()) {
    CHECK_CUDA(cudaMalloc(&data, std::max<size_t>(1, size) * sizeof(T)));
    if (size) CHECK_CUDA(cudaMemcpy(data, host.data(), size * sizeof(T), cudaMemcpyHostToDevice));
  }
  DeviceArray(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(data); }
  std::vector<T> Read() const {
    std::vector<T> host(size);
    if (size) CHECK_CUDA(cudaMemcpy(host.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
};

// Zipf-like ids: a heavy head, so a batch repeats ids many times, and a long tail.
template <typename Tindex>
std::vector<Tindex> BatchIds(std::mt19937_64& rng, int64_t rows, int n) {
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<Tindex> ids(n);
  for (auto& id : ids) id = static_cast<Tindex>(std::min<int64_t>(rows - 1, rows * std::pow(uniform(rng), 4.0)));
  ids[0] = static_cast<Tindex>(rows - 1);  // the last row is in range
  return ids;
}

std::vector<float> Normal(std::mt19937_64& rng, size_t size) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(size);
  for (auto& v : values) v = normal(rng);
  return values;
}

// Host copies of one table and its row state: count codes without a half-life, log-counts with one.
struct Table {
  std::vector<float> var, accumulator;
  std::vector<int32_t> count_code;
  std::vector<double> log_count;
};

// The largest |gpu - cpu| / max(1, |cpu|) over every array of the table.
double LargestDifference(const Table& cpu, const Table& gpu) {
  double largest = 0.0;
  auto compare = [&largest](const auto& a, const auto& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (a[i] == b[i]) continue;  // (rows never seen hold -inf)
      const double reference = static_cast<double>(a[i]);
      largest = std::max(largest, std::fabs(static_cast<double>(b[i]) - reference) / std::max(1.0, std::fabs(reference)));
    }
  };
  compare(cpu.var, gpu.var);
  compare(cpu.count_code, gpu.count_code);
  compare(cpu.log_count, gpu.log_count);
  compare(cpu.accumulator, gpu.accumulator);
  return largest;
}

struct Case {
  std::string name;
  CounterRule rule;
  bool rowwise_adagrad;
  int64_t rows;
  int64_t dim;
  int batch;
  // Every row's count code at the start (2^31 - 10: counts cross into the float32 range), and the
  // first step's number (past 2^31: no int32 wraps).
  int32_t start_count_code = 0;
  int64_t first_step = 1;
};

// Steps `steps` times on both devices from the same start; returns the largest difference, and
// checks the GPU is deterministic by running it twice.
template <typename Tindex>
bool RunCase(const Case& c, int steps, double tolerance) {
  std::mt19937_64 rng(7);
  const bool decays = c.rule.halflife > 0.0f;
  Table start{Normal(rng, c.rows * c.dim), std::vector<float>(c.rowwise_adagrad ? c.rows : 0, 0.1f),
              std::vector<int32_t>(decays ? 0 : c.rows, c.start_count_code),
              std::vector<double>(decays ? c.rows : 0, -INFINITY)};
  std::vector<std::vector<Tindex>> batches;
  std::vector<std::vector<float>> grads;
  for (int s = 0; s < steps; ++s) {
    batches.push_back(BatchIds<Tindex>(rng, c.rows, c.batch));
    grads.push_back(Normal(rng, static_cast<size_t>(c.batch) * c.dim));
  }
  const float lr = 0.05f, epsilon = 1e-8f;

  Table cpu = start;
  auto data_or_null = [](auto& values) { return values.empty() ? nullptr : values.data(); };
  CounterState cpu_state{data_or_null(cpu.count_code), data_or_null(cpu.log_count),
                         c.rowwise_adagrad ? cpu.accumulator.data() : nullptr};
  auto serial = [](int64_t total, int64_t, auto body) { body(0, total); };
  for (int s = 0; s < steps; ++s) {
    tf_freqsgd::ApplyCounterCpu(c.rule, epsilon, cpu.var.data(), c.dim, cpu_state, lr, c.first_step + s, grads[s].data(),
                                batches[s].data(), c.batch, serial);
  }

  Table gpu_runs[2];
  for (Table& gpu : gpu_runs) {
    DeviceArray<float> var(start.var), accumulator(start.accumulator);
    DeviceArray<int32_t> count_code(start.count_code);
    DeviceArray<double> log_count(start.log_count);
    CounterState state{decays ? nullptr : count_code.data, decays ? log_count.data : nullptr,
                       c.rowwise_adagrad ? accumulator.data : nullptr};
    DeviceArray<char> temp(std::vector<char>(tf_freqsgd::gpu::ApplyCounterTempBytes<Tindex>(c.batch)));
    for (int s = 0; s < steps; ++s) {
      DeviceArray<Tindex> ids(batches[s]);
      DeviceArray<float> grad(grads[s]);
      CHECK_CUDA(tf_freqsgd::gpu::LaunchApplyCounter(c.rule, epsilon, var.data, c.rows, c.dim, state, lr, c.first_step + s,
                                                     grad.data, ids.data, c.batch, temp.data, nullptr));
    }
    CHECK_CUDA(cudaDeviceSynchronize());
    gpu = Table{var.Read(), accumulator.Read(), count_code.Read(), log_count.Read()};
  }
  const double difference = LargestDifference(cpu, gpu_runs[0]);
  const bool deterministic = LargestDifference(gpu_runs[0], gpu_runs[1]) == 0.0;
  const bool ok = difference <= tolerance && deterministic;
  std::printf("%s case=%s ids=int%zu rows=%lld dim=%lld batch=%d steps=%d largest_relative_difference=%.3g "
              "tolerance=%.3g deterministic=%d\n",
              ok ? "PASS" : "FAIL", c.name.c_str(), 8 * sizeof(Tindex), static_cast<long long>(c.rows),
              static_cast<long long>(c.dim), c.batch, steps, difference, tolerance, deterministic);
  return ok;
}

// A batch with an id out of range leaves the table as it was.
bool OutOfRangeLeavesTableUntouched() {
  const int64_t rows = 100, dim = 8;
  std::vector<float> start(rows * dim, 1.0f);
  DeviceArray<float> var(start);
  DeviceArray<int32_t> counter(std::vector<int32_t>(rows, 0));
  DeviceArray<int32_t> ids(std::vector<int32_t>{3, 5, 100, 3});
  DeviceArray<float> grad(std::vector<float>(4 * dim, 1.0f));
  DeviceArray<char> temp(std::vector<char>(tf_freqsgd::gpu::ApplyCounterTempBytes<int32_t>(4)));
  CounterState state{counter.data, nullptr, nullptr};
  CHECK_CUDA(tf_freqsgd::gpu::LaunchApplyCounter(CounterRule{}, 0.0f, var.data, rows, dim, state, 0.1f, 1,
                                                 grad.data, ids.data, 4, temp.data, nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  const bool ok = var.Read() == start && counter.Read() == std::vector<int32_t>(rows, 0);
  std::printf("%s case=out_of_range_id_changes_nothing\n", ok ? "PASS" : "FAIL");
  return ok;
}

double PeakBandwidth() {
  int device = 0, clock_khz = 0, bus_bits = 0;
  CHECK_CUDA(cudaGetDevice(&device));
  CHECK_CUDA(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device));
  CHECK_CUDA(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device));
  return 2.0 * clock_khz * 1e3 * bus_bits / 8.0;  // double data rate
}

double CopyBandwidth(size_t bytes) {
  char *from, *to;
  CHECK_CUDA(cudaMalloc(&from, bytes));
  CHECK_CUDA(cudaMalloc(&to, bytes));
  cudaEvent_t begin, end;
  CHECK_CUDA(cudaEventCreate(&begin));
  CHECK_CUDA(cudaEventCreate(&end));
  CHECK_CUDA(cudaMemcpy(to, from, bytes, cudaMemcpyDeviceToDevice));
  CHECK_CUDA(cudaEventRecord(begin));
  const int repeats = 20;
  for (int r = 0; r < repeats; ++r) CHECK_CUDA(cudaMemcpyAsync(to, from, bytes, cudaMemcpyDeviceToDevice));
  CHECK_CUDA(cudaEventRecord(end));
  CHECK_CUDA(cudaEventSynchronize(end));
  float ms = 0.0f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, begin, end));
  cudaFree(from);
  cudaFree(to);
  return 2.0 * bytes * repeats / (ms * 1e-3);  // a copy reads and writes every byte
}

// Time per step of CounterSGD on a rows x dim table with `batch` Zipf ids; bandwidth counts the
// bytes a step must move: ids and gradient rows read, each distinct row and its counter read and
// written, and the sort's passes over the keys and positions.
void Throughput(int64_t rows, int64_t dim, int batch, double peak, double copy) {
  std::mt19937_64 rng(11);
  std::vector<int64_t> host_ids = BatchIds<int64_t>(rng, rows, batch);
  std::vector<int64_t> sorted = host_ids;
  std::sort(sorted.begin(), sorted.end());
  const int64_t distinct = std::unique(sorted.begin(), sorted.end()) - sorted.begin();
  DeviceArray<float> var(std::vector<float>(rows * dim, 0.5f));
  DeviceArray<int32_t> counter(std::vector<int32_t>(rows, 0));
  DeviceArray<int64_t> ids(host_ids);
  DeviceArray<float> grad(Normal(rng, static_cast<size_t>(batch) * dim));
  DeviceArray<char> temp(std::vector<char>(tf_freqsgd::gpu::ApplyCounterTempBytes<int64_t>(batch)));
  CounterState state{counter.data, nullptr, nullptr};
  CounterRule rule;
  auto step = [&](int s) {
    CHECK_CUDA(tf_freqsgd::gpu::LaunchApplyCounter(rule, 0.0f, var.data, rows, dim, state, 1e-3f, s, grad.data,
                                                   ids.data, batch, temp.data, nullptr));
  };
  for (int s = 1; s <= 10; ++s) step(s);
  cudaEvent_t begin, end;
  CHECK_CUDA(cudaEventCreate(&begin));
  CHECK_CUDA(cudaEventCreate(&end));
  const int repeats = 200;
  CHECK_CUDA(cudaEventRecord(begin));
  for (int s = 0; s < repeats; ++s) step(11 + s);
  CHECK_CUDA(cudaEventRecord(end));
  CHECK_CUDA(cudaEventSynchronize(end));
  float ms = 0.0f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, begin, end));
  const double seconds = ms * 1e-3 / repeats;
  const double bytes = batch * (8.0 + 4.0 * dim) + distinct * (8.0 * dim + 8.0) + 4.0 * batch * (8.0 + 4.0);
  const double achieved = bytes / seconds;
  std::printf("THROUGHPUT rows=%lld dim=%lld batch=%d distinct=%lld step_us=%.1f moved_MB=%.2f GBps=%.1f "
              "fraction_of_peak=%.3f fraction_of_copy=%.3f peak_GBps=%.0f copy_GBps=%.0f\n",
              static_cast<long long>(rows), static_cast<long long>(dim), batch, static_cast<long long>(distinct),
              seconds * 1e6, bytes / 1e6, achieved / 1e9, achieved / peak, achieved / copy, peak / 1e9, copy / 1e9);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP no CUDA device\n");
    return 77;
  }
  CounterRule plain;
  plain.power = 0.0f;  // scale 1: no transcendental, so CPU and GPU must agree to the bit
  CounterRule standard;  // frequency estimate, occurrences, power 0.5
  CounterRule decayed = standard;
  decayed.halflife = 3.0f;
  decayed.count_occurrences = false;
  CounterRule clipped = standard;
  clipped.estimate_frequency = false;
  clipped.min_scale = 0.2f;
  clipped.max_scale = 2.0f;
  clipped.warmup_steps = 2;
  clipped.tail_id_threshold = 2.0f;
  CounterRule decoupled_decay = standard;
  decoupled_decay.weight_decay = 0.01f;
  CounterRule l2_decay = decoupled_decay;
  l2_decay.decoupled_weight_decay = false;

  bool ok = true;
  const double kExact = 0.0, kRelative = 1e-6;
  ok &= RunCase<int32_t>({"power0_exact", plain, false, 5000, 64, 4096}, 5, kExact);
  ok &= RunCase<int64_t>({"power0_exact", plain, false, 5000, 33, 4096}, 5, kExact);
  ok &= RunCase<int32_t>({"standard", standard, false, 5000, 64, 4096}, 5, kRelative);
  ok &= RunCase<int64_t>({"halflife_presence", decayed, false, 3000, 16, 2048}, 6, kRelative);
  ok &= RunCase<int32_t>({"count_clip_warmup_tail", clipped, false, 3000, 7, 2048}, 6, kRelative);
  ok &= RunCase<int64_t>({"decoupled_weight_decay", decoupled_decay, false, 3000, 129, 1024}, 4, kRelative);
  ok &= RunCase<int32_t>({"l2_weight_decay", l2_decay, false, 3000, 1, 1024}, 4, kRelative);
  ok &= RunCase<int32_t>({"rowwise_adagrad", standard, true, 5000, 64, 4096}, 5, kRelative);
  ok &= RunCase<int64_t>({"rowwise_adagrad_halflife_decay", decayed, true, 3000, 48, 2048}, 5, kRelative);
  ok &= RunCase<int64_t>({"counts_past_2^31", standard, false, 3000, 16, 2048, 2147483647 - 10}, 5, kRelative);
  ok &= RunCase<int64_t>({"halflife_at_step_2^32", decayed, true, 3000, 16, 2048, 0, int64_t{1} << 32}, 5,
                         kRelative);
  ok &= OutOfRangeLeavesTableUntouched();

  const double peak = PeakBandwidth();
  const double copy = CopyBandwidth(size_t{1} << 30);
  Throughput(1000000, 64, 8192, peak, copy);
  Throughput(1000000, 64, 65536, peak, copy);
  Throughput(10000000, 16, 65536, peak, copy);
  std::printf(ok ? "ALL PASSED\n" : "SOME FAILED\n");
  return ok ? 0 : 1;
}
