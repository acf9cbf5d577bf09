"""Each isolation property of the verifier, shown by a hostile program run in a real sandbox.

The pool here is the default one: full isolation or nothing (docs/verifier.md), so every property
is asserted, never skipped for a weaker level."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from verifier import SandboxPool, Status, TestCheck, ValueCheck
from verifier.sandbox import loop_library

TIMEOUT = 1.0
CANARY_ENV = "VERIFIER_TEST_CANARY"


@pytest.fixture(scope="module", params=["native", "python"])
def pool(request):
    """Every property holds for both zygote loops: C (verifier/zygote_loop.c) and the Python fallback."""
    if request.param == "native" and loop_library() is None:
        pytest.skip("no C compiler: the zygote loop runs in Python here")
    os.environ[CANARY_ENV] = "harness-secret"  # set before the pool starts: it must still not leak
    with SandboxPool(workers=2, timeout_s=TIMEOUT, memory_mb=256, zygote_loop=request.param) as p:
        assert p.zygote_loop == request.param
        assert p.isolation.startswith("bwrap("), p.isolation  # the default never settles for less
        yield p
    os.environ.pop(CANARY_ENV, None)


def processes_named(marker: str) -> list[int]:
    """Host pids whose command name is ``marker`` (a name the hostile program gave itself)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == marker:
                    found.append(int(pid))
            except OSError:
                pass
    return found


