"""Measurement helpers for benchmarks/engine_bench.py: machine facts, timers, sweeps, the plot."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sut.model import transcript as tr
from sut.records import AgentResult
from sut.engine.batch import BatchModel
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.platform_info import cpu_model
from sut.tasks.record import Task
from sut.tasks.basic import load_eval_tasks
from sut.model.tokenizer import CodeTokenizer, train_tokenizer
from verifier.checks import ValueCheck


def sync(device: str | torch.device) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str = "cpu", n: int = 2048, reps: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n torch.mm with the current thread count (the machine's practical peak)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def decode_rates(runs: dict[str, Callable[[int], float]], batch: int, n_new: int, reps: int = 3
                 ) -> dict[str, dict[str, float]]:
    """Decode tokens/s of each named generator from wall times of whole generations of 1 and
    ``n_new`` tokens (prefill cancels), interleaved rep by rep so that a busy spell on a shared
    machine hits every contender alike; the best of ``reps`` counts."""
    t1 = {k: float("inf") for k in runs}
    tn = dict(t1)
    for _ in range(reps):
        for name, run in runs.items():
            t1[name] = min(t1[name], run(1))
            tn[name] = min(tn[name], run(n_new))
    return {k: {"decode_tok_s": batch * (n_new - 1) / max(tn[k] - t1[k], 1e-9), "end_to_end_tok_s": batch * n_new / tn[k],
                "t_1_s": t1[k], "t_n_s": tn[k]} for k in runs}


def random_model(cfg: GPTConfig, tok: CodeTokenizer, device: str, sharp: bool = False) -> NanoCodeGen:
    """Random weights of ``cfg``'s shape. Default: <|end|> is unreachable (its tied row is zero, so its
    logit is 0 while the best of the others is above 0), so every row decodes the full length.
    ``sharp``: N(0, 1) embeddings (an untrained stand-in for the agent runs)."""
    torch.manual_seed(0)
    m = NanoCodeGen(cfg)
    with torch.no_grad():
        if sharp:
            m.wte.weight.normal_(0, 1.0)
            m.wse.weight.normal_(0, 1.0)
        else:
            m.wte.weight[tok.end_id] = 0
    return m.to(device).eval()


def quick_tokenizer() -> CodeTokenizer:
    rows = load_eval_tasks()
    return train_tokenizer([t.prompt for t in rows] + [t.solution for t in rows])


def synthetic_task(tok: CodeTokenizer, prompt_tokens: int) -> tuple[Task, list[int]]:
    """A task whose transcript prefix is at least ``prompt_tokens`` long, and that prefix's ids."""
    words = "write a function that returns the sum of the numbers in a list of values".split()
    text, i = "", 0
    while len(tr.prompt_prefix(tok, text)) < prompt_tokens:
        text += (" " if text else "") + words[i % len(words)]
        i += 1
    return Task("bench-0000", "bench", 1, text, "", ValueCheck(0)), tr.prompt_prefix(tok, text).ids


@torch.inference_mode()
def prefill_sweep(model: NanoCodeGen, device: str, new: int = 24, reps: int = 7) -> list[dict[str, float]]:
    """Prefill ms at each context length: ``new`` tokens onto a cached prefix (prefix reuse) vs the
    whole context, each as the engine runs it (a batched step holding just that prefill)."""
    bm = BatchModel(model, 1)
    window = model.config.block_size
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(6, model.config.vocab_size, (window,), generator=g).tolist()
    rows = []
    for ctx in [c for c in (32, 64, 96, 128, 192, 256, 320, 384, 448, 512, 768, 1024) if c < window]:
        def timed(start: int) -> float:
            out = []
            for _ in range(reps):
                sync(device)
                t0 = time.perf_counter()
                bm.prefill(ids[start:ctx], [0] * (ctx - start), 0, start)
                sync(device)
                out.append(time.perf_counter() - t0)
            return min(out) * 1e3   # the best of reps: what the machine does when not interrupted
        full = timed(0)
        bm.prefill(ids[: ctx - new], [0] * (ctx - new), 0, 0)
        rows.append({"context": ctx, "new_tokens": new, "reuse_ms": timed(ctx - new), "full_ms": full})
    return rows


