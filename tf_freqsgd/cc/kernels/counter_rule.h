// The per-row math of tf_freqsgd's counter and frequency rule (tf_freqsgd/optimizers/counter.py
// and frequency_rule.py), free of TensorFlow so that the CPU kernel, the GPU kernel and a standalone CUDA test share it.
#ifndef TF_FREQSGD_CC_KERNELS_COUNTER_RULE_H_
#define TF_FREQSGD_CC_KERNELS_COUNTER_RULE_H_

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define FREQSGD_HOST_DEVICE __host__ __device__
#else
#define FREQSGD_HOST_DEVICE
#endif

namespace tf_freqsgd {

struct CounterRule {
  bool count_occurrences = true;  // else one per step in which the row appears
  float halflife = 0.0f;          // <= 0: no decay
  bool estimate_frequency = true; // rate follows c/N_t, else the raw count c
  float power = 0.5f;
  float min_scale = 0.0f;
  float max_scale = -1.0f;  // < 0: no upper clamp
  int64_t warmup_steps = 0;
  float tail_id_threshold = 0.0f;
  float weight_decay = 0.0f;
  bool decoupled_weight_decay = true;  // else "l2": decay goes through the row's rate
};

// Per-row state of one table. Without a half-life `count_code` holds the integer counts (see
// DecodeCount); with one, `log_count` holds ln(c) + s ln2/h, the log-count referred to step 0 (see
// UpdateCounter); the other is null. `accumulator` is null for CounterSGD (non-null: row-wise
// Adagrad).
struct CounterState {
  int32_t* count_code;
  double* log_count;
  float* accumulator;
};

constexpr double kLn2 = 0.69314718055994530942;
// Counts below this are stored as themselves; from it on, as float32 bits under the sign bit.
constexpr double kExactCountLimit = 2147483648.0;

FREQSGD_HOST_DEVICE inline uint32_t FloatBits(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
#endif
}

FREQSGD_HOST_DEVICE inline float BitsFloat(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

// A 32-bit hash of (row id, step): splitmix64's finaliser.
FREQSGD_HOST_DEVICE inline uint32_t DitherBits(int64_t id, int64_t step) {
  uint64_t x = static_cast<uint64_t>(id) * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step);
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  x ^= x >> 31;
  return static_cast<uint32_t>(x >> 32);
}

// `value` to float32 with unbiased rounding: the float32 above with probability equal to the
// distance from the one below, in units of their gap, decided by `dither`.
FREQSGD_HOST_DEVICE inline float RoundUnbiased(double value, uint32_t dither) {
  float below = static_cast<float>(value);
  if (static_cast<double>(below) > value) below = nextafterf(below, 0.0f);
  const float above = nextafterf(below, INFINITY);
  const double fraction = (value - static_cast<double>(below)) /
                          (static_cast<double>(above) - static_cast<double>(below));
  return static_cast<double>(dither) * 0x1p-32 < fraction ? above : below;
}

// Counts without a half-life are integers, one int32 a row: a code >= 0 is the count itself (exact
// to 2^31); a negative code holds, in its low 31 bits, the float32 bits of a count >= 2^31.
FREQSGD_HOST_DEVICE inline double DecodeCount(int32_t code) {
  if (code >= 0) return static_cast<double>(code);
  return static_cast<double>(BitsFloat(static_cast<uint32_t>(code) & 0x7FFFFFFFu));
}

FREQSGD_HOST_DEVICE inline int32_t EncodeCount(double count, uint32_t dither) {
  if (count < kExactCountLimit) return static_cast<int32_t>(count);
  return static_cast<int32_t>(FloatBits(RoundUnbiased(count, dither)) | 0x80000000u);
}

// ln 2 / h, with h as the op's float attribute holds it.
FREQSGD_HOST_DEVICE inline double DecayRate(const CounterRule& rule) {
  return kLn2 / static_cast<double>(rule.halflife);
}

// N_t: the counter of a row present at every one of the `step` steps.
FREQSGD_HOST_DEVICE inline double StepNormalizer(const CounterRule& rule, int64_t step) {
  const double t = static_cast<double>(step);
  if (rule.halflife <= 0.0f) return t;
  // (1 - 2^(-t/h)) / (1 - 2^(-1/h)) with expm1, as the Python rule: 1 - 2^(-1/h) cancels badly.
  return -expm1(-DecayRate(rule) * t) / -expm1(-DecayRate(rule));
}

FREQSGD_HOST_DEVICE inline bool Adjusting(const CounterRule& rule, int64_t step) {
  return step > rule.warmup_steps;
}

// clip(f^-power, min_scale, max_scale); 1 in warm-up and for tail rows.
FREQSGD_HOST_DEVICE inline float RateScale(const CounterRule& rule, float count, float frequency,
                                           int64_t step) {
  if (!(count > rule.tail_id_threshold && Adjusting(rule, step))) return 1.0f;
  const float f = rule.estimate_frequency ? frequency : count;
  float scale = powf(f, -rule.power);
  scale = fmaxf(scale, rule.min_scale);
  if (rule.max_scale >= 0.0f) scale = fminf(scale, rule.max_scale);
  return scale;
}

// max(0, 1 - decay_rate * weight_decay) ^ max(1, 1/p), exponent 1 in warm-up.
FREQSGD_HOST_DEVICE inline float DecayFactor(const CounterRule& rule, float base_rate, float row_rate,
                                             float frequency, int64_t step) {
  const float decay_rate = rule.decoupled_weight_decay ? base_rate : row_rate;
  const float missed_steps = Adjusting(rule, step) ? fmaxf(1.0f / frequency, 1.0f) : 1.0f;
  const float base = fmaxf(1.0f - decay_rate * rule.weight_decay, 0.0f);
  return powf(base, missed_steps);
}

// Counts `occurrences` appearances of row `id` at `step`: c <- n + 2^(-(t - s)/h) c, or c + n
// without decay. Returns the row's new count, before the stored count's rounding past 2^31.
// With decay, mu = ln(c) + s r (r = ln2/h) is stored: the count at step t is exp(mu - t r), with no
// last-seen step to keep; a row never seen holds -inf.
FREQSGD_HOST_DEVICE inline double UpdateCounter(const CounterRule& rule, const CounterState& state,
                                                int64_t id, int64_t occurrences, int64_t step) {
  const double increment = rule.count_occurrences ? static_cast<double>(occurrences) : 1.0;
  if (rule.halflife <= 0.0f) {
    const double count = DecodeCount(state.count_code[id]) + increment;
    state.count_code[id] = EncodeCount(count, DitherBits(id, step));
    return count;
  }
  const double reference = static_cast<double>(step) * DecayRate(rule);
  const double count = increment + exp(state.log_count[id] - reference);
  state.log_count[id] = log(count) + reference;
  return count;
}

// lr * scale for CounterSGD; lr * scale / (sqrt(G) + epsilon) for row-wise Adagrad, whose
// accumulator G first gains the mean square of the row's summed gradient.
FREQSGD_HOST_DEVICE inline float RowRate(const CounterRule& rule, const CounterState& state, int64_t id,
                                         float lr, float epsilon, float mean_square, float count,
                                         float frequency, int64_t step) {
  float row_rate = lr;
  if (state.accumulator) {
    state.accumulator[id] += mean_square;
    row_rate = lr / (sqrtf(state.accumulator[id]) + epsilon);
  }
  return row_rate * RateScale(rule, count, frequency, step);
}

}  // namespace tf_freqsgd

#endif  // TF_FREQSGD_CC_KERNELS_COUNTER_RULE_H_
