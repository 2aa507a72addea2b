"""The array operations the rule core is written in, for each backend it runs on.

``counter`` and ``frequency_rule`` take one of these namespaces as ``xp``: ``TENSORFLOW`` for the
tf_keras front and Keras 3 on TensorFlow, ``jax_ops()`` for Keras 3 on JAX. Each holds the same
names with the same meaning; only these few the rules need.
"""

import functools

import numpy as np
import tensorflow as tf


class TensorFlow:
    float32, float64, int32, int64, uint64 = tf.float32, tf.float64, tf.int32, tf.int64, tf.uint64
    cast = staticmethod(tf.cast)
    where = staticmethod(tf.where)
    minimum = staticmethod(tf.minimum)
    maximum = staticmethod(tf.maximum)
    pow = staticmethod(tf.pow)
    exp = staticmethod(tf.exp)
    log = staticmethod(tf.math.log)
    sqrt = staticmethod(tf.sqrt)
    mean = staticmethod(tf.reduce_mean)
    sum = staticmethod(tf.reduce_sum)
    all = staticmethod(tf.reduce_all)
    any = staticmethod(tf.reduce_any)
    isfinite = staticmethod(tf.math.is_finite)
    stack = staticmethod(tf.stack)
    arange = staticmethod(tf.range)
    expm1 = staticmethod(tf.math.expm1)
    logical_and = staticmethod(tf.logical_and)
    ones_like = staticmethod(tf.ones_like)
    reshape = staticmethod(tf.reshape)
    bitwise_and = staticmethod(tf.bitwise.bitwise_and)
    bitwise_or = staticmethod(tf.bitwise.bitwise_or)
    bitwise_xor = staticmethod(tf.bitwise.bitwise_xor)
    right_shift = staticmethod(tf.bitwise.right_shift)
    bitcast = staticmethod(tf.bitcast)
    nextafter = staticmethod(tf.math.nextafter)

    @staticmethod
    def constant(value, dtype):
        return tf.constant(value, dtype)

    @staticmethod
    def full_like(x, value):
        return tf.fill(tf.shape(x), tf.cast(value, x.dtype))


TENSORFLOW = TensorFlow()


@functools.lru_cache(maxsize=None)
def jax_ops():
    """The namespace for JAX arrays. The counters need 64-bit types: ``jax_enable_x64``."""
    import jax
    import jax.numpy as jnp

    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "tf_freqsgd's counters need 64-bit arithmetic on JAX (float64 log-counts, exact counts past "
            "2**24): call jax.config.update('jax_enable_x64', True) before building the optimizer.")

    class Jax:
        float32, float64, int32, int64, uint64 = jnp.float32, jnp.float64, jnp.int32, jnp.int64, jnp.uint64
        where = staticmethod(jnp.where)
        minimum = staticmethod(jnp.minimum)
        maximum = staticmethod(jnp.maximum)
        pow = staticmethod(jnp.power)
        exp = staticmethod(jnp.exp)
        log = staticmethod(jnp.log)
        sqrt = staticmethod(jnp.sqrt)
        mean = staticmethod(jnp.mean)
        sum = staticmethod(jnp.sum)
        all = staticmethod(jnp.all)
        any = staticmethod(jnp.any)
        isfinite = staticmethod(jnp.isfinite)
        stack = staticmethod(jnp.stack)
        arange = staticmethod(jnp.arange)
        expm1 = staticmethod(jnp.expm1)
        logical_and = staticmethod(jnp.logical_and)
        ones_like = staticmethod(jnp.ones_like)
        reshape = staticmethod(jnp.reshape)
        bitwise_and = staticmethod(jnp.bitwise_and)
        bitwise_or = staticmethod(jnp.bitwise_or)
        bitwise_xor = staticmethod(jnp.bitwise_xor)
        right_shift = staticmethod(jnp.right_shift)
        bitcast = staticmethod(jax.lax.bitcast_convert_type)
        nextafter = staticmethod(jnp.nextafter)
        full_like = staticmethod(jnp.full_like)

        @staticmethod
        def cast(x, dtype):
            return jnp.asarray(x).astype(dtype)

        @staticmethod
        def constant(value, dtype):
            return jnp.asarray(np.asarray(value, dtype=jnp.dtype(dtype)))

    return Jax()