def agent_table(reuse: list[AgentResult], noreuse: list[AgentResult]) -> list[dict[str, float]]:
    """Per attempt index: mean context, prefilled tokens and prefill ms, with and without prefix reuse."""
    out = []
    for k in range(max((len(r.attempts) for r in reuse), default=0)):
        a = [r.attempts[k] for r in reuse if len(r.attempts) > k]
        b = [r.attempts[k] for r in noreuse if len(r.attempts) > k]
        if not a or not b:
            continue
        mean = statistics.fmean
        out.append({"attempt": k, "n": len(a), "context": mean(x.prompt_tokens for x in a),
                    "prefilled_reuse": mean(x.prefilled_tokens for x in a), "ms_reuse": mean(x.prefill_ms for x in a),
                    "context_noreuse": mean(x.prompt_tokens for x in b),
                    "prefilled_noreuse": mean(x.prefilled_tokens for x in b), "ms_noreuse": mean(x.prefill_ms for x in b)})
    return out


@torch.inference_mode()
def kernel_flops(model: NanoCodeGen, batch: int, prompt: int, n_new: int) -> dict[str, float]:
    """Offline-style batched decoding through the engine's decode step: tokens/s and model FLOP/s."""
    bm = BatchModel(model, batch)
    dev = bm.device
    g = torch.Generator().manual_seed(1)
    for b in range(batch):
        bm.prefill(torch.randint(6, model.config.vocab_size, (prompt,), generator=g).tolist(), [0] * prompt, b, 0)
    toks, steps, pos, rows = [7] * batch, [0] * batch, [prompt] * batch, list(range(batch))
    flops = 0
    sync(dev)
    t0 = time.perf_counter()
    for i in range(n_new):
        toks = bm.decode(rows, toks, steps, pos).argmax(-1).tolist()
        flops += batch * bm.token_flops(prompt + i + 1)
        pos = [p + 1 for p in pos]
    sync(dev)
    dt = time.perf_counter() - t0
    return {"tok_s": batch * n_new / dt, "flops_s": flops / dt}


def plot_prefill(sweep: list[dict[str, float]], per_attempt: list[dict[str, float]], path: Path) -> None:
    """Left: prefill ms against context, with and without prefix reuse (the sweep). Right: the
    agent runs' tokens prefilled per attempt against its context (the work reuse saves)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    ax.plot([r["context"] for r in sweep], [r["full_ms"] for r in sweep], "o-", label="no prefix reuse (whole context)")
    ax.plot([r["context"] for r in sweep], [r["reuse_ms"] for r in sweep], "s-",
            label=f"prefix reuse ({sweep[0]['new_tokens'] if sweep else 0} new tokens on the cache)")
    ax.set(xlabel="context length (tokens)", ylabel="prefill time (ms)", title="Prefill time against context")
    if per_attempt:
        bx.plot([r["context_noreuse"] for r in per_attempt], [r["prefilled_noreuse"] for r in per_attempt], "o-",
                label="no prefix reuse")
        bx.plot([r["context"] for r in per_attempt], [r["prefilled_reuse"] for r in per_attempt], "s-", label="prefix reuse")
        for r in per_attempt:
            bx.annotate(f"attempt {r['attempt']}", (r["context"], r["prefilled_noreuse"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    bx.set(xlabel="context at the attempt's start (tokens)", ylabel="tokens prefilled (mean)",
           title="Agent run: tokens prefilled per attempt")
    if not per_attempt:
        bx.text(0.5, 0.5, "no agent run in this benchmark", ha="center", va="center", transform=bx.transAxes)
    for a in (ax, bx):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
