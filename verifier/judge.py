"""From (code, check) to a request for the sandbox, and from its reply to a Verdict.

The parent's half of a verification: the syntax check and advisory lint before execution,
then the comparison with expected values (which never leave the parent) and the feedback
text after it. Feedback is short, regular and deterministic, because the agent's model is
trained on it: no timings, pids, paths or addresses.
"""
from __future__ import annotations

import ast
import json
import re
import signal
import threading
import time
import types
import warnings
from typing import Any

from verifier import plaindata
from verifier.child import encode_compiled
from verifier.checks import CallCheck, CasesCheck, Check, TestCheck, ValueCheck
from verifier.compare import same, show
from verifier.verdict import Status, Verdict, cap

OUTPUT_CHARS = 200       # Verdict.output: repr of what was observed
STDOUT_CHARS = 2000      # Verdict.stdout: tail of what the program printed
SHOWN_FAILURES = 3           # failing cases a CasesCheck's feedback lists (a runner lists every failure; 3 bound it)
CASES_FEEDBACK_CHARS = 400   # a CasesCheck's feedback (count line + failing cases): more room than the
                             # 160 of the other checks, because the agentic suite's transcripts grow on it
RISKY_IMPORTS = {"os", "subprocess", "socket", "ctypes", "shutil", "signal", "multiprocessing", "threading"}
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_NAME = re.compile(r"[^A-Za-z0-9_.]")
# CPython 3.11 keeps the AST converter's recursion depth in interpreter-wide state, so ast.parse in
# two threads at once (the pool's) can fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905), which would turn a verdict into an internal error: one at a time.
_AST_LOCK = threading.Lock()


class Limits:
    """The per-execution limits a pool applies; they also appear in feedback (``timeout: ran over 2.0 s``)."""

    def __init__(self, timeout_s: float, memory_mb: int, output_limit_bytes: int) -> None:
        self.timeout_s, self.memory_mb, self.output_limit_bytes = timeout_s, memory_mb, output_limit_bytes


def precheck(code: str, check: Check, with_lint: bool = True
             ) -> tuple[Verdict | None, float, list[str], types.CodeType | None]:
    """Compile in the parent (never runs anything). Returns (syntax-error verdict or None, parse ms, lint
    notes, the code object): compiled as the sandbox's child would compile it (no future flag of ours
    inherited, no optimization), so the child can run it as is (``verifier.child.COMPILED_TAG``).
    ``with_lint=False`` compiles the source directly, without the syntax tree the lint walks."""
    t0 = time.perf_counter()
    tree = None
    try:
        with warnings.catch_warnings(), _AST_LOCK:  # SyntaxWarnings about the judged code are not ours to print
            warnings.simplefilter("ignore")
            if with_lint:
                tree = ast.parse(code, "<code>")
            program = compile(tree if tree is not None else code, "<code>", "exec", dont_inherit=True,
                              optimize=0)  # symbol-table errors too
    except SyntaxError as e:
        ms = (time.perf_counter() - t0) * 1000
        where = f" (line {e.lineno})" if e.lineno else ""
        v = Verdict(Status.SYNTAX_ERROR, cap(f"{type(e).__name__}: {e.msg}{where}"), error_type=type(e).__name__,
                    message=cap(str(e.msg), 300), line=e.lineno, parse_ms=ms)
        return v, ms, [], None
    except (ValueError, RecursionError, MemoryError) as e:  # null bytes, absurd nesting
        ms = (time.perf_counter() - t0) * 1000
        msg = str(e) if isinstance(e, ValueError) else "too deeply nested"
        return Verdict(Status.SYNTAX_ERROR, cap(f"SyntaxError: {msg}"), error_type="SyntaxError", message=msg,
                       parse_ms=ms), ms, [], None
    return None, (time.perf_counter() - t0) * 1000, lint(tree, check) if tree is not None else [], program


def lint(tree: ast.AST, check: Check) -> list[str]:
    """Advisory notes for people reading verdicts; never changes a verdict (execution is the judge)."""
    stores, defs, imports = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            stores.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.add(node.name)
        elif isinstance(node, ast.Import):
            imports.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module.split(".")[0])
    notes = [f"imports {m}" for m in sorted(imports & RISKY_IMPORTS)]
    if isinstance(check, ValueCheck) and "result" not in stores:
        notes.append("result is never assigned by name")
    if isinstance(check, (CallCheck, CasesCheck, TestCheck)) and check.entry_point not in stores | defs:
        notes.append(f"{check.entry_point} is never defined by name")
    return notes


