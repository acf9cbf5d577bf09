"""Mutants of a reference solution, and the share of them a task's hidden cases kill.

A mutant is one small edit of the solution's syntax tree, of these kinds:

| kind | edit |
|---|---|
| compare | a comparison operator replaced by each other one of < <= > >= == != (in/not in, is/is not swapped) |
| constant | an integer constant +1 and -1 (so also every index, start value and bound) |
| range | an argument of range() that is not a constant: + 1 and - 1 |
| swap_branches | the bodies of an if/else (or a conditional expression) swapped |
| negate | the test of an if or while negated; a `not` removed |
| drop | one statement removed (a body left empty becomes `pass`) |
| boolop | `and` and `or` swapped |
| arith | + and - swapped, * to +, // to *, / to *, % to // (also in augmented assignments) |
| bool | True and False swapped |

Every distinct mutant that compiles and differs from the solution counts, equivalent or not (none
is excused as "semantically equal"): the kill rate is a lower bound of what the cases catch.
Nothing here runs code: the mutants go through the real sandbox (``verifier.pool.SandboxPool``).

    python -m sut.tasks.agentic.mutate            # every mutant of every frozen evaluation task
    python -m sut.tasks.agentic.mutate --per-task 4 --survivors 10
"""
from __future__ import annotations

import argparse
import ast
import copy
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

CMP_OPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
CMP_SWAP = {ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
ARITH = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Mult, ast.Div: ast.Mult,
         ast.Mod: ast.FloorDiv}
BODIES = ("body", "orelse")
# Per-execution limit for mutant runs: a reference solution runs its cases in milliseconds, and a
# mutant that loops forever (a dropped `n *= 2`) costs a worker this long, so it sets the run's time.
MUTANT_TIMEOUT_S = 0.3


class Mutant(NamedTuple):
    kind: str
    code: str


def _edits(node: ast.AST) -> Iterator[tuple[str, Callable[[ast.AST], ast.AST | None]]]:
    """(kind, edit) pairs for one node; an edit changes a copy of the node in place (or returns a
    replacement node)."""
    if isinstance(node, ast.Compare):
        for j, op in enumerate(node.ops):
            if type(op) in CMP_OPS:
                for other in CMP_OPS:
                    if other is not type(op):
                        yield "compare", lambda n, j=j, o=other: n.ops.__setitem__(j, o())
            elif type(op) in CMP_SWAP:
                yield "compare", lambda n, j=j, o=CMP_SWAP[type(op)]: n.ops.__setitem__(j, o())
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        for d in (1, -1):
            yield "constant", lambda n, d=d: setattr(n, "value", n.value + d)
    elif isinstance(node, ast.Constant) and type(node.value) is bool:
        yield "bool", lambda n: setattr(n, "value", not n.value)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        for j, arg in enumerate(node.args):
            if not isinstance(arg, ast.Constant):
                for op in (ast.Add, ast.Sub):
                    yield "range", lambda n, j=j, op=op: n.args.__setitem__(
                        j, ast.BinOp(n.args[j], op(), ast.Constant(1)))
    elif isinstance(node, (ast.If, ast.IfExp)):
        if isinstance(node, ast.IfExp) or node.orelse:
            yield "swap_branches", _swap
        if isinstance(node, ast.If):
            yield "negate", lambda n: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test))
    elif isinstance(node, ast.While):
        yield "negate", lambda n: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "negate", lambda n: n.operand
    elif isinstance(node, ast.BoolOp):
        yield "boolop", lambda n: setattr(n, "op", ast.Or() if isinstance(n.op, ast.And) else ast.And())
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in ARITH:
        yield "arith", lambda n: setattr(n, "op", ARITH[type(n.op)]())
    if not isinstance(node, ast.Module):
        for field in BODIES:
            stmts = getattr(node, field, None)
            if isinstance(stmts, list) and stmts and isinstance(stmts[0], ast.stmt):
                for j in range(len(stmts)):
                    yield "drop", lambda n, f=field, j=j: _drop(n, f, j)


def _swap(n: ast.AST) -> None:
    if isinstance(n, ast.IfExp):
        n.body, n.orelse = n.orelse, n.body
    else:
        n.body, n.orelse = n.orelse, n.body


def _drop(n: ast.AST, field: str, j: int) -> None:
    stmts = getattr(n, field)
    del stmts[j]
    if not stmts and field == "body":
        stmts.append(ast.Pass())


def mutants(code: str) -> list[Mutant]:
    """Every distinct mutant of ``code`` that compiles and differs from it, in a fixed order."""
    tree = ast.parse(code)
    original = ast.unparse(tree)
    count = sum(1 for _ in ast.walk(tree))
    seen, out = {original}, []
    for i in range(count):
        node = _nth(tree, i)
        for kind, edit in list(_edits(node)):
            copy_tree = copy.deepcopy(tree)
            target = _nth(copy_tree, i)
            replacement = edit(target)
            if isinstance(replacement, ast.AST):
                _replace(copy_tree, target, replacement)
            ast.fix_missing_locations(copy_tree)
            try:
                text = ast.unparse(copy_tree)
                compile(text, "<mutant>", "exec")
            except (SyntaxError, ValueError, RecursionError):
                continue
            if text not in seen:
                seen.add(text)
                out.append(Mutant(kind, text))
    return out


