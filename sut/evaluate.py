"""Run the agent loop over the frozen evaluation tasks and print pass rates.

    python -m sut.evaluate                         # shipped checkpoint, all 1,024 tasks
    python -m sut.evaluate --count 100 --json -    # a quick look, machine-readable (on stdout)
    python -m sut.evaluate --suite agentic         # the agentic suite with its checkpoint, up to 8 attempts
    python -m sut.evaluate --suite agentic --tasks FILE.jsonl --feedback none

The batched engine (sut/engine/scheduler.py) runs the tasks; ``--sequential`` runs them one at a time
(the engine with one sequence), which gives the same results; ``--engine vllm`` or
``--engine openai --base-url URL`` has another engine generate (sut/engine/external/engine.py).

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

from sut.agent import FEEDBACK_MODES, AgentConfig
from sut.records import AgentResult
from sut.model.checkpoint import CheckpointError, load_checkpoint
from sut.engine.factory import MAX_SEED, PER_CPU, EngineOptions, add_engine_arguments, build_external, check_device, check_range
from sut.tasks.suites import DEFAULT_SUITE, DEFAULTS, SUITES, SuiteError, check_checkpoint, check_fits, check_suite, load_tasks
from sut.model.gpt import NanoCodeGen
from sut.model.tokenizer import CodeTokenizer
from verifier.output_guard import add_json_flag, check_json, refuse_overwrite, text_to_stderr, write_json
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
        # the workload's question: how far the context grows on the tasks that need many attempts
        "tasks_5plus_attempts": len(long := [r for r in results if len(r.attempts) >= 5]),
        "final_context_5plus": sum(r.attempts[-1].context_len for r in long) / len(long) if long else 0.0,
        "max_context": max((a.context_len for r in results for a in r.attempts), default=0),
    }


def evaluate_tasks(model: NanoCodeGen, tok: CodeTokenizer, pool: Any, tasks: Sequence[Any], cfg: AgentConfig,
                   device: str = "cpu", desc: str = "evaluate", results: list[AgentResult] | None = None,
                   max_batch: int = 64, engine: Any = None) -> dict[str, Any]:
    """Run the retry loop over ``tasks`` and summarize; ``results`` collects them in task order.

    The native engine runs them (continuous batching, prefix reuse; ``max_batch=1`` is one task at a
    time, with the same results), or ``engine`` does (an ExternalEngine: another engine generates)."""
    from sut.engine.scheduler import Engine  # noqa: PLC0415
    from sut.engine.seq import run_all  # noqa: PLC0415

    out = results if results is not None else []
    t0 = time.perf_counter()
    engine = engine or Engine(model, tok, pool, cfg, max_batch=max_batch, device=device)
    try:
        out += run_all(engine, list(tasks), desc, progress=True)
    finally:
        engine.stop(close_pool=False)
    return summarize(out, time.perf_counter() - t0)


def record_reference(checkpoint: Path, summary: dict[str, Any], suite: str = DEFAULT_SUITE) -> None:
    """Write ``summary`` into ``checkpoint/metrics.json`` under "eval": the figures the harness's accuracy
    target (99% of pass@final) and TEST09's output-length band are taken from."""
    path = Path(checkpoint) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics["eval"] = {**summary, "command": f"python -m sut.evaluate --suite {suite} --record"}
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"recorded the reference figures in {path}", file=sys.stderr)


