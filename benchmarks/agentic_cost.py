"""How inference cost grows with each retry as the context expands: one table and two plots.

    python -m benchmarks.agentic_cost                      # 256 agentic eval tasks, figures into runs/agentic_cost
    python -m benchmarks.agentic_cost --tasks 64 --json /tmp/cost.json --out /tmp/figs
    python -m benchmarks.agentic_cost --out docs/figures --force   # the figures docs/agentic.md shows

1. The table: for attempts 1 to 8 of the shipped agentic checkpoint's run (the batched engine,
   Offline-style), the mean context at the attempt's start, the tokens prefilled, and the ms the
   attempt spent in prefill, decode and verification, and the KV-cache bytes its sequence holds
   at its end: with prefix reuse (attempt k prefills only the feedback it adds) and without
   (``--no-prefix-reuse``: the whole transcript again), side by side in one run.
2. Decode cost per token against context length, measured: one decode step of a batch of rows
   at context c, through the engine's own step. Its time at c = 1 is the part that does not
   grow with the context (the matmuls: QKV, projections, MLP, LM head); what a step at c takes
   beyond that is attention reading the cache. The analytic FLOP crossover (attention FLOPs =
   matmul FLOPs at c = 6 x d_model) is drawn beside it.
3. Cumulative cost per solved task by the attempts it needed: prefill, decode and verify ms
   summed over its attempts (stacked), and the tokens it generated.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_util import cpu_model, sync
from sut.agent import AgentConfig
from sut.records import AgentResult
from sut.model.checkpoint import CheckpointError, load_checkpoint
from sut.engine.scheduler import Engine
from sut.engine.batch import BatchModel
from sut.engine.factory import default_workers
from sut.tasks.suites import DEFAULTS, load_tasks
from verifier.output_guard import add_json_flag, check_json, refuse_overwrite_files, text_to_stderr, write_json
from verifier.pool import SandboxPool

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "runs" / "agentic_cost"   # git-ignored; docs/figures only when asked (--out docs/figures)
FIGURES = ("agentic_decode_vs_context.png", "agentic_cost_by_attempts.png")
CONTEXTS = (1, 64, 128, 256, 384, 512, 768, 1024, 1280, 1536, 1792, 2040)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.agentic_cost", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULTS["agentic"].checkpoint)
    p.add_argument("--tasks", type=int, default=256, help="agentic eval tasks for the per-attempt table")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--decode-batch", type=int, default=32, help="rows of the decode step in the context sweep")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the sandboxes use the other cores)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help="folder of the two PNGs; the default, runs/agentic_cost (git-ignored), is this bench's own and "
                        "is rewritten on every run; in another folder an existing figure needs --force")
    add_json_flag(p, "every figure")
    p.add_argument("--force", action="store_true", help="replace an existing --json file or figure under --out")
    a = p.parse_args(argv)
    for name in ("tasks", "max_batch", "decode_batch", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    check_json(a.json, a.force)
    if a.out.resolve() != DEFAULT_OUT:
        refuse_overwrite_files(a.out, list(FIGURES), a.force)
    return a


def run(model: Any, tok: Any, pool: SandboxPool, tasks: list, cfg: AgentConfig, a: argparse.Namespace,
        reuse: bool) -> tuple[list[AgentResult], float]:
    engine = Engine(model, tok, pool, cfg, max_batch=a.max_batch, device=a.device, prefix_reuse=reuse)
    t0 = time.perf_counter()
    try:
        results = engine.run(tasks, progress=True)
    finally:
        engine.stop(close_pool=False)
    return results, time.perf_counter() - t0


def per_attempt(results: list[AgentResult], max_attempts: int) -> list[dict[str, float]]:
    """Mean figures of attempt k (1-based) over the tasks that made it. ``added``: what the retry added to each
    task's own context (the means of ``context`` are over fewer, harder tasks at each attempt, so they need not grow)."""
    rows = []
    for k in range(max_attempts):
        xs = [r.attempts[k] for r in results if len(r.attempts) > k]
        if not xs:
            continue
        m = statistics.fmean
        added = m(r.attempts[k].prompt_tokens - r.attempts[k - 1].prompt_tokens for r in results
                  if len(r.attempts) > k) if k else 0.0
        rows.append({"attempt": k + 1, "n": len(xs), "context": m(x.prompt_tokens for x in xs), "added": added,
                     "prefilled": m(x.prefilled_tokens for x in xs), "prefill_ms": m(x.prefill_ms for x in xs),
                     "decode_ms": m(x.decode_ms for x in xs), "verify_ms": m(x.verify_ms for x in xs),
                     "gen_tokens": m(x.gen_tokens for x in xs), "kv_bytes": m(x.kv_bytes for x in xs),
                     "truncated": sum(x.truncated for x in xs)})
    return rows


