"""What the forked child does with one request: run the program under a check protocol.

Runs inside the sandbox, in a process of its own that dies right after (the zygote forks
a fresh one per execution). It returns a *report*: plain data that the zygote passes to
the parent unchanged. The report never says "passed" for value or call checks: it only
carries the observed values, and the parent, which alone holds the expected ones, judges.

Shipped into the sandbox as source: standard library plus ``verifier.plaindata`` only, and
no ``from __future__`` import.
"""
import builtins
import json
import marshal
import sys

from verifier.plaindata import NotPlain, TooLarge, decode, encode

CODE_FILE = "<code>"   # filename of the submitted program in tracebacks
TEST_FILE = "<test>"   # filename of a TestCheck's test code
MESSAGE_CHARS = 300
# A request may carry the program already compiled by the parent (``compiled``: its code object,
# marshalled, in hex): the child then skips a compile, ~0.2 ms of CPU and ~50 copy-on-write faults
# an execution (docs/verifier.md). Marshal's format is one interpreter build's own, so the parent
# sends it only to a zygote whose ready frame carries the parent's own tag.
COMPILED_TAG = sys.version + "|marshal " + str(marshal.version)


def exception_info(e: BaseException, workdir: str) -> dict:
    """Type, message and the line in the submitted code (and in the test code) of an exception."""
    line = test_line = None
    tb = e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename == CODE_FILE:
            line = tb.tb_lineno
        elif filename == TEST_FILE:
            test_line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(e, SyntaxError) and e.filename == CODE_FILE:
        line = e.lineno
    try:
        message = e.msg if isinstance(e, SyntaxError) else str(e)
        message = message if type(message) is str else ""
    except BaseException:  # a hostile __str__
        message = ""
    message = message[:MESSAGE_CHARS].replace(workdir + "/", "").replace(workdir, ".")
    return {"type": type(e).__name__, "message": message, "line": line, "test_line": test_line}


def _fresh_globals() -> dict:
    return {"__name__": "__main__", "__builtins__": builtins}


def _encode_or_report(value: object) -> dict:
    try:
        return {"value": encode(value)}
    except NotPlain as e:
        return {"not_plain": e.type_name[:60]}
    except TooLarge:
        return {"too_large": True}


def encode_compiled(program) -> str:
    """A code object as a request's ``compiled`` field (the parent's side)."""
    return marshal.dumps(program).hex()


def _program(code: str, compiled):
    """The submitted program's code object: the parent's compile when it sent one, else compiled here."""
    if compiled is not None:
        return marshal.loads(bytes.fromhex(compiled))
    return compile(code, CODE_FILE, "exec")


def run_value(code: str, workdir: str, compiled=None) -> dict:
    g = _fresh_globals()
    try:
        exec(_program(code, compiled), g)
    except BaseException as e:
        return {"error": exception_info(e, workdir)}
    if "result" not in g:
        return {"no_result": True}
    return _encode_or_report(g["result"])


def run_call(code: str, entry_point: str, inputs: str, workdir: str, compiled=None, keep_going=False) -> dict:
    """Call ``entry_point`` on each input; stop at the first failure unless ``keep_going`` (cases mode)."""
    g = _fresh_globals()
    try:
        exec(_program(code, compiled), g)
    except BaseException as e:
        return {"error": exception_info(e, workdir)}
    fn = g.get(entry_point)
    if not callable(fn):
        return {"no_function": True}
    calls = []
    for args in decode(inputs):  # decoded again per call: no call sees another's mutations
        try:
            out = fn(*args)
        except BaseException as e:
            calls.append({"error": exception_info(e, workdir)})
            if keep_going:
                continue
            break
        report = _encode_or_report(out)
        calls.append(report)
        if "value" not in report and not keep_going:
            break
    return {"calls": calls}


def run_test(code: str, test: str, entry_point: str, workdir: str, compiled=None) -> dict:
    g = _fresh_globals()
    try:
        exec(_program(code, compiled), g)
    except BaseException as e:
        return {"error": exception_info(e, workdir)}
    try:
        exec(compile(test, TEST_FILE, "exec"), g)
        check = g["check"]
    except BaseException as e:
        return {"bad_test": exception_info(e, workdir)}
    if not callable(g.get(entry_point)):
        return {"no_function": True}
    try:
        check(g[entry_point])
    except BaseException as e:
        return {"error": exception_info(e, workdir)}
    return {"completed": True}


# Programs of our own that take every path of ``run`` once (a value, an exception with its line,
# a call, a test): the zygote runs them before it freezes its heap. The first ``compile`` in a
# process is slow; after a warm-up in the zygote every forked child starts warm. Measured on a
# trivial snippet: 2.9 ms of child CPU and 335 page faults cold, 1.0 ms and 175 warm.
WARM_UP = (
    {"mode": "value", "code": "def f(xs):\n    return sorted(x * 2 for x in xs)[0]\nresult = [f([3, 1]), 'ab'[::-1], {1: (2.5, None)}]"},
    {"mode": "value", "code": "x = 1\nresult = [][x]"},
    {"mode": "value", "code": "def f(:\n    pass"},
    {"mode": "call", "code": "def f(a, b=0):\n    return str(a + b)", "entry_point": "f", "inputs": encode([(1,), (2, 3)])},
    {"mode": "test", "code": "def f(a):\n    return a", "test": "def check(c):\n    assert c(1) == 2", "entry_point": "f"},
    {"mode": "value", "code": "result = 1", "compiled": encode_compiled(compile("result = 1", CODE_FILE, "exec"))},
)


def warm_up() -> None:
    """Run WARM_UP in this process (the zygote, before fork): no submitted code, nothing kept."""
    for request in WARM_UP:
        json.dumps(run(request, "/"))


def run(request: dict, workdir: str) -> dict:
    """Dispatch one request ({"mode": "value"|"call"|"cases"|"test", "code", optional "compiled", ...}) to its protocol."""
    mode = request["mode"]
    compiled = request.get("compiled")
    if mode == "value":
        return run_value(request["code"], workdir, compiled)
    if mode == "call":
        return run_call(request["code"], request["entry_point"], request["inputs"], workdir, compiled)
    if mode == "cases":
        return run_call(request["code"], request["entry_point"], request["inputs"], workdir, compiled, True)
    if mode == "test":
        return run_test(request["code"], request["test"], request["entry_point"], workdir, compiled)
    return {"bad_request": mode}
