"""The agentic suite: families and bounds, the generator, the frozen set, task files, the split's
hygiene, and, through the real sandbox, that references pass, other conventions fail, mutants die,
and the cases check's feedback reads like a test runner's."""
from __future__ import annotations

import ast
import hashlib
import inspect
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sut.tasks.agentic import suite as S
from sut.tasks.agentic.family import CATEGORIES, MAX_CASES, MIN_CASES, ON_EMPTY
from sut.tasks.agentic.mutate import kill_rate, mutants
from sut.tasks.agentic.record import AgenticTask, TaskFileError, load_task_file, normalised
from sut.tasks.basic import EVAL_PATH as BASIC_EVAL_PATH
from sut.tasks.record import EvalSetError
from sut.tasks.suites import DEFAULTS
from verifier import CallCheck, CasesCheck, check_from_json, check_to_json
from verifier.compare import same
from verifier.pool import SandboxPool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def eval_tasks() -> list[AgenticTask]:
    return S.load_eval_tasks()


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(timeout_s=0.3, preload=()) as p:   # a looping mutant costs this much: see sut/tasks/agentic/mutate.py
        yield p


# ---- families -----------------------------------------------------------------------------

def test_at_least_30_families_with_levels_and_categories():
    names = [f.name for f in S.FAMILIES]
    assert len(names) >= 30 and len(set(names)) == len(names)
    assert {f.category for f in S.FAMILIES} == set(CATEGORIES)
    assert {f.level_difficulty(lv) for f, lv in S.slots()} == {1, 2, 3}


@pytest.mark.parametrize("fam", S.FAMILIES, ids=lambda f: f.name)
def test_family_tasks_keep_the_bounds(fam):
    for level in fam.levels:
        cores = fam.space(level)
        assert len(cores) >= 20 and len({S.core_key(fam.name, c) for c in cores}) == len(cores)
        split = S.split_cores(fam.name, level)
        assert len(split["eval"]) >= 4 and len(split["val"]) >= 2 and len(split["train"]) >= 14
        assert 1 <= len(fam.convs(level)) <= 3
        rng = random.Random(f"bounds:{fam.name}:{level}")
        for _ in range(150):
            t = S.make_task("x", fam, level, "train", rng)
            lines = t.solution.splitlines()
            assert 3 <= len(lines) <= 20 and len(t.solution) <= 600, t.solution
            assert all((len(ln) - len(ln.lstrip(" "))) % 4 == 0 for ln in lines), t.solution
            ast.parse(t.solution)   # parsed, never executed here
            assert lines[0].startswith(f"def {t.check.entry_point}(") and f"{t.check.entry_point}(" in t.prompt
            assert len(t.prompt.split()) <= 60
            assert isinstance(t.check, CasesCheck) and MIN_CASES <= len(t.check.inputs) <= MAX_CASES
            assert len(set(map(repr, t.check.inputs))) == len(t.check.inputs)
            assert all(len(repr(e)) <= 150 for e in t.check.expected)
        p = fam.params(cores[0], rng)
        assert len(set(fam.prompts(p))) >= 6   # paraphrases of each template


def test_conventions_are_drawn_independently_of_the_prompt():
    """The prompt is a function of the params alone (core and names), and every convention value is drawn
    about equally often: the wording cannot tell which convention the tests hold."""
    for fam, level in S.slots():
        rng = random.Random(f"indep:{fam.name}:{level}")
        seen: dict[str, Counter] = {cv.name: Counter() for cv in fam.convs(level)}
        for _ in range(240):
            t = S.make_task("x", fam, level, "train", rng)
            assert t.prompt in fam.prompts(t.params)
            for name, value in t.conventions.items():
                seen[name][json.dumps(value)] += 1
        for cv in fam.convs(level):
            shares = [seen[cv.name][json.dumps(v)] / 240 for v in cv.values]
            assert all(0.5 / len(cv.values) < s < 1.5 / len(cv.values) for s in shares), (fam.name, cv.name, shares)