@torch.inference_mode()
def decode_sweep(model: Any, batch: int, device: str, reps: int = 5) -> list[dict[str, float]]:
    """ms of one decode step of ``batch`` rows at each context (the best of ``reps``)."""
    window = model.config.block_size
    bm = BatchModel(model, batch)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, model.config.vocab_size, (window,), generator=g).tolist()
    for b in range(batch):   # every slot holds a whole window of keys; a step at c reads the first c
        bm.prefill(ids[: window - 1], [0] * (window - 1), b, 0)
    rows = []
    for c in [c for c in CONTEXTS if c < window]:
        times = []
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            bm.decode(list(range(batch)), [7] * batch, [0] * batch, [c - 1] * batch)
            sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({"context": c, "step_ms": min(times) * 1e3, "flops_token": bm.token_flops(c),
                     "matmul_flops_token": bm.token_flops(0)})
    base = rows[0]["step_ms"]
    for r in rows:
        r["attention_ms"] = max(r["step_ms"] - base, 0.0)
        r["per_token_us"] = r["step_ms"] * 1e3 / batch
    return rows


def by_attempts_needed(results: list[AgentResult]) -> list[dict[str, float]]:
    """Solved tasks grouped by attempts needed: mean cumulative ms of each phase and tokens generated."""
    out = []
    for k in sorted({len(r.attempts) for r in results if r.passed}):
        rs = [r for r in results if r.passed and len(r.attempts) == k]
        m = statistics.fmean
        out.append({"attempts": k, "tasks": len(rs),
                    "prefill_ms": m(sum(x.prefill_ms for x in r.attempts) for r in rs),
                    "decode_ms": m(sum(x.decode_ms for x in r.attempts) for r in rs),
                    "verify_ms": m(sum(x.verify_ms for x in r.attempts) for r in rs),
                    "tokens": m(r.n_tokens for r in rs),
                    "final_context": m(r.attempts[-1].context_len for r in rs)})
    return out