def engine_options(a: argparse.Namespace, checkpoint: Path) -> EngineOptions:
    """The shared engine options (sut/engine/factory.py) this command's flags amount to."""
    opts = EngineOptions(suite=a.suite, checkpoint=checkpoint, max_batch=a.max_batch, seed=a.seed,
                         temperature=a.temperature, isolation=a.isolation, engine=a.engine or "native")
    for name in ("base_url", "model_name", "request_timeout_s", "vllm_compile"):
        if getattr(a, name) is not None:
            setattr(opts, name, getattr(a, name))
    if a.sequential and opts.engine != "native":
        raise ValueError(f"--sequential runs the native engine one task at a time; it does not apply to --engine {opts.engine}")
    return opts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sut.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--suite", default=DEFAULT_SUITE, help=f"task suite: {' or '.join(SUITES)} (default {DEFAULT_SUITE})")
    p.add_argument("--tasks", type=Path, default=None,
                   help="a task file of the suite (default: its frozen evaluation set, sha256-checked)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the suite's shipped checkpoint")
    p.add_argument("--count", type=int, default=None, help="first N evaluation tasks (default: all)")
    p.add_argument("--max-attempts", type=int, default=None, help="default: the suite's (basic 5, agentic 8)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="per attempt; default: the suite's")
    p.add_argument("--feedback", choices=FEEDBACK_MODES, default="full",
                   help="none: the model reads a bare 'failed' instead of the verifier's text (an ablation)")
    add_engine_arguments(p)
    p.add_argument("--sequential", action="store_true", help="--engine native: one task at a time (an engine of one "
                                                              "sequence; the same results, slower)")
    p.add_argument("--max-batch", type=int, default=64, help="sequences the batched engine decodes together")
    p.add_argument("--seed", type=int, default=AgentConfig.seed)
    p.add_argument("--temperature", type=float, default=AgentConfig.temperature, help="retries' sampling temperature")
    p.add_argument("--top-k", type=int, default=AgentConfig.top_k, help="retries' top-k (0: the whole vocabulary)")
    p.add_argument("--redraws", type=int, default=AgentConfig.redraws,
                   help="redraw a retry that repeats rejected code up to N times before submitting it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the sandbox workers use the other cores)")
    p.add_argument("--workers", type=int, default=2, help="sandbox workers")
    add_isolation_flag(p)
    add_json_flag(p, "the summary")
    p.add_argument("--jsonl", type=Path, default=None, metavar="PATH",
                   help="also write every AgentResult, one JSON line each, to PATH (a new file)")
    p.add_argument("--force", action="store_true", help="replace an existing --json or --jsonl file")
    p.add_argument("--record", action="store_true",
                   help="store the summary as the checkpoint's reference figures (metrics.json 'eval'; all tasks only)")
    return p


def agent_config(p: argparse.ArgumentParser, a: argparse.Namespace) -> AgentConfig:
    """The agent settings the flags ask for (the suite's budget where not given); ``p.error`` for bad values."""
    suite = DEFAULTS[a.suite]
    a.max_attempts = a.max_attempts or suite.max_attempts
    a.max_new_tokens = a.max_new_tokens or suite.max_new_tokens
    if a.max_attempts < 1 or (a.count is not None and a.count < 1) or a.redraws < 0 or a.max_new_tokens < 1 \
            or a.max_batch < 1:
        p.error("--max-attempts, --max-new-tokens, --max-batch and --count must be positive, --redraws not negative")
    cfg = AgentConfig(max_attempts=a.max_attempts, max_new_tokens=a.max_new_tokens, seed=a.seed,
                      temperature=a.temperature, top_k=a.top_k or None, redraws=a.redraws, feedback=a.feedback)
    default_cfg = AgentConfig(max_attempts=suite.max_attempts, max_new_tokens=suite.max_new_tokens)
    if a.record and (a.count or a.tasks or cfg != default_cfg):
        p.error("--record stores the reference figures: run it on all frozen tasks with the default agent settings")
    return cfg


def checked_engine_options(a: argparse.Namespace, checkpoint: Path) -> EngineOptions:
    """The engine options' rules (sut/engine/factory.py), before a checkpoint loads or a sandbox starts;
    ValueError names the flag."""
    check_device(a.device)
    for flag, value, low, high in (("--threads", a.threads, 1, PER_CPU), ("--workers", a.workers, 1, PER_CPU),
                                   ("--seed", a.seed, 0, MAX_SEED), ("--temperature", a.temperature, 0, None),
                                   ("--top-k", a.top_k or 0, 0, None)):
        check_range(flag, value, low, high)
    opts = engine_options(a, checkpoint)
    opts.check_engine()
    return opts


def load_run(a: argparse.Namespace, checkpoint: Path, cfg: AgentConfig) -> tuple[list[Any], NanoCodeGen, CodeTokenizer]:
    """The tasks to run (the first --count) and the checkpoint, checked against each other (raises
    CheckpointError, EvalSetError or SuiteError)."""
    tasks = load_tasks(a.suite, a.tasks)
    model, tok, meta = load_checkpoint(checkpoint, a.device)
    check_checkpoint(checkpoint, meta, a.suite)
    tasks = tasks[: a.count] if a.count else tasks
    check_fits(tasks, tok, model.config.block_size, cfg.max_new_tokens)
    return tasks, model, tok


def run_tasks(a: argparse.Namespace, opts: EngineOptions, model: NanoCodeGen, tok: CodeTokenizer, tasks: list[Any],
              cfg: AgentConfig, results: list[AgentResult]) -> dict[str, Any]:
    """The agent over ``tasks`` through the engine asked for; SandboxUnavailable or EngineUnavailable if it
    cannot start."""
    from verifier.pool import SandboxPool  # noqa: PLC0415

    with SandboxPool(workers=a.workers, timeout_s=2.0, isolation=a.isolation) as pool:
        if opts.engine != "native":
            engine = build_external(opts, model, tok, cfg, pool)
            s = evaluate_tasks(model, tok, pool, tasks, cfg, a.device, results=results, engine=engine)
            s["engine_detail"] = engine.stats()["engine"]
            return s
        return evaluate_tasks(model, tok, pool, tasks, cfg, a.device, results=results,
                              max_batch=1 if a.sequential else a.max_batch)


def report(a: argparse.Namespace, s: dict[str, Any], results: list[AgentResult]) -> None:
    """--jsonl, --json and the one line of text (on stderr when --json - takes stdout)."""
    if a.jsonl:
        a.jsonl.parent.mkdir(parents=True, exist_ok=True)
        a.jsonl.write_text("".join(json.dumps(r.to_json()) + "\n" for r in results), encoding="utf-8")
    with text_to_stderr(a.json):
        print(f"tasks {s['tasks']}  pass@1 {s['pass@1']:.3f}  pass@final {s['pass@final']:.3f}  "
              f"mean attempts {s['mean_attempts']:.2f}  mean tokens {s['mean_tokens']:.1f}  "
              f"mean ms/task {s['mean_ms']:.1f}")
    write_json(a.json, s, indent=2)


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    try:
        checkpoint = a.checkpoint or DEFAULTS[check_suite(a.suite)].checkpoint
    except SuiteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = agent_config(p, a)
    check_json(a.json, a.force)   # one line, exit 2, before any work
    if a.jsonl is not None:
        refuse_overwrite(a.jsonl, a.force, "--jsonl", "file")
    try:
        opts = checked_engine_options(a, checkpoint)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if opts.engine == "native":   # vLLM sizes its CPU attention by the threads it binds itself: leave torch's alone
        torch.set_num_threads(a.threads)

    from sut.tasks.record import EvalSetError  # noqa: PLC0415 - keeps --help fast
    from sut.engine.external.vllm_generator import EngineUnavailable  # noqa: PLC0415
    from verifier.sandbox import SandboxUnavailable  # noqa: PLC0415
    try:
        tasks, model, tok = load_run(a, checkpoint, cfg)
    except (CheckpointError, EvalSetError, SuiteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    results: list[AgentResult] = []
    try:
        s = run_tasks(a, opts, model, tok, tasks, cfg, results)
    except (SandboxUnavailable, EngineUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, SandboxUnavailable) else 2
    # Per-task outcomes let the checker judge a --count subset against the reference on the same tasks.
    s["failed_final"] = [i for i, r in enumerate(results) if not r.passed]
    errored = [r for r in results if r.error is not None]
    if a.record and not errored:
        record_reference(checkpoint, s, a.suite)
    s.update(checkpoint=str(checkpoint), suite=a.suite, feedback=a.feedback, engine="sequential" if a.sequential else opts.engine,
             tasks_file=str(a.tasks) if a.tasks else "frozen")
    report(a, s, results)
    if errored:   # an engine or verifier failure is not a wrong answer: these figures measure nothing
        print(f"error: {len(errored)} of {len(results)} task(s) ended in an error, e.g. {errored[0].task_id}: "
              f"{errored[0].error}; the pass rates above count them as failed" + (" and were not recorded" if a.record else ""),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
