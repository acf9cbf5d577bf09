"""Where the generation engine's time goes, against its peers, in one run.

    python -m benchmarks.engine_bench --json runs/engine_bench.json
    python -m benchmarks.engine_bench --suite agentic --ref-tasks 32   # the agentic checkpoint and tasks

Prints side by side (and writes the same figures as JSON with ``--json PATH``, or prints them alone on stdout
with ``--json -``; the plot goes under ``--out DIR``, default runs/engine_bench/):

1. decode tokens/s at batch 1 and 32: our engine vs Hugging Face ``generate`` on a GPT-2 of
   the same shape (random weights, KV cache on, greedy, both forced to the same length);
   decode rate = batch * (N - 1) / (t(N new tokens) - t(1 new token)), so prefill cancels;
   with ``--contexts`` (the agentic suite's default: 256, 1024, 2048) at each context, the
   prompt being the context less the new tokens;
2. agent throughput (tasks/s, every attempt and its verification included) over the eval
   tasks: the full engine (the median of several passes) vs the reference's way (one task at a
   time, no KV cache, whole context recomputed for every token), run in parts between the
   engine's passes so that both see the same drift of a shared machine's speed;
3. prefill time against context length, with and without prefix reuse (sweep + the agent
   runs' per-attempt records; table and PNG, --out/prefill_vs_context.png);
4. achieved model FLOP/s of batched decoding (batch 1, 32 and --flops-batch) as a fraction of
   this machine's fp32 matmul peak, measured in the same run with the same thread count.

Needs the benchmark extra for (1): ``pip install -e '.[bench]'`` (transformers).

    python -m benchmarks.engine_bench --peers vllm --json runs/engine_peers.json

``--peers vllm`` runs benchmarks/engine_peers.py instead of the sections above: native against vLLM in
process and behind its OpenAI-compatible server on the same checkpoint and tasks (decode tokens/s, agentic
tasks/s, a short Offline run), a width sweep on random weights and measured per-step costs; the other flags
are engine_peers' (``python -m benchmarks.engine_bench --peers vllm --help``).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.bench_util import (agent_table, cpu_model, decode_rates, matmul_peak, plot_prefill, prefill_sweep,
                                   random_model, synthetic_task)
from sut.agent import AgentConfig
from sut.records import AgentResult
from sut.platform_info import machine_cpu_s
from sut.model.checkpoint import CheckpointError, load_checkpoint
from sut.engine.scheduler import Engine
from sut.engine.batch import BatchModel
from sut.engine.factory import default_workers
from sut.tasks.suites import DEFAULTS, SUITES, SuiteError, check_suite, load_tasks
from verifier.output_guard import add_json_flag, check_json, refuse_overwrite_files, text_to_stderr, write_json
from verifier.pool import SandboxPool

log = logging.getLogger("benchmarks.engine_bench")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "runs" / "engine_bench"   # git-ignored; docs/figures only when asked (--out docs/figures)
PLOT = "prefill_vs_context.png"
SECTIONS = {"decode", "agent", "prefill", "flops"}
PEERS = ("vllm",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.engine_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="basic", help=f"task suite of the agent runs: {' or '.join(SUITES)}")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="trained model for the agent runs (default: the suite's shipped checkpoint)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads for every measurement, ours and HF alike (default 1: decode ops "
                        "are small, and on a shared machine a second thread waits on a busy core; docs/engine.md)")
    p.add_argument("--tasks", type=int, default=256, help="eval tasks for the engine's agent throughput")
    p.add_argument("--ref-tasks", type=int, default=256, help="eval tasks for the slow reference way (~20 s for 256)")
    p.add_argument("--engine-passes", type=int, default=5,
                   help="engine passes over the tasks, the reference way's chunks between them; the median counts")
    p.add_argument("--max-batch", type=int, default=64, help="the full engine's max batch (Offline-style)")
    p.add_argument("--workers", type=int, default=0,
                   help="verifier sandbox workers (0: one per core but the engine thread's, as the harness)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="decode benchmark: prompt length")
    p.add_argument("--new-tokens", type=int, default=128, help="decode benchmark: tokens generated per row")
    p.add_argument("--contexts", default=None,
                   help="decode benchmark: comma-separated context lengths to sweep (default: agentic 256,1024,2048; "
                        "basic none, just --prompt-tokens)")
    p.add_argument("--flops-batch", type=int, default=128, help="Offline-style decode batch for the FLOP/s figure")
    add_json_flag(p, "every figure")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder of the figure ({PLOT}); the default, runs/engine_bench (git-ignored), is this bench's "
                        "own and is rewritten on every run; in another folder an existing figure needs --force")
    p.add_argument("--force", action="store_true", help="replace an existing --json file or figure under --out")
    p.add_argument("--skip-hf", action="store_true", help="skip the transformers comparison")
    p.add_argument("--sections", default="decode,agent,prefill,flops",
                   help="comma-separated subset of decode,agent,prefill,flops to run")
    p.add_argument("--peers", choices=PEERS, default=None,
                   help="instead of the sections, time our engine against these peers on the same checkpoint and "
                        "tasks (benchmarks/engine_peers.py; every other flag is then that benchmark's)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, checked (``p.error``: one line, exit 2), with the suite's checkpoint and agent budget filled in;
    nothing the run would write may exist already (exit 2) unless --force."""
    p = build_parser()
    a = p.parse_args(argv)
    for name in ("threads", "tasks", "ref_tasks", "engine_passes", "max_batch", "prompt_tokens", "new_tokens", "flops_batch"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.workers < 0:
        p.error(f"--workers must be at least 0, got {a.workers}")
    try:
        suite = DEFAULTS[check_suite(a.suite)]
    except SuiteError as e:
        p.error(str(e))
    a.checkpoint = a.checkpoint or suite.checkpoint
    a.agent_cfg = AgentConfig(max_attempts=suite.max_attempts, max_new_tokens=suite.max_new_tokens)
    check_contexts_and_sections(p, a)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device}: CUDA is not available here; use --device cpu")
    check_json(a.json, a.force)
    if "prefill" in a.sections and a.out.resolve() != DEFAULT_OUT:
        refuse_overwrite_files(a.out, [PLOT], a.force)
    return a


