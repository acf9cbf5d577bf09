"""The code-task suite: Task records, the seeded generator, and the frozen evaluation set.

Splits (docs/tasks.md):
- eval: 1,024 tasks drawn once from EVAL_SEED, balanced over difficulties and, within a
  difficulty, over families; committed as sut/tasks/data/eval_tasks.jsonl, sha256 pinned below.
- val: ``generate_tasks("val", n, seed)``: only prompts whose hash falls in the val bucket
  (sha256(prompt) % 20 == 0), never an eval prompt, unique within the split.
- train: ``iter_train_tasks(seed)`` (endless) / ``generate_tasks("train", n, seed)`` (its
  first n): every other prompt, never an eval prompt, never a val-bucket prompt.

Usage:
    python -m sut.tasks --write-eval       # regenerate the frozen file, print its sha256
    python -m sut.tasks --show 5           # print sample tasks (--split train|val|eval)
    python -m sut.tasks --families         # the families as a markdown table (docs/tasks.md)
    python -m sut.tasks --suite agentic --seed N --count K --jsonl FILE.jsonl   # any split (--split)

``--suite basic`` (this module, the default) or ``agentic`` (sut/tasks/agentic/, docs/tasks.md).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import random
import sys
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from sut.tasks import (families_lists as task_families_lists, families_loops as task_families_loops,
                       families_numbers as task_families_numbers, families_text as task_families_text)
from sut.tasks.families import Draft, Family
from sut.tasks.record import EvalSetError, Task, fix_hint, read_pinned, shown  # noqa: F401 - re-exported: sut.tasks.basic.Task
from verifier.checks import check_to_json

log = logging.getLogger(__name__)

FAMILIES: list[Family] = [*task_families_numbers.FAMILIES, *task_families_text.FAMILIES,
                          *task_families_lists.FAMILIES, *task_families_loops.FAMILIES]
FAMILY_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
REFERENCE_ORIGINALS = task_families_loops.REFERENCE_ORIGINALS

EVAL_PATH = Path(__file__).resolve().parent / "data" / "eval_tasks.jsonl"
EVAL_SIZE = 1024
EVAL_SEED = 4
EVAL_SHA256 = "18f4238520e2ee0f3b7339890cf00afdce1a8784313dcf4d7084d7cbb5fd3204"
VAL_BUCKETS = 20  # a prompt is val-only when sha256(prompt) % VAL_BUCKETS == 0
SPLITS = ("train", "val")


def _task(task_id: str, fam: Family, level: int, draft: Draft) -> Task:
    return Task(task_id, fam.name, level, draft.prompt, draft.solution, draft.check)


def is_val_prompt(prompt: str) -> bool:
    """True for the 1 in VAL_BUCKETS prompts reserved for validation (stable across runs)."""
    return int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big") % VAL_BUCKETS == 0


def slots_by_difficulty() -> dict[int, list[tuple[Family, int]]]:
    """(family, level) pairs grouped by difficulty: the unit the splits balance over."""
    out: dict[int, list[tuple[Family, int]]] = {}
    for fam in FAMILIES:
        for level in fam.levels:
            out.setdefault(level, []).append((fam, level))
    return dict(sorted(out.items()))


def _draw_slot(rng: random.Random, slots: dict[int, list[tuple[Family, int]]]) -> tuple[Family, int]:
    """Difficulty uniformly, then a (family, level) of that difficulty uniformly."""
    return rng.choice(slots[rng.choice(list(slots))])


# ---- the frozen evaluation set ----------------------------------------------------------

def build_eval_tasks() -> list[Task]:
    """The evaluation set, deterministically from EVAL_SEED (what --write-eval writes).

    Quotas: EVAL_SIZE split evenly over difficulties, each share split evenly over that
    difficulty's (family, level) slots; the 8 reference originals fill part of the
    reference family's quota. Prompts are unique; the order is shuffled, then numbered.
    """
    rng = random.Random(f"eval:{EVAL_SEED}")
    slots = slots_by_difficulty()
    per_level = {d: EVAL_SIZE // len(slots) + (i < EVAL_SIZE % len(slots)) for i, d in enumerate(slots)}
    seen: set[str] = set()
    drafts: list[tuple[Family, int, Draft]] = []
    ref = FAMILY_BY_NAME["reference"]
    for draft in REFERENCE_ORIGINALS:
        seen.add(draft.prompt)
        drafts.append((ref, 1, draft))
    for d, group in slots.items():
        q, r = divmod(per_level[d], len(group))
        extra = set(rng.sample(range(len(group)), r))
        for i, (fam, level) in enumerate(group):
            quota = q + (i in extra) - (len(REFERENCE_ORIGINALS) if fam is ref else 0)
            for _ in range(quota):
                for _try in range(1000):
                    draft = fam.generate(rng, level)
                    if draft.prompt not in seen:
                        break
                else:
                    raise RuntimeError(f"family {fam.name} level {level}: cannot find {quota} unique prompts")
                seen.add(draft.prompt)
                drafts.append((fam, level, draft))
    rng.shuffle(drafts)
    return [_task(f"eval-{i:04d}", fam, level, draft) for i, (fam, level, draft) in enumerate(drafts)]


def eval_file_bytes(tasks: list[Task]) -> bytes:
    return "".join(json.dumps(t.to_json()) + "\n" for t in sorted(tasks, key=lambda t: t.id)).encode()


def write_eval(path: Path = EVAL_PATH) -> str:
    """Regenerate the frozen file at ``path``; return its sha256."""
    data = eval_file_bytes(build_eval_tasks())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _fix_hint(path: Path) -> str:
    return fix_hint(path, "python -m sut.tasks --write-eval", "sut/tasks/basic.py")


def load_eval_tasks(path: Path = EVAL_PATH) -> list[Task]:
    """The frozen evaluation tasks, after checking the file's sha256 against EVAL_SHA256."""
    path = Path(path)
    data = read_pinned(path, EVAL_SHA256, _fix_hint(path))
    tasks = []
    for n, line in enumerate(data.decode().splitlines(), 1):
        try:
            tasks.append(Task.from_json(json.loads(line)))
        except (ValueError, KeyError) as e:
            raise EvalSetError(f"{shown(path)}:{n}: bad task row ({e}); {_fix_hint(path)}") from None
    return tasks


