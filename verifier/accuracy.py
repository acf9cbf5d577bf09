"""The accuracy pass: re-execute what the SUT returned, judge it, write accuracy.txt.

    python -m verifier.accuracy --mlperf-accuracy-file mlperf_log_accuracy.json \\
        --tasks sut/tasks/data/eval_tasks.jsonl --txt accuracy.txt [--json PATH | --json -]

LoadGen logs each completed sample as ``{"seq_id", "qsl_idx", "data": HEX, ...}``; ``qsl_idx``
indexes the task file's lines in order, ``data`` is the hex of ``response_format.encode``.
A qsl_idx logged more than once is counted once (its first entry). The SUT's own verdicts
in the response are ignored: the first attempt's code (pass@1) and the final attempt's code
(pass@final) are run again, through one SandboxPool, against the task's hidden check. A
response the SUT marked with an error, or one with no attempts, or one that does not decode,
counts as failed for both and as a ``sut_error``.

A value task's feedback shows the expected value ("expected 42, got 41"), so a retry could
just copy it. A final attempt after the first whose program computes nothing (every
statement assigns a literal: ``result = 42``) does not count for pass@final; its status is
``hard_coded``. No evaluation task's reference solution is literal-only (tested).

accuracy.txt holds two lines a regex can read:

    pass@1=0.8120 pass@final=0.9140 mean_attempts=1.52 tokens_per_sample=63.1 samples=1024 sut_errors=0
    hash=<sha256 of the accuracy log file>
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import logging
import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from verifier.checks import Check, ValueCheck, check_from_json
from verifier.jsonfile import InputError, read_json, read_jsonl
from verifier.output_guard import add_json_flag, check_json, text_to_stderr, write_json
from verifier.pool import InfrastructureError, SandboxPool
from verifier.sandbox import SandboxUnavailable, add_isolation_flag
from verifier.response_format import Response, decode_hex

log = logging.getLogger(__name__)


def load_tasks(tasks_path: Path) -> list[dict]:
    """Task rows in file order, each with a parsed ``check``; InputError names the bad line."""
    rows = []
    for n, row in read_jsonl(tasks_path):
        try:
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise ValueError("need an object with a string 'id'")
            row["check"] = check_from_json(row)
        except (ValueError, TypeError, KeyError) as e:
            raise InputError(f"{tasks_path} line {n}: {e}") from None
        rows.append(row)
    return rows


_HEX = re.compile(r"(?:[0-9A-F]{2})*")


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_accuracy_entries(path: Path) -> list[dict]:
    """Every entry of mlperf_log_accuracy.json, each field typed as LoadGen writes it (``seq_id`` and
    ``qsl_idx`` non-negative integers, never ``true``; ``data`` and any ``token_data`` upper-case hex
    of whole bytes; any ``token_count`` a non-negative integer); InputError naming the file and the
    entry's index otherwise. check_submission reads logs through this too: one reading of the format."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise InputError(f"{path} must hold a JSON list of LoadGen accuracy entries")
    for i, e in enumerate(entries):
        if not isinstance(e, dict):
            raise InputError(f"{path} entry {i}: need an object {{seq_id, qsl_idx, data, ...}}, got {type(e).__name__}")
        for key in ("seq_id", "qsl_idx"):
            if not _is_int(e.get(key)) or e[key] < 0:
                raise InputError(f"{path} entry {i}: need a non-negative integer {key!r}, got {_shown(e.get(key))}")
        for key in ("data", "token_data"):
            if (key == "data" or e.get(key) is not None) and not (isinstance(e.get(key), str) and _HEX.fullmatch(e[key])):
                raise InputError(f"{path} entry {i}: {key!r} must be upper-case hex of whole bytes, as LoadGen writes it")
        if e.get("token_count") is not None and (not _is_int(e["token_count"]) or e["token_count"] < 0):
            raise InputError(f"{path} entry {i}: 'token_count' must be a non-negative integer, got {_shown(e['token_count'])}")
    return entries


def _shown(x: object) -> str:
    return "nothing" if x is None else f"{json.dumps(x)[:40]} ({type(x).__name__})"


def load_accuracy_log(path: Path) -> list[dict]:
    """The log's entries (``read_accuracy_entries``), the first per qsl_idx only, in log order."""
    seen: set[int] = set()
    unique = []
    for e in read_accuracy_entries(path):
        if e["qsl_idx"] not in seen:
            seen.add(e["qsl_idx"])
            unique.append(e)
    return unique


def _decode(entry: dict, task_id: str) -> tuple[Response | None, str | None]:
    """The response, or None with the reason it counts as a SUT error."""
    try:
        resp = decode_hex(entry["data"])
    except ValueError as e:
        return None, f"undecodable response: {e}"
    if resp.error:
        return resp, f"SUT error: {resp.error}"
    if resp.task_id != task_id:
        return resp, f"response is for task {resp.task_id!r}, not {task_id!r}"
    if not resp.attempts:
        return resp, "no attempts"
    return resp, None