def _nth(tree: ast.AST, i: int) -> ast.AST:
    for j, node in enumerate(ast.walk(tree)):
        if j == i:
            return node
    raise IndexError(i)


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for j, item in enumerate(value):
                    if item is old:
                        value[j] = new
                        return


def sample(items: Sequence[Mutant], k: int | None, rng: random.Random) -> list[Mutant]:
    """All of ``items`` (k None) or a seeded sample of at most k."""
    return list(items) if k is None or len(items) <= k else rng.sample(list(items), k)


class KillReport(NamedTuple):
    mutants: int
    killed: int
    by_kind: dict[str, tuple[int, int]]        # kind -> (mutants, killed)
    by_family: dict[str, tuple[int, int]]
    survivors: list[tuple[str, str, str]]      # (task id, kind, code)
    seconds: float

    @property
    def rate(self) -> float:
        return self.killed / self.mutants if self.mutants else 1.0


def kill_rate(tasks: Sequence, pool, per_task: int | None = None, seed: int = 0) -> KillReport:
    """Run the mutants of each task's solution against its check through ``pool`` (a SandboxPool).

    ``per_task``: a seeded sample of at most that many mutants per task (None: all of them)."""
    t0 = time.perf_counter()
    items, meta = [], []
    for task in tasks:
        rng = random.Random(f"mutants:{seed}:{task.id}")
        for m in sample(mutants(task.solution), per_task, rng):
            items.append((m.code, task.check))
            meta.append((task, m))
    verdicts = pool.verify_many(items)
    kinds: Counter = Counter()
    kinds_killed: Counter = Counter()
    fams: Counter = Counter()
    fams_killed: Counter = Counter()
    survivors = []
    for (task, m), v in zip(meta, verdicts):
        kinds[m.kind] += 1
        fams[task.family] += 1
        if v.passed:
            survivors.append((task.id, m.kind, m.code))
        else:
            kinds_killed[m.kind] += 1
            fams_killed[task.family] += 1
    return KillReport(len(items), len(items) - len(survivors), {k: (kinds[k], kinds_killed[k]) for k in sorted(kinds)},
                      {f: (fams[f], fams_killed[f]) for f in sorted(fams)}, survivors, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sut.tasks.agentic.mutate",
                                 description="Kill rate of reference-solution mutants by the agentic tasks' hidden cases.")
    ap.add_argument("--tasks", help="a task file of the agentic suite (default: the frozen evaluation set)")
    ap.add_argument("--per-task", type=int, metavar="N", help="a seeded sample of N mutants per task (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPU count)")
    ap.add_argument("--timeout", type=float, default=MUTANT_TIMEOUT_S,
                    help="seconds per execution: a looping mutant is killed by it (default %(default)s)")
    ap.add_argument("--survivors", type=int, default=5, metavar="K", help="print K surviving mutants")
    args = ap.parse_args(argv)
    if args.per_task is not None and args.per_task < 1:
        ap.error(f"--per-task needs N >= 1, got {args.per_task}")
    from sut.tasks.agentic.record import TaskFileError, load_task_file  # noqa: PLC0415 - keeps --help fast
    from sut.tasks.agentic.suite import load_eval_tasks  # noqa: PLC0415
    from sut.tasks.record import EvalSetError  # noqa: PLC0415
    from verifier.pool import SandboxPool  # noqa: PLC0415
    try:
        if args.tasks:
            suite, tasks = load_task_file(args.tasks)
            if suite != "agentic":
                raise TaskFileError(f"{args.tasks}: holds {suite} tasks; give an agentic task file")
        else:
            tasks = load_eval_tasks()
    except (TaskFileError, EvalSetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with SandboxPool(workers=args.workers, timeout_s=args.timeout, preload=()) as pool:
        rep = kill_rate(tasks, pool, args.per_task, args.seed)
    print(f"{len(tasks)} tasks, {rep.mutants} mutants, {rep.killed} killed: kill rate {rep.rate:.2%} "
          f"({rep.seconds:.0f} s)")
    for kind, (n, k) in rep.by_kind.items():
        print(f"  {kind:14s} {k:6d}/{n:<6d} {k / n:.1%}")
    worst = sorted(rep.by_family.items(), key=lambda kv: kv[1][1] / kv[1][0])[:5]
    print("  lowest families: " + ", ".join(f"{f} {k / n:.1%}" for f, (n, k) in worst))
    for tid, kind, code in rep.survivors[: args.survivors]:
        print(f"--- survivor {tid} ({kind})\n{code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