@lru_cache(maxsize=4)
def _eval_prompts(path: Path) -> frozenset[str]:
    return frozenset(t.prompt for t in load_eval_tasks(path))


# ---- train and validation splits --------------------------------------------------------

def iter_train_tasks(seed: int, eval_path: Path = EVAL_PATH) -> Iterator[Task]:
    """Endless deterministic training tasks: never an eval prompt, never a val prompt."""
    banned = _eval_prompts(Path(eval_path))
    rng = random.Random(f"train:{seed}")
    slots = slots_by_difficulty()
    i = 0
    while True:
        fam, level = _draw_slot(rng, slots)
        draft = fam.generate(rng, level)
        if draft.prompt in banned or is_val_prompt(draft.prompt):
            continue
        yield _task(f"train-{i:07d}", fam, level, draft)
        i += 1


def _iter_val_tasks(seed: int, banned: frozenset[str]) -> Iterator[Task]:
    rng = random.Random(f"val:{seed}")
    slots = slots_by_difficulty()
    seen: set[str] = set()
    for i in itertools.count():
        fam, level = _draw_slot(rng, slots)
        for _try in range(VAL_BUCKETS * 200):
            draft = fam.generate(rng, level)
            if is_val_prompt(draft.prompt) and draft.prompt not in banned and draft.prompt not in seen:
                break
        else:
            raise RuntimeError(f"family {fam.name} level {level}: no fresh validation prompt found")
        seen.add(draft.prompt)
        yield _task(f"val-{i:05d}", fam, level, draft)