def test_the_shared_on_empty_convention(eval_tasks):
    """Where a family level leaves ``on_empty`` open, every task has an empty-input case, whose expected
    value is the sentinel when the tests hold one; the guard line is in the solution exactly then; and
    the family's own code alone returns neither sentinel on that input (so the three values differ)."""
    levels = [(f, lv) for f, lv in S.slots() if ON_EMPTY in f.convs(lv)]
    assert len(levels) >= 20
    seen = Counter()
    for t in eval_tasks:
        fam = S.FAMILY_BY_NAME[t.family]
        if ON_EMPTY not in fam.convs(t.params["level"]):
            assert "on_empty" not in t.conventions
            continue
        sentinel = t.conventions["on_empty"]
        seen[json.dumps(sentinel)] += 1
        empty = [i for i, args in enumerate(t.check.inputs) if not args[0] and isinstance(args[0], (list, str, dict))]
        assert empty, t.id
        a = t.params["args"][0]
        guard = f"    if not {a}:\n        return {sentinel!r}\n"
        body = t.solution.split("\n", 1)[1]
        if sentinel == "result":
            assert not any(body.startswith(f"    if not {a}:\n        return {s!r}\n") for s in (None, -1)), t.id
            computed = t.check.expected[empty[0]]
            assert computed is not None and computed != -1, t.id
        else:
            assert same(t.check.expected[empty[0]], sentinel) and body.startswith(guard), t.id
    assert set(seen) == {'"result"', "null", "-1"}


# ---- generator, frozen file, task files ---------------------------------------------------

def test_generator_is_deterministic_per_split_count_seed():
    a = S.generate("train", 300, seed=3)
    assert a == S.generate("train", 300, seed=3)
    assert a[:40] == S.generate("train", 40, seed=3)
    assert [t.prompt for t in a] != [t.prompt for t in S.generate("train", 300, seed=4)]
    v = S.generate("val", 100, seed=1)
    assert v == S.generate("val", 100, seed=1) and len({t.prompt for t in v}) == 100
    e = S.generate("eval", 120, seed=5)
    assert e == S.generate("eval", 120, seed=5) and e != S.generate("eval", 120, seed=6)
    with pytest.raises(ValueError, match="unknown split"):
        S.generate("test", 3)


def test_frozen_eval_file_matches_pin_is_balanced_and_regenerates(eval_tasks, tmp_path):
    assert hashlib.sha256(S.EVAL_PATH.read_bytes()).hexdigest() == S.EVAL_SHA256
    assert [t.id for t in eval_tasks] == [f"eval-{i:04d}" for i in range(S.EVAL_SIZE)]
    assert len({t.prompt for t in eval_tasks}) == S.EVAL_SIZE
    per_slot = Counter((t.family, t.params["level"]) for t in eval_tasks)
    assert set(per_slot) == {(f.name, lv) for f, lv in S.slots()}
    assert max(per_slot.values()) - min(per_slot.values()) <= 1
    assert all(S.split_of(t.family, t.core()) == "eval" for t in eval_tasks)
    assert S.write_eval(tmp_path / "e.jsonl") == S.EVAL_SHA256
    assert (tmp_path / "e.jsonl").read_bytes() == S.EVAL_PATH.read_bytes()


def test_tampered_or_missing_eval_file_is_one_line_error(tmp_path):
    bad = tmp_path / "agentic_eval_tasks.jsonl"
    bad.write_bytes(S.EVAL_PATH.read_bytes().replace(b"count", b"tally", 1))
    with pytest.raises(EvalSetError) as e:
        S.load_eval_tasks(bad)
    msg = str(e.value)
    assert "\n" not in msg and "sha256 mismatch" in msg and "--suite agentic --write-eval" in msg and "git checkout" in msg
    with pytest.raises(EvalSetError, match="cannot read"):
        S.load_eval_tasks(tmp_path / "missing.jsonl")


def test_task_files_of_either_suite_load_and_round_trip(eval_tasks):
    suite, basic = load_task_file(BASIC_EVAL_PATH)
    assert suite == "basic" and len(basic) == 1024 and not isinstance(basic[0], AgenticTask)
    suite, agentic = load_task_file(S.EVAL_PATH)
    assert suite == "agentic" and agentic == eval_tasks
    for t in eval_tasks[:100] + S.generate("train", 100, seed=9):
        assert AgenticTask.from_json(json.loads(json.dumps(t.to_json()))) == t


