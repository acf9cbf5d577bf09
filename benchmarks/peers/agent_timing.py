"""Timing a whole agentic run through any engine: shared by the in-process sections and the vLLM worker
processes, so both measure the same way."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sut.engine.seq import run_all


def timed_agent(eng: Any, tasks: list, progress: Callable[[int], None]) -> tuple[float, list, dict]:
    """Run ``tasks`` through a started-or-not engine (native Engine or ExternalEngine); wall, results, stats.
    The clock starts once the engine has started: its start-up is not the run's."""
    eng.start()
    t0 = time.perf_counter()
    results = run_all(eng, tasks, "agent", False, on_count=progress)
    return time.perf_counter() - t0, results, eng.stats()


def agent_summary(results: list, wall: float, stats: dict[str, Any]) -> dict[str, Any]:
    n = len(results)
    keep = ("tokens_generated", "attempts", "prefix_reuse_hit_rate", "step_s", "decode_s", "engine_thread_cpu_s",
            "mean_decode_rows", "generate_s", "verify_s", "requests", "max_batch", "isolation")
    return {"tasks": n, "wall_s": wall, "tasks_s": n / wall, "pass_final": sum(r.passed for r in results) / n,
            "pass_1": sum(bool(r.attempts) and r.attempts[0].status == "passed" for r in results) / n,
            "mean_attempts": sum(len(r.attempts) for r in results) / n, "errors": sum(r.error is not None for r in results),
            "first_error": next((r.error for r in results if r.error), None),
            "stats": {k: stats[k] for k in keep if k in stats}}
