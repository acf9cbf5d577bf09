"""A tiny SUT under real LoadGen, for tests of the checker, the audits and the report.

    python tests/tiny_sut.py --scenario Offline --mode performance --conf C --out D --count 16

It mirrors harness/lg_run.py and sut/loadgen_sut.py (the real QSL, LoadGen's real logs,
response format v1, agent_records.jsonl, sut_stats.json) without torch, so it starts in
half a second: its engine answers from the task's reference solution after a short sleep
instead of running a model, and a third of the tasks fail once first. ``--cheat`` makes it misbehave the way the audits must catch:
``cache`` answers a sample repeated back to back instantly (TEST04), ``giveup`` stops after one
attempt when timed (TEST07/TEST09/TEST06), ``differ`` answers differently when timed (TEST01).
"""
from __future__ import annotations

import argparse
import array
import hashlib
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mlperf_loadgen as lg  # noqa: E402

from harness.qsl import TaskQSL  # noqa: E402
from verifier.response_format import AttemptOut, Response, encode  # noqa: E402

MODEL = "nano-codegen-agent"


def load_tasks(count: int) -> list:
    from sut.tasks.basic import load_eval_tasks

    return load_eval_tasks()[:count]


def hard(task_id: str) -> bool:
    return int(hashlib.sha256(task_id.encode()).hexdigest(), 16) % 3 == 0


class OracleEngine:
    """Worker threads: each sleeps ``cost_s`` per attempt, then answers (hard tasks fail their first attempt)."""

    def __init__(self, cost_s: float, timed: bool, cheat: str, workers: int = 1) -> None:
        self.cost_s, self.timed, self.cheat = cost_s, timed, cheat
        self.q: queue.Queue = queue.Queue()
        self.last = ""
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def submit(self, task, on_done, on_first_token=None) -> None:
        self.q.put((task, on_done, on_first_token))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for t in self.threads:
            self.q.put(None)
        for t in self.threads:
            t.join()

    def _attempt(self, k: int, code: str, status: str, ctx: int) -> dict:
        """One sut.agent.AttemptRecord, as agent_records.jsonl holds it."""
        n = 8 + len(code) // 6
        return {"attempt": k, "context_len": ctx + n, "prompt_tokens": ctx, "gen_tokens": n,
                "reused_tokens": ctx if k else 0, "prefilled_tokens": 0 if k else ctx, "prefill_ms": 0.0,
                "decode_ms": 0.0, "verify_ms": 0.0, "status": status, "kv_bytes": (ctx + n) * 1024,
                "truncated": False, "code": code,
                "feedback": "" if status == "passed" else "wrong output: expected 1, got None",
                "token_ids": [100 + k] + [7] * (n - 1)}

    def _work(self) -> None:
        while (item := self.q.get()) is not None:
            task, on_done, on_first = item
            cached = self.cheat == "cache" and task.id == self.last   # a one-entry answer cache
            self.last = task.id
            attempts = []
            if hard(task.id):
                attempts.append(self._attempt(0, "def f(x):\n    return None\n", "wrong_output", 40))
            if not (hard(task.id) and self.cheat == "giveup" and self.timed):   # giving up: no retry
                code = task.solution + ("# timed\n" if self.cheat == "differ" and self.timed else "")
                attempts.append(self._attempt(len(attempts), code, "passed", 40 + 52 * len(attempts)))
            if on_first is not None:
                on_first(attempts[0]["token_ids"][0])
            for a in attempts:   # the records show the time really spent, split as a real attempt's might be
                t0 = time.perf_counter()
                if not cached:
                    time.sleep(self.cost_s)
                spent = (time.perf_counter() - t0) * 1e3
                a["prefill_ms"], a["decode_ms"], a["verify_ms"] = 0.15 * spent, 0.6 * spent, 0.25 * spent
            on_done({"task_id": task.id, "attempts": attempts, "passed": attempts[-1]["status"] == "passed",
                     "n_tokens": sum(a["gen_tokens"] for a in attempts), "error": None})