def _row(**change):
    row = S.load_eval_tasks()[0].to_json()
    for k, v in change.items():
        if v is None:
            row.pop(k)
        else:
            row[k] = v
    return json.dumps(row)


@pytest.mark.parametrize("line, why", [
    ("{not json", "Expecting property name"),
    (_row(prompt=None), "lacks 'prompt'"),
    (_row(difficulty="2"), "'difficulty' must be int"),
    (_row(difficulty=7), "difficulty must be 1-3"),
    (_row(cases="[(1, 2)"), "not a Python literal"),
    (_row(cases="[]"), "non-empty list"),
    (_row(cases=None, expected="3"), "must be a cases check"),
    (_row(suite="fancy"), "unknown suite 'fancy'"),
    (_row(conventions=[]), "'conventions' must be dict"),
    (_row(entry_point="other"), "params must hold 'fn'"),
    ("[1, 2]", "must be a JSON object"),
])
def test_loader_rejects_bad_rows_naming_file_and_line(tmp_path, line, why):
    path = tmp_path / "tasks.jsonl"
    good = S.EVAL_PATH.read_text().splitlines()[1]
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(TaskFileError) as e:
        load_task_file(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}:2: bad task row") and why in msg


def test_loader_refuses_mixed_suites_duplicates_and_empty_files(tmp_path):
    path = tmp_path / "t.jsonl"
    agentic_row, basic_row = S.EVAL_PATH.read_text().splitlines()[0], BASIC_EVAL_PATH.read_text().splitlines()[5]
    path.write_text(agentic_row + "\n" + basic_row + "\n")
    with pytest.raises(TaskFileError, match=r":2: .*a row of the basic suite in a file of the agentic suite"):
        load_task_file(path)
    path.write_text(agentic_row + "\n" + agentic_row + "\n")
    with pytest.raises(TaskFileError, match="duplicate id"):
        load_task_file(path)
    path.write_text("\n")
    with pytest.raises(TaskFileError, match="no tasks"):
        load_task_file(path)


# ---- split hygiene ------------------------------------------------------------------------

def test_no_eval_prompt_or_solution_reaches_training_or_validation(eval_tasks):
    eval_prompts = {t.prompt for t in eval_tasks}
    eval_solutions = {normalised(t.solution) for t in eval_tasks}
    train, val = S.generate("train", 10_000, seed=0), S.generate("val", 500, seed=0)
    for split, tasks in (("train", train), ("val", val)):
        assert not eval_prompts & {t.prompt for t in tasks}, split
        assert not eval_solutions & {normalised(t.solution) for t in tasks}, split   # not under another prompt either
        assert all(S.split_of(t.family, t.core()) == split for t in tasks), split
    assert not {t.prompt for t in val} & {t.prompt for t in train}
    assert Counter(t.family for t in train).keys() == {f.name for f in S.FAMILIES}


def test_normalised_ignores_names_and_layout_only():
    a = "def f(xs):\n    count = 0\n    for x in xs:\n        if x > 3:\n            count += 1\n    return count"
    b = "def g(nums):\n    n = 0\n    for v in nums:\n        if v > 3:\n            n += 1\n\n    return n"
    assert normalised(a) == normalised(b)
    assert normalised(a) != normalised(a.replace("> 3", ">= 3")) != normalised(a.replace("3", "4"))


def test_cores_decide_the_split_so_conventions_and_names_never_cross_it():
    for fam, level in S.slots():
        split = S.split_cores(fam.name, level)
        keys = {s: {S.core_key(fam.name, c) for c in cores} for s, cores in split.items()}
        assert not keys["eval"] & keys["train"] and not keys["eval"] & keys["val"] and not keys["val"] & keys["train"]
        assert sum(map(len, keys.values())) == len(fam.space(level))


# ---- through the real sandbox -------------------------------------------------------------

def test_every_eval_reference_passes_in_the_sandbox(eval_tasks, pool):
    verdicts = pool.verify_judged([(t.solution, t.check) for t in eval_tasks])
    failed = [(t.id, v.feedback) for t, v in zip(eval_tasks, verdicts) if not v.passed]
    assert not failed, failed[:5]
    assert all(v.extra["cases_passed"] == len(t.check.inputs) for t, v in zip(eval_tasks, verdicts))


