"""Pool robustness: a killed worker is replaced, a flood leaves nothing behind, the fallback level works."""
from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from verifier import CallCheck, SandboxPool, Status, TestCheck, ValueCheck
from verifier import pool as pool_module
from verifier.sandbox import loop_library


def descendants(root: int) -> list[int]:
    """Host pids below ``root`` in the process tree (zombies included)."""
    parent: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parent[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def named(marker: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == marker:
                out.append(int(pid))
        except OSError:
            pass
    return out


LITTER = (
    "import os, time\n"
    "open('here.txt', 'w').write('x')\n"
    "open('/tmp/litter-{i}.txt', 'w').write('x')\n"
    "if {i} % 10 == 0 and os.fork() == 0:\n"
    "    os.setsid()\n"
    "    open('/proc/self/comm', 'w').write('{marker}')\n"
    "    time.sleep(60)\n"
    "result = {i}\n"
)


def native_loop_or_skip(loop: str) -> None:
    if loop == "native" and loop_library() is None:
        pytest.skip("no C compiler: the zygote loop runs in Python here")


@pytest.mark.parametrize("loop", ["native", "python"])
@pytest.mark.parametrize("isolation", ["bwrap", "process"])
def test_flood_leaves_no_process_and_no_file(isolation, loop):
    native_loop_or_skip(loop)
    marker = "vfy" + uuid.uuid4().hex[:10]
    tmp = Path(tempfile.gettempdir())
    before = set(tmp.iterdir())
    n = 300 if isolation == "bwrap" else 60
    with SandboxPool(workers=2, timeout_s=2.0, isolation=isolation, zygote_loop=loop) as pool:
        assert pool.zygote_loop == loop
        items = [(LITTER.format(i=i, marker=marker), ValueCheck(i)) for i in range(n)]
        verdicts = pool.verify_many(items)
        assert all(v.passed for v in verdicts), {v.feedback for v in verdicts if not v.passed}
        assert named(marker) == []
        sandboxed = pool.isolation.startswith("bwrap(")
    assert descendants(os.getpid()) == []
    left = {p for p in set(tmp.iterdir()) - before if p.name.startswith(("verifier-", "litter-"))}
    if not sandboxed:  # without a mount namespace the program can write to the host's /tmp ...
        for p in {p for p in left if p.name.startswith("litter-")}:
            p.unlink()
            left.discard(p)
    assert left == set()  # ... but its working directory is gone


def test_killed_worker_is_detected_and_replaced():
    with SandboxPool(workers=1, timeout_s=5.0) as pool:
        fut = pool.submit("while True:\n    pass", ValueCheck(1))
        time.sleep(0.5)
        os.killpg(pool.worker_pids()[0], signal.SIGKILL)
        t0 = time.monotonic()
        v = fut.result(timeout=10)
        assert v.status in (Status.SANDBOX_ERROR, Status.CRASHED)
        assert time.monotonic() - t0 < 2.0
        assert pool.verify("result = 7", ValueCheck(7)).passed


@pytest.mark.parametrize("loop", ["native", "python"])
def test_program_killing_its_zygote_gets_no_pass(loop):
    native_loop_or_skip(loop)
    with SandboxPool(workers=1, zygote_loop=loop) as pool:
        v = pool.verify("import os, signal\nresult = 1\nos.kill(os.getppid(), signal.SIGKILL)", ValueCheck(1))
        assert not v.passed  # sandbox_error where it could kill it, runtime_error (EPERM) where it could not
        assert pool.verify("result = 1", ValueCheck(1)).passed


@pytest.mark.parametrize("loop", ["native", "python"])
def test_process_fallback_kills_setsid_grandchildren(loop):
    native_loop_or_skip(loop)
    marker = "vfy" + uuid.uuid4().hex[:10]
    code = ("import os, signal, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            f"    open('/proc/self/comm', 'w').write({marker!r})\n"
            "    time.sleep(60)\n"
            "while True:\n"
            "    pass\n")
    with SandboxPool(workers=1, timeout_s=0.5, isolation="process", zygote_loop=loop) as pool:
        assert pool.isolation.startswith("process")
        v = pool.verify(code, ValueCheck(1))
        assert v.status is Status.TIMEOUT and v.isolation == pool.isolation
        assert named(marker) == []


def test_closed_pool_refuses_work_and_bad_settings_are_named():
    pool = SandboxPool(workers=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("result = 1", ValueCheck(1))
    with pytest.raises(ValueError, match="timeout_s=0"):
        SandboxPool(workers=1, timeout_s=0)
    with pytest.raises(ValueError, match="isolation"):
        SandboxPool(workers=1, isolation="docker")
    with pytest.raises(ValueError, match="zygote_loop='fast'"):
        SandboxPool(workers=1, zygote_loop="fast")


def test_without_a_compiler_the_zygote_loop_falls_back_to_python(monkeypatch, tmp_path, caplog):
    """No compiler: the pool still works, its loop is Python, and a warning says why."""
    from verifier import probe, sandbox
    monkeypatch.setenv("NANO_CODEGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    sandbox.loop_library.cache_clear()
    probe._chosen.clear()
    try:
        assert sandbox.loop_library() is None
        assert "zygote loop runs in Python" in caplog.text
        with SandboxPool(workers=1, isolation="process") as pool:
            assert pool.zygote_loop == "python"
            assert pool.verify("result = 6 * 7", ValueCheck(42)).passed
    finally:
        sandbox.loop_library.cache_clear()
        probe._chosen.clear()


def test_both_loops_give_the_same_verdicts():
    """The C loop and the Python one are the same protocol: equal verdicts on every outcome kind."""
    native_loop_or_skip("native")
    progs = [("result = 1", ValueCheck(1)), ("result = 2", ValueCheck(1)), ("x = [][1]", ValueCheck(1)),
             ("import os\nos._exit(3)", ValueCheck(1)), ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", ValueCheck(1)),
             ("while True:\n    pass", ValueCheck(1)), ("print('x' * 100000)\nresult = 1", ValueCheck(1)),
             ("print('hi')\nresult = 'é' * 3", ValueCheck("ééé"))]
    verdicts = {}
    for loop in ("native", "python"):
        with SandboxPool(workers=1, timeout_s=0.5, output_limit_bytes=1000, zygote_loop=loop) as pool:
            verdicts[loop] = [(v.status, v.feedback, v.stdout) for v in pool.verify_many(progs)]
    assert verdicts["native"] == verdicts["python"]
    assert [s for s, _, _ in verdicts["native"]][:2] == [Status.PASSED, Status.WRONG_OUTPUT]


def test_the_child_runs_the_parents_code_object_with_the_same_verdicts(monkeypatch):
    """The parent's compile (sent marshalled) and the child's own give the same verdicts, lines included;
    no future flag of the parent's leaks in (an annotation naming nothing is still evaluated)."""
    progs = [("result = 1", ValueCheck(1)), ("x = 1\ny = 2\nresult = [][x]", ValueCheck(1)),
             ("def f(x: no_such_name) -> int:\n    return x\nresult = f(1)", ValueCheck(1)),
             ("def inc(a):\n    return a + 1", CallCheck("inc", ((1,), (2,)), (2, 4))),
             ("def f(a):\n    return a", TestCheck("def check(c):\n    assert c(1) == 2", "f")),
             ("assert False, 'kept'\nresult = 1", ValueCheck(1))]
    sent = []
    real = pool_module.request_for
    monkeypatch.setattr(pool_module, "request_for", lambda *a: sent.append(real(*a)) or sent[-1])
    verdicts = {}
    for tag in ("ours", "another interpreter"):
        if tag != "ours":
            monkeypatch.setattr(pool_module, "COMPILED_TAG", tag)   # the zygote's tag no longer matches
        with SandboxPool(workers=1, timeout_s=2.0) as pool:
            verdicts[tag] = [(v.status, v.feedback, v.line) for v in pool.verify_many(progs)]
    assert all("compiled" in r for r in sent[:len(progs)]) and not any("compiled" in r for r in sent[len(progs):])
    assert verdicts["ours"] == verdicts["another interpreter"]
    assert [s for s, _, _ in verdicts["ours"]] == [Status.PASSED, Status.RUNTIME_ERROR, Status.RUNTIME_ERROR,
                                                   Status.WRONG_OUTPUT, Status.WRONG_OUTPUT, Status.RUNTIME_ERROR]
    assert verdicts["ours"][1][2] == 3 and "no_such_name" in verdicts["ours"][2][1]


def test_the_child_executes_the_code_object_it_is_sent(monkeypatch):
    """What runs is the parent's code object, not a recompile of the source beside it."""
    real = pool_module.request_for
    other = compile("result = 2", "<code>", "exec")
    monkeypatch.setattr(pool_module, "request_for", lambda code, check, limits, program: real(code, check, limits, other))
    with SandboxPool(workers=1) as pool:
        assert pool.verify("result = 1", ValueCheck(2)).status is Status.PASSED


def test_lint_notes_are_advisory_and_can_be_skipped():
    """Lint notes name risky imports and missing names; with lint=False they are absent and nothing else changes."""
    progs = [("import os\nx = 1", ValueCheck(1)), ("def g():\n    return 1", CallCheck("f", ((1,),), (1,))),
             ("result = 1", ValueCheck(1)), ("def f(:", ValueCheck(1))]
    verdicts = {}
    for lint in (True, False):
        with SandboxPool(workers=1, lint=lint) as pool:
            verdicts[lint] = pool.verify_many(progs)
    assert [v.extra.get("lint") for v in verdicts[True]] == [["imports os", "result is never assigned by name"],
                                                            ["f is never defined by name"], None, None]
    assert all("lint" not in v.extra for v in verdicts[False])
    assert [(v.status, v.feedback, v.line) for v in verdicts[True]] == [(v.status, v.feedback, v.line) for v in verdicts[False]]


@pytest.mark.parametrize("loop", ["native", "python"])
def test_preload_chooses_what_the_zygote_imports(loop):
    """The default zygote has the common modules loaded; preload=() starts lean, and a program importing
    one still gets it (in its own process, paying the import)."""
    if loop == "native":
        native_loop_or_skip("native")
    prog = ("import sys\nbefore = 'typing' in sys.modules\nimport typing, collections\n"
            "result = [before, typing.List.__name__, collections.Counter('aab')['a']]")
    seen = {}
    for preload in (None, ()):
        with SandboxPool(workers=1, zygote_loop=loop, preload=preload) as pool:
            seen[preload] = pool.verify(prog, ValueCheck([True, "List", 2])).output
    assert seen[None] == "[True, 'List', 2]" and seen[()] == "[False, 'List', 2]"
