"""`python -m verifier batch`, the command as a whole: every row's verdict is written whatever text a
row or a program holds, and its start-up is lean (docs/verifier.md, "Command line")."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from verifier import Status, ValueCheck
from verifier.__main__ import imports_anything
from verifier.checks import TestCheck
from verifier.verdict import Verdict

REPO = Path(__file__).resolve().parent.parent


def batch(path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier", "batch", str(path), *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_lone_surrogates_in_ids_test_code_and_inputs_lose_no_verdict(tmp_path):
    """A lone surrogate in a row's id, in its test code or in a call's inputs is written as JSON's
    ``\\uXXXX`` escape: no UnicodeEncodeError, no internal error, and the rows after it are judged."""
    rows = [{"id": "a\ud800", "code": "result = 1", "expected": "1"},
            {"id": 2, "code": "def f(x):\n    return x", "test": "def check(c):\n    assert c(1) == 2, '\udc80'",
             "entry_point": "f"},
            {"id": 3, "code": "def f(x):\n    return x", "entry_point": "f", "inputs": '[("\\ud800",)]',
             "outputs": '["\\ud800"]'},
            {"id": 4, "code": "result = 1", "expected": "1"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = batch(path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    verdicts = [json.loads(line) for line in r.stdout.splitlines()]
    assert [v["id"] for v in verdicts] == ["a\ud800", 2, 3, 4]
    assert [v["status"] for v in verdicts] == ["passed", "sandbox_error", "passed", "passed"]
    assert "the test code failed" in verdicts[1]["feedback"]   # broken test code, as any other: not "internal error"
    r.stdout.encode("utf-8")


def test_zygotes_start_lean_only_when_no_row_imports():
    value, test = ValueCheck(1), TestCheck("def check(c):\n    import math\n    assert c(1) == 1\n", "f")
    assert not imports_anything([(1, "result = 1", value), (2, "result = sum(range(3))", value)])
    assert imports_anything([(1, "result = 1", value), (2, "import re\nresult = 1", value)])
    assert imports_anything([(1, "result = __import__('re').escape('.')", value)])
    assert imports_anything([(1, "def f(x):\n    return x", test)])


def test_a_batch_mixing_imports_and_plain_rows_is_judged_alike(tmp_path):
    """Lean or not, the verdicts are the same: a module the zygote did not preload is imported by
    the program's own process."""
    plain = [{"id": i, "code": f"result = sum(range({i}))", "expected": str(sum(range(i)))} for i in range(4)]
    importing = [{"id": "re", "code": "import re\nresult = re.sub('a', 'b', 'aa')", "expected": "'bb'"}]
    for rows in (plain, plain + importing):
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        r = batch(path)
        assert r.returncode == 0, r.stderr
        assert [json.loads(line)["status"] for line in r.stdout.splitlines()] == ["passed"] * len(rows)


def test_the_probes_zygote_becomes_a_worker():
    """Starting a pool starts one zygote per worker, not one more for the isolation probe."""
    code = ("import verifier.worker as w\n"
            "from verifier import SandboxPool, ValueCheck\n"
            "real, starts = w.start_zygote, []\n"
            "def counting(*a, **k):\n"
            "    starts.append(1)\n"
            "    return real(*a, **k)\n"
            "w.start_zygote = counting\n"
            "with SandboxPool(workers=2) as pool:\n"
            "    assert all(v.passed for v in pool.verify_many([('result = 1', ValueCheck(1))] * 4))\n"
            "print(len(starts))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2"]


def test_verdict_json_is_every_field_with_a_copy_of_extra():
    v = Verdict(Status.WRONG_OUTPUT, "wrong output: expected 1, got 2", output="2", extra={"lint": ["imports os"]})
    d = v.to_json()
    assert d == {**dataclasses.asdict(v), "status": "wrong_output"}
    d["extra"]["lint"].append("x")
    assert v.extra == {"lint": ["imports os"]}


def test_the_command_imports_nothing_heavy():
    """Start-up is part of the command's rate: no progress bar, numpy or torch unless a bar is drawn."""
    code = "import sys, verifier.__main__\nprint(sorted(m for m in ('tqdm', 'numpy', 'torch') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["[]"], r.stdout + r.stderr
