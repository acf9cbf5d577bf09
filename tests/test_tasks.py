"""The code-task suite: determinism, split hygiene, the frozen eval file, mistakes, and
every evaluation solution passing through the real sandbox."""
from __future__ import annotations

import ast
import hashlib
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sut.tasks import basic as T
from sut.train.mistakes import KINDS, mistake, plausible_mistake
from sut.tasks.families import CATEGORIES
from verifier.checks import CallCheck, ValueCheck

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def eval_tasks() -> list[T.Task]:
    return T.load_eval_tasks()


def test_generation_is_deterministic_per_split_n_seed():
    a = T.generate_tasks("train", 300, seed=3)
    assert a == T.generate_tasks("train", 300, seed=3)
    assert a[:50] == T.generate_tasks("train", 50, seed=3)  # train is a prefix of the endless stream
    assert [t.prompt for t in a] != [t.prompt for t in T.generate_tasks("train", 300, seed=4)]
    v = T.generate_tasks("val", 100, seed=1)
    assert v == T.generate_tasks("val", 100, seed=1)
    assert [t.prompt for t in v] != [t.prompt for t in T.generate_tasks("val", 100, seed=2)]


def test_unknown_split_and_bad_n_are_refused():
    with pytest.raises(ValueError, match="load_eval_tasks"):
        T.generate_tasks("eval", 10)
    with pytest.raises(ValueError, match="n must be"):
        T.generate_tasks("train", -1)


