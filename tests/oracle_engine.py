"""The real LoadGen run (harness/lg_run.py: real QSL, CodegenSUT, LoadGen, records) over a stand-in engine.

    python tests/oracle_engine.py --scenario Offline --mode performance --conf C --out D --count 16 \\
        --checkpoint REF --no-progress --cost-ms 25 --workers 1 [--cheat cache|giveup|differ]

Only the model is replaced, for two reasons. A real model's speed varies by machine, while the loads of
tests/tiny_tree.py must leave every run VALID on any machine: ``OracleEngine`` answers from each task's
reference solution after a fixed sleep per attempt (a third of the tasks fail once first). And an honest
model cannot cheat on purpose: ``--cheat`` makes the engine misbehave the way the audits must catch:
``cache`` answers a sample repeated back to back instantly (TEST04), ``giveup`` stops after one attempt
when timed (TEST07/TEST09/TEST06), ``differ`` answers differently when timed (TEST01).

A real checkpoint through the same SUT is run by tests/test_harness.py (every scenario, VALID),
tests/test_run_cli.py (checkpoints/reference and retry-small), tests/test_audits.py's
test_real_harness_run_and_audit_pass_the_checker and tests/test_harness_suites.py's agentic runs.

``--cost-ms``, ``--workers`` (the oracle's threads) and ``--cheat`` are this file's; every other flag is
harness/lg_run.py's, whose ``build_engine`` is swapped for the oracle.
"""
from __future__ import annotations

import argparse
import hashlib
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import lg_run  # noqa: E402
from sut.records import AgentResult, AttemptRecord  # noqa: E402

CHEATS = ("", "cache", "giveup", "differ")


def hard(task_id: str) -> bool:
    return int(hashlib.sha256(task_id.encode()).hexdigest(), 16) % 3 == 0


def attempt(k: int, code: str, status: str, ctx: int) -> AttemptRecord:
    n = 8 + len(code) // 6
    return AttemptRecord(attempt=k, context_len=ctx + n, prompt_tokens=ctx, gen_tokens=n,
                         reused_tokens=ctx if k else 0, prefilled_tokens=0 if k else ctx, prefill_ms=0.0,
                         decode_ms=0.0, verify_ms=0.0, status=status, kv_bytes=(ctx + n) * 1024, truncated=False,
                         code=code, feedback="" if status == "passed" else "wrong output: expected 1, got None",
                         token_ids=[100 + k] + [7] * (n - 1))


class OracleEngine:
    """Worker threads: each sleeps ``cost_s`` per attempt, then answers (hard tasks fail their first attempt)."""

    isolation = "none (oracle engine: no generated code runs)"

    def __init__(self, cost_s: float, timed: bool, cheat: str, workers: int = 1) -> None:
        self.cost_s, self.timed, self.cheat = cost_s, timed, cheat
        self.q: queue.Queue = queue.Queue()
        self.last = ""
        self.done, self.lock = 0, threading.Lock()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def submit(self, task, on_done, on_first_token=None) -> None:
        self.q.put((task, on_done, on_first_token))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for _ in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()

    def stats(self) -> dict:
        return {"engine": "oracle", "cost_ms": self.cost_s * 1e3, "workers": len(self.threads),
                "cheat": self.cheat, "tasks_done": self.done}

    def _work(self) -> None:
        while (item := self.q.get()) is not None:
            task, on_done, on_first = item
            cached = self.cheat == "cache" and task.id == self.last   # a one-entry answer cache
            self.last = task.id
            attempts = []
            if hard(task.id):
                attempts.append(attempt(0, "def f(x):\n    return None\n", "wrong_output", 40))
            if not (hard(task.id) and self.cheat == "giveup" and self.timed):   # giving up: no retry
                code = task.solution + ("# timed\n" if self.cheat == "differ" and self.timed else "")
                attempts.append(attempt(len(attempts), code, "passed", 40 + 52 * len(attempts)))
            if on_first is not None:
                on_first(attempts[0].token_ids[0])
            for a in attempts:   # the records show the time really spent, split as a real attempt's might be
                t0 = time.perf_counter()
                if not cached:
                    time.sleep(self.cost_s)
                spent = (time.perf_counter() - t0) * 1e3
                a.prefill_ms, a.decode_ms, a.verify_ms = 0.15 * spent, 0.6 * spent, 0.25 * spent
            with self.lock:
                self.done += 1
            on_done(AgentResult(task.id, attempts, passed=attempts[-1].status == "passed",
                                n_tokens=sum(a.gen_tokens for a in attempts)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, allow_abbrev=False,
                                epilog="Every other flag is harness/lg_run.py's.")
    p.add_argument("--cost-ms", type=float, default=10.0, help="sleep per attempt")
    p.add_argument("--workers", type=int, default=1, help="the oracle's threads")
    p.add_argument("--cheat", default="", choices=CHEATS)
    own, rest = p.parse_known_args(argv)
    timed = lg_run.parse_args(rest).mode == "performance"
    lg_run.build_engine = lambda _opts: OracleEngine(own.cost_ms / 1e3, timed, own.cheat, own.workers)
    return lg_run.main(rest)


if __name__ == "__main__":
    sys.exit(main())
