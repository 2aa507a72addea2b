"""The updates of the frequency-aware optimizers, written once for every front and backend.

An update reads and writes one variable's rows through a ``RowStore``: ``read(name, ids)`` /
``write(name, values, ids)`` of the state ``"weights"`` (the variable), ``"momentum"`` or
``"accumulator"``, the batch's rows ``ids`` (unique), or every row when ``ids`` is None. The
tf_keras front and Keras 3 on TensorFlow store rows in ``tf.Variable`` s (or TFRA tables keyed by id);
Keras 3 on JAX in Keras variables, whole arrays at a time. ``xp`` is the backend's array namespace
(``array_ops``). The maths (per row ``k`` of the batch, ``g_k`` its summed gradient):

* ScaledSGD (``CounterSGD``, ``FrequencySGD``): ``w_k <- rho_k * w_k - lr * scale_k * d_k``, ``d`` the
  gradient or, with momentum, ``m <- mu * m + g``, ``d = m`` (``g + mu * m`` with Nesterov), updated
  when the row appears. Dense gradients: the same with ``scale = 1``.
* Row-wise Adagrad: ``G_k <- G_k + mean_j g_kj^2``, ``w_k <- rho_k * w_k - lr / (sqrt(G_k) + eps)
  * scale_k * g_k``. Dense gradients: the same with ``scale = 1``.

With CowClip on, a sparse update first scales each ``g_k`` down to the norm
``clip_k = o_k * max(r * ||w_k||_2, zeta)`` when it is larger (``o_k``: the id's occurrences in the
batch), before momentum or the accumulator sees it. ``rho_k``, ``scale_k`` and the CowClip factor
come from ``frequency_rule.FrequencyRule``.
"""


def per_row(xp, values, like):
    """A per-row vector shaped to broadcast over the trailing dimensions of ``like``."""
    return xp.reshape(values, [-1] + [1] * (len(like.shape) - 1))


def _mean_square_per_row(xp, g):
    if len(g.shape) < 2:
        return g * g
    return xp.reshape(xp.mean(g * g, axis=tuple(range(1, len(g.shape)))), [-1])


def _norm_per_row(xp, x, like):
    """``||x_k||_2`` of each row of ``x``, whose rank is ``like``'s (TFRA's rows of weights come
    without a static shape)."""
    if len(like.shape) < 2:
        return xp.sqrt(x * x)
    return xp.reshape(xp.sqrt(xp.sum(x * x, axis=tuple(range(1, len(like.shape))))), [-1])


class Update:
    """The part of an update every optimizer shares: the rule, its CowClip and its weight decay."""

    def __init__(self, rule, decays):
        self.rule = rule
        self.decays = decays  # whether this variable gets weight decay

    def gradient_rows(self, xp, store, ids, rows, occurrences):
        """The batch's summed gradient rows as float32, clipped by CowClip when it is on."""
        g = xp.cast(rows, xp.float32)
        if not self.rule.clips:
            return g
        weights = xp.cast(store.read("weights", ids), xp.float32)
        factor = self.rule.clip_factor(xp, _norm_per_row(xp, g, g), _norm_per_row(xp, weights, g),
                                       occurrences)
        return per_row(xp, factor, g) * g

    def decay_factor(self, xp, lr, row_rate, frequency, step):
        """Per-row factor of a sparse step, or None."""
        if not self.decays:
            return None
        return self.rule.decay_factor(xp, self.rule.decay_rate(lr, row_rate), frequency, step)

    def dense_decay_factor(self, xp, lr, rate):
        if not self.decays:
            return None
        return xp.maximum(1.0 - self.rule.decay_rate(lr, rate) * self.rule.weight_decay, 0.0)


class ScaledSGDUpdate(Update):
    def __init__(self, rule, decays, momentum=0.0, nesterov=False):
        super().__init__(rule, decays)
        self.momentum = momentum
        self.nesterov = nesterov

    def _direction(self, xp, store, g, ids):
        if not self.momentum:
            return g
        m = self.momentum * xp.cast(store.read("momentum", ids), xp.float32) + g
        store.write("momentum", m, ids)
        return g + self.momentum * m if self.nesterov else m

    def sparse(self, xp, store, ids, rows, occurrences, counts, frequency, lr, step):
        g = self.gradient_rows(xp, store, ids, rows, occurrences)
        rate = lr * self.rule.rate_scale(xp, counts, frequency, step)
        decay = self.decay_factor(xp, lr, rate, frequency, step)
        step_rows = per_row(xp, rate, g) * self._direction(xp, store, g, ids)
        if decay is None:
            store.subtract("weights", step_rows, ids)
        else:
            weights = xp.cast(store.read("weights", ids), xp.float32)
            store.write("weights", per_row(xp, decay, g) * weights - step_rows, ids)

    def dense(self, xp, store, gradient, lr):
        g = xp.cast(gradient, xp.float32)
        weights = xp.cast(store.read("weights"), xp.float32)
        decay = self.dense_decay_factor(xp, lr, lr)
        if decay is not None:
            weights = decay * weights
        store.write("weights", weights - lr * self._direction(xp, store, g, None))


class RowwiseAdagradUpdate(Update):
    def __init__(self, rule, decays, epsilon):
        super().__init__(rule, decays)
        self.epsilon = epsilon

    def _adagrad_rate(self, xp, store, g, ids, lr):
        """Adds the rows' mean squared gradient to ``G`` and returns ``lr / (sqrt(G) + eps)``."""
        total = store.read("accumulator", ids) + _mean_square_per_row(xp, g)
        store.write("accumulator", total, ids)
        return lr / (xp.sqrt(total) + self.epsilon)

    def sparse(self, xp, store, ids, rows, occurrences, counts, frequency, lr, step):
        g = self.gradient_rows(xp, store, ids, rows, occurrences)
        rate = self._adagrad_rate(xp, store, g, ids, lr) * self.rule.rate_scale(xp, counts, frequency, step)
        decay = self.decay_factor(xp, lr, rate, frequency, step)
        weights = xp.cast(store.read("weights", ids), xp.float32)
        if decay is not None:
            weights = per_row(xp, decay, g) * weights
        store.write("weights", weights - per_row(xp, rate, g) * g, ids)

    def dense(self, xp, store, gradient, lr):
        g = xp.cast(gradient, xp.float32)
        rate = self._adagrad_rate(xp, store, g, None, lr)
        if len(g.shape):
            rate = per_row(xp, rate, g)
        weights = xp.cast(store.read("weights"), xp.float32)
        decay = self.dense_decay_factor(xp, lr, rate)
        if decay is not None:
            weights = decay * weights
        store.write("weights", weights - rate * g)
