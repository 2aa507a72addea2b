"""Validation of user arguments, alike for Python numbers, NumPy scalars and 0-d tensors.

Every check raises ``ValueError`` naming the argument and the value it got. Bools are refused
everywhere a number is meant (``True`` is not a count), and so are non-finite values.
"""

import math

import numpy as np

# The largest float32: a rate, decay or clamp beyond it becomes inf in the update.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fail(name, expected, value):
    raise ValueError(f"`{name}` must be {expected}; got {value!r}.")


def _scalar(name, value, expected):
    """The Python scalar held by ``value`` (a number, a NumPy scalar or 0-d array, or an eager 0-d
    tensor or variable), or an error."""
    if hasattr(value, "numpy") and callable(value.numpy):
        try:
            value = value.numpy()
        except (AttributeError, NotImplementedError, ValueError):
            _fail(name, f"{expected} known when the optimizer is made (not a symbolic tensor)", value)
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            _fail(name, f"{expected} (a scalar)", value)
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(name, expected, value)
    return value.item() if isinstance(value, np.generic) else value


def number(name, value, minimum=None, inclusive=True, maximum=FLOAT32_MAX, allow_none=False):
    """``value`` as a finite Python float in ``[minimum, maximum]`` (``(minimum, ...`` when not
    ``inclusive``); None passes through when ``allow_none``."""
    if value is None and allow_none:
        return None
    bound = "" if minimum is None else f" {'>=' if inclusive else '>'} {minimum}"
    expected = f"a finite number{bound}"
    if maximum is not None:
        expected += f" and <= {maximum:g}"
    value = float(_scalar(name, value, expected))
    ok = math.isfinite(value) and (maximum is None or value <= maximum)
    if minimum is not None:
        ok = ok and (value >= minimum if inclusive else value > minimum)
    if not ok:
        _fail(name, expected, value)
    return value


def integer(name, value, minimum=0, allow_none=False):
    """``value`` as a Python int ``>= minimum`` (an integral float such as ``1e6`` counts)."""
    if value is None and allow_none:
        return None
    expected = f"an integer >= {minimum}"
    value = _scalar(name, value, expected)
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            _fail(name, expected, value)
        value = int(value)
    if value < minimum:
        _fail(name, expected, value)
    return int(value)


def choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        _fail(name, f"one of {choices}", value)
    return value


def names(name, value):
    """``value`` as a tuple of non-empty strings (a string alone is one name)."""
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        _fail(name, "a string or a list of non-empty strings", value)
    return tuple(value)
