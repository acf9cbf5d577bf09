"""Command line: judge programs from files.

    python -m verifier batch TASKS.jsonl      # one task per line, one JSON verdict per line, input order
    python -m verifier run PROG.py --expected 15
    python -m verifier run PROG.py --test TEST.py --entry-point f
    python -m verifier run PROG.py --entry-point f --inputs "[(1,), (2,)]" --outputs "[2, 3]"

Exit status 0 when everything was judged, whatever the verdicts; 2 with a one-line reason
when the input cannot be judged (bad file, bad row); 1 when no sandbox could be started.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from verifier.checks import Check, check_from_json
from verifier.jsonfile import InputError, read_jsonl
from verifier.pool import SandboxPool
from verifier.sandbox import add_isolation_flag
from verifier.verdict import valid_text


def read_batch(path: str) -> list[tuple[object, str, Check]]:
    """Rows of a batch file as (id, code, check); raise InputError on the first bad row."""
    rows = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("code"), str):
            raise InputError(f"{path} line {n}: need an object with a string 'code'")
        ident = row.get("id", n)
        if isinstance(ident, bool) or not isinstance(ident, (str, int)):
            raise InputError(f"{path} line {n}: 'id' must be a string or an integer")
        try:
            check = check_from_json(row)
        except (ValueError, TypeError) as e:
            raise InputError(f"{path} line {n}: {e}") from e
        rows.append((ident, row["code"], check))
    return rows


def check_from_args(args: argparse.Namespace) -> Check:
    fields: dict[str, str] = {}
    if args.expected is not None:
        fields["expected"] = args.expected
    if args.test is not None:
        try:
            fields["test"] = Path(args.test).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read test file {args.test}: {e}") from e
    for key in ("entry_point", "inputs", "outputs"):
        if getattr(args, key) is not None:
            fields[key] = getattr(args, key)
    try:
        return check_from_json(fields)
    except ValueError as e:
        raise InputError(f"{e} (use --expected LITERAL, or --test FILE --entry-point NAME, "
                         "or --entry-point NAME --inputs LIT --outputs LIT)") from e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verifier", description="Judge programs in the sandbox.")
    sub = parser.add_subparsers(dest="command", required=True)
    batch = sub.add_parser("batch", help="judge a JSONL file of tasks ({id, code, expected} or {id, code, test, entry_point})")
    batch.add_argument("file", help="JSONL file, or - for stdin")
    run = sub.add_parser("run", help="judge one program file")
    run.add_argument("file")
    run.add_argument("--expected", help="value task: Python literal that `result` must equal, e.g. 15 or \"'olleh'\"")
    run.add_argument("--test", help="function task: file with the test code defining check(candidate)")
    run.add_argument("--entry-point", dest="entry_point", help="function the test or the inputs call")
    run.add_argument("--inputs", help="call task: Python literal list of argument tuples, e.g. \"[(1,), (2,)]\"")
    run.add_argument("--outputs", help="call task: Python literal list of expected returns, e.g. \"[2, 3]\"")
    for p in (batch, run):
        p.add_argument("--workers", type=int, default=None, help="sandboxed workers (default: CPU count)")
        p.add_argument("--timeout", type=float, default=2.0, help="wall-clock limit per execution, seconds")
        p.add_argument("--memory-mb", type=int, default=512, help="address-space limit per execution")
        add_isolation_flag(p)
    batch.add_argument("--progress", action="store_true", help="progress bar on stderr even when it is not a terminal")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "batch":
            items = read_batch(args.file)
        else:
            try:
                code = Path(args.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"cannot read {args.file}: {e}") from e
            items = [(args.file, code, check_from_args(args))]
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        pool = SandboxPool(workers=args.workers, timeout_s=args.timeout, memory_mb=args.memory_mb, isolation=args.isolation,
                           preload=None if imports_anything(items) else ())
    except (RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with pool:
        write_verdicts(pool, items, getattr(args, "progress", False) or sys.stderr.isatty())
    return 0


def imports_anything(items: list[tuple[object, str, Check]]) -> bool:
    """Whether any program (or test) might import a module: if none does, the zygotes start lean
    (``preload=()``, as the engine's), which costs a fifth less CPU an execution (docs/verifier.md)."""
    return any("import" in code or "import" in getattr(check, "test", "") for _, code, check in items)


def write_verdicts(pool: SandboxPool, items: list[tuple[object, str, Check]], progress: bool) -> None:
    """One JSON line per item, in input order, each written as soon as it and those before it are
    judged (the output overlaps the execution). Text a program chose (a lone surrogate in an id or a
    message) is escaped, never an encoding error that loses the lines after it."""
    futures = [pool.submit(code, check) for _, code, check in items]
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415 - only a command that draws a bar pays for its import

        bar = tqdm(total=len(futures), desc="verify", unit="exec")
    for (ident, _, _), fut in zip(items, futures):
        sys.stdout.write(valid_text(json.dumps({"id": ident, **fut.result().to_json()}, ensure_ascii=False)) + "\n")
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