def test_every_other_convention_value_fails_a_case(eval_tasks, pool):
    """Retries are needed by construction: the reference written for any other value of any open
    convention fails at least one hidden case, and the feedback shows a case that tells them apart."""
    items, meta = [], []
    for t in eval_tasks:
        fam = S.FAMILY_BY_NAME[t.family]
        for cv in fam.convs(t.params["level"]):
            for value in cv.values:
                if value != t.conventions[cv.name]:
                    other = {**t.conventions, cv.name: value}
                    items.append((fam.solution(t.params, other), t.check))
                    meta.append((t, fam, other))
    verdicts = pool.verify_judged(items)
    assert len(items) >= len(eval_tasks)
    for (t, fam, other), v in zip(meta, verdicts):
        assert not v.passed, (t.id, other)
        n = len(t.check.inputs)
        assert v.feedback.startswith(f"{v.extra['cases_passed']}/{n} passed\n") and v.extra["cases_passed"] < n
        call = v.feedback.splitlines()[1]
        # the case shown is one where the two conventions disagree, with both values
        shown = [i for i, args in enumerate(t.check.inputs)
                 if call.startswith(f"{t.check.entry_point}({', '.join(map(repr, args))}) returned ")]
        assert len(shown) == 1, (t.id, v.feedback)
        i = shown[0]
        theirs = fam.expect(t.params, other, [t.check.inputs[i]])[0]
        assert not same(t.check.expected[i], theirs)
        assert call.endswith(f" returned {theirs!r}, expected {t.check.expected[i]!r}"), (call, theirs)


def test_mutants_of_eval_references_are_killed(eval_tasks, pool):
    """A seeded sample of 3 mutants per frozen task (the full figure: python -m sut.tasks.agentic.mutate)."""
    rep = kill_rate(eval_tasks, pool, per_task=3, seed=0)
    assert rep.mutants >= 2500
    assert rep.rate >= 0.95, (rep.rate, rep.survivors[:5])
    assert set(rep.by_kind) >= {"compare", "constant", "drop", "swap_branches", "negate", "arith", "range"}


def test_mutants_cover_every_kind_and_compile():
    code = ("def f(xs, k):\n    out = []\n    for i in range(len(xs) - 1):\n        if xs[i] > k and not xs[i] == 3:\n"
            "            out.append(xs[i] + 1)\n        else:\n            out.append(True)\n    return out")
    ms = mutants(code)
    assert {m.kind for m in ms} == {"compare", "constant", "range", "swap_branches", "negate", "drop", "boolop", "arith", "bool"}
    assert len({m.code for m in ms}) == len(ms) and all(m.code != ast.unparse(ast.parse(code)) for m in ms)
    for m in ms:
        compile(m.code, "<m>", "exec")
    assert mutants(code) == ms


def test_cases_feedback_reads_like_a_test_runner(pool):
    check = CasesCheck("count_above", (([3, 5, 5], 5), ([], 1), ([7], 1), ([1], 1)), (2, 0, 1, 1))
    assert check_from_json(json.loads(json.dumps(check_to_json(check)))) == check
    ok = "def count_above(xs, k):\n    count = 0\n    for x in xs:\n        if x >= k:\n            count += 1\n    return count"
    cases = [
        (ok, "passed", ""),
        (ok.replace(">=", ">"), "wrong_output", "2/4 passed\ncount_above([3, 5, 5], 5) returned 0, expected 2\ncount_above([1], 1) returned 0, expected 1"),
        (ok.replace("return count", "return count + xs[0] - xs[0]"), "runtime_error",
         "3/4 passed\ncount_above([], 1) raised IndexError: list index out of range (line 6)"),
        ("def count_above(xs, k):\n    return {k}", "wrong_output",
         "0/4 passed\n" + "\n".join(f"count_above({a}) returned a value that is not plain data (got set)"
                                      for a in ("[3, 5, 5], 5", "[], 1", "[7], 1"))),   # three failures at most
        ("x = 1 / 0\n", "runtime_error", "0/4 passed\nZeroDivisionError: division by zero (line 1)"),
        ("def other():\n    pass", "wrong_output", "0/4 passed\nno function: the program did not define count_above"),
    ]
    for code, status, feedback in cases:
        v = pool.verify(code, check)
        assert (v.status.value, v.feedback) == (status, feedback)
    long = CasesCheck("f", tuple(((list(range(i, i + 40)),)) for i in range(6)), tuple(range(6)))
    v = pool.verify("def f(xs):\n    return xs", long)
    assert len(v.feedback) <= 400 and v.feedback.startswith("0/6 passed\nf([0, 1, 2")
    # the other checks' feedback is unchanged (shipped checkpoints were trained on it)
    v = pool.verify("def add_one(x):\n    return x + 2", CallCheck("add_one", ((3,), (4,)), (4, 5)))
    assert v.feedback == "add_one(3): expected 4, got 5"