def wait_gone(marker: str, within_s: float = 1.0) -> list[int]:
    deadline = time.monotonic() + within_s
    while (left := processes_named(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_records_the_isolation_level(pool):
    v = pool.verify("result = 1", ValueCheck(1))
    assert v.passed and v.isolation == pool.isolation
    assert "net" in pool.isolation and "pid" in pool.isolation and "rlimits" in pool.isolation


def test_subclass_walk_to_os_system_is_contained(pool, tmp_path):
    victim = tmp_path / "harness_file.txt"
    victim.write_text("untouched")
    code = (
        "for c in ().__class__.__base__.__subclasses__():\n"
        "    if c.__name__ == '_wrap_close':\n"
        "        system = c.__init__.__globals__['system']\n"
        f"rc = system('echo pwned > {victim}; echo \"$" + CANARY_ENV + "\" > leaked.txt')\n"
        "result = open('leaked.txt').read()\n"
    )
    v = pool.verify(code, ValueCheck("harness-secret\n"))
    assert not v.passed
    assert victim.read_text() == "untouched"
    assert "harness-secret" not in (v.output or "")


@pytest.mark.parametrize("how", ["import os; os.system", "subclass walk to os.system", "open"])
def test_host_tmp_is_out_of_reach(pool, how):
    """The three programs of a hostile corpus that write outside a process-level sandbox: a plain
    ``os.system``, one reached through ``object.__subclasses__()``, a plain write to the host's /tmp.
    Under the default isolation each writes only into the sandbox's own /tmp."""
    target = Path("/tmp") / ("vfy-breakout-" + uuid.uuid4().hex[:10])
    program = {
        "import os; os.system": f"import os\nresult = os.system('echo pwned > {target}')",
        "subclass walk to os.system": ("for c in ().__class__.__base__.__subclasses__():\n"
                                       "    if c.__name__ == '_wrap_close':\n"
                                       "        system = c.__init__.__globals__['system']\n"
                                       f"result = system('echo pwned > {target}')"),
        "open": f"result = open({str(target)!r}, 'w').write('pwned')",
    }[how]
    try:
        pool.verify(program, ValueCheck(-1))
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_harness_environment_is_not_visible(pool):
    v = pool.verify("import os\nresult = sorted(os.environ)", ValueCheck([]))
    assert CANARY_ENV not in (v.output or "")
    assert set(eval(v.output)) <= {"PATH", "PWD", "LC_CTYPE"}  # output is the repr of plain data we decoded


def test_cannot_read_or_write_harness_files(pool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not read")
    read = pool.verify(f"result = open({str(secret)!r}).read()", ValueCheck("do not read"))
    write = pool.verify(f"open({str(tmp_path / 'planted.txt')!r}, 'w').write('x')\nresult = 1", ValueCheck(1))
    assert read.status is Status.RUNTIME_ERROR and "FileNotFoundError" in read.feedback
    assert not (tmp_path / "planted.txt").exists()
    assert pool.verify("open('/usr/planted', 'w')", ValueCheck(1)).status is Status.RUNTIME_ERROR


def test_infinite_loop_times_out_on_time(pool):
    t0 = time.monotonic()
    v = pool.verify("while True:\n    pass", ValueCheck(1))
    assert v.status is Status.TIMEOUT and v.feedback == f"timeout: ran over {TIMEOUT} s"
    assert time.monotonic() - t0 < TIMEOUT + 1.0


def test_setsid_grandchild_ignoring_sigterm_is_killed(pool):
    marker = "vfy" + uuid.uuid4().hex[:10]
    code = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    if os.fork() == 0:\n"
        f"        open('/proc/self/comm', 'w').write({marker!r})\n"
        "        while True:\n"
        "            time.sleep(0.01)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "result = 1\n"
    )
    v = pool.verify(code, ValueCheck(1))
    assert v.passed  # the program itself finished; what it left behind must not survive
    assert wait_gone(marker) == []
    v = pool.verify(code.replace("result = 1", "while True:\n    pass"), ValueCheck(1))
    assert v.status is Status.TIMEOUT
    assert wait_gone(marker) == []


def test_fork_bomb_is_bounded_and_killed(pool):
    marker = "vfy" + uuid.uuid4().hex[:10]
    code = (
        f"open('/proc/self/comm', 'w').write({marker!r})\n"
        "import os\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    v = pool.verify(code, ValueCheck(1))
    assert v.status in (Status.TIMEOUT, Status.RUNTIME_ERROR, Status.CRASHED)
    assert wait_gone(marker) == []
    assert pool.verify("result = 2", ValueCheck(2)).passed


def test_rlimit_nproc_bounds_forks(pool):
    code = (
        "import os, time\nn = 0\n"
        "for i in range(500):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(5)\n"
        "        os._exit(0)\n"
        "    n += 1\n"
        "result = n\n"
    )
    v = pool.verify(code, ValueCheck(0))
    if "RLIMIT_NPROC not enforced" in pool.isolation:
        pytest.skip(pool.isolation)
    assert v.status is Status.WRONG_OUTPUT and int(v.output) < 64


def test_memory_hog_hits_the_memory_limit(pool):
    v = pool.verify("x = bytearray(2 << 30)\nresult = 1", ValueCheck(1))
    assert v.status is Status.MEMORY_LIMIT
    assert v.feedback == "MemoryError: over the 256 MB limit (line 1)"


def test_stdout_flood_is_capped(pool):
    v = pool.verify("while True:\n    print('x' * 1000)", ValueCheck(1))
    assert v.status is Status.OUTPUT_LIMIT
    assert len(v.stdout) <= 2000


def test_big_file_is_refused(pool):
    v = pool.verify("f = open('big', 'wb')\nfor i in range(64):\n    f.write(b'x' * (1 << 20))\nresult = 1", ValueCheck(1))
    assert v.status is Status.RUNTIME_ERROR and "File too large" in v.feedback


def test_no_network(pool):
    v = pool.verify("import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=0.5)\nresult = 1", ValueCheck(1))
    assert v.status is Status.RUNTIME_ERROR and v.error_type in ("OSError", "TimeoutError", "ConnectionRefusedError")


def test_stdin_is_closed(pool):
    v = pool.verify("import sys\nresult = sys.stdin.read()", ValueCheck(""))
    assert v.passed  # end of file at once, never the harness's stdin


def test_early_exit_is_never_a_pass(pool):
    assert pool.verify("import sys\nresult = 1\nsys.exit(0)", ValueCheck(1)).status is Status.RUNTIME_ERROR
    v = pool.verify("import os\nresult = 1\nos._exit(0)", ValueCheck(1))
    assert v.status is Status.CRASHED and v.feedback == "crashed: exited with status 0 before finishing"
    test = "def check(candidate):\n    assert candidate(1) == 2\n"
    for code in ("import sys\ndef f(x):\n    return 0\nsys.exit(0)\n", "def f(x):\n    import os\n    os._exit(0)\n",
                 "def f(x):\n    raise SystemExit(0)\n"):
        assert not pool.verify(code, TestCheck(test, "f")).passed, code


def test_overridden_eq_and_repr_never_pass(pool):
    cases = [
        "class MyInt(int):\n    def __eq__(self, other):\n        return True\nresult = MyInt(3)",
        "class S(str):\n    def __repr__(self):\n        return '15'\nresult = S('x')",
        "class Any:\n    def __eq__(self, other):\n        return True\nresult = Any()",
        "class MyInt(int):\n    pass\nresult = [1, MyInt(15)]",
        "print(15)",
    ]
    verdicts = pool.verify_many([(c, ValueCheck(15)) for c in cases])
    assert [v.status for v in verdicts] == [Status.WRONG_OUTPUT] * len(cases)
    assert verdicts[0].feedback == "result is not plain data (got MyInt)"
    assert verdicts[4].feedback == "no result: the program did not assign result"


def test_expected_value_is_not_in_the_sandbox(pool):
    secret = "CANARY-" + uuid.uuid4().hex
    code = (
        "import gc, os, sys\n"
        "found = [o for o in gc.get_objects() if isinstance(o, str) and 'CANARY-' in o]\n"
        "for d in (dict(globals()), vars(sys)):\n"
        "    found += [v for v in d.values() if isinstance(v, str) and 'CANARY-' in v]\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "    for name in ('cmdline', 'environ'):\n"
        "        try:\n"
        "            found += ['proc'] if b'CANARY-' in open(f'/proc/{pid}/{name}', 'rb').read() else []\n"
        "        except OSError:\n"
        "            pass\n"
        "result = [f for f in found if 'found' not in f]\n"
    )
    v = pool.verify(code, ValueCheck(secret))
    assert v.status is Status.WRONG_OUTPUT
    assert secret not in v.output and secret not in v.stdout


def test_no_state_or_files_carried_between_executions(pool):
    first = "import os, sys\nopen('left.txt', 'w').write('x')\nsys.modules['math'].planted = 1\nresult = 1"
    later = "import math, os\nresult = [hasattr(math, 'planted'), os.listdir('.')]"
    assert pool.verify(first, ValueCheck(1)).passed
    for v in pool.verify_many([(later, ValueCheck([False, []]))] * 4):  # whichever worker runs it
        assert v.passed, v.feedback


def test_locked_directories_and_ipc_objects_are_cleaned_up(pool):
    litter = ("import ctypes, os\n"
              "os.makedirs('a/b'); os.chmod('a/b', 0); os.chmod('a', 0o500)\n"
              "os.mkdir('/tmp/x'); os.chmod('/tmp/x', 0)\n"
              "result = ctypes.CDLL(None).shmget(4321, 4096, 0o1600)\n")
    look = "import os\nresult = [os.listdir('.'), os.listdir('/tmp'), len(open('/proc/sysvipc/shm').readlines())]"
    for _ in range(2):  # both workers get litter, then both are inspected
        assert pool.verify_many([(litter, ValueCheck(-1))] * 2)[0].status is Status.WRONG_OUTPUT
    for v in pool.verify_many([(look, ValueCheck([[], ["work"], 1]))] * 4):
        assert v.passed, v.feedback


def test_deeply_nested_directories_are_wiped(pool):
    """300 nested directories, the innermost locked: wiped after the execution like any litter."""
    deep = ("import os\n"
            "path = '/'.join(['d'] * 300)\n"
            "os.makedirs(path); open(path + '/f', 'w').write('x'); os.chmod(path, 0)\n"
            "result = 1\n")
    look = "import os\nresult = os.listdir('.')"
    assert pool.verify_many([(deep, ValueCheck(1))] * 2)[0].passed
    for v in pool.verify_many([(look, ValueCheck([]))] * 4):
        assert v.passed, v.feedback
