"""How far two engines' answers agree, task by task, from two `sut.evaluate --jsonl` files.

    python -m sut.evaluate --temperature 0 --jsonl native.jsonl
    python -m sut.evaluate --temperature 0 --engine vllm --jsonl vllm.jsonl
    python -m benchmarks.answer_agreement native.jsonl vllm.jsonl

pass@final alone can hide two engines that disagree on many tasks and balance out; this counts the
tasks whose whole trajectories (every attempt's code) are identical, those with the same verdict,
and those only one engine solved. The files are compared on the tasks both hold, in task order.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from verifier.output_guard import add_json_flag, check_json, text_to_stderr, write_json


def read_results(path: Path) -> dict[str, dict]:
    """task id -> the AgentResult record (one JSON object a line)."""
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return {r["task_id"]: r for r in rows if r["attempts"] is not None}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"error: {path}: not a results file of `sut.evaluate --jsonl` ({e!r})") from None


def _first_different(x: list[str], y: list[str]) -> int:
    """The first attempt whose code differs (or the first attempt one trajectory lacks)."""
    return next((i for i, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))


def agreement(a: dict[str, dict], b: dict[str, dict]) -> dict:
    """The counts the module docstring names, over the tasks both files hold."""
    common = [t for t in a if t in b]
    codes = {t: ([x["code"] for x in a[t]["attempts"]], [x["code"] for x in b[t]["attempts"]]) for t in common}
    first_diff = next(((t, _first_different(*codes[t])) for t in common if codes[t][0] != codes[t][1]), None)
    n = max(len(common), 1)
    return {
        "tasks": len(common),
        "identical_trajectories": sum(x == y for x, y in codes.values()),
        "same_verdict": sum(a[t]["passed"] == b[t]["passed"] for t in common),
        "solved_only_by_a": sum(a[t]["passed"] and not b[t]["passed"] for t in common),
        "solved_only_by_b": sum(b[t]["passed"] and not a[t]["passed"] for t in common),
        "pass@final_a": sum(a[t]["passed"] for t in common) / n,
        "pass@final_b": sum(b[t]["passed"] for t in common) / n,
        "first_difference": None if first_diff is None else {"task": first_diff[0], "attempt": first_diff[1]},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.answer_agreement", description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="results JSONL of the first engine")
    p.add_argument("b", type=Path, help="results JSONL of the second engine")
    add_json_flag(p, "the counts")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    check_json(args.json, args.force)
    s = agreement(read_results(args.a), read_results(args.b))
    with text_to_stderr(args.json):
        print(f"{s['tasks']} tasks: {s['identical_trajectories']} identical trajectories, {s['same_verdict']} same "
              f"verdict, {s['solved_only_by_a']} solved only by the first, {s['solved_only_by_b']} only by the second; "
              f"pass@final {s['pass@final_a']:.3f} vs {s['pass@final_b']:.3f} "
              f"({100 * (s['pass@final_b'] - s['pass@final_a']):+.1f} points)")
    write_json(args.json, s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
