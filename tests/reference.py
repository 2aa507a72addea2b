"""NumPy reference of every tf_freqsgd update rule, written row by row for readability.

It follows the formulas of the optimizers' docstrings, not their code, so that the tests compare
two independent implementations.
"""

import numpy as np


class ReferenceOptimizer:
    """``kind``: "sgd" (CounterSGD, or FrequencySGD with ``frequencies``) or "rowwise_adagrad"."""

    def __init__(
        self,
        shape,
        kind="sgd",
        learning_rate=0.1,
        power=0.5,
        estimate="frequency",
        counting="occurrence",
        min_scale=0.0,
        max_scale=None,
        counter_halflife=None,
        warmup_steps=0,
        tail_id_threshold=0.0,
        weight_decay=0.0,
        weight_decay_mode="decoupled",
        momentum=0.0,
        nesterov=False,
        frequencies=None,
        initial_accumulator_value=0.1,
        epsilon=1e-7,
        cowclip_ratio=None,
        cowclip_min_norm=1e-5,
    ):
        self.kind = kind
        self.learning_rate = learning_rate
        self.power = power
        self.estimate = estimate
        self.counting = counting
        self.min_scale = min_scale
        self.max_scale = np.inf if max_scale is None else max_scale
        self.halflife = counter_halflife
        self.warmup_steps = warmup_steps
        self.tail_id_threshold = tail_id_threshold
        self.weight_decay = weight_decay
        self.weight_decay_mode = weight_decay_mode
        self.momentum = momentum
        self.nesterov = nesterov
        self.frequencies = None if frequencies is None else np.asarray(frequencies, np.float64)
        self.epsilon = epsilon
        self.cowclip_ratio = cowclip_ratio
        self.cowclip_min_norm = cowclip_min_norm
        rows = shape[0]
        self.counter = np.zeros(rows)
        self.last_seen = np.zeros(rows)
        self.accumulator = np.full(rows, float(initial_accumulator_value))
        self.m = np.zeros(shape)
        self.t = 0

    def current_counts(self):
        """Every row's counter decayed to the last step (as it is without a half-life)."""
        if self.halflife is None:
            return self.counter.copy()
        return 2.0 ** (-(self.t - self.last_seen) / self.halflife) * self.counter

    def _lr(self):
        lr = self.learning_rate
        return lr(self.t - 1) if callable(lr) else lr

    def _normalizer(self):
        if self.halflife is None:
            return float(self.t)
        return sum(2.0 ** (-j / self.halflife) for j in range(self.t))

    def _count_and_frequency(self, k, occurrences):
        if self.frequencies is not None:
            given = self.frequencies[k]
            p = given / self.frequencies.max() if self.estimate == "count" else given
            return given, p
        increment = occurrences if self.counting == "occurrence" else 1.0
        if self.halflife is None:
            self.counter[k] += increment
        else:
            elapsed = self.t - self.last_seen[k]
            self.counter[k] = increment + 2.0 ** (-elapsed / self.halflife) * self.counter[k]
            self.last_seen[k] = self.t
        return self.counter[k], self.counter[k] / self._normalizer()

    def _scale(self, count, p):
        f = p if self.estimate == "frequency" else count
        if self.t <= self.warmup_steps or count <= self.tail_id_threshold:
            return 1.0
        return float(np.clip(f ** -self.power, self.min_scale, self.max_scale))

    def _cowclip(self, g, occurrences, w):
        """CowClip (arXiv 2204.06240): ``g`` clipped to the norm ``occurrences * max(r * ||w||, zeta)``."""
        if self.cowclip_ratio is None:
            return g
        clip = occurrences * max(self.cowclip_ratio * np.linalg.norm(w), self.cowclip_min_norm)
        norm = np.linalg.norm(g)
        return g * (clip / norm) if norm > clip else g

    def _direction(self, k, g):
        if self.momentum == 0:
            return g
        self.m[k] = self.momentum * self.m[k] + g
        return g + self.momentum * self.m[k] if self.nesterov else self.m[k]

    def _base_rate(self, k, g, lr):
        if self.kind == "sgd":
            return lr
        self.accumulator[k] += np.mean(np.square(g))
        return lr / (np.sqrt(self.accumulator[k]) + self.epsilon)

    def _decay(self, lr, rate, p):
        if self.weight_decay == 0:
            return 1.0
        missed_steps = 1.0 if self.t <= self.warmup_steps else max(1.0, 1.0 / p)
        decay_rate = rate if self.weight_decay_mode == "l2" else lr
        return max(0.0, 1.0 - decay_rate * self.weight_decay) ** missed_steps

    def sparse_step(self, weights, ids, values):
        """One step with a raw sparse gradient (ids may repeat); returns the new weights."""
        self.t += 1
        lr = self._lr()
        w = np.array(weights, np.float64)
        ids = np.asarray(ids)
        values = np.asarray(values, np.float64)
        for k in np.unique(ids):
            occurrences = float(np.sum(ids == k))
            g = self._cowclip(values[ids == k].sum(axis=0), occurrences, w[k])
            count, p = self._count_and_frequency(k, occurrences)
            rate = self._base_rate(k, g, lr) * self._scale(count, p)
            w[k] = self._decay(lr, rate, p) * w[k] - rate * self._direction(k, g)
        return w

    def dense_step(self, weights, gradient):
        """Dense gradients: SGD (with momentum) or row-wise Adagrad, no frequency scale."""
        self.t += 1
        lr = self._lr()
        w = np.array(weights, np.float64)
        g = np.asarray(gradient, np.float64)
        if self.kind == "sgd":
            rate, direction = lr, self._direction(slice(None), g)
        else:
            squares = np.square(g).reshape(len(g), -1).mean(axis=1) if g.ndim > 1 else np.square(g)
            self.accumulator += squares
            rate = (lr / (np.sqrt(self.accumulator) + self.epsilon)).reshape((-1,) + (1,) * (g.ndim - 1))
            direction = g
        decay = 1.0
        if self.weight_decay:
            decay_rate = rate if self.weight_decay_mode == "l2" else lr
            decay = np.maximum(0.0, 1.0 - decay_rate * self.weight_decay)
        return decay * w - rate * direction