# ---- command line -------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sut.tasks", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_writes_any_split_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "held_out.jsonl"
    r = _cli("--suite", "agentic", "--split", "eval", "--seed", "5", "--count", "60", "--jsonl", str(out))
    assert r.returncode == 0, r.stderr
    suite, tasks = load_task_file(out)
    assert suite == "agentic" and tasks == S.generate("eval", 60, seed=5)
    before = out.read_bytes()
    r = _cli("--suite", "agentic", "--count", "5", "--jsonl", str(out))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--force" in r.stderr and out.read_bytes() == before
    r = _cli("--suite", "agentic", "--count", "5", "--jsonl", str(out), "--force")
    assert r.returncode == 0 and load_task_file(out)[1] == S.generate("train", 5, seed=0)
    r = _cli("--split", "val", "--count", "4", "--jsonl", str(tmp_path / "basic.jsonl"))
    assert r.returncode == 0 and load_task_file(tmp_path / "basic.jsonl")[0] == "basic"
    for bad in (["--suite", "basic", "--split", "eval", "--count", "3", "--jsonl", str(tmp_path / "b.jsonl")],
                ["--suite", "agentic", "--jsonl", str(tmp_path / "c.jsonl")],
                ["--suite", "agentic", "--count", "3", "--jsonl", str(tmp_path / "no" / "d.jsonl")],
                ["--suite", "fancy", "--families"]):
        r = _cli(*bad)
        assert r.returncode == 2 and "error" in r.stderr, bad
    assert sorted(p.name for p in tmp_path.iterdir()) == ["basic.jsonl", "held_out.jsonl"]


def test_families_table_is_in_the_docs():
    table = S.families_table()
    doc = (ROOT / "docs" / "tasks.md").read_text()
    for row in table.splitlines()[2:]:
        fam = row.split("|")[1].strip()
        assert f"| {fam} |" in doc
    assert S.EVAL_SHA256 in doc


def test_verifier_batch_command_judges_cases_rows(tmp_path):
    rows = tmp_path / "rows.jsonl"
    t = S.load_eval_tasks()[0]
    rows.write_text(json.dumps({"id": t.id, "code": t.solution, **check_to_json(t.check)}) + "\n")
    r = subprocess.run([sys.executable, "-m", "verifier", "batch", str(rows)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["status"] == "passed" and out["extra"]["cases_passed"] == len(t.check.inputs)


def test_stats_table_is_in_the_docs():
    """`python -m sut.tasks --suite agentic --stats` is what docs/tasks.md shows, and its uniform-guess pass@1 and
    blind bound agree with a direct count over the frozen set's conventions."""
    assert inspect.signature(S.stats_table).parameters["budget"].default == DEFAULTS["agentic"].max_attempts
    table = S.stats_table()
    body = "\n".join(table.splitlines()[2:])
    assert body in (ROOT / "docs" / "tasks.md").read_text()
    rows = dict((cell.strip() for cell in line.strip("|").split(" | ")) for line in table.splitlines()[2:])
    tasks = S.load_eval_tasks()
    joint = [1] * len(tasks)
    for i, t in enumerate(tasks):
        for cv in S.FAMILY_BY_NAME[t.family].convs(t.params["level"]):
            joint[i] *= len(cv.values)
    assert rows["pass@1 of a uniform guess of the conventions (a model that writes the rest right)"] == \
        f"{sum(1 / j for j in joint) / len(tasks):.3f}"
    assert rows["blind bound: pass@final of 8 distinct guesses without feedback"] == \
        f"{sum(min(1, 8 / j) for j in joint) / len(tasks):.3f}"