def plot(res: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    sweep, d = res["decode_sweep"], res["model"]["n_embd"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    xs = [r["context"] for r in sweep]
    base = [sweep[0]["per_token_us"]] * len(sweep)
    attn = [r["per_token_us"] - sweep[0]["per_token_us"] for r in sweep]
    ax.stackplot(xs, base, attn, labels=["matmuls (QKV, projections, MLP, LM head): the step at context 1",
                                         "attention over the cache: the rest"], colors=["#9ecae1", "#fd8d3c"])
    ax.axvline(6 * d, color="k", ls="--", lw=1)
    ax.text(6 * d, max(r["per_token_us"] for r in sweep) * 0.55, f"  FLOP crossover\n  6 x d_model = {6 * d}",
            fontsize=8, va="top")
    for r in res["per_attempt"]:
        ax.axvline(r["context"], color="#31a354", lw=0.6, alpha=0.6)
    ax.set(xlabel="context length (tokens); green lines: mean context at the start of attempts 1, 2, ...",
           ylabel=f"decode time per token (us), batch {res['decode_batch']}",
           title="Decode cost per token against context (measured, engine step)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p1 = out_dir / FIGURES[0]
    fig.savefig(p1, dpi=120)
    plt.close(fig)

    rows = res["by_attempts_needed"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ks = [r["attempts"] for r in rows]
    bottom = [0.0] * len(rows)
    for phase, color in (("prefill_ms", "#6baed6"), ("decode_ms", "#fd8d3c"), ("verify_ms", "#74c476")):
        vals = [r[phase] for r in rows]
        ax.bar(ks, vals, bottom=bottom, color=color, label=phase.replace("_ms", ""))
        bottom = [b + v for b, v in zip(bottom, vals)]
    for k, b, r in zip(ks, bottom, rows):
        ax.text(k, b, f"{r['tasks']} tasks\n{r['tokens']:.0f} tok\nctx {r['final_context']:.0f}", ha="center",
                va="bottom", fontsize=7)
    ax.set(xlabel="attempts the task needed", ylabel="cumulative ms per solved task (batched engine)",
           title="Cost per solved task by attempts needed")
    ax.set_ylim(0, max(bottom, default=1) * 1.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    p2 = out_dir / FIGURES[1]
    fig.savefig(p2, dpi=120)
    plt.close(fig)
    return [p1, p2]


def report(res: dict[str, Any]) -> None:
    print(f"\nmachine: {res['cpu']}, {res['threads']} torch thread(s), checkpoint {res['checkpoint']}, "
          f"{res['tasks']} agentic eval tasks, up to {res['max_attempts']} attempts")
    for key in ("reuse", "noreuse"):
        s = res["summary"][key]
        print(f"  {key:>8}: pass@1 {s['pass@1']:.3f}, pass@final {s['pass@final']:.3f}, mean attempts "
              f"{s['mean_attempts']:.2f}, {s['tasks_s']:.2f} tasks/s")
    print("\nper attempt, mean: context at start / tokens prefilled / prefill ms / decode ms / verify ms / KV KiB"
          "  (prefix reuse on | off)")
    off = {r["attempt"]: r for r in res["per_attempt_noreuse"]}
    for r in res["per_attempt"]:
        o = off.get(r["attempt"])
        left = (f"{r['context']:6.0f} {r['prefilled']:6.0f} {r['prefill_ms']:7.1f} {r['decode_ms']:7.1f} "
                f"{r['verify_ms']:6.1f} {r['kv_bytes'] / 1024:7.0f}")
        right = (f"{o['context']:6.0f} {o['prefilled']:6.0f} {o['prefill_ms']:7.1f} {o['decode_ms']:7.1f} "
                 f"{o['verify_ms']:6.1f} {o['kv_bytes'] / 1024:7.0f}") if o else "-"
        print(f"  attempt {r['attempt']} (n={r['n']:4d}): {left} | {right}")
    print(f"\ndecode step, batch {res['decode_batch']}: us per token at context (attention share)")
    for r in res["decode_sweep"]:
        share = r["attention_ms"] / r["step_ms"] if r["step_ms"] else 0.0
        print(f"  {r['context']:5d}: {r['per_token_us']:7.1f} us  ({100 * share:4.1f}% attention; FLOPs "
              f"{100 * (1 - r['matmul_flops_token'] / r['flops_token']):4.1f}%)")
    print("\nsolved tasks by attempts needed: tasks, mean cumulative prefill / decode / verify ms, tokens, final context")
    for r in res["by_attempts_needed"]:
        print(f"  {r['attempts']}: {r['tasks']:4d} tasks {r['prefill_ms']:8.1f} {r['decode_ms']:8.1f} "
              f"{r['verify_ms']:7.1f}  {r['tokens']:6.0f} tok  ctx {r['final_context']:6.0f}")


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        model, tok, meta = load_checkpoint(a.checkpoint, a.device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with text_to_stderr(a.json):
        res = measure(a, model, tok, argv)
        report(res)
        print("\nfigures: " + ", ".join(res["figures"]))
    write_json(a.json, res)
    return 0


def measure(a: argparse.Namespace, model: Any, tok: Any, argv: list[str] | None) -> dict[str, Any]:
    """The agent runs with and without prefix reuse, the decode sweep, and the two figures under --out."""
    tasks = load_tasks("agentic")[: a.tasks]
    d = DEFAULTS["agentic"]
    cfg = AgentConfig(max_attempts=d.max_attempts, max_new_tokens=d.max_new_tokens)
    res: dict[str, Any] = {"command": "python -m benchmarks.agentic_cost " + " ".join(argv or sys.argv[1:]),
                           "cpu": cpu_model(detail=True), "cores": os.cpu_count(), "threads": a.threads,
                           "checkpoint": str(a.checkpoint), "tasks": len(tasks), "max_attempts": cfg.max_attempts,
                           "model": model.config.to_dict(), "decode_batch": a.decode_batch, "summary": {}}
    from sut.evaluate import summarize  # noqa: PLC0415
    with SandboxPool(workers=default_workers(), lint=False, preload=()) as pool:
        for key, reuse in (("reuse", True), ("noreuse", False)):
            results, wall = run(model, tok, pool, tasks, cfg, a, reuse)
            res["summary"][key] = {**{k: v for k, v in summarize(results, wall).items()}, "tasks_s": len(tasks) / wall}
            res["per_attempt" if reuse else "per_attempt_noreuse"] = per_attempt(results, cfg.max_attempts)
            if reuse:
                res["by_attempts_needed"] = by_attempts_needed(results)
    res["decode_sweep"] = decode_sweep(model, a.decode_batch, a.device)
    res["figures"] = [str(p) for p in plot(res, a.out)]
    return res


if __name__ == "__main__":
    sys.exit(main())
