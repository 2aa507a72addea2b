"""The GradientChecks op against NumPy: finite flags of every float dtype (one thread and sharded),
the id ranges of both id dtypes, empty inputs; and the step's checks built on it."""

import numpy as np
import pytest
import tensorflow as tf

from tf_freqsgd import ops
from tf_freqsgd.optimizers import step_checks

pytestmark = pytest.mark.skipif(not ops.custom_op_available(), reason="the fused op is not built")


def gradient_checks(values, ids):
    return ops.loader._load()[0].gradient_checks(values=values, ids=ids)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16, tf.float32, tf.float64])
@pytest.mark.parametrize("size", [7, 300_001])  # one thread; sharded over the CPU's threads
def test_finite_flags_match_numpy(dtype, size):
    rng = np.random.default_rng(size)
    clean = rng.normal(size=size)
    cases = [clean]
    for bad in (np.inf, -np.inf, np.nan):
        for position in (0, size // 2, size - 1):
            case = clean.copy()
            case[position] = bad
            cases.append(case)
    largest = clean.copy()
    largest[-1] = dtype.max  # finite, and all exponent bits but the lowest set
    cases.append(largest)
    finite, id_range = gradient_checks([tf.cast(case, dtype) for case in cases], [])
    expected = [bool(np.isfinite(tf.cast(case, dtype).numpy().astype(np.float64)).all()) for case in cases]
    assert finite.numpy().tolist() == expected and expected[0] and expected[-1] and not any(expected[1:-1])
    assert id_range.shape == (0, 2)


def test_id_ranges_match_numpy_for_both_id_dtypes():
    rng = np.random.default_rng(0)
    ids = [rng.integers(-5, 100, 1000).astype(np.int64), rng.integers(0, 2**31 - 1, 33).astype(np.int32),
           np.array([], np.int64), np.array([2**40, -(2**40)], np.int64)]
    finite, id_range = gradient_checks([tf.zeros([0, 4])], [tf.constant(i) for i in ids])
    assert finite.numpy().tolist() == [True]
    expected = [[int(i.min()), int(i.max())] if i.size else [0, -1] for i in ids]
    assert id_range.numpy().tolist() == expected


@pytest.mark.parametrize("values, ids, finite_expected, ids_ok_expected", [
    ([[1.0, 2.0], [3.0, 4.0]], [0, 9], True, True),
    ([[1.0, np.nan], [3.0, 4.0]], [0, 9], False, True),
    ([[1.0, 2.0], [3.0, np.inf]], [0, 10], False, False),
    ([[1.0, 2.0], [3.0, 4.0]], [-1, 3], True, False),
    (np.zeros([0, 2]), np.zeros([0], np.int64), True, True),
])
def test_step_conditions_are_the_same_from_the_op_and_from_tensorflow(values, ids, finite_expected, ids_ok_expected):
    table = tf.Variable(tf.zeros([10, 2]))
    gradient = tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(ids, tf.int64), tf.constant([10, 2]))
    for module in (ops.loader._load()[0], None):
        required, finite = step_checks.step_conditions("CounterSGD", [(gradient, table)], tf.constant(0.0), ops=module)
        assert [bool(condition) for condition, _ in finite] == [finite_expected]
        assert [bool(condition) for condition, _ in required] == [ids_ok_expected]
        assert "smallest and largest id" in required[0][1][0]
