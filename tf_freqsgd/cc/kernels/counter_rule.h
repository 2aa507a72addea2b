// The per-row math of tf_freqsgd's frequency rule (tf_freqsgd/optimizers/frequency_rule.py),
// free of TensorFlow so that the CPU kernel, the GPU kernel and a standalone CUDA test share it.
#ifndef TF_FREQSGD_CC_KERNELS_COUNTER_RULE_H_
#define TF_FREQSGD_CC_KERNELS_COUNTER_RULE_H_

#include <cmath>
#include <cstdint>

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

// Per-row state of one table; `last_seen` is null without a half-life and `accumulator` null for
// CounterSGD (non-null: row-wise Adagrad).
struct CounterState {
  float* counter;
  int32_t* last_seen;
  float* accumulator;
};

// N_t: the counter of a row present at every one of the `step` steps.
FREQSGD_HOST_DEVICE inline float StepNormalizer(const CounterRule& rule, int64_t step) {
  const float t = static_cast<float>(step);
  if (rule.halflife <= 0.0f) return t;
  // (1 - 2^(-t/h)) / (1 - 2^(-1/h)) with expm1, as the Python rule: 1 - 2^(-1/h) cancels badly.
  const float decay_rate = static_cast<float>(0.69314718055994530942 / rule.halflife);
  const float per_step = static_cast<float>(-expm1(-0.69314718055994530942 / rule.halflife));
  return -expm1f(-decay_rate * t) / per_step;
}

// c <- n + 2^(-(t - s)/h) c, or c + n without decay.
FREQSGD_HOST_DEVICE inline float NewCount(const CounterRule& rule, float previous, int64_t last_seen,
                                          float occurrences, int64_t step) {
  const float increment = rule.count_occurrences ? occurrences : 1.0f;
  if (rule.halflife <= 0.0f) return previous + increment;
  const float elapsed = static_cast<float>(step) - static_cast<float>(last_seen);
  const float decay_rate = static_cast<float>(0.69314718055994530942 / rule.halflife);
  return increment + expf(-decay_rate * elapsed) * previous;
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

// Counts `occurrences` appearances of row `id` at `step`; returns the row's new counter.
FREQSGD_HOST_DEVICE inline float UpdateCounter(const CounterRule& rule, const CounterState& state,
                                               int64_t id, float occurrences, int64_t step) {
  const int64_t last_seen = state.last_seen ? state.last_seen[id] : 0;
  const float count = NewCount(rule, state.counter[id], last_seen, occurrences, step);
  state.counter[id] = count;
  if (state.last_seen) state.last_seen[id] = static_cast<int32_t>(step);
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
