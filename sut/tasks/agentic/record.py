"""The agentic task record, task files of either suite, and the normalised form of a solution.

A row of an agentic task file is a basic row (``id, family, difficulty, prompt, solution`` and
the check's fields) plus ``suite: "agentic"``, the open ``conventions`` and the ``params``
(the core the prompt states, plus the drawn names): with them a family can rewrite the
solution for any other convention value (tests, wrong first attempts for training)::

    {"id": "eval-0000", "family": "count_past", "difficulty": 1, "prompt": "...", "solution": "...",
     "entry_point": "count_above", "cases": "[(([3, 5, 5],), 2), ...]", "suite": "agentic",
     "conventions": {"bound": "inclusive"}, "params": {"fn": "count_above", "args": ["xs"], "level": 1, ...}}

A row without ``suite`` is a basic row (sut/tasks/basic.py). ``load_task_file`` reads a file of
either suite, one suite per file, and names the file and line of the first bad row.
"""
from __future__ import annotations

import ast
import builtins
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sut.tasks.record import Task
from verifier.checks import CasesCheck, check_from_json

SUITES = ("basic", "agentic")
_BUILTINS = frozenset(dir(builtins))


class TaskFileError(ValueError):
    """A task file that cannot be read or breaks the schema; the message is one line naming file and line."""


@dataclass(frozen=True)
class AgenticTask(Task):
    conventions: dict[str, Any] = field(default_factory=dict)   # convention name -> the value its tests reveal
    params: dict[str, Any] = field(default_factory=dict)        # core (level, constants) + names (fn, args)

    suite = "agentic"

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "suite": "agentic", "conventions": self.conventions, "params": self.params}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "AgenticTask":
        """Build and validate a row; raises ValueError naming the first problem."""
        for key, kind in (("id", str), ("family", str), ("difficulty", int), ("prompt", str), ("solution", str),
                          ("conventions", dict), ("params", dict)):
            if key not in d:
                raise ValueError(f"agentic task row lacks {key!r}")
            if type(d[key]) is not kind:
                raise ValueError(f"field {key!r} must be {kind.__name__}, got {type(d[key]).__name__}")
        if d.get("suite") != "agentic":
            raise ValueError(f"field 'suite' must be 'agentic', got {d.get('suite')!r}")
        if not 1 <= d["difficulty"] <= 3:
            raise ValueError(f"difficulty must be 1-3, got {d['difficulty']}")
        check = check_from_json(d)
        if not isinstance(check, CasesCheck):
            raise ValueError("an agentic task's check must be a cases check ('entry_point' and 'cases')")
        p = d["params"]
        if not isinstance(p.get("fn"), str) or p["fn"] != check.entry_point or not isinstance(p.get("args"), list):
            raise ValueError("params must hold 'fn' (the entry point) and 'args' (the parameter names)")
        return cls(d["id"], d["family"], d["difficulty"], d["prompt"], d["solution"], check, d["conventions"], p)

    def core(self) -> dict[str, Any]:
        """The semantic parameters (what decides the task's split): params without the names."""
        return {k: v for k, v in self.params.items() if k not in ("fn", "args")}


def row_suite(d: dict[str, Any]) -> str:
    suite = d.get("suite", "basic")
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r} (use one of {', '.join(SUITES)})")
    return suite


def task_from_json(d: dict[str, Any]) -> Task:
    """A Task (basic row) or an AgenticTask (``suite: agentic``), validated."""
    if not isinstance(d, dict):
        raise ValueError(f"a task row must be a JSON object, got {type(d).__name__}")
    return AgenticTask.from_json(d) if row_suite(d) == "agentic" else Task.from_json(d)


def load_task_file(path: Path | str) -> tuple[str, list[Task]]:
    """(suite, tasks) of a JSONL task file of one suite; raises TaskFileError (one line) on the first bad row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise TaskFileError(f"{path}: cannot read ({why})") from None
    suite, tasks, ids = None, [], set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            task = task_from_json(d)
            this = row_suite(d)
            if suite is not None and this != suite:
                raise ValueError(f"a row of the {this} suite in a file of the {suite} suite (one suite per file)")
            if task.id in ids:
                raise ValueError(f"duplicate id {task.id!r}")
        except (ValueError, KeyError, TypeError) as e:
            msg = " ".join(str(e).split())[:200]
            raise TaskFileError(f"{path}:{n}: bad task row ({msg}); fix the row or regenerate the file "
                                "with `python -m sut.tasks --jsonl`") from None
        suite = this
        ids.add(task.id)
        tasks.append(task)
    if not tasks:
        raise TaskFileError(f"{path}: no tasks; write one with `python -m sut.tasks --suite agentic --jsonl FILE`")
    return suite or "basic", tasks


def task_file_bytes(tasks: list[Task]) -> bytes:
    """A task file's exact bytes: one JSON object per line, in the given order."""
    return "".join(json.dumps(t.to_json()) + "\n" for t in tasks).encode()


def normalised(code: str) -> str:
    """``code`` with formatting and every non-builtin identifier made canonical (v0, v1, ... in order of
    first use): two solutions that differ only in names or layout normalise alike (the split leak test)."""
    tree = ast.parse(code)
    names: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in _BUILTINS:
            return name
        return names.setdefault(name, f"v{len(names)}")

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.name = rename(node.name)
        elif isinstance(node, ast.arg):
            node.arg = rename(node.arg)
        elif isinstance(node, ast.Name):
            node.id = rename(node.id)
    return ast.unparse(tree)
