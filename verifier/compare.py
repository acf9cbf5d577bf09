"""How the parent compares an observed value with the expected one, and shows both in feedback.

Rules (exact on types, because the verdict must not depend on how a value prints):
- the two values must have the same type: ``True`` is not ``1``, ``1`` is not ``1.0``, a tuple
  is not a list, ``'15'`` is not ``15``;
- floats are equal when ``math.isclose(a, b, rel_tol=1e-9)`` or both are NaN (equal infinities match);
- lists and tuples match item by item, dicts key by key (keys compared with the same type rule).
Both values are plain data decoded in the parent, so nothing here runs submitted code.
"""
from __future__ import annotations

import math

FLOAT_REL_TOL = 1e-9
SHOW_CHARS = 60


def _key(k: object) -> object:
    """A dict key tagged with its type, so {1: x} and {True: x} differ."""
    if type(k) is tuple:
        return ("tuple", tuple(_key(v) for v in k))
    if type(k) is float and math.isnan(k):
        return ("float", "nan")
    return (type(k).__name__, k)


def same(expected: object, got: object) -> bool:
    """True when ``got`` matches ``expected`` under the rules above."""
    if type(expected) is not type(got):
        return False
    if type(expected) is float:
        assert isinstance(got, float)
        if math.isnan(expected) or math.isnan(got):
            return math.isnan(expected) and math.isnan(got)
        return expected == got or math.isclose(expected, got, rel_tol=FLOAT_REL_TOL)
    if type(expected) in (list, tuple):
        assert isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple))
        return len(expected) == len(got) and all(same(e, g) for e, g in zip(expected, got))
    if type(expected) is dict:
        assert isinstance(expected, dict) and isinstance(got, dict)
        ke = {_key(k): v for k, v in expected.items()}
        kg = {_key(k): v for k, v in got.items()}
        return ke.keys() == kg.keys() and all(same(ke[k], kg[k]) for k in ke)
    return expected == got


def show(value: object, limit: int = SHOW_CHARS) -> str:
    """``repr`` of plain data, shortened for feedback."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
