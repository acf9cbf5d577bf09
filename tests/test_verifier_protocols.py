"""The three check protocols end to end, the comparison rules, plain-data transfer and feedback text."""
from __future__ import annotations

import concurrent.futures
import math

import pytest

from verifier import CallCheck, SandboxPool, Status, TestCheck, ValueCheck, check_from_json, check_to_json, verify
from verifier import plaindata
from verifier.compare import same


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=1.0) as p:
        yield p


def test_value_check_pass_and_feedback(pool):
    cases = [
        ("result = sum([1, 2, 3, 4, 5])", 15, Status.PASSED, ""),
        ("result = 'hello'[::-1]", "olleh", Status.PASSED, ""),
        ("result = sum([1, 2, 3, 4])", 15, Status.WRONG_OUTPUT, "wrong output: expected 15, got 10"),
        ("y = 1\nresult = x + y", 15, Status.RUNTIME_ERROR, "NameError: name 'x' is not defined (line 2)"),
        ("result = (1 +", 15, Status.SYNTAX_ERROR, "SyntaxError: '(' was never closed (line 1)"),
        ("def f():\nreturn 1", 15, Status.SYNTAX_ERROR, "IndentationError: expected an indented block after function definition on line 1 (line 2)"),
        ("x = 15", 15, Status.WRONG_OUTPUT, "no result: the program did not assign result"),
        ("def f(n):\n    return f(n + 1)\nresult = f(0)", 15, Status.RUNTIME_ERROR,
         "RecursionError: maximum recursion depth exceeded (line 2)"),
    ]
    verdicts = pool.verify_many([(code, ValueCheck(exp)) for code, exp, _, _ in cases])
    for (code, _, status, feedback), v in zip(cases, verdicts):
        assert (v.status, v.feedback) == (status, feedback), code
    assert verdicts[3].line == 2 and verdicts[3].error_type == "NameError"
    assert verdicts[0].parse_ms > 0 and verdicts[0].exec_ms > 0 and verdicts[0].total_ms >= verdicts[0].exec_ms


def test_comparison_is_exact_on_types(pool):
    cases = [("True", 1, False), ("1", 1.0, False), ("(1, 2)", [1, 2], False), ("'15'", 15, False),
             ("0.1 + 0.2", 0.3, True), ("float('nan')", math.nan, True), ("{1: 'a', 'b': (2,)}", {1: "a", "b": (2,)}, True),
             ("{True: 'a'}", {1: "a"}, False), ("[1, [2, None]]", [1, [2, None]], True)]
    verdicts = pool.verify_many([(f"result = {code}", ValueCheck(exp)) for code, exp, _ in cases])
    assert [v.passed for v in verdicts] == [ok for _, _, ok in cases]
    assert verdicts[0].feedback == "wrong output: expected 1, got True"
    assert same(1e-12 + 1.0, 1.0) and not same(1.0 + 1e-6, 1.0)


def test_call_check_names_the_first_failing_call(pool):
    check = CallCheck("add_one", ((1,), (3,), (0,)), (2, 4, 1))
    good = pool.verify("def add_one(x):\n    return x + 1", check)
    wrong = pool.verify("def add_one(x):\n    return x + 2 if x == 3 else x + 1", check)
    raises = pool.verify("def add_one(x):\n    return 3 // (x - 3) + 3", CallCheck("add_one", ((3,),), (4,)))
    missing = pool.verify("def add(x):\n    return x + 1", check)
    not_plain = pool.verify("class I(int):\n    pass\ndef add_one(x):\n    return I(x + 1)", check)
    assert good.passed and good.output == "[2, 4, 1]"
    assert (wrong.status, wrong.feedback) == (Status.WRONG_OUTPUT, "add_one(3): expected 4, got 5")
    assert (raises.status, raises.feedback) == (Status.RUNTIME_ERROR, "add_one(3) raised ZeroDivisionError: integer division or modulo by zero (line 2)")
    assert missing.feedback == "no function: the program did not define add_one"
    assert not_plain.feedback == "add_one(1) returned a value that is not plain data (got I)"


def test_call_check_calls_do_not_share_mutated_inputs(pool):
    code = "def push(xs):\n    xs.append(1)\n    return len(xs)"
    assert pool.verify(code, CallCheck("push", (([],), ([],)), (1, 1))).passed


def test_test_check_human_eval_protocol(pool):
    test = "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n"
    ok = pool.verify("def sq(x):\n    return x * x", TestCheck(test, "sq"))
    wrong = pool.verify("def sq(x):\n    return x + x", TestCheck(test, "sq"))
    crash = pool.verify("def sq(x):\n    return x / 0", TestCheck(test, "sq"))
    assert ok.passed
    assert (wrong.status, wrong.feedback) == (Status.WRONG_OUTPUT, "AssertionError: assert candidate(3) == 9")
    assert (crash.status, crash.feedback) == (Status.RUNTIME_ERROR, "ZeroDivisionError: division by zero (line 2)")


def test_feedback_is_deterministic_and_free_of_addresses(pool):
    code = "class A:\n    pass\nraise ValueError(A())"
    v1, v2 = pool.verify_many([(code, ValueCheck(1))] * 2)
    assert v1.feedback == v2.feedback == "ValueError: <__main__.A object> (line 3)"
    v = pool.verify("open('/nonexistent/x')", ValueCheck(1))
    assert v.feedback == "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/x' (line 1)"
    long = pool.verify("raise ValueError('x' * 500)", ValueCheck(1))
    assert len(long.feedback) <= 160


def test_submit_is_thread_safe_and_keeps_pairs(pool):
    def one(i: int) -> tuple[int, bool, str]:
        v = pool.submit(f"result = {i} * 2", ValueCheck(i * 2 if i % 3 else -1)).result()
        return i, v.passed, v.feedback

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(120)))
    for i, passed, feedback in results:
        assert passed == bool(i % 3), (i, feedback)
        if not passed:
            assert feedback == f"wrong output: expected -1, got {i * 2}"


def test_verify_many_keeps_input_order(pool):
    items = [(f"import time\ntime.sleep({0.05 if i % 2 else 0})\nresult = {i}", ValueCheck(i)) for i in range(10)]
    assert [v.output for v in pool.verify_many(items)] == [str(i) for i in range(10)]


def test_one_shot_verify():
    assert verify("result = 2 ** 10", ValueCheck(1024)).passed


def test_bad_check_values_are_a_sandbox_error(pool):
    v = pool.verify("result = {1}", ValueCheck({1}))
    assert v.status is Status.SANDBOX_ERROR and "not plain data (set)" in v.feedback


def test_plaindata_round_trip_and_refusals():
    value = [None, True, 3, -2.5, float("inf"), "é", (1, (2,)), {"a": [1], 2: (3,), (1, "x"): None}]
    assert same(plaindata.decode(plaindata.encode(value)), value)
    for bad, name in ((b"x", "bytes"), ({1}, "set"), (type("Sub", (list,), {})(), "Sub")):
        with pytest.raises(plaindata.NotPlain) as e:
            plaindata.encode([bad])
        assert e.value.type_name == name
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(plaindata.TooLarge):
        plaindata.encode(deep)
    with pytest.raises(ValueError):
        plaindata.decode('{"x": 1}')


def test_check_json_round_trip():
    for check in (ValueCheck((1, [2])), CallCheck("f", ((1, "a"),), ({"k": 1},)), TestCheck("def check(c): pass", "f")):
        assert check_from_json(check_to_json(check)) == check
