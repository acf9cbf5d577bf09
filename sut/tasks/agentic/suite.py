"""The agentic suite: its families, the train/val/eval split, the seeded generator and the frozen set.

Splits are decided per *core* (a family, a level and the semantic parameters the prompt states,
never the names or the conventions): within each (family, level) slot the cores are ranked by
sha256 of their key; the first EVAL_SHARE go to eval, the next VAL_SHARE to val, the rest to
train. A prompt and every solution written for it (any convention, any names, any paraphrase)
therefore belong to one split only, so no evaluation solution reaches training under another
prompt. As a second guard the training and validation streams skip any task whose prompt or
normalised solution is in the frozen evaluation file (it never fires for the frozen set; tested).

    generate("eval", 1024, seed)   # balanced over (family, level) slots, unique prompts
    generate("val", n, seed)       # unique prompts
    iter_tasks("train", seed)      # endless; generate("train", n, seed) is its first n
"""
from __future__ import annotations

import collections
import hashlib
import itertools
import json
import math
import random
import statistics
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from sut.tasks.agentic import fam_chars, fam_dicts, fam_loops, fam_numbers, fam_strings
from sut.tasks.agentic.family import Family
from sut.tasks.agentic.record import AgenticTask, TaskFileError, load_task_file, normalised, task_file_bytes
from sut.tasks.record import EvalSetError, fix_hint, read_pinned, shown
from verifier.checks import CasesCheck

FAMILIES: list[Family] = [*fam_numbers.FAMILIES, *fam_loops.FAMILIES, *fam_strings.FAMILIES, *fam_chars.FAMILIES,
                          *fam_dicts.FAMILIES]
FAMILY_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
SPLITS = ("train", "val", "eval")
EVAL_SHARE, VAL_SHARE = 0.2, 0.1   # of each slot's cores, by hash rank
EVAL_PATH = Path(__file__).resolve().parents[1] / "data" / "agentic_eval_tasks.jsonl"
EVAL_SIZE = 1024
EVAL_SEED = 17
EVAL_SHA256 = "f579cbe4754c83291991b0232eafdbd9dc3ddd7dcc22c2763f39b2f0979a03a6"
ID_DIGITS = {"train": 7, "val": 5, "eval": 4}


def slots() -> list[tuple[Family, int]]:
    """(family, level) pairs: the unit that eval balances over and that train draws uniformly."""
    return [(fam, level) for fam in FAMILIES for level in fam.levels]


def core_key(family: str, core: dict[str, Any]) -> str:
    return json.dumps({"family": family, **core}, sort_keys=True)


@lru_cache(maxsize=None)
def split_cores(family: str, level: int) -> dict[str, tuple[dict[str, Any], ...]]:
    """The cores of one slot by split (a pure function of the family's space)."""
    ranked = sorted(FAMILY_BY_NAME[family].space(level),
                    key=lambda c: hashlib.sha256(core_key(family, c).encode()).hexdigest())
    n_eval = max(2, round(len(ranked) * EVAL_SHARE))
    n_val = max(1, round(len(ranked) * VAL_SHARE))
    return {"eval": tuple(ranked[:n_eval]), "val": tuple(ranked[n_eval:n_eval + n_val]),
            "train": tuple(ranked[n_eval + n_val:])}


def split_of(family: str, core: dict[str, Any]) -> str:
    """Which split a core belongs to."""
    for split, cores in split_cores(family, core["level"]).items():
        if core in cores:
            return split
    raise ValueError(f"{family}: {core} is not a core of this family")


def make_task(task_id: str, fam: Family, level: int, split: str, rng: random.Random) -> AgenticTask:
    """One task of ``split`` for the slot (fam, level): core, names, conventions, prompt, cases."""
    core = rng.choice(split_cores(fam.name, level)[split])
    p = fam.params(core, rng)
    conv = {cv.name: rng.choice(cv.values) for cv in fam.convs(level)}
    prompt = rng.choice(fam.prompts(p))
    inputs, expected = fam.cases(p, conv, rng)
    check = CasesCheck(p["fn"], tuple(inputs), tuple(expected))
    return AgenticTask(task_id, fam.name, fam.level_difficulty(level), prompt, fam.solution(p, conv), check, conv, p)


