"""A task of either suite, and the frozen files its evaluation sets live in.

The base of sut/tasks/basic.py (the basic suite) and sut/tasks/agentic/ (the agentic one): a ``Task`` row, and
``read_pinned``, which reads a frozen file only if its bytes match the sha256 pinned in code.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verifier.checks import Check, check_from_json, check_to_json


class EvalSetError(RuntimeError):
    """The frozen evaluation file is missing, altered or unreadable."""


@dataclass(frozen=True)
class Task:
    id: str
    family: str
    difficulty: int
    prompt: str
    solution: str
    check: Check

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "family": self.family, "difficulty": self.difficulty, "prompt": self.prompt,
                "solution": self.solution, **check_to_json(self.check)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Task":
        missing = [k for k in ("id", "family", "difficulty", "prompt", "solution") if k not in d]
        if missing:
            raise ValueError(f"task row lacks {missing}")
        return cls(d["id"], d["family"], int(d["difficulty"]), d["prompt"], d["solution"], check_from_json(d))


def shown(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (for one-line errors)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_pinned(path: Path, sha256: str, hint: str) -> bytes:
    """A frozen file's bytes, after checking them against their pinned ``sha256``; EvalSetError
    (one line, ending with ``hint``: how to restore it) when it is unreadable or altered."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise EvalSetError(f"{shown(path)}: cannot read ({e.strerror}); {hint}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise EvalSetError(f"{shown(path)}: sha256 mismatch (got {got[:12]}.., pinned {sha256[:12]}..); {hint}")
    return data


def fix_hint(path: Path, regenerate: str, pin: str) -> str:
    """How to restore a frozen file: from git, or by regenerating it and updating the sha256 pinned in ``pin``."""
    return (f"restore it with `git checkout {shown(path)}` or regenerate it with `{regenerate}` and update "
            f"EVAL_SHA256 in {pin}")
