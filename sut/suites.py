"""The two task suites and what each entry point takes from the choice of one.

``basic`` is the original suite of one-line tasks (sut/tasks.py); ``agentic`` is the suite whose
tasks leave conventions open, so retries are needed and the context grows (sut/agentic/). A suite
fixes the frozen evaluation set, the default checkpoint (the one trained for it) and the agent's
default budget (attempts, tokens per attempt). A checkpoint records the suite it was trained for;
running it on the other suite is refused, since its tokenizer and training never saw those tasks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sut.agentic.record import SUITES, TaskFileError, load_task_file
from sut.tasks import Task

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SuiteDefaults:
    checkpoint: Path
    max_attempts: int
    max_new_tokens: int


DEFAULTS = {
    "basic": SuiteDefaults(REPO_ROOT / "checkpoints" / "reference", max_attempts=5, max_new_tokens=160),
    # agentic solutions run to ~120 tokens and a task needs up to three fixes after a slip or two
    "agentic": SuiteDefaults(REPO_ROOT / "checkpoints" / "agentic", max_attempts=8, max_new_tokens=256),
}


class SuiteError(ValueError):
    """A suite name, task file or checkpoint that does not fit the suite asked for (one line, with the fix)."""


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise SuiteError(f"--suite {suite!r}: unknown suite; choose one of {', '.join(SUITES)}")
    return suite


def load_tasks(suite: str, path: Path | None = None) -> list[Task]:
    """The suite's frozen evaluation set (sha256-checked), or the tasks of ``path`` (which must be of ``suite``)."""
    check_suite(suite)
    if path is None:
        if suite == "agentic":
            from sut.agentic.suite import load_eval_tasks  # noqa: PLC0415 - the families load only when asked for
        else:
            from sut.tasks import load_eval_tasks  # noqa: PLC0415
        return load_eval_tasks()
    try:
        file_suite, tasks = load_task_file(path)
    except TaskFileError as e:
        raise SuiteError(str(e)) from None
    if file_suite != suite:
        raise SuiteError(f"{path}: a task file of the {file_suite} suite, but --suite is {suite}; pass --suite {file_suite} "
                         f"or a file written by `python -m sut.tasks --suite {suite} --out FILE`")
    return tasks


def check_checkpoint(checkpoint: Path, config: dict[str, Any], suite: str) -> None:
    """SuiteError unless the checkpoint was trained for ``suite``."""
    from sut.checkpoint import checkpoint_suite  # noqa: PLC0415 - keeps this module free of torch

    trained = checkpoint_suite(config)
    if trained != suite:
        raise SuiteError(f"--checkpoint {checkpoint}: trained for the {trained} suite, not {suite}; pass "
                         f"--suite {trained}, or a checkpoint trained with `python -m sut.train --suite {suite}`")