def check_contexts_and_sections(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """--contexts (the suite's default where not given) and --sections as lists, or ``p.error``."""
    if a.contexts is None:
        a.contexts = "256,1024,2048" if a.suite == "agentic" else ""
    try:
        a.contexts = [int(c) for c in a.contexts.split(",") if c.strip()]
    except ValueError:
        p.error(f"--contexts takes comma-separated token counts, got {a.contexts!r}")
    if any(c <= a.new_tokens for c in a.contexts):
        p.error(f"--contexts must each exceed --new-tokens ({a.new_tokens})")
    a.sections = set(a.sections.split(","))
    if not a.sections or a.sections - SECTIONS:
        p.error(f"--sections takes a comma-separated subset of {','.join(sorted(SECTIONS))}, got {','.join(a.sections)}")


def run_engine(model: Any, tok: Any, pool: SandboxPool, tasks: list[Any], cfg: AgentConfig, device: str,
               desc: str, progress: bool = True, **kw: Any) -> tuple[list[AgentResult], float, dict[str, Any]]:
    engine = Engine(model, tok, pool, cfg, device=device, **kw)
    engine.start()
    cpu0, t0 = (machine_cpu_s(), os.times()), time.perf_counter()
    results = engine.run(tasks, progress=progress)
    wall, cpu1 = time.perf_counter() - t0, (machine_cpu_s(), os.times())
    engine.stop(close_pool=False)
    errors = [r.error for r in results if r.error]
    if errors:
        log.warning("%s: %d tasks ended with an error, e.g. %s", desc, len(errors), errors[0])
    stats = engine.stats()
    # core-seconds over exactly the timed wall (building the engine, its cache and packed weights excluded)
    stats["cpu_window"] = {"process_s": (cpu1[1].user + cpu1[1].system) - (cpu0[1].user + cpu0[1].system),
                           "machine_s": cpu1[0] - cpu0[0]}
    return results, wall, stats


def bench_decode(a: argparse.Namespace, tok: Any, pool: SandboxPool, cfg_model: Any) -> dict[str, Any]:
    """Section 1: decode tokens/s, ours vs HF generate, at batch 1 and 32."""
    model = random_model(cfg_model, tok, a.device)
    task, prompt_ids = synthetic_task(tok, a.prompt_tokens)
    out: dict[str, Any] = {"prompt_tokens": len(prompt_ids), "new_tokens": a.new_tokens}

    def ours(batch: int, n_new: int, t: Any = task) -> float:
        cfg = AgentConfig(max_attempts=1, max_new_tokens=n_new)
        _, wall, stats = run_engine(model, tok, pool, [t] * batch, cfg, a.device, "decode", progress=False,
                                    max_batch=batch)
        assert stats["tokens_generated"] == batch * n_new, stats
        return wall

    if not a.skip_hf:
        from benchmarks.hf_baseline import build_gpt2, hf_generate_seconds
        hf = build_gpt2(cfg_model, a.device)
    for batch in (1, 32):
        runs = {"ours": lambda n, b=batch: ours(b, n)}
        if not a.skip_hf:
            runs["hf"] = lambda n, b=batch: hf_generate_seconds(hf, prompt_ids, b, n, a.device)
        row = decode_rates(runs, batch, a.new_tokens)
        if "hf" in row:
            row["ratio"] = row["ours"]["decode_tok_s"] / row["hf"]["decode_tok_s"]
        out[f"batch_{batch}"] = row
    for ctx in a.contexts:   # the same comparison where the prompt fills the context but the new tokens
        if ctx > cfg_model.block_size:
            log.warning("context %d exceeds the model's window %d: skipped", ctx, cfg_model.block_size)
            continue
        # a prompt a few tokens short of (context - new), so that the last token still fits the window
        task, prompt_ids = synthetic_task(tok, ctx - a.new_tokens - 8)
        for batch in (1, 32):
            runs = {"ours": lambda n, b=batch, t=task: ours(b, n, t)}
            if not a.skip_hf:
                runs["hf"] = lambda n, b=batch, p=prompt_ids: hf_generate_seconds(hf, p, b, n, a.device)
            row = decode_rates(runs, batch, a.new_tokens)
            if "hf" in row:
                row["ratio"] = row["ours"]["decode_tok_s"] / row["hf"]["decode_tok_s"]
            row["context_reached"] = len(prompt_ids) + a.new_tokens
            out[f"context_{ctx}_batch_{batch}"] = row
    return out


def bench_agent(a: argparse.Namespace, model: Any, tok: Any, pool: SandboxPool, peak_gflops: float) -> dict[str, Any]:
    """Sections 2 and 3b: agent throughput, engine vs the reference's way; per-attempt prefill records.

    The engine takes ~1 s a pass and the reference way ~20 s, and on a shared machine the speed
    drifts by 10-30% over that long. So the reference runs in ``--engine-passes - 1`` chunks of its
    tasks (one task at a time either way) with an engine pass before, between and after them, and
    the engine's figure is the median pass: both see the same drift."""
    tasks = load_tasks(a.suite)[: a.tasks]
    sub = tasks[: a.ref_tasks]
    cfg = a.agent_cfg
    n_chunks = max(1, a.engine_passes - 1)
    chunks = [sub[i * len(sub) // n_chunks:(i + 1) * len(sub) // n_chunks] for i in range(n_chunks)]
    passes, ref, ref_s, ref_stats = [], [], 0.0, []
    for i in range(a.engine_passes):
        passes.append(run_engine(model, tok, pool, tasks, cfg, a.device, f"engine, pass {i + 1}", max_batch=a.max_batch))
        if i < len(chunks) and chunks[i]:
            got, wall, stats = run_engine(model, tok, pool, chunks[i], cfg, a.device, f"reference way, part {i + 1}",
                                          max_batch=1, use_kv_cache=False, prefix_reuse=False)
            ref, ref_s, ref_stats = ref + got, ref_s + wall, ref_stats + [stats]
    walls = [w for _, w, _ in passes]
    full, full_s, full_stats = sorted(passes, key=lambda p: p[1])[len(passes) // 2]   # the median pass
    cpu = {"wall_s": full_s, "engine_thread_s": full_stats["engine_thread_cpu_s"], "steps_s": full_stats["step_cpu_s"],
           **full_stats["cpu_window"], "cores": os.cpu_count()}
    cpu["verifier_s"] = cpu["machine_s"] - cpu["process_s"]   # the sandboxes are other processes
    noreuse, noreuse_s, noreuse_stats = run_engine(model, tok, pool, tasks, cfg, a.device, "engine, no prefix reuse",
                                                   max_batch=a.max_batch, prefix_reuse=False)
    if len(sub) == len(tasks):
        sub_eng, sub_s = full, full_s
    else:
        sub_eng, sub_s, _ = run_engine(model, tok, pool, sub, cfg, a.device, "engine (subset)", max_batch=a.max_batch)
    differ = [t.id for t, x, y in zip(sub, ref, sub_eng) if [a.code for a in x.attempts] != [a.code for a in y.attempts]]
    # the roofline: the engine's own model FLOPs at the measured fp32 matmul peak, verification free
    bound_tasks_s = len(tasks) / (full_stats["model_flops"] / (peak_gflops * 1e9))
    ref_rate = len(sub) / ref_s
    return {
        "tasks": len(tasks), "ref_tasks": len(sub), "engine_passes": len(passes),
        "engine_tasks_s": len(tasks) / full_s, "engine_wall_s": full_s,
        "engine_pass_tasks_s": [len(tasks) / w for w in walls],
        "engine_no_prefix_reuse_tasks_s": len(tasks) / noreuse_s,
        "engine_subset_tasks_s": len(sub) / sub_s, "reference_subset_tasks_s": ref_rate,
        "speedup_vs_reference": (len(tasks) / full_s) / ref_rate,
        "speedup_per_pass": [len(tasks) / w / ref_rate for w in walls],
        "speedup_same_subset": (len(sub) / sub_s) / ref_rate,
        "engine_tasks_s_at_peak": bound_tasks_s, "speedup_at_peak": bound_tasks_s / ref_rate,
        "reference_outputs_identical": not differ, "reference_outputs_differ": differ,
        "pass_rate": sum(r.passed for r in full) / len(full),
        "mean_attempts": sum(len(r.attempts) for r in full) / len(full),
        "cpu": cpu, "engine_stats": full_stats, "no_prefix_reuse_stats": noreuse_stats,
        "reference_stats": ref_stats, "per_attempt": agent_table(full, noreuse),
    }


def split_peers(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--peers NAME`` taken out of ``argv`` (None if absent), and the rest."""
    pre = argparse.ArgumentParser(prog="python -m benchmarks.engine_bench", add_help=False, allow_abbrev=False)
    pre.add_argument("--peers", choices=PEERS, default=None)
    known, rest = pre.parse_known_args(argv)
    return known.peers, rest


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    peers, rest = split_peers(argv)
    if peers == "vllm":   # a benchmark of its own, with its own flags
        from benchmarks.engine_peers import main as peers_main
        return peers_main(rest)
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    with text_to_stderr(a.json):
        res = run_sections(a, argv)
        report(res)
    write_json(a.json, res, default=str)
    return 0


def load_model(a: argparse.Namespace) -> tuple[Any, Any, Any, bool]:
    """The checkpoint's model, tokenizer and config, or an untrained stand-in when it does not load."""
    try:
        model, tok, _ = load_checkpoint(a.checkpoint, device=a.device)
        trained = True
    except CheckpointError as e:
        print(f"note: {e}; the agent runs use an untrained model (every task fails, 5 attempts each)", file=sys.stderr)
        model, tok, trained = None, None, False
    if tok is None:
        from benchmarks.bench_util import quick_tokenizer
        tok = quick_tokenizer()
    from sut.model.gpt import GPTConfig
    cfg_model = model.config if model is not None else GPTConfig(vocab_size=tok.vocab_size)
    if model is None:
        model = random_model(cfg_model, tok, a.device, sharp=True)
    return model, tok, cfg_model, trained


def run_sections(a: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Every section asked for, and the machine's matmul peak before and after; the figure under --out."""
    model, tok, cfg_model, trained = load_model(a)
    load0 = os.getloadavg()
    res: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.engine_bench", *argv]),
        "machine": {"cpu": cpu_model(detail=True), "cores": os.cpu_count(), "threads": a.threads, "device": a.device,
                    "torch": torch.__version__, "python": platform.python_version(), "loadavg_start": load0,
                    # the matmul kernel the native step chose for this CPU and model (sut/engine/native/tiles.py)
                    "native_kernel": BatchModel(model, 1).describe()["native_kernel"] if a.device == "cpu" else None},
        "model": {**cfg_model.to_dict(), "trained_checkpoint": str(a.checkpoint) if trained else None,
                  "params": model.num_params()},
    }
    res["matmul_peak_gflops"] = matmul_peak(a.device) / 1e9
    with SandboxPool(workers=a.workers or default_workers(), lint=False, preload=()) as pool:   # as the harness's
        res["isolation"] = pool.isolation
        if "decode" in a.sections:
            res["decode"] = bench_decode(a, tok, pool, cfg_model)
        if "agent" in a.sections:
            res["agent"] = bench_agent(a, model, tok, pool, res["matmul_peak_gflops"])
    if "prefill" in a.sections:
        res["prefill_sweep"] = prefill_sweep(model, a.device)
        plot_prefill(res["prefill_sweep"], res.get("agent", {}).get("per_attempt", []), a.out / PLOT)
        res["figures"] = [str(a.out / PLOT)]
    if "flops" in a.sections:
        res["flops"] = offline_flops(a, cfg_model, tok, res)
    res["matmul_peak_gflops_end"] = matmul_peak(a.device) / 1e9
    peak = max(res["matmul_peak_gflops"], res["matmul_peak_gflops_end"])   # the higher: the harder to beat
    for row in res.get("flops", {}).values():
        row["fraction"] = row["gflops"] / peak
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def offline_flops(a: argparse.Namespace, cfg_model: Any, tok: Any, res: dict[str, Any]) -> dict[str, Any]:
    """Section 4: model FLOP/s of the engine's batched steps (fractions of the peak are added in main)."""
    from benchmarks.bench_util import kernel_flops
    out: dict[str, Any] = {}
    if "agent" in res:
        st = res["agent"]["engine_stats"]   # every model FLOP (prefill and decode) over the batched steps' time
        out["engine_agent_run"] = {"gflops": st["model_flops"] / st["step_s"] / 1e9 if st["step_s"] else 0.0}
    model = random_model(cfg_model, tok, a.device)
    for batch in sorted({1, 32, a.flops_batch}):
        best = max((kernel_flops(model, batch, a.prompt_tokens, a.new_tokens) for _ in range(3)),
                   key=lambda k: k["flops_s"])
        out[f"decode_batch_{batch}"] = {"gflops": best["flops_s"] / 1e9, "tok_s": best["tok_s"]}
    return out


def report(r: dict[str, Any]) -> None:
    """Print every section's figures, one helper per section."""
    _report_machine(r)
    if "decode" in r:
        _report_decode(r["decode"])
    if "agent" in r:
        _report_agent(r["agent"])
    _report_prefill_flops(r)


def _report_machine(r: dict[str, Any]) -> None:
    """The machine, kernel, model and matmul peak lines: what every figure below depends on."""
    m = r["machine"]
    print(f"\nmachine: {m['cpu']} ({m['cores']} cores), torch {m['torch']}, {m['threads']} threads, device {m['device']}, "
          f"load average {m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}")
    k = m.get("native_kernel")
    print("native kernel: " + (f"{k['isa']}, matmul tile {k['tile']} (rows x vectors of {k['vector_width']}), chosen "
                               f"by {k['chosen_by']}" + (f" (ms a step's matmuls at 1+32+128 rows: "
                               f"{', '.join(f'{t} {v:.2f}' for t, v in k['candidates_ms'].items())})"
                                                         if k["candidates_ms"] else "")
                               if k else "none: the torch backend ran"))
    print(f"model: {r['model']['params'] / 1e6:.2f}M params, checkpoint for the agent runs: "
          f"{r['model']['trained_checkpoint'] or 'none (untrained stand-in)'}; "
          f"verifier isolation: {r['isolation']}")
    print(f"fp32 matmul peak (torch.mm 2048^3, same threads): {r['matmul_peak_gflops']:.1f} GFLOP/s "
          f"(again at the end: {r['matmul_peak_gflops_end']:.1f})")


def _report_decode(d: dict[str, Any]) -> None:
    """The decode table: ours against HF generate, by batch and at longer contexts."""
    print(f"\ndecode tokens/s (prompt {d['prompt_tokens']}, {d['new_tokens']} new tokens, greedy, random weights)")
    print(f"  {'batch':>6} {'ours':>10} {'HF generate':>12} {'ratio':>7}")
    for b in (1, 32):
        row = d[f"batch_{b}"]
        hf = row.get("hf", {}).get("decode_tok_s", float("nan"))
        print(f"  {b:>6} {row['ours']['decode_tok_s']:>10.0f} {hf:>12.0f} {row.get('ratio', float('nan')):>7.2f}")
    ctx_rows = [(k, v) for k, v in d.items() if k.startswith("context_")]
    if ctx_rows:
        print(f"  at longer contexts (prompt = context - {d['new_tokens']}):")
        print(f"  {'context':>8} {'batch':>6} {'ours':>10} {'HF generate':>12} {'ratio':>7}")
        for key, row in ctx_rows:
            _, ctx, _, b = key.split("_")
            hf = row.get("hf", {}).get("decode_tok_s", float("nan"))
            print(f"  {ctx:>8} {b:>6} {row['ours']['decode_tok_s']:>10.0f} {hf:>12.0f} "
                  f"{row.get('ratio', float('nan')):>7.2f}")


def _report_agent(ag: dict[str, Any]) -> None:
    """The agent throughput figures: engine against the reference way, CPU, prefix reuse per attempt."""
    st = ag["engine_stats"]
    n, k = ag["tasks"], ag["ref_tasks"]
    print(f"\nagent throughput, tasks/s (pass rate {ag['pass_rate']:.3f}, {ag['mean_attempts']:.2f} attempts/task)")
    rates = ag["engine_pass_tasks_s"]
    print(f"  engine, {n} tasks, max batch {st['max_batch']}:    {ag['engine_tasks_s']:8.3f}   (median of "
          f"{len(rates)} passes: {' '.join(f'{x:.1f}' for x in rates)})")
    print(f"  engine, {n} tasks, no prefix reuse:  {ag['engine_no_prefix_reuse_tasks_s']:8.3f}")
    if k != n:
        print(f"  engine, first {k} tasks:             {ag['engine_subset_tasks_s']:8.3f}")
    print(f"  reference way, first {k} tasks:      {ag['reference_subset_tasks_s']:8.3f}   (in "
          f"{len(ag['reference_stats'])} parts between the engine's passes)")
    per_pass = " ".join(f"{x:.1f}" for x in ag["speedup_per_pass"])
    print(f"  speedup {ag['speedup_vs_reference']:.1f}x (median engine pass on {n} tasks vs reference on the first "
          f"{k}; each pass: {per_pass}); identical outputs: {ag['reference_outputs_identical']}"
          + (f" (differ: {', '.join(ag['reference_outputs_differ'])})" if ag["reference_outputs_differ"] else ""))
    print(f"  bound: the engine's {st['model_flops'] / 1e9:.1f} GFLOP at the matmul peak, verification free: "
          f"{ag['engine_tasks_s_at_peak']:.0f} tasks/s = {ag['speedup_at_peak']:.0f}x the reference way")
    c = ag["cpu"]
    print(f"  CPU over the engine run's {c['wall_s']:.2f} s on {c['cores']} cores (core-seconds): engine thread "
          f"{c['engine_thread_s']:.2f} (batched steps and sampling {c['steps_s']:.2f}), this process "
          f"{c['process_s']:.2f}, the verifier's sandboxes {c['verifier_s']:.2f}, the whole machine {c['machine_s']:.2f}")
    print(f"  prefix-reuse hit rate {st['prefix_reuse_hit_rate']:.3f}, cache rebuilds {st['cache_rebuilds']}, "
          f"mean decode rows {st['mean_decode_rows']:.1f}")
    print("  per attempt (mean context / prefilled tokens / ms of the batched step that prefilled it):")
    for row in ag["per_attempt"]:
        print(f"    attempt {row['attempt']} (n={row['n']}): reuse {row['context']:.0f}/{row['prefilled_reuse']:.0f}/"
              f"{row['ms_reuse']:.2f}   no reuse {row['context_noreuse']:.0f}/{row['prefilled_noreuse']:.0f}/"
              f"{row['ms_noreuse']:.2f}")


def _report_prefill_flops(r: dict[str, Any]) -> None:
    """The prefill sweep and the model FLOP/s as a fraction of the matmul peak, where measured."""
    if "prefill_sweep" in r:
        print("\nprefill ms against context (new tokens on a cached prefix vs the whole context)")
        print(f"  {'context':>8} {'reuse':>8} {'no reuse':>9}")
        for row in r["prefill_sweep"]:
            print(f"  {row['context']:>8} {row['reuse_ms']:>8.2f} {row['full_ms']:>9.2f}")
    if "flops" in r:
        peak = max(r["matmul_peak_gflops"], r["matmul_peak_gflops_end"])
        print(f"\nmodel FLOP/s, as a fraction of the higher matmul peak ({peak:.1f} GFLOP/s)")
        for key, row in r["flops"].items():
            what = (f"Offline-style decode, batch {key.rsplit('_', 1)[1]:>4}" if key.startswith("decode_batch_")
                    else "engine steps in the agent run   ")
            extra = f"  ({row['tok_s']:.0f} tok/s)" if "tok_s" in row else ""
            print(f"  {what}: {row['gflops']:6.1f} GFLOP/s = {100 * row['fraction']:5.1f}%{extra}")


if __name__ == "__main__":
    sys.exit(main())