def request_for(code: str, check: Check, limits: Limits, program: types.CodeType | None = None) -> dict:
    """The request the zygote's child runs: the program (and ``program``, its code object from
    ``precheck``, when the zygote can load it) and the inputs, never the expected values."""
    req: dict[str, Any] = {"code": code, "timeout_s": limits.timeout_s, "memory_mb": limits.memory_mb,
                           "output_limit": limits.output_limit_bytes}
    if program is not None:
        req["compiled"] = encode_compiled(program)
    if isinstance(check, ValueCheck):
        plaindata.to_wire(check.expected)  # a check whose expectation cannot be matched is a task bug: say so
        req["mode"] = "value"
    elif isinstance(check, CallCheck):
        plaindata.to_wire(check.expected)
        req.update(mode="call", entry_point=check.entry_point, inputs=plaindata.encode([list(a) for a in check.inputs]))
    elif isinstance(check, CasesCheck):
        plaindata.to_wire(check.expected)
        req.update(mode="cases", entry_point=check.entry_point, inputs=plaindata.encode([list(a) for a in check.inputs]))
    elif isinstance(check, TestCheck):
        req.update(mode="test", entry_point=check.entry_point, test=check.test)
    else:
        raise TypeError(f"not a check: {type(check).__name__}")
    return req


def _error(info: Any, limits: Limits, test: str | None = None, prefix: str = "") -> Verdict:
    """Verdict for an exception reported by the child (``info`` is untrusted: validate every field)."""
    if not isinstance(info, dict):
        return _malformed()
    etype = _NAME.sub("", str(info.get("type", "")))[:60] or "Exception"
    message = _ADDRESS.sub("", str(info.get("message", "")))[:300]
    line = info.get("line") if type(info.get("line")) is int else None
    test_line = info.get("test_line") if type(info.get("test_line")) is int else None
    if etype == "AssertionError" and not message and test and test_line:
        lines = test.splitlines()
        message = lines[test_line - 1].strip() if 0 < test_line <= len(lines) else ""
    status = Status.RUNTIME_ERROR
    if etype == "AssertionError" and test_line and not line:  # the test's own assert: a wrong answer
        status = Status.WRONG_OUTPUT
    if etype == "MemoryError":
        status, message = Status.MEMORY_LIMIT, f"over the {limits.memory_mb} MB limit"
    head = f"{prefix}{etype}: {message}" if message else f"{prefix}{etype}"
    where = f" (line {line})" if line else ""
    return Verdict(status, cap(head[: 160 - len(where)] + where), error_type=etype, message=message, line=line)


def _malformed() -> Verdict:
    return Verdict(Status.CRASHED, "crashed: malformed report")


def _not_plain(report: dict, what: str) -> Verdict | None:
    if "not_plain" in report:
        name = _NAME.sub("", str(report["not_plain"]))[:40]
        return Verdict(Status.WRONG_OUTPUT, cap(f"{what} is not plain data (got {name})"))
    if "too_large" in report:
        return Verdict(Status.WRONG_OUTPUT, cap(f"{what} is too large (over {plaindata.MAX_BYTES} bytes)"))
    return None


def _decode(report: dict) -> tuple[bool, object]:
    try:
        return True, plaindata.decode(str(report["value"]))
    except (ValueError, KeyError):
        return False, None


def _call_text(entry_point: str, args: tuple) -> str:
    return show(f"{entry_point}({', '.join(show(a, 40) for a in args)})", 70).strip("'\"")


def _case_call(entry_point: str, args: tuple) -> str:
    return cap(f"{entry_point}({', '.join(show(a, 80) for a in args)})", 160)


def judge_cases(check: CasesCheck, report: dict, limits: Limits) -> Verdict:
    """Every case's outcome, then ``k/n passed`` and the failing cases (the first SHOWN_FAILURES of
    them), as a test runner's summary lists its failures:

        6/8 passed
        count_above([3, 5, 5], 5) returned 0, expected 2
        count_above([5], 5) returned 0, expected 1

    (or ``f([]) raised IndexError: list index out of range (line 4)``). The status is the first failure's."""
    n = len(check.inputs)
    head = f"0/{n} passed\n"
    if "error" in report or "no_function" in report:
        v = _error(report["error"], limits) if "error" in report else Verdict(
            Status.WRONG_OUTPUT, f"no function: the program did not define {check.entry_point}")
        v.feedback = cap(head + v.feedback, CASES_FEEDBACK_CHARS)
        v.extra["cases_passed"], v.extra["cases"] = 0, n
        return v
    calls = report.get("calls")
    if not isinstance(calls, list) or len(calls) != n or not all(isinstance(c, dict) for c in calls):
        return _malformed()
    outputs: list = []
    passed, first, shown = 0, None, []
    for args, expected, result in zip(check.inputs, check.expected, calls):
        call = _case_call(check.entry_point, args)
        got = None
        if "error" in result:
            v = _error(result["error"], limits)
            where = f" (line {v.line})" if v.line else ""
            v.feedback = f"{call} raised {v.error_type}" + (f": {v.message}" if v.message else "") + where
        elif "value" not in result:
            v = _not_plain(result, f"{call} returned a value that") or _malformed()
        else:
            ok, got = _decode(result)
            if not ok:
                return _malformed()
            v = None if same(expected, got) else Verdict(
                Status.WRONG_OUTPUT, f"{call} returned {show(got, 120)}, expected {show(expected, 120)}")
        outputs.append(got)
        if v is None:
            passed += 1
        elif v.status is Status.CRASHED:
            return v
        else:
            first = first or v
            if len(shown) < SHOWN_FAILURES:
                shown.append(v.feedback)
    if first is None:
        v = Verdict(Status.PASSED)
    else:
        v = first
        v.feedback = cap(f"{passed}/{n} passed\n" + "\n".join(shown), CASES_FEEDBACK_CHARS)
    v.output = show(outputs, OUTPUT_CHARS)
    v.extra["cases_passed"], v.extra["cases"] = passed, n
    return v


