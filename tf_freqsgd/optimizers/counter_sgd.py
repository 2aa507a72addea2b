"""CounterSGD: CF-SGD, frequency-aware SGD with frequencies counted online (its definition; the
Keras classes are ``keras2.CounterSGD`` and ``keras3.CounterSGD``)."""

from tf_freqsgd.optimizers.counter import CounterSpec
from tf_freqsgd.optimizers.frequency_rule import FrequencyRule


class CounterSGDDefinition:
    r"""Counter-based frequency-aware SGD (CF-SGD, arXiv 2110.04844; FBGEMM counter modes).

    Each embedding row ``k`` keeps one counter ``c_k`` (4 bytes; 8 with a half-life: see
    ``tf_freqsgd.optimizers.counter``) instead of Adagrad's ``d`` floats.
    At step ``t``, for each row in the batch (ids de-duplicated, gradient rows summed):

    .. math::

        g_k &\leftarrow g_k \cdot \min\Big(1,\ \frac{o_k \max(r\, \|w_k\|_2,\ \zeta)}{\|g_k\|_2}\Big)
            \qquad (\text{CowClip, with } r = \texttt{cowclip\_ratio}) \\
        c_k &\leftarrow n_k + 2^{-(t - s_k)/h}\, c_k \qquad (\text{no decay: } c_k \leftarrow c_k + n_k) \\
        p_k &= c_k / N_t, \qquad N_t = t \;\; (\text{decay: } N_t = \textstyle\sum_{j<t} 2^{-j/h}) \\
        f_k &= p_k \;\; (\texttt{estimate="frequency"}) \quad\text{or}\quad c_k \;\; (\texttt{"count"}) \\
        \eta_k &= \eta_t \cdot \mathrm{clip}(f_k^{-\text{power}},\ \text{min\_scale},\ \text{max\_scale}) \\
        w_k &\leftarrow \rho_k\, w_k - \eta_k\, g_k, \qquad
        \rho_k = \max(0,\ 1 - \eta_{wd}\lambda)^{\max(1,\ 1/p_k)}

    ``n_k`` is the number of occurrences of ``k`` in the batch (``counting="occurrence"``) or 1
    (``"presence"``); ``s_k`` is the step ``k`` was last seen (folded into the stored log-count when
    ``counter_halflife`` ``h`` is set). ``eta_k = eta_t`` during the first ``warmup_steps`` steps and for tail rows with
    ``c_k <= tail_id_threshold``. ``eta_wd`` is ``eta_t`` (``weight_decay_mode="decoupled"``) or
    ``eta_k`` (``"l2"``); the power ``max(1, 1/p_k)`` catches up on the steps the row was absent.
    At power 0.5 with ``estimate="count"`` this is FBGEMM's ``lr / sqrt(c)``.
    CowClip (arXiv 2204.06240, FBGEMM's ``COWCLIP``; off by default) first clips each summed
    gradient row to a bound proportional to ``o_k``, the occurrences of ``k`` in the batch (whatever
    ``counting`` says), and to the row's weight norm (at least ``zeta = cowclip_min_norm``); rows under
    their bound are unchanged.

    Dense gradients (non-embedding variables) get plain SGD with optional momentum and Nesterov,
    unclipped. A sparse step reads and writes the batch's rows only: O(batch), never O(table). On
    JAX every gradient is dense: each variable is updated row by row, a row counting as present
    (``n_k = 1``; for CowClip ``o_k = 1``, every variable's rows clipped) when its gradient row is
    non-zero; a row present at every step gets scale 1, plain SGD.

    Args:
      learning_rate: base rate ``eta_t``: a float, a schedule or a callable.
      power: exponent of the frequency in the rate scale (0 gives plain SGD).
      estimate: ``"frequency"`` (rate follows ``c_k / N_t``) or ``"count"`` (follows ``c_k``).
      counting: ``"occurrence"`` or ``"presence"``.
      min_scale, max_scale: clamps of the rate scale (``max_scale=None``: no upper clamp).
      counter_halflife: steps after which an old count weighs half; None for no decay.
      admission_count: TFRA dynamic tables only: an id gets an embedding row once its counter
        reaches this; until then its lookups return the table's default and its row is not kept.
      warmup_steps: steps at the start during which every scale is 1.
      tail_id_threshold: rows whose count is at most this use the base rate.
      weight_decay: ``lambda``; weight_decay_mode: ``"decoupled"`` or ``"l2"``.
      momentum, nesterov: for dense gradients, and lazily per row for sparse ones.
      cowclip_ratio: CowClip's ``r`` (> 0): the clip bound per occurrence relative to the row's
        weight norm; None (the default) for no CowClip. The fused op lacks it: the TensorFlow ops run.
      cowclip_min_norm: CowClip's ``zeta`` (>= 0): the bound per occurrence for rows of small norm.
      non_finite: a step with a non-finite gradient value raises (``"raise"``, naming the variable)
        or is skipped (``"skip"``); either way nothing is written and ``t`` does not advance.
      **kwargs: the Keras optimizer arguments (clipnorm, clipvalue, global_clipnorm, use_ema, ...).
    """

    def __init__(
        self,
        learning_rate=0.1,
        power=0.5,
        estimate="frequency",
        counting="occurrence",
        min_scale=0.0,
        max_scale=None,
        counter_halflife=None,
        admission_count=None,
        warmup_steps=0,
        tail_id_threshold=0.0,
        weight_decay=0.0,
        weight_decay_mode="decoupled",
        momentum=0.0,
        nesterov=False,
        cowclip_ratio=None,
        cowclip_min_norm=1e-5,
        name="CounterSGD",
        **kwargs,
    ):
        rule = FrequencyRule(power=power, estimate=estimate, min_scale=min_scale, max_scale=max_scale,
                             warmup_steps=warmup_steps, tail_id_threshold=tail_id_threshold,
                             weight_decay=weight_decay, weight_decay_mode=weight_decay_mode,
                             cowclip_ratio=cowclip_ratio, cowclip_min_norm=cowclip_min_norm)
        counter_spec = CounterSpec(counting=counting, halflife=counter_halflife, admission_count=admission_count)
        super().__init__(learning_rate, rule, name, counter_spec=counter_spec, momentum=momentum, nesterov=nesterov,
                         **kwargs)

    def fused_op_applies(self, slots):
        """Whether the fused op can make the step: not with momentum or CowClip, which it lacks."""
        return "momentum" not in slots and not self.rule.clips

    def _fused_apply(self, ops, variable, slots, gradient, lr):
        """One sparse step with the fused op (TensorFlow ``slots``), or False (``fused_op_applies``)."""
        if not self.fused_op_applies(slots):
            return False
        ops.resource_sparse_apply_counter_sgd(variable.handle, slots["counter"].handle, lr, self.step, gradient.values,
                                              gradient.indices, **self.fused_attributes(variable))
        return True