def test_at_least_40_families_covering_every_category():
    names = [f.name for f in T.FAMILIES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert {f.category for f in T.FAMILIES} == set(CATEGORIES)
    assert set(T.slots_by_difficulty()) == {1, 2, 3}


@pytest.mark.parametrize("fam", T.FAMILIES, ids=lambda f: f.name)
def test_every_family_yields_learnable_tasks_at_every_declared_level(fam):
    rng = random.Random(fam.name)
    for level in fam.levels:
        drafts = [fam.generate(rng, level) for _ in range(600)]
        assert len({d.prompt for d in drafts}) >= 200, "too few distinct prompts: eval would exhaust training"
        for d in drafts[:100]:
            ast.parse(d.solution)  # parsed, never executed here
            assert len(d.prompt.split()) <= 28 and len(d.solution) <= 160, (d.prompt, d.solution)
            assert len(d.solution.splitlines()) <= 4, d.solution
            if isinstance(d.check, ValueCheck):
                assert d.solution.startswith(("result = ", "xs = ", "d = ", "a, b = ", "n, result = "))
                assert len(repr(d.check.expected)) <= 100
            else:
                assert isinstance(d.check, CallCheck)
                assert d.solution.startswith(f"def {d.check.entry_point}(") and "\n    return " in d.solution
                assert f"{d.check.entry_point}(" in d.prompt
                assert 3 <= len(d.check.inputs) <= 5
    with pytest.raises(ValueError, match="levels"):
        fam.generate(rng, 7)


def test_task_json_round_trip(eval_tasks):
    sample = T.generate_tasks("train", 300, seed=5)
    assert any(isinstance(t.check, CallCheck) for t in sample) and any(isinstance(t.check, ValueCheck) for t in sample)
    for t in sample + eval_tasks[:50]:
        assert T.Task.from_json(t.to_json()) == t
    row = eval_tasks[0].to_json()
    assert list(row)[:5] == ["id", "family", "difficulty", "prompt", "solution"]


def test_eval_file_matches_pin_and_is_balanced(eval_tasks):
    assert hashlib.sha256(T.EVAL_PATH.read_bytes()).hexdigest() == T.EVAL_SHA256
    assert [t.id for t in eval_tasks] == [f"eval-{i:04d}" for i in range(T.EVAL_SIZE)]
    assert len({t.prompt for t in eval_tasks}) == T.EVAL_SIZE
    per_level = Counter(t.difficulty for t in eval_tasks)
    assert max(per_level.values()) - min(per_level.values()) <= 1
    per_slot = Counter((t.family, t.difficulty) for t in eval_tasks)
    all_slots = {(f.name, lv) for group in T.slots_by_difficulty().values() for f, lv in group}
    assert set(per_slot) == all_slots
    for d in per_level:  # within a difficulty, families get equal shares (+-1)
        counts = [c for (name, lv), c in per_slot.items() if lv == d and name != "reference"]
        assert max(counts) - min(counts) <= 1


def test_write_eval_reproduces_the_committed_file(tmp_path):
    path = tmp_path / "eval.jsonl"
    assert T.write_eval(path) == T.EVAL_SHA256
    assert path.read_bytes() == T.EVAL_PATH.read_bytes()


def test_tampered_or_missing_eval_file_raises_one_line_error(tmp_path):
    bad = tmp_path / "eval_tasks.jsonl"
    bad.write_bytes(T.EVAL_PATH.read_bytes().replace(b"result = ", b"result =  ", 1))
    with pytest.raises(T.EvalSetError) as e:
        T.load_eval_tasks(bad)
    msg = str(e.value)
    assert "\n" not in msg and str(bad) in msg and "sha256 mismatch" in msg
    assert "git checkout" in msg and "python -m sut.tasks --write-eval" in msg and "EVAL_SHA256" in msg
    with pytest.raises(T.EvalSetError, match="cannot read") as e:
        T.load_eval_tasks(tmp_path / "nope.jsonl")
    assert "\n" not in str(e.value)


def test_reference_originals_are_in_eval(eval_tasks):
    by_prompt = {t.prompt: t for t in eval_tasks}
    originals = {
        "Return the sum of [1, 2, 3, 4, 5]": ("result = sum([1, 2, 3, 4, 5])", 15),
        "Return 'hello' reversed": ("result = 'hello'[::-1]", "olleh"),
        "Return the length of 'benchmark'": ("result = len('benchmark')", 9),
        "Return 2 ** 10": ("result = 2 ** 10", 1024),
        "Return sorted([3, 1, 4, 1, 5])": ("result = sorted([3, 1, 4, 1, 5])", [1, 1, 3, 4, 5]),
        "Return max(10, 20, 5)": ("result = max(10, 20, 5)", 20),
        "Return 'ab' * 3": ("result = 'ab' * 3", "ababab"),
        "Return list(range(5))": ("result = list(range(5))", [0, 1, 2, 3, 4]),
    }
    for prompt, (solution, expected) in originals.items():
        t = by_prompt[prompt]
        assert (t.family, t.difficulty, t.solution, t.check) == ("reference", 1, solution, ValueCheck(expected))


def test_no_eval_prompt_in_training_or_validation(eval_tasks):
    eval_prompts = {t.prompt for t in eval_tasks}
    train = T.generate_tasks("train", 20_000, seed=0)
    assert not eval_prompts & {t.prompt for t in train}
    assert not any(T.is_val_prompt(t.prompt) for t in train)
    val = T.generate_tasks("val", 400, seed=0)
    assert all(T.is_val_prompt(t.prompt) for t in val) and not eval_prompts & {t.prompt for t in val}
    assert len({t.prompt for t in val}) == len(val)
    assert Counter(t.family for t in train).keys() == {f.name for f in T.FAMILIES}


def test_ids_are_unique_and_name_their_split(eval_tasks):
    train, val = T.generate_tasks("train", 2000, seed=1), T.generate_tasks("val", 200, seed=1)
    for split, ts in (("train", train), ("val", val), ("eval", eval_tasks)):
        ids = [t.id for t in ts]
        assert len(set(ids)) == len(ids) and all(i.startswith(f"{split}-") for i in ids)


def test_mistakes_differ_from_solutions_and_are_deterministic(eval_tasks):
    kinds = Counter()
    for t in eval_tasks:
        m = mistake(t, random.Random(t.id))
        assert m.code != t.solution
        assert m == mistake(t, random.Random(t.id))
        assert plausible_mistake(t, random.Random(t.id)) == m.code
        kinds[m.kind] += 1
    assert set(kinds) == {k for k, _w, _f in KINDS}


def test_literal_mistakes_are_opt_in_mis_copied_literals(eval_tasks):
    kinds = Counter()
    for t in eval_tasks:
        m = mistake(t, random.Random(t.id), literal_weight=6.0)
        assert m.code != t.solution and m == mistake(t, random.Random(t.id), literal_weight=6.0)
        kinds[m.kind] += 1
        if m.kind == "literal":  # only literals change: the code around them is the solution's
            assert _non_literal(t.solution) == _non_literal(m.code), (t.solution, m.code)
    assert kinds["literal"] > 0.25 * len(eval_tasks)
    assert all(mistake(t, random.Random(t.id)).kind != "literal" for t in eval_tasks[:200])  # default: off


def _non_literal(src: str) -> list[str]:
    """The code's tokens other than numbers, strings, signs and commas (what a mis-copied literal keeps)."""
    import io
    import tokenize
    return [t.string for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type not in (tokenize.NUMBER, tokenize.STRING) and t.string not in (",", "-", ":", "")]


def test_cli_show_and_families():
    out = subprocess.run([sys.executable, "-m", "sut.tasks", "--show", "2", "--split", "val"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "val-00000" in out.stdout and "val-00001" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "sut.tasks"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "--write-eval" in bad.stderr
    table = T.families_table()
    doc = (ROOT / "docs" / "tasks.md").read_text()
    for fam in T.FAMILIES:  # the docs list every family
        assert f"| {fam.name} |" in table and f"| {fam.name} |" in doc


def test_every_eval_solution_passes_in_sandbox(eval_tasks):
    pool_mod = pytest.importorskip("verifier.pool")
    with pool_mod.SandboxPool() as pool:
        verdicts = pool.verify_many([(t.solution, t.check) for t in eval_tasks])
        failed = [(t.id, t.solution, v.status, v.feedback) for t, v in zip(eval_tasks, verdicts) if not v.passed]
        assert not failed, failed[:5]
        # and the mistakes the trainer uses are nearly always really wrong
        mistakes = [(plausible_mistake(t, random.Random(t.id)), t.check) for t in eval_tasks]
        still_right = sum(v.passed for v in pool.verify_many(mistakes))
        assert still_right < 0.05 * len(eval_tasks)
