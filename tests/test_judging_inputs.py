"""The judge's inputs and its infrastructure: malformed files are one documented error, an accuracy
log must hold the samples its run declared, and a sandbox failure is judged again, never scored as
the model's failure. Parsers are fuzzed with hypothesis; the sandbox is the real one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier import SandboxPool, ValueCheck
from verifier.__main__ import read_batch
from verifier.accuracy import ANY_SUBSET, load_accuracy_log, score_accuracy_log
from verifier.humaneval import read_samples
from verifier.jsonfile import MAX_DEPTH, InputError
from verifier.pool import InfrastructureError
from verifier.response_format import AttemptOut, Response, encode

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "sut" / "data" / "eval_tasks.jsonl"
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)
entry_like = st.fixed_dictionaries({}, optional={"seq_id": json_values, "qsl_idx": json_values, "data": json_values,
                                                 "token_count": json_values, "code": json_values, "id": json_values,
                                                 "expected": json_values, "task_id": json_values, "completion": json_values})
raw_text = st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                     st.integers(1, 5000).map(lambda n: "[" * n), json_values.map(json.dumps),
                     st.lists(entry_like, max_size=4).map(json.dumps))


def _tasks() -> list[dict]:
    return [json.loads(line) for line in EVAL.read_text().splitlines()]


def _log(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def _entry(i: int, code: str, task_id: str) -> dict:
    data = encode(Response(task_id, [AttemptOut(code, "passed", 3)], n_tokens=3)).hex().upper()
    return {"seq_id": i, "qsl_idx": i, "data": data, "token_count": 3}


@FUZZ
@given(text=raw_text)
def test_fuzzed_accuracy_logs_give_only_the_documented_error(tmp_path, text):
    path = tmp_path / "log.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        entries = load_accuracy_log(path)
    except InputError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert all(isinstance(e["qsl_idx"], int) and not isinstance(e["qsl_idx"], bool) for e in entries)


@FUZZ
@given(lines=st.lists(raw_text | entry_like.map(json.dumps), min_size=1, max_size=4))
def test_fuzzed_batch_and_sample_files_give_only_the_documented_error(tmp_path, lines):
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    for parse in (read_batch, lambda p: read_samples(Path(p), {"HumanEval/0": {}})):
        try:
            parse(str(path))
        except InputError as e:
            assert str(path) in str(e) and "\n" not in str(e)


@pytest.mark.parametrize("entry, fragment", [
    ({"seq_id": 0, "qsl_idx": True, "data": "00"}, "integer 'qsl_idx'"),
    ({"seq_id": 0, "qsl_idx": -1, "data": "00"}, "non-negative"),
    ({"seq_id": 0, "qsl_idx": 0, "data": "abc"}, "upper-case hex"),
    ({"seq_id": 0, "qsl_idx": 0, "data": "00", "token_count": 1.5}, "token_count"),
    ({"qsl_idx": 0, "data": "00"}, "seq_id"),
])
def test_accuracy_log_fields_are_typed_as_loadgen_writes_them(tmp_path, entry, fragment):
    with pytest.raises(InputError, match=fragment):
        load_accuracy_log(_log(tmp_path / "log.json", [entry]))


def test_huge_and_deep_inputs_are_one_line_errors(tmp_path):
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"code": "x", "expected": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}\n")
    with pytest.raises(InputError, match="nested deeper"):
        read_batch(str(deep))
    huge = tmp_path / "huge.jsonl"
    huge.write_text('{"code": "' + "x" * (5 << 20) + '"}\n')
    r = subprocess.run([sys.executable, "-m", "verifier", "batch", str(huge)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "longer than" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_log_missing_samples_fails_unless_the_run_declared_a_subset(tmp_path):
    tasks = _tasks()
    log = _log(tmp_path / "log.json", [_entry(i, tasks[i]["solution"], tasks[i]["id"]) for i in (0, 1, 3)])
    with SandboxPool(workers=1) as pool:
        with pytest.raises(InputError, match="missing e.g. \\[2"):
            score_accuracy_log(log, EVAL, pool, expected_samples=4)
        with pytest.raises(InputError, match="not the 1024"):
            score_accuracy_log(log, EVAL, pool)
        assert score_accuracy_log(log, EVAL, pool, expected_samples=ANY_SUBSET)["pass@final"] == 1.0
        full = _log(tmp_path / "full.json", [_entry(i, tasks[i]["solution"], tasks[i]["id"]) for i in range(4)])
        assert score_accuracy_log(full, EVAL, pool, expected_samples=4)["samples"] == 4


def _kill_workers(pids, stop: threading.Event, once: bool, workers: int = 2) -> None:
    """SIGKILL the sandbox workers' process groups (once, or until ``stop``), from when all ``workers``
    are up: not the start-up probe's, which would stop the command before it judges anything."""
    deadline = time.monotonic() + 60
    while len(pids()) < workers and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.02)
    time.sleep(0.5)
    while not stop.is_set():
        for pid in pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if once:
            return
        time.sleep(0.05)


def test_a_killed_sandbox_is_judged_again_not_scored_as_a_failure():
    items = [(f"import time\ntime.sleep(0.3)\nresult = {i}", ValueCheck(i)) for i in range(8)]
    with SandboxPool(workers=2) as pool:
        stop = threading.Event()
        killer = threading.Thread(target=_kill_workers, args=(pool.worker_pids, stop, True))
        killer.start()
        verdicts = pool.verify_judged(items)
        killer.join()
        assert all(v.passed for v in verdicts)
        killer = threading.Thread(target=_kill_workers, args=(pool.worker_pids, stop, False))
        killer.start()
        try:
            with pytest.raises(InfrastructureError, match="cannot be judged"):
                pool.verify_judged(items)
        finally:
            stop.set()
            killer.join()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return []


def test_the_accuracy_pass_fails_without_accuracy_txt_when_the_sandbox_keeps_failing(tmp_path):
    tasks = _tasks()
    slow = "import time\ntime.sleep(0.3)\n"
    log = _log(tmp_path / "log.json", [_entry(i, slow + tasks[i]["solution"], tasks[i]["id"]) for i in range(6)])
    out = tmp_path / "accuracy.txt"
    proc = subprocess.Popen([sys.executable, "-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log), "--tasks",
                             str(EVAL), "--expected-samples", "6", "--output", str(out), "--workers", "2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    killer = threading.Thread(target=_kill_workers, args=(lambda: _children(proc.pid), stop, False))
    killer.start()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        stop.set()
        killer.join()
    assert proc.returncode == 1 and "cannot be judged" in err and not out.exists(), err


def test_an_unwritable_accuracy_txt_is_one_line(tmp_path):
    tasks = _tasks()
    log = _log(tmp_path / "log.json", [_entry(0, tasks[0]["solution"], tasks[0]["id"])])
    (tmp_path / "afile").write_text("not a folder")
    r = subprocess.run([sys.executable, "-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log), "--tasks", str(EVAL),
                        "--expected-samples", "1", "--output", str(tmp_path / "afile" / "accuracy.txt")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "cannot write" in r.stderr and len(r.stderr.strip().splitlines()) == 1