def judge_report(check: Check, report: dict, limits: Limits) -> Verdict:
    """Compare what the child observed with what the check expects."""
    if isinstance(check, CasesCheck):
        return judge_cases(check, report, limits)
    if "error" in report:
        return _error(report["error"], limits, check.test if isinstance(check, TestCheck) else None)
    if "no_function" in report and isinstance(check, (CallCheck, TestCheck)):
        return Verdict(Status.WRONG_OUTPUT, cap(f"no function: the program did not define {check.entry_point}"))
    if isinstance(check, ValueCheck):
        if "no_result" in report:
            return Verdict(Status.WRONG_OUTPUT, "no result: the program did not assign result")
        bad = _not_plain(report, "result")
        if bad:
            return bad
        ok, got = _decode(report)
        if not ok:
            return _malformed()
        if same(check.expected, got):
            return Verdict(Status.PASSED, output=show(got, OUTPUT_CHARS))
        return Verdict(Status.WRONG_OUTPUT, cap(f"wrong output: expected {show(check.expected)}, got {show(got)}"),
                       output=show(got, OUTPUT_CHARS))
    if isinstance(check, CallCheck):
        calls = report.get("calls")
        if not isinstance(calls, list):
            return _malformed()
        outputs: list = []
        for i, (args, expected) in enumerate(zip(check.inputs, check.expected)):
            if i >= len(calls) or not isinstance(calls[i], dict):
                return _malformed()
            call = _call_text(check.entry_point, args)
            if "error" in calls[i]:
                v = _error(calls[i]["error"], limits, prefix=f"{call} raised ")
                v.output = show(outputs, OUTPUT_CHARS)
                return v
            bad = _not_plain(calls[i], f"{call} returned a value that")
            if bad:
                return bad
            ok, got = _decode(calls[i])
            if not ok:
                return _malformed()
            outputs.append(got)
            if not same(expected, got):
                return Verdict(Status.WRONG_OUTPUT, cap(f"{call}: expected {show(expected)}, got {show(got)}"),
                               output=show(outputs, OUTPUT_CHARS))
        return Verdict(Status.PASSED, output=show(outputs, OUTPUT_CHARS))
    if "bad_test" in report:
        v = _error(report["bad_test"], limits)
        return Verdict(Status.SANDBOX_ERROR, cap(f"sandbox_error: the test code failed: {v.feedback}"))
    if report.get("completed") is True:
        return Verdict(Status.PASSED)
    return _malformed()


def judge_reply(check: Check, reply: dict, limits: Limits) -> Verdict:
    """Turn the zygote's reply (outcome, exit status, report, output) into a Verdict."""
    outcome = reply.get("outcome")
    if outcome == "timeout":
        v = Verdict(Status.TIMEOUT, f"timeout: ran over {limits.timeout_s} s")
    elif outcome == "output_limit":
        v = Verdict(Status.OUTPUT_LIMIT, f"output_limit: printed over {limits.output_limit_bytes} bytes")
    elif outcome == "report_too_large":
        v = Verdict(Status.WRONG_OUTPUT, f"result is too large (over {plaindata.MAX_BYTES} bytes)")
    elif outcome != "exited":
        v = Verdict(Status.SANDBOX_ERROR, cap(f"sandbox_error: {str(reply.get('message', outcome))}"))
    else:
        try:
            report = json.loads(reply.get("report") or "null")
        except ValueError:
            report = None
        if isinstance(report, dict):
            v = judge_report(check, report, limits)
        elif reply.get("signal") == signal.SIGXCPU:  # busy threads can spend the CPU limit before the wall clock
            v = Verdict(Status.TIMEOUT, f"timeout: used over {int(limits.timeout_s) + 1} s of CPU time")
        elif reply.get("signal"):
            v = Verdict(Status.CRASHED, f"crashed: killed by {_signal_name(reply['signal'])}")
        else:
            v = Verdict(Status.CRASHED, f"crashed: exited with status {reply.get('exit_code')} before finishing")
    output = str(reply.get("output", ""))
    v.stdout = output[-STDOUT_CHARS:]
    v.exec_ms = float(reply.get("exec_ms", 0.0))
    return v


def _signal_name(num: Any) -> str:
    try:
        return signal.Signals(int(num)).name
    except (ValueError, TypeError):
        return f"signal {num}"