def _task_id(split: str, i: int) -> str:
    return f"{split}-{i:0{ID_DIGITS[split]}d}"


@lru_cache(maxsize=4)
def _eval_keys(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    tasks = load_eval_tasks(path)
    return frozenset(t.prompt for t in tasks), frozenset(normalised(t.solution) for t in tasks)


_NORMALISED: dict[tuple[str, str, str], str] = {}


def _normalised_of(task: AgenticTask) -> str:
    """``normalised(task.solution)``, cached by (family, core, conventions): the names are all it leaves out."""
    key = (task.family, core_key(task.family, task.core()), json.dumps(task.conventions, sort_keys=True))
    if key not in _NORMALISED:
        if len(_NORMALISED) > 1 << 17:
            _NORMALISED.clear()
        _NORMALISED[key] = normalised(task.solution)
    return _NORMALISED[key]


def iter_tasks(split: str, seed: int, eval_path: Path = EVAL_PATH) -> Iterator[AgenticTask]:
    """Endless deterministic tasks of "train" (prompts may repeat) or "val" (unique prompts)."""
    if split not in ("train", "val"):
        raise ValueError(f"iter_tasks makes train or val tasks, not {split!r}: use generate('eval', n, seed)")
    prompts, solutions = _eval_keys(Path(eval_path))
    rng = random.Random(f"agentic:{split}:{seed}")
    all_slots, seen, i = slots(), set(), 0
    while True:
        fam, level = rng.choice(all_slots)
        task = make_task(_task_id(split, i), fam, level, split, rng)
        if task.prompt in prompts or _normalised_of(task) in solutions:
            continue
        if split == "val":
            if task.prompt in seen:
                continue
            seen.add(task.prompt)
        yield task
        i += 1


def build_eval(seed: int, count: int) -> list[AgenticTask]:
    """``count`` eval-split tasks: equal shares (+-1) per slot, unique prompts, shuffled, then numbered."""
    rng = random.Random(f"agentic:eval:{seed}")
    all_slots = slots()
    q, r = divmod(count, len(all_slots))
    extra = set(rng.sample(range(len(all_slots)), r))
    seen: set[str] = set()
    made: list[AgenticTask] = []
    for i, (fam, level) in enumerate(all_slots):
        for _ in range(q + (i in extra)):
            for _try in range(2000):
                task = make_task("", fam, level, "eval", rng)
                if task.prompt not in seen:
                    break
            else:
                raise RuntimeError(f"{fam.name} level {level}: too few distinct eval prompts for {count} tasks")
            seen.add(task.prompt)
            made.append(task)
    rng.shuffle(made)
    return [AgenticTask(_task_id("eval", i), *_fields(t)[1:]) for i, t in enumerate(made)]


def _fields(t: AgenticTask) -> tuple:
    return (t.id, t.family, t.difficulty, t.prompt, t.solution, t.check, t.conventions, t.params)


def generate(split: str, count: int, seed: int = 0, eval_path: Path = EVAL_PATH) -> list[AgenticTask]:
    """``count`` tasks of ``split``, deterministic per (split, count, seed)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if split == "eval":
        return build_eval(seed, count)
    return list(itertools.islice(iter_tasks(split, seed, eval_path), count))


# ---- the frozen evaluation set ----------------------------------------------------------

def _fix_hint(path: Path) -> str:
    return fix_hint(path, "python -m sut.tasks --suite agentic --write-eval", "sut/tasks/agentic/suite.py")


def write_eval(path: Path = EVAL_PATH) -> str:
    """Regenerate the frozen file at ``path``; return its sha256."""
    data = task_file_bytes(build_eval(EVAL_SEED, EVAL_SIZE))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load_eval_tasks(path: Path = EVAL_PATH) -> list[AgenticTask]:
    """The frozen evaluation tasks, after checking the file's sha256 against EVAL_SHA256."""
    path = Path(path)
    read_pinned(path, EVAL_SHA256, _fix_hint(path))
    try:
        suite, tasks = load_task_file(path)
    except TaskFileError as e:
        raise EvalSetError(f"{e}; {_fix_hint(path)}") from None
    if suite != "agentic":
        raise EvalSetError(f"{shown(path)}: holds {suite} tasks, not agentic ones; {_fix_hint(path)}")
    return tasks  # type: ignore[return-value]


# ---- documentation ----------------------------------------------------------------------

def families_table() -> str:
    """Markdown: per family and level, what the prompt leaves open, what reveals it, and an example."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ⏎ ")
    rows = ["| family | category | level (difficulty) | cores | leaves open (values) | revealed by | example prompt |",
            "|---|---|---|---|---|---|---|"]
    for fam in FAMILIES:
        for level in fam.levels:
            rng = random.Random(f"doc:{fam.name}:{level}")
            t = make_task("doc", fam, level, "train", rng)
            convs = fam.convs(level)
            opens = "; ".join(f"{cv.name}: {' / '.join(repr(v) for v in cv.values)}" for cv in convs)
            reveals = "; ".join(f"{cv.name}: {cv.reveals}" for cv in convs)
            rows.append(f"| {fam.name} | {fam.category} | {level} ({fam.level_difficulty(level)}) | "
                        f"{len(fam.space(level))} | {esc(opens)} | {esc(reveals)} | {esc(t.prompt)} |")
    return "\n".join(rows)


def stats_table(budget: int = 8) -> str:
    """Markdown: the frozen set's shape, and what guessing the open conventions alone achieves in ``budget``
    attempts (default: the suite's max_attempts in sut/tasks/suites.py, which imports this module, so the
    value is written here and a test holds the two equal).

    ``blind bound`` is the pass@final of a model that writes everything else right and tries ``budget``
    distinct joint guesses of the conventions without reading any feedback: the most a retry loop
    told only "failed" can reach."""
    tasks = load_eval_tasks()
    sizes = [[len(cv.values) for cv in FAMILY_BY_NAME[t.family].convs(t.params["level"])] for t in tasks]
    joint = [math.prod(s) for s in sizes]
    wide = sum(max(s, default=0) > budget for s in sizes)
    mean = statistics.fmean
    lines, chars = [len(t.solution.splitlines()) for t in tasks], [len(t.solution) for t in tasks]
    words, cases = [len(t.prompt.split()) for t in tasks], {len(t.check.inputs) for t in tasks}
    by = lambda key: " / ".join(str(sum(key(t) == k for t in tasks)) for k in (1, 2, 3))  # noqa: E731
    rows = [("tasks per difficulty 1 / 2 / 3", by(lambda t: t.difficulty)),
            ("open conventions per task: 1 / 2 / 3", by(lambda t: len(t.conventions))),
            ("tasks by joint convention values (values: tasks)",
             ", ".join(f"{j}: {n}" for j, n in sorted(collections.Counter(joint).items()))),
            ("solution lines: mean (min-max)", f"{mean(lines):.2f} ({min(lines)}-{max(lines)})"),
            ("solution characters: mean (max)", f"{mean(chars):.0f} ({max(chars)})"),
            ("prompt words: mean (max)", f"{mean(words):.1f} ({max(words)})"),
            ("cases per task", " / ".join(map(str, sorted(cases)))),
            (f"tasks with a convention of more values than the attempt budget ({budget})",
             f"{wide} ({wide / len(tasks):.0%})"),
            ("pass@1 of a uniform guess of the conventions (a model that writes the rest right)",
             f"{mean([1 / j for j in joint]):.3f}"),
            (f"blind bound: pass@final of {budget} distinct guesses without feedback",
             f"{mean([min(1.0, budget / j) for j in joint]):.3f}")]
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])