def generate_tasks(split: str, n: int, seed: int = 0, eval_path: Path = EVAL_PATH) -> list[Task]:
    """``n`` tasks of ``split`` ("train" or "val"), deterministic per (split, n, seed).

    "train" gives the first n of iter_train_tasks(seed). The eval set is not generated
    here: it is frozen, read it with load_eval_tasks().
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {SPLITS} (the eval set is load_eval_tasks())")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if split == "train":
        return list(itertools.islice(iter_train_tasks(seed, eval_path), n))
    return list(itertools.islice(_iter_val_tasks(seed, _eval_prompts(Path(eval_path))), n))


def families_table() -> str:
    """A markdown table of the families with one example per level (docs/tasks.md)."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")
    rows = ["| family | category | difficulty | example prompt | example solution (⏎ = newline) |",
            "|---|---|---|---|---|"]
    for fam in FAMILIES:
        rng = random.Random(f"doc:{fam.name}")
        for level in fam.levels:
            d = fam.generate(rng, level)
            code = esc(d.solution.replace("\n", " ⏎ "))
            rows.append(f"| {fam.name} | {fam.category} | {level} | {esc(d.prompt)} | `{code}` |")
    return "\n".join(rows)


# ---- CLI --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sut.tasks",
                                 description="Code-task suites: show tasks, write task files, regenerate the eval set.")
    ap.add_argument("--suite", choices=("basic", "agentic"), default="basic", help="task suite (default %(default)s)")
    ap.add_argument("--write-eval", action="store_true", help=f"regenerate {shown(EVAL_PATH)} and print its sha256")
    ap.add_argument("--show", type=int, metavar="N", help="print N sample tasks")
    ap.add_argument("--families", action="store_true", help="print the families as a markdown table")
    ap.add_argument("--stats", action="store_true", help="agentic: print the frozen set's measures as a markdown table")
    ap.add_argument("--split", choices=("train", "val", "eval"), default="train", help="split for --show and --jsonl")
    ap.add_argument("--seed", type=int, default=0, help="seed for --show and --jsonl")
    ap.add_argument("--jsonl", metavar="PATH", help="write --count tasks of --split as a JSONL task file (a new file)")
    ap.add_argument("--count", type=int, metavar="K", help="number of tasks for --jsonl")
    ap.add_argument("--force", action="store_true", help="let --jsonl replace an existing file")
    args = ap.parse_args(argv)
    if not args.write_eval and args.show is None and not args.families and not args.stats and args.jsonl is None:
        ap.error("give --write-eval, --show N, --families, --stats or --jsonl PATH")
    if args.stats and args.suite != "agentic":
        ap.error("--stats is the agentic suite's: add --suite agentic")
    if args.show is not None and args.show < 0:
        ap.error(f"--show needs N >= 0, got {args.show}")
    if args.jsonl is not None and (args.write_eval or args.show is not None or args.families or args.stats):
        ap.error("--jsonl writes a task file on its own: drop --write-eval, --show, --families and --stats")
    if args.count is not None and args.jsonl is None:
        ap.error("--count goes with --jsonl PATH")
    if args.suite == "agentic" or args.jsonl is not None:
        from sut.tasks import cli  # noqa: PLC0415 - the agentic families load only when asked for

        return cli.run(args, generate_tasks)   # the basic generator, passed: cli never imports this module
    if args.families:
        print(families_table())
    try:
        if args.write_eval:
            sha = write_eval()
            print(f"wrote {shown(EVAL_PATH)} ({EVAL_SIZE} tasks) sha256 {sha}")
            if sha != EVAL_SHA256:
                print(f"EVAL_SHA256 in sut/tasks/basic.py is {EVAL_SHA256}: set it to {sha}")
        if args.show is not None:
            tasks = (load_eval_tasks()[: args.show] if args.split == "eval"
                     else generate_tasks(args.split, args.show, args.seed))
            for t in tasks:
                print(f"--- {t.id}  {t.family}  difficulty {t.difficulty}\n{t.prompt}\n{t.solution}\n{check_to_json(t.check)}")
    except EvalSetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