def literal_only(code: str) -> bool:
    """True when the program computes nothing: only assignments of literals (and bare constants)."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return False
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue                                        # a docstring or a bare constant
        if not isinstance(stmt, (ast.Assign, ast.AnnAssign)) or stmt.value is None:
            return False
        try:
            ast.literal_eval(stmt.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return bool(body)


ANY_SUBSET = -1   # --expected-samples any: an audit's sampled log, judged as it is


def score_accuracy_log(accuracy_log: Path, tasks_path: Path, pool: SandboxPool | None = None,
                       progress: bool = False, expected_samples: int | None = None) -> dict[str, Any]:
    """Judge every logged response again; return the metrics, per-family rates and per-sample results.

    The log must hold exactly the samples 0 .. ``expected_samples`` - 1 (default: every task of the
    file): a log missing samples would score a subset as if it were the whole."""
    tasks = load_tasks(Path(tasks_path))
    entries = load_accuracy_log(Path(accuracy_log))
    if not entries:
        raise InputError(f"{accuracy_log} has no entries: was the LoadGen run in AccuracyOnly mode?")
    _check_coverage(accuracy_log, entries, len(tasks) if expected_samples is None else expected_samples)
    samples, job_items = _samples_and_jobs(accuracy_log, tasks_path, tasks, entries)
    verdicts, isolation = _run_jobs(pool, job_items, samples, progress)
    by_family = _apply_verdicts(samples, verdicts)
    n = len(samples)
    return {
        "pass@1": sum(s["pass_first"] for s in samples) / n,
        "pass@final": sum(s["pass_final"] for s in samples) / n,
        "mean_attempts": sum(s["attempts"] for s in samples) / n,
        "tokens_per_sample": sum(s["n_tokens"] for s in samples) / n,
        "samples": n,
        "sut_errors": sum(s["error"] is not None for s in samples),
        "hard_coded": sum(s["final_status"] == "hard_coded" for s in samples),
        "executions": len(job_items),
        "per_family": {fam: {"samples": len(ss), "pass@1": sum(s["pass_first"] for s in ss) / len(ss),
                             "pass@final": sum(s["pass_final"] for s in ss) / len(ss)} for fam, ss in sorted(by_family.items())},
        "hash": hashlib.sha256(Path(accuracy_log).read_bytes()).hexdigest(),
        "isolation": isolation,
        "per_sample": samples,
    }


def _check_coverage(accuracy_log: Path, entries: list[dict], expected: int) -> None:
    """InputError unless the log holds exactly samples 0 .. expected - 1: a partial log would score a subset."""
    logged = {e["qsl_idx"] for e in entries}
    if expected != ANY_SUBSET and logged != set(range(expected)):
        missing = sorted(set(range(expected)) - logged)
        raise InputError(f"{accuracy_log} logs {len(logged)} samples, not the {expected} the run declared"
                         + (f" (missing e.g. {missing[:3]})" if missing else f" (extra e.g. {sorted(logged - set(range(expected)))[:3]})")
                         + ": score a subset with --expected-samples N, as harness/run.py does for --count N")


def _samples_and_jobs(accuracy_log: Path, tasks_path: Path, tasks: list[dict],
                      entries: list[dict]) -> tuple[list[dict[str, Any]], list[tuple[str, Check]]]:
    """One record per logged sample and the distinct programs to run: each (task, code) runs once, however
    many samples or attempts share it; a sample's "first"/"final" hold their job's index."""
    samples: list[dict[str, Any]] = []
    jobs: dict[tuple[int, str], int] = {}   # (task index, code) -> job index: each distinct program runs once
    job_items: list[tuple[str, Check]] = []
    for e in entries:
        idx = e["qsl_idx"]
        if not 0 <= idx < len(tasks):
            raise InputError(f"{accuracy_log}: qsl_idx {idx} is outside {tasks_path} ({len(tasks)} tasks): wrong --tasks file?")
        task = tasks[idx]
        resp, error = _decode(e, str(task["id"]))
        s: dict[str, Any] = {"qsl_idx": idx, "task_id": task["id"], "family": task.get("family", "?"), "error": error,
                             "attempts": resp.n_attempts if resp else 0, "n_tokens": resp.n_tokens if resp else 0}
        if error is None and resp is not None:
            for which, attempt in (("first", resp.attempts[0]), ("final", resp.attempts[-1])):
                key = (idx, attempt.code)
                if key not in jobs:
                    jobs[key] = len(job_items)
                    job_items.append((attempt.code, task["check"]))
                s[which] = jobs[key]
            s["copied"] = (isinstance(task["check"], ValueCheck) and len(resp.attempts) > 1
                           and literal_only(resp.attempts[-1].code))
        samples.append(s)
    return samples, job_items


def _run_jobs(pool: SandboxPool | None, job_items: list[tuple[str, Check]], samples: list[dict[str, Any]],
              progress: bool) -> tuple[list, str]:
    """The verdicts of every job and the pool's isolation (a pool made here is closed); an infrastructure
    failure names the samples whose programs it hit, since a program that kills its own sandbox shows here."""
    own_pool = pool is None
    pool = pool or SandboxPool()
    try:
        verdicts = pool.verify_judged(job_items, progress=progress)
    except InfrastructureError as e:   # name the samples: a program that kills its own sandbox shows here
        ids = [s["task_id"] for s in samples if {s.get("first"), s.get("final")} & set(e.indices)]
        raise InfrastructureError(f"{e} (samples: {', '.join(map(str, ids[:3]))}{', ...' if len(ids) > 3 else ''})",
                                  e.indices) from None
    finally:
        if own_pool:
            pool.close()
    return verdicts, pool.isolation


def _apply_verdicts(samples: list[dict[str, Any]], verdicts: list) -> dict[str, list[dict]]:
    """Each sample's first/final status and pass flags from its jobs' verdicts (a copied literal that passes
    counts as hard_coded, not passed); the samples grouped by family."""
    by_family: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        for which in ("first", "final"):
            v = verdicts[s.pop(which)] if which in s else None
            s[f"{which}_status"] = v.status.value if v else "sut_error"
            s[f"pass_{which}"] = bool(v and v.passed)
        if s.pop("copied", False) and s["pass_final"]:
            s["final_status"], s["pass_final"] = "hard_coded", False
        by_family[s["family"]].append(s)
    return by_family


def format_accuracy_txt(result: dict[str, Any]) -> str:
    """The two lines of accuracy.txt."""
    return (f"pass@1={result['pass@1']:.4f} pass@final={result['pass@final']:.4f} "
            f"mean_attempts={result['mean_attempts']:.2f} tokens_per_sample={result['tokens_per_sample']:.1f} "
            f"samples={result['samples']} sut_errors={result['sut_errors']}\nhash={result['hash']}\n")


def _expected_samples(text: str) -> int:
    if text == "any":
        return ANY_SUBSET
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive sample count or 'any'")
    return int(text)


def _unwritable(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None (a read-only folder is refused as root too: EROFS)."""
    if not path.parent.is_dir():
        return f"{path.parent} is not a folder"
    if path.is_dir():
        return "it is a folder"
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{path.parent} is read-only"
    return None