class TinySUT:
    """sut/loadgen_sut.py's contract: issue only enqueues; each sample completed once, first token first."""

    def __init__(self, qsl: TaskQSL, engine: OracleEngine, first_token: bool) -> None:
        self.qsl, self.engine, self.first_token = qsl, engine, first_token
        self.records: list[dict] = []
        self.stats = {"issued": 0, "completed": 0, "errors": 0, "duplicate_completions": 0, "attempts": 0, "tokens": 0}
        self.lock = threading.Lock()
        self.sut = lg.ConstructSUT(self.issue, lambda: None)

    def issue(self, samples) -> None:
        with self.lock:
            self.stats["issued"] += len(samples)
        for qs in samples:
            first = (lambda tok, qid=qs.id: self._first(qid, tok)) if self.first_token else None
            self.engine.submit(self.qsl[qs.index], lambda rec, qid=qs.id, idx=qs.index: self._done(qid, idx, rec), first)

    def _first(self, qid: int, tok: int) -> None:
        buf = array.array("B", int(tok).to_bytes(4, "little"))
        lg.FirstTokenComplete([lg.QuerySampleResponse(qid, *buf.buffer_info(), 1)])

    def _done(self, qid: int, idx: int, rec: dict) -> None:
        with self.lock:
            self.stats["completed"] += 1
            self.stats["attempts"] += len(rec["attempts"])
            self.stats["tokens"] += rec["n_tokens"]
            self.records.append({"qsl_idx": idx, **rec})
        resp = Response(rec["task_id"], [AttemptOut(a["code"], a["status"], a["gen_tokens"]) for a in rec["attempts"]],
                        rec["n_tokens"], rec["error"])
        buf = array.array("B", encode(resp))
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, *buf.buffer_info(), max(rec["n_tokens"], 1))])


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--mode", required=True, choices=["performance", "accuracy"])
    p.add_argument("--conf", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, metavar="DIR")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--audit-config", type=Path, default=None)
    p.add_argument("--cost-ms", type=float, default=10.0, help="sleep per attempt")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--cheat", default="", choices=["", "cache", "giveup", "differ"])
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    settings = lg.TestSettings()
    settings.FromConfig(str(a.conf), MODEL, a.scenario)
    settings.scenario = getattr(lg.TestScenario, a.scenario)
    settings.mode = lg.TestMode.PerformanceOnly if a.mode == "performance" else lg.TestMode.AccuracyOnly
    log_out = lg.LogOutputSettings()
    log_out.outdir = str(a.out)
    log_settings = lg.LogSettings()
    log_settings.log_output = log_out
    log_settings.enable_trace = False
    os.chdir(a.out)
    if a.audit_config is not None:
        (a.out / "audit.config").write_text(a.audit_config.read_text())
    engine = OracleEngine(a.cost_ms / 1e3, timed=a.mode == "performance", cheat=a.cheat, workers=a.workers)
    qsl = TaskQSL(load_tasks(a.count))
    sut = TinySUT(qsl, engine, first_token=a.scenario != "Offline")
    engine.start()
    t0 = time.perf_counter()
    lg.StartTestWithLogSettings(sut.sut, qsl.qsl, settings, log_settings, "audit.config" if a.audit_config else "")
    wall = time.perf_counter() - t0
    engine.stop()
    with open(a.out / "agent_records.jsonl", "w") as f:
        for rec in sorted(sut.records, key=lambda r: (r["qsl_idx"], r["task_id"])):
            f.write(json.dumps(rec) + "\n")
    stats = {**sut.stats, "wall_s": wall, "unanswered": sut.stats["issued"] - sut.stats["completed"],
             "isolation": "none (tiny SUT)"}
    (a.out / "sut_stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    lg.DestroySUT(sut.sut)
    qsl.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
