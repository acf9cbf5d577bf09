"""The suite-aware half of ``python -m sut.tasks``: write a task file of any split, and the
agentic suite's --show, --families, --stats and --write-eval (sut/tasks/basic.py parses the arguments).

    python -m sut.tasks --suite agentic --seed 3 --count 1024 --split eval --jsonl held_out.jsonl
    python -m sut.tasks --suite agentic --count 5000 --jsonl train.jsonl        # --split train
    python -m sut.tasks --suite agentic --families                                # docs/tasks.md table
    python -m sut.tasks --suite agentic --stats                                   # the frozen set's measures
    python -m sut.tasks --suite agentic --write-eval                              # the frozen set
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from sut.tasks.agentic.record import task_file_bytes
from sut.tasks.record import EvalSetError, Task, shown


class CliError(ValueError):
    """Bad input on the command line: the message is the one line to print after ``error:``."""


def write_task_file(path: Path, tasks: list[Task], force: bool) -> str:
    """Write ``tasks`` as JSONL at ``path`` (atomically); refuse to replace a file unless ``force``. Returns sha256."""
    if path.exists() and not force:
        raise CliError(f"{path} exists; pass --force to overwrite it or choose another --jsonl")
    if path.is_dir():
        raise CliError(f"{path} is a directory; give a file name for --jsonl")
    if not path.parent.is_dir():
        raise CliError(f"directory {path.parent} does not exist; create it or choose another --jsonl")
    data = task_file_bytes(tasks)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def _tasks(suite: str, split: str, count: int, seed: int, basic_generate: Callable[[str, int, int], list[Task]]
           ) -> list[Task]:
    if suite == "agentic":
        from sut.tasks.agentic import suite as agentic  # noqa: PLC0415 - the families load only when asked for

        return list(agentic.generate(split, count, seed))
    if split == "eval":
        raise CliError("the basic suite's evaluation set is frozen (sut/tasks/data/eval_tasks.jsonl): "
                       "use --split train or val, or --suite agentic")
    return basic_generate(split, count, seed)


def run(args: argparse.Namespace, basic_generate: Callable[[str, int, int], list[Task]]) -> int:
    """Carry out --jsonl, and for the agentic suite --families, --write-eval and --show. Returns the exit status."""
    try:
        if args.jsonl is not None:
            if args.count is None or args.count < 1:
                raise CliError("--jsonl needs --count K with K >= 1")
            tasks = _tasks(args.suite, args.split, args.count, args.seed, basic_generate)
            sha = write_task_file(Path(args.jsonl), tasks, args.force)
            print(f"wrote {args.jsonl}: {len(tasks)} {args.suite} {args.split} tasks (seed {args.seed}) sha256 {sha}")
            return 0
        from sut.tasks.agentic import suite as agentic  # noqa: PLC0415

        if args.families:
            print(agentic.families_table())
        if args.stats:
            print(agentic.stats_table())
        if args.write_eval:
            sha = agentic.write_eval()
            print(f"wrote {shown(agentic.EVAL_PATH)} ({agentic.EVAL_SIZE} tasks) sha256 {sha}")
            if sha != agentic.EVAL_SHA256:
                print(f"EVAL_SHA256 in sut/tasks/agentic/suite.py is {agentic.EVAL_SHA256 or '(unset)'}: set it to {sha}")
        if args.show is not None:
            listed = (agentic.load_eval_tasks()[: args.show] if args.split == "eval"   # the frozen set, as for basic
                     else agentic.generate(args.split, args.show, args.seed))
            for t in listed:
                print(f"--- {t.id}  {t.family}  difficulty {t.difficulty}  open {t.conventions}\n{t.prompt}\n{t.solution}")
                for inputs, expected in zip(t.check.inputs, t.check.expected):
                    print(f"    {t.check.entry_point}({', '.join(map(repr, inputs))}) -> {expected!r}")
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EvalSetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
