"""The engine's counters: the accounting of each batched step, and the ``Engine.stats()`` snapshot.

Kept apart from the scheduler (sut/engine/scheduler.py) because it is bookkeeping about the run, not a
decision in it: every figure engine_bench and the harness's sut_stats.json print comes from here.
"""
from __future__ import annotations

from typing import Any

COUNTS = ("submitted", "done", "errors", "passed", "attempts", "tokens", "reused", "prefilled", "rebuilds", "steps",
          "decode_steps", "decode_rows", "rows_computed", "decode_flops", "model_flops", "loop_errors", "slot_moves",
          "spec_groups", "drafted", "accepted")
TIMES = ("prefill_s", "decode_s", "step_s", "step_cpu_s", "loop_cpu_s")


class EngineCounters:
    """``n``: counts, ``t``: seconds; written by the engine thread, read by ``snapshot`` from any thread."""

    def __init__(self) -> None:
        self.n: dict[str, int] = dict.fromkeys(COUNTS, 0)
        self.t: dict[str, float] = dict.fromkeys(TIMES, 0.0)

    def record_step(self, bm: Any, dec: list, pre: list, spec: list, drafts: list[list[int]], wall_s: float,
                    cpu_s: float) -> None:
        """One batched forward and its token choice: its time (split between prefill and decode by
        rows), its rows and its model FLOPs (``bm``: the BatchModel; ``dec``/``pre``/``spec``: the
        step's decoding, prefilling and drafting sequences, before their tokens are taken)."""
        n, t = self.n, self.t
        new_tokens = sum(len(s) - s.cached for s in pre)
        decode_rows = len(dec) + sum(len(d) + 1 for d in drafts)
        share = new_tokens / (new_tokens + decode_rows)
        t["prefill_s"] += wall_s * share
        t["decode_s"] += wall_s * (1 - share)
        t["step_s"] += wall_s
        t["step_cpu_s"] += cpu_s
        n["steps"] += 1
        n["decode_steps"] += bool(dec or spec)
        n["decode_rows"] += len(dec) + len(spec)
        decode_flops = bm.tokens_flops(len(dec), sum(len(s.ids) for s in dec))
        n["decode_flops"] += decode_flops
        n["model_flops"] += decode_flops + sum(bm.prefill_flops(s.cached, len(s)) for s in pre) + sum(
            bm.prefill_flops(s.cached, s.cached + len(d) + 1) for s, d in zip(spec, drafts))

    def snapshot(self, **settings: Any) -> dict[str, Any]:
        """The counters as ``Engine.stats()`` reports them, with the engine's ``settings`` (``max_batch`` among
        them; ``BatchModel.describe()``'s backend, native kernel and batch invariance)."""
        n, t = dict(self.n), dict(self.t)
        steps = max(n["decode_steps"], 1)
        seen = n["reused"] + n["prefilled"]
        return {
            "tasks_submitted": n["submitted"], "tasks_done": n["done"], "tasks_passed": n["passed"],
            "tasks_failed_with_error": n["errors"], "attempts": n["attempts"], "tokens_generated": n["tokens"],
            "reused_tokens": n["reused"], "prefilled_tokens": n["prefilled"],
            "prefix_reuse_hit_rate": n["reused"] / seen if seen else 0.0, "cache_rebuilds": n["rebuilds"],
            "decode_steps": n["decode_steps"], "mean_decode_rows": n["decode_rows"] / steps,
            "mean_batch_occupancy": n["decode_rows"] / steps / settings["max_batch"],
            "rows_computed": n["rows_computed"], "decode_flops": n["decode_flops"], "model_flops": n["model_flops"],
            "steps": n["steps"], "slot_moves": n["slot_moves"], "spec_groups": n["spec_groups"],
            "drafted_tokens": n["drafted"], "accepted_draft_tokens": n["accepted"], "step_s": t["step_s"],
            "prefill_s": t["prefill_s"], "decode_s": t["decode_s"], "step_cpu_s": t["step_cpu_s"],
            "engine_thread_cpu_s": t["loop_cpu_s"], "loop_errors": n["loop_errors"], **settings,
        }
