"""The two task suites and what each entry point takes from the choice of one.

``basic`` is the original suite of one-line tasks (sut/tasks/basic.py); ``agentic`` is the suite whose
tasks leave conventions open, so retries are needed and the context grows (sut/tasks/agentic/). A suite
fixes the frozen evaluation set, the default checkpoint (the one trained for it) and the agent's
default budget (attempts, tokens per attempt). A checkpoint records the suite it was trained for;
running it on the other suite is refused, since its tokenizer and training never saw those tasks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sut.tasks.agentic.record import SUITES, TaskFileError, load_task_file
from sut.tasks.record import Task

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUITE = "basic"        # what sut.evaluate, sut.train and the engine options default to without --suite
RUN_SUITE = "agentic"          # what harness/run.py (the main job) runs without --suite
PROJECT_FILE = "nano_codegen.json"   # sut.model.hf_format.PROJECT_FILE, without torch


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


def per_suite(name: str) -> str:
    """Each suite's default ``name`` (a SuiteDefaults field) as 'basic X, agentic Y', for --help texts."""
    def shown(value: Any) -> Any:
        return value.relative_to(REPO_ROOT) if isinstance(value, Path) else value
    return ", ".join(f"{suite} {shown(getattr(d, name))}" for suite, d in DEFAULTS.items())


def check_suite(suite: str) -> str:
    if suite not in SUITES:
        raise SuiteError(f"--suite {suite!r}: unknown suite; choose one of {', '.join(SUITES)}")
    return suite


def eval_path(suite: str) -> Path:
    """The suite's frozen evaluation file (what a run's configuration records and the accuracy pass reads)."""
    if check_suite(suite) == "agentic":
        from sut.tasks.agentic.suite import EVAL_PATH  # noqa: PLC0415 - the families load only when asked for
    else:
        from sut.tasks.basic import EVAL_PATH  # noqa: PLC0415
    return EVAL_PATH


def load_tasks(suite: str, path: Path | None = None) -> list[Task]:
    """The suite's frozen evaluation set (sha256-checked), or the tasks of ``path`` (which must be of ``suite``)."""
    check_suite(suite)
    if path is None:
        if suite == "agentic":
            from sut.tasks.agentic.suite import load_eval_tasks  # noqa: PLC0415 - the families load only when asked for
        else:
            from sut.tasks.basic import load_eval_tasks  # noqa: PLC0415
        return load_eval_tasks()
    try:
        file_suite, tasks = load_task_file(path)
    except TaskFileError as e:
        raise SuiteError(str(e)) from None
    if file_suite != suite:
        raise SuiteError(f"{path}: a task file of the {file_suite} suite, but --suite is {suite}; pass --suite {file_suite} "
                         f"or a file written by `python -m sut.tasks --suite {suite} --jsonl FILE`")
    return tasks


def check_checkpoint(checkpoint: Path, config: dict[str, Any], suite: str) -> None:
    """SuiteError unless the checkpoint was trained for ``suite``."""
    from sut.model.checkpoint import checkpoint_suite  # noqa: PLC0415 - keeps this module free of torch

    _require_suite(checkpoint, checkpoint_suite(config), suite)


def checkpoint_dir_suite(checkpoint: Path) -> str:
    """The suite a checkpoint directory was trained for, read from its JSON alone (no torch, no weights):
    nano_codegen.json's "suite" (format 2), else config.json's (absent on format 1: basic)."""
    path = checkpoint / PROJECT_FILE if (checkpoint / PROJECT_FILE).is_file() else checkpoint / "config.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("suite", "basic"))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as e:
        raise SuiteError(f"--checkpoint {checkpoint}: {path.name} is not a readable JSON object ({e}); pass a "
                         "checkpoint written by `python -m sut.train`") from None


def check_checkpoint_dir(checkpoint: Path, suite: str) -> None:
    """SuiteError unless the checkpoint directory was trained for ``suite`` (``checkpoint_dir_suite``)."""
    _require_suite(checkpoint, checkpoint_dir_suite(checkpoint), suite)


def _require_suite(checkpoint: Path, trained: str, suite: str) -> None:
    if trained != suite:
        raise SuiteError(f"--checkpoint {checkpoint}: trained for the {trained} suite, not {suite}; pass "
                         f"--suite {trained}, or a checkpoint trained with `python -m sut.train --suite {suite}`")


def check_fits(tasks: list[Task], tok: Any, window: int, max_new_tokens: int) -> None:
    """SuiteError unless every task's prompt plus one attempt fits the model's window: the least a
    transcript keeps when it is trimmed (sut.agent.append_feedback), so a task that fails this
    could never be attempted."""
    from sut.model.transcript import prompt_prefix  # noqa: PLC0415

    need, task = max(((len(prompt_prefix(tok, t.prompt)) + max_new_tokens + 1, t) for t in tasks),
                     key=lambda x: x[0])
    if need > window:
        raise SuiteError(f"task {task.id} needs {need} tokens (its prompt and one {max_new_tokens}-token attempt) but "
                         f"the model's window is {window}: lower --max-new-tokens or use a checkpoint with a larger "
                         "block size")


def check_checkpoint_fits(checkpoint: Path, suite: str, max_new_tokens: int, count: int | None = None) -> None:
    """``check_fits`` for a checkpoint directory, read without torch (its tokenizer.json and its window from
    config.json): what a command checks before it starts a run."""
    from sut.model.tokenizer import CodeTokenizer, TokenizerError  # noqa: PLC0415

    try:
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        window = int(config["n_positions"] if "n_positions" in config else config["model"]["block_size"])
        tok = CodeTokenizer.from_file(checkpoint / "tokenizer.json")
    except (OSError, ValueError, KeyError, TypeError, TokenizerError) as e:
        raise SuiteError(f"--checkpoint {checkpoint}: cannot read its window or tokenizer ({e}); pass a checkpoint "
                         "written by `python -m sut.train`") from None
    tasks = load_tasks(suite)
    check_fits(tasks[:count] if count else tasks, tok, window, max_new_tokens)