def _write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: never a half-written accuracy.txt."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier.accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mlperf-accuracy-file", required=True, type=Path, help="LoadGen's mlperf_log_accuracy.json")
    parser.add_argument("--tasks", required=True, type=Path, help="task file the QSL was built from (JSONL, qsl_idx = line)")
    parser.add_argument("--txt", type=Path, default=Path("accuracy.txt"), metavar="PATH",
                        help="accuracy.txt to write (default ./accuracy.txt; rewritten: it follows from the log)")
    add_json_flag(parser, "every metric, per family and per sample,")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    parser.add_argument("--expected-samples", type=_expected_samples, default=None, metavar="{N,any}",
                        help="the log must hold samples 0..N-1 (harness/run.py --count N); default: every task of "
                             "--tasks; 'any': an audit's sampled subset, judged as it is")
    parser.add_argument("--workers", type=int, default=None)
    add_isolation_flag(parser)
    parser.add_argument("--timeout", type=float, default=2.0, help="wall-clock limit per execution, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for p in (args.mlperf_accuracy_file, args.tasks):
        if not p.is_file():
            print(f"error: {p} does not exist", file=sys.stderr)
            return 2
    unwritable = _unwritable(args.txt)
    if unwritable:   # known before the pass spends minutes judging
        print(f"error: cannot write {args.txt}: {unwritable}; pass a writable --txt", file=sys.stderr)
        return 2
    check_json(args.json, args.force)
    try:
        with SandboxPool(workers=args.workers, timeout_s=args.timeout, isolation=args.isolation) as pool:
            result = score_accuracy_log(args.mlperf_accuracy_file, args.tasks, pool, progress=sys.stderr.isatty(),
                                        expected_samples=args.expected_samples)
    except (InfrastructureError, SandboxUnavailable) as e:
        print(f"error: {e}; no accuracy.txt written", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = format_accuracy_txt(result)
    try:
        _write_whole(args.txt, text)
    except OSError as e:
        print(f"error: cannot write {args.txt} ({e.strerror}): pass a writable --txt", file=sys.stderr)
        return 1
    with text_to_stderr(args.json):
        print(text, end="")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
