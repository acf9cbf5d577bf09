"""Run the agent loop over the frozen evaluation tasks and print pass rates.

    python -m sut.evaluate                         # shipped checkpoint, all 1,024 tasks
    python -m sut.evaluate --count 100 --json      # a quick look, machine-readable

pass@1 counts tasks solved by the first (greedy) attempt; pass@final counts tasks solved
by any attempt within --max-attempts. This is the in-loop verdict: the official
accuracy figure comes from the post-hoc accuracy pass over LoadGen's log.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sut.agent import AgentConfig, AgentResult, run_agent
from sut.checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from sut.engine_factory import MAX_SEED, PER_CPU, check_device, check_range
from sut.model import NanoCodeGen
from sut.output_guard import refuse_overwrite
from sut.tokenizer import CodeTokenizer
from verifier.sandbox import add_isolation_flag

log = logging.getLogger("sut.evaluate")


def summarize(results: Sequence[AgentResult], wall_s: float) -> dict[str, Any]:
    n = max(len(results), 1)
    return {
        "tasks": len(results),
        "pass@1": sum(bool(r.attempts) and r.attempts[0].status == "passed" for r in results) / n,
        "pass@final": sum(r.passed for r in results) / n,
        "mean_attempts": sum(len(r.attempts) for r in results) / n,
        "mean_tokens": sum(r.n_tokens for r in results) / n,
        "mean_ms": wall_s * 1e3 / n,
        "truncated_tasks": sum(any(a.truncated for a in r.attempts) for r in results),
        "errors": sum(r.error is not None for r in results),
        # how much of the retry budget is spent resubmitting code the verifier already rejected
        "retries": sum(max(len(r.attempts) - 1, 0) for r in results),
        "retries_repeating_first": sum(a.code == r.attempts[0].code for r in results for a in r.attempts[1:]),
        "retries_repeating_earlier": sum(a.code in {b.code for b in r.attempts[:k]}
                                         for r in results for k, a in enumerate(r.attempts) if k > 0),
        "redraws": sum(a.redraws for r in results for a in r.attempts),
    }


def evaluate_tasks(model: NanoCodeGen, tok: CodeTokenizer, pool: Any, tasks: Sequence[Any], cfg: AgentConfig,
                   device: str = "cpu", desc: str = "evaluate", results: list[AgentResult] | None = None
                   ) -> dict[str, Any]:
    """Run the agent on each task (one sequence at a time) and summarize; ``results`` collects them."""
    out = results if results is not None else []
    t0 = time.perf_counter()
    cache = model.new_cache(1)
    bar = tqdm(tasks, desc=desc, unit="task", dynamic_ncols=True)
    for task in bar:
        out.append(run_agent(task, model, tok, pool, cfg, device, cache=cache))
        if len(out) % 16 == 0:
            bar.set_postfix(final=f"{sum(r.passed for r in out) / len(out):.3f}")
    return summarize(out, time.perf_counter() - t0)


def record_reference(checkpoint: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` into ``checkpoint/metrics.json`` under "eval": the figures the harness's accuracy
    target (99% of pass@final) and TEST09's output-length band are taken from."""
    path = Path(checkpoint) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["eval"] = {**summary, "command": "python -m sut.evaluate --record"}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"recorded the reference figures in {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sut.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--count", type=int, default=None, help="first N evaluation tasks (default: all)")
    p.add_argument("--max-attempts", type=int, default=AgentConfig.max_attempts)
    p.add_argument("--seed", type=int, default=AgentConfig.seed)
    p.add_argument("--temperature", type=float, default=AgentConfig.temperature, help="retries' sampling temperature")
    p.add_argument("--top-k", type=int, default=AgentConfig.top_k, help="retries' top-k (0: the whole vocabulary)")
    p.add_argument("--redraws", type=int, default=AgentConfig.redraws,
                   help="redraw a retry that repeats rejected code up to N times before submitting it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the sandbox workers use the other cores)")
    p.add_argument("--workers", type=int, default=2, help="sandbox workers")
    add_isolation_flag(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--results", type=Path, default=None, help="also write every AgentResult as JSONL here (a new file)")
    p.add_argument("--force", action="store_true", help="replace an existing --results file")
    p.add_argument("--record", action="store_true",
                   help="store the summary as the checkpoint's reference figures (metrics.json 'eval'; all tasks only)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    if a.max_attempts < 1 or (a.count is not None and a.count < 1) or a.redraws < 0:
        p.error("--max-attempts and --count must be positive, --redraws not negative")
    cfg = AgentConfig(max_attempts=a.max_attempts, seed=a.seed, temperature=a.temperature, top_k=a.top_k or None,
                      redraws=a.redraws)
    if a.record and (a.count or cfg != AgentConfig()):
        p.error("--record stores the reference figures: run it on all tasks with the default agent settings")
    if a.results is not None:
        refuse_overwrite(a.results, a.force, "--results", "file")   # one line, exit 2, before any work
    try:   # the engine options' rules (sut/engine_factory.py), before a checkpoint loads or a sandbox starts
        check_device(a.device)
        for flag, value, low, high in (("--threads", a.threads, 1, PER_CPU), ("--workers", a.workers, 1, PER_CPU),
                                       ("--seed", a.seed, 0, MAX_SEED), ("--temperature", a.temperature, 0, None),
                                       ("--top-k", a.top_k or 0, 0, None)):
            check_range(flag, value, low, high)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)

    from sut.tasks import EvalSetError, load_eval_tasks  # noqa: PLC0415 - keeps --help fast
    from verifier.pool import SandboxPool  # noqa: PLC0415
    from verifier.sandbox import SandboxUnavailable  # noqa: PLC0415
    try:
        model, tok, _ = load_checkpoint(a.checkpoint, a.device)
        tasks = load_eval_tasks()
    except (CheckpointError, EvalSetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tasks = tasks[: a.count] if a.count else tasks
    results: list[AgentResult] = []
    try:
        pool = SandboxPool(workers=a.workers, timeout_s=2.0, isolation=a.isolation)
    except SandboxUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with pool:
        s = evaluate_tasks(model, tok, pool, tasks, cfg, a.device, results=results)
    # Per-task outcomes let the checker judge a --count subset against the reference on the same tasks.
    s["failed_final"] = [i for i, r in enumerate(results) if not r.passed]
    if a.record:
        record_reference(a.checkpoint, s)
    s["checkpoint"] = str(a.checkpoint)
    if a.results:
        a.results.write_text("".join(json.dumps(r.to_json()) + "\n" for r in results), encoding="utf-8")
    if a.json:
        print(json.dumps(s, indent=2))
    else:
        print(f"tasks {s['tasks']}  pass@1 {s['pass@1']:.3f}  pass@final {s['pass@final']:.3f}  "
              f"mean attempts {s['mean_attempts']:.2f}  mean tokens {s['mean_tokens']:.1f}  "
              f"mean ms/task {s['mean_ms']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
