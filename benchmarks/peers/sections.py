"""engine_peers' measured sections: decode (and the sweep's random models), agent and Offline, with the native
runs and the rates rule they share."""
from __future__ import annotations

import argparse
import functools
import gc
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from benchmarks.peers import LABELS, REPO, say
from benchmarks.peers.agent_timing import agent_summary, timed_agent
from benchmarks.peers.profile import native_parts
from benchmarks.peers.workers import ServerClient, Worker, kv_gib, start_server, vllm_env

OFFLINE_CONF = """\
nano-codegen-agent.*.min_duration = {ms}
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Offline.target_qps = {qps}
"""


class NoVerifier:
    """A pool that answers at once (decode timing: generate() verifies nothing either)."""

    isolation = "none (decode timing)"

    def submit(self, code: str, check: Any) -> Future:
        from verifier.verdict import Status, Verdict   # noqa: PLC0415

        f: Future = Future()
        f.set_result(Verdict(Status.WRONG_OUTPUT, feedback="not verified"))
        return f


@functools.cache
def forced_engine_class() -> type:
    from sut.engine.scheduler import Engine   # noqa: PLC0415

    class ForcedLength(Engine):
        """Engine whose rows cannot pick <|end|>: every row decodes its whole budget (vLLM's ``min_tokens``)."""

        def _pick(self, rows: list, logits: Any) -> list[int]:
            logits[:, self.tok.end_id] = float("-inf")
            return super()._pick(rows, logits)

    return ForcedLength


def native_decode(model: Any, tok: Any, task: Any, batch: int, n: int) -> dict[str, Any]:
    """One forced-length generation of ``batch`` copies of ``task`` through the native Engine."""
    from sut.agent import AgentConfig   # noqa: PLC0415

    eng = forced_engine_class()(model, tok, NoVerifier(), AgentConfig(max_attempts=1, max_new_tokens=n), max_batch=batch)
    eng.start()
    c0, t0 = time.process_time(), time.perf_counter()
    results = eng.run([task] * batch)
    wall, c1 = time.perf_counter() - t0, time.process_time()
    eng.stop(close_pool=False)
    st = eng.stats()
    del eng
    gc.collect()   # its KV cache (3.2 GB at width 1024, batch 128) goes now, not at some later collection
    if st["tokens_generated"] != batch * n or any(r.error for r in results):
        raise RuntimeError(f"native decode: {st['tokens_generated']} tokens, not {batch * n}; "
                           f"{next((r.error for r in results if r.error), '')}")
    return {"s": wall, "cpu_s": c1 - c0, "step_s": st["step_s"],
            "steps": st["steps"], "tokens": results[0].attempts[0].token_ids}


def rates(runs: dict[str, Callable[[int], dict[str, Any]]], batch: int, n: int, reps: int) -> dict[str, Any]:
    """Each engine's decode tokens/s from its best t(1) and t(N) over ``reps`` interleaved reps (decode_rates' rule),
    with the per-step wall and the CPU core-seconds per 1,000 decode tokens of those best runs. An engine whose
    best t(N) is still not above its best t(1) (a busy machine, few tokens) gets up to ``reps`` reps more."""
    best: dict[str, dict[int, dict[str, Any]]] = {k: {} for k in runs}
    extra = dict.fromkeys(runs, 0)

    def rep_of(name: str) -> None:
        for k in (1, n):
            got = runs[name](k)
            if k not in best[name] or got["s"] < best[name][k]["s"]:
                best[name][k] = got

    for _ in range(reps):
        for name in runs:
            rep_of(name)
    for name in runs:
        while best[name][n]["s"] <= best[name][1]["s"] and extra[name] < reps:
            extra[name] += 1
            rep_of(name)
    out: dict[str, Any] = {}
    for name, b in best.items():
        one, full = b[1], b[n]
        dt = full["s"] - one["s"]
        if dt <= 0:   # noise above the decode's own time (a busy machine, too few tokens): no figure, said so
            say(f"{name} at batch {batch}: t({n}) {full['s']:.4f} s <= t(1) {one['s']:.4f} s: no decode rate")
        row = {"decode_tok_s": batch * (n - 1) / dt if dt > 0 else None, "end_to_end_tok_s": batch * n / full["s"],
               "t_1_s": one["s"], "t_n_s": full["s"], "reps": reps + extra[name],
               "step_ms": dt / (n - 1) * 1e3 if dt > 0 else None,
               "cpu_s_per_1k_tokens": 1e3 * (full["cpu_s"] - one["cpu_s"]) / (batch * (n - 1)) if dt > 0 else None}
        if "client_cpu_s" in full and dt > 0:
            row["client_cpu_s_per_1k_tokens"] = 1e3 * (full["client_cpu_s"] - one["client_cpu_s"]) / (batch * (n - 1))
        if "step_s" in full:   # native: the batched forward + token choice a step, the rest is the engine loop
            row["forward_pick_ms"] = (full["step_s"] - one["step_s"]) / (full["steps"] - one["steps"]) * 1e3
            row["engine_loop_ms"] = row["step_ms"] - row["forward_pick_ms"] if dt > 0 else None
        row["tokens"] = full["tokens"]
        out[name] = row
    return out


def agree(a: list[int], b: list[int]) -> int:
    """Leading tokens two greedy generations share."""
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def decode_batch(a: argparse.Namespace, label: str, model: Any, tok: Any, task: Any, ids: list[int], worker: Worker,
                 client: ServerClient | None, batch: int) -> dict[str, Any]:
    """One batch's row of the decode table: each engine's rates, native/peer ratios and greedy agreement, and
    with the breakdown section the per-step costs."""
    runs: dict[str, Callable[[int], dict[str, Any]]] = {
        "native": lambda k: native_decode(model, tok, task, batch, k),
        "vllm": lambda k: worker.call(op="generate", batch=batch, n=k, prompt=ids)}
    if client is not None:
        runs["server"] = lambda k: client.generate(ids, batch, k)
    say(f"{label}: decode at batch {batch}, {a.new_tokens} tokens, {a.reps} reps of {', '.join(runs)}")
    row = rates(runs, batch, a.new_tokens, a.reps)
    for peer in ("vllm", "server"):
        if peer in row:
            ours, theirs = row["native"]["decode_tok_s"], row[peer]["decode_tok_s"]
            row[f"ratio_{peer}"] = ours / theirs if ours and theirs else None
            row[f"greedy_agree_{peer}"] = agree(row["native"]["tokens"], row[peer]["tokens"])
    for r in row.values():
        if isinstance(r, dict):
            r.pop("tokens", None)
    if "breakdown" in a.sections:
        ctx = len(ids) + a.new_tokens // 2   # the decode's mean context
        say(f"{label}: per-step costs at batch {batch} (native parts at context {ctx}, vLLM hooked run)")
        row["breakdown"] = {"native": {"wall": row["native"]["step_ms"],
                                       "forward_pick": row["native"]["forward_pick_ms"],
                                       "engine_loop": row["native"]["engine_loop_ms"],
                                       **native_parts(model, batch, ctx)},
                            "vllm": {"wall": row["vllm"]["step_ms"],
                                     **worker.call(op="profile", batch=batch, n=a.new_tokens, prompt=ids)}}
    return row


def decode_section(a: argparse.Namespace, tmp: Path, label: str, model: Any, tok: Any, model_dir: Path,
                   window: int, server: Any = None, own_server: bool = False) -> dict[str, Any]:
    """Decode tokens/s (and, with the breakdown section, per-step costs) of native, vLLM and the server (``server``,
    one already serving ``model_dir``, or with ``own_server`` one started here for this section)."""
    from benchmarks.bench_util import synthetic_task   # noqa: PLC0415

    cfg = model.config
    task, ids = synthetic_task(tok, a.prompt_tokens)
    gib = kv_gib(cfg.n_layer, cfg.n_embd, max(a.batches), len(ids) + a.new_tokens, window)
    out: dict[str, Any] = {"model": label, "dir": str(model_dir), "width": cfg.n_embd, "layers": cfg.n_layer,
                           "heads": cfg.n_head, "window": window, "params": model.num_params(),
                           "prompt_tokens": len(ids), "new_tokens": a.new_tokens, "batches": {},
                           "loadavg_start": os.getloadavg()}
    say(f"{label}: starting vLLM in a worker (KV cache {gib} GiB)")
    worker = Worker("decode", ["--model", str(model_dir), "--max-batch", str(max(a.batches)), "--window", str(window)],
                    vllm_env(gib, a.vllm_threads), tmp / f"vllm-{label}.log", f"vLLM worker ({label})")
    out["vllm"] = worker.ready
    client = None
    try:
        if own_server:
            say(f"{label}: starting vLLM's server (~45 s)")
            server = start_server(model_dir, max(a.batches), gib, a.vllm_threads, tmp / f"server-{label}.log")
        if server is not None:
            client = ServerClient(server)
        for batch in a.batches:
            out["batches"][str(batch)] = decode_batch(a, label, model, tok, task, ids, worker, client, batch)
        out["loadavg_end"] = os.getloadavg()
    finally:
        worker.close()
        if client is not None:
            client.close()
        if own_server and server is not None:
            server.stop()
    return out


def agent_section(a: argparse.Namespace, tmp: Path, model: Any, tok: Any, server: Any) -> dict[str, Any]:
    from tqdm import tqdm   # noqa: PLC0415

    from sut.agent import AgentConfig   # noqa: PLC0415
    from sut.tasks.suites import DEFAULTS, load_tasks   # noqa: PLC0415
    from verifier.pool import SandboxPool   # noqa: PLC0415

    d = DEFAULTS["agentic"]
    cfg = AgentConfig(max_attempts=d.max_attempts, max_new_tokens=d.max_new_tokens, seed=0)
    tasks = load_tasks("agentic")[: a.tasks]
    out: dict[str, Any] = {"tasks": len(tasks), "max_attempts": cfg.max_attempts, "max_new_tokens": cfg.max_new_tokens,
                           "max_batch": a.max_batch, "workers": a.workers}

    def bar(name: str) -> Any:
        return tqdm(total=len(tasks), desc=f"agent ({name})", unit="task", file=sys.stderr, leave=False)

    with SandboxPool(workers=a.workers, lint=False, preload=(), isolation=a.isolation) as pool:
        out["isolation"] = pool.isolation
        say(f"agent: {len(tasks)} tasks, native")
        from sut.engine.scheduler import Engine   # noqa: PLC0415
        eng = Engine(model, tok, pool, cfg, max_batch=a.max_batch)
        with bar("native") as b:
            wall, results, stats = timed_agent(eng, tasks, lambda k: b.update(k - b.n))
        eng.stop(close_pool=False)
        out["native"] = agent_summary(results, wall, stats)
        say("agent: vLLM in process (starting a worker)")
        w = Worker("agent", ["--model", str(a.checkpoint), "--tasks", str(a.tasks), "--max-batch", str(a.max_batch),
                             "--workers", str(a.workers), "--isolation", a.isolation],
                   vllm_env(1, a.vllm_threads), tmp / "vllm-agent.log", "vLLM agent worker")
        try:
            with bar("vLLM") as b:
                out["vllm"] = {**w.call(bar=b, op="go"), "load_s": w.ready["load_s"], "threads": w.ready["threads"]}
        finally:
            w.close()
        if server is not None:
            from sut.engine.external.engine import ExternalEngine   # noqa: PLC0415
            from sut.engine.external.openai_generator import OpenAIGenerator   # noqa: PLC0415
            say("agent: vLLM's server")
            gen = OpenAIGenerator([server.url], tok, server.model, timeout_s=600)
            eng = ExternalEngine(gen, tok, pool, cfg, model.config.block_size, model.kv_bytes(1), a.max_batch)
            with bar("server") as b:
                wall, results, stats = timed_agent(eng, tasks, lambda k: b.update(k - b.n))
            eng.stop(close_pool=False)
            out["server"] = agent_summary(results, wall, stats)
    for peer in ("vllm", "server"):
        if peer in out:
            out[f"ratio_{peer}"] = out["native"]["tasks_s"] / out[peer]["tasks_s"]
    return out


def offline_section(a: argparse.Namespace, tmp: Path, server: Any) -> dict[str, Any]:
    from harness.mlperf_log import LogError, read_detail   # noqa: PLC0415

    conf = tmp / "offline.conf"
    text = OFFLINE_CONF.format(ms=a.offline_ms, qps=f"{a.offline_qps:g}")
    conf.write_text(text)
    out: dict[str, Any] = {"count": a.offline_count, "user_conf": text.strip().splitlines()}
    engines = [("native", []), ("vllm", [])] + ([("server", ["--base-url", server.url])] if server is not None else [])
    for name, extra in engines:
        results = tmp / f"offline-{name}"
        cmd = [sys.executable, str(REPO / "harness" / "run.py"), "--scenario", "Offline", "--suite", "agentic",
               "--mode", "performance", "--count", str(a.offline_count),
               "--engine", "openai" if name == "server" else name, *extra, "--checkpoint", str(a.checkpoint),
               "--user-conf", str(conf), "--out", str(results), "--system-name", "peers", "--no-progress"]
        say(f"offline: {LABELS[name]} (harness/run.py, {a.offline_count} tasks)")
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                           env=vllm_env(1, a.vllm_threads) if name == "vllm" else None)
        (tmp / f"offline-{name}.log").write_text(r.stdout + "\n" + r.stderr)
        row: dict[str, Any] = {"command": " ".join(cmd[1:]), "wall_s": time.perf_counter() - t0, "rc": r.returncode}
        try:
            detail = read_detail(results / "peers" / "nano-codegen-agent" / "Offline" / "performance" / "run_1"
                                 / "mlperf_log_detail.txt")
            row.update(samples_s=float(detail.get("result_samples_per_second") or 0.0),
                       tokens_s=detail.get("result_tokens_per_second"), validity=detail.get("result_validity"),
                       invalid_reason=detail.get("result_invalid_reason"),
                       samples=detail.get("generated_samples_per_query"))
        except (LogError, ValueError) as e:
            row["error"] = f"{e}; {' | '.join((r.stderr or r.stdout).strip().splitlines()[-3:])}"
        out[name] = row
    for peer in ("vllm", "server"):
        if out.get(peer, {}).get("samples_s") and out["native"].get("samples_s"):
            out[f"ratio_{peer}"] = out["native"]["samples_s"] / out[peer]["samples_s"]
    return out


def head_dim(width: int) -> int:
    """The sweep models' head size: the checkpoint's 32 at width 128, GPT-2's 64 above."""
    return 32 if width <= 128 else 64


def sweep_models(a: argparse.Namespace, tok: Any, tmp: Path) -> Iterator[tuple[Any, Path]]:
    """Each width's random-weight model and its HF directory, one at a time (the largest is 0.6 GB)."""
    from benchmarks.bench_util import random_model   # noqa: PLC0415
    from sut.model.hf_format import save_hf   # noqa: PLC0415
    from sut.model.gpt import GPTConfig   # noqa: PLC0415

    for width, depth in zip(a.widths, a.depths):
        cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=a.sweep_window, n_layer=depth,
                        n_head=width // head_dim(width), n_embd=width, max_retries=0)
        model = random_model(cfg, tok, "cpu")   # <|end|>'s row zero: never the argmax, so every row runs N tokens
        d = tmp / f"random-w{width}-l{depth}"
        save_hf(d, model, tok, {"suite": "agentic", "note": "random weights (benchmarks/engine_peers.py sweep)"})
        yield model, d


def sweep_section(a: argparse.Namespace, tok: Any, tmp: Path, errors: dict[str, str]) -> list[dict[str, Any]]:
    """The decode section on each width's random model; a width that fails (memory, say) is recorded in
    ``errors`` and the other widths still run."""
    out = []
    for m, d in sweep_models(a, tok, tmp):
        name = f"random-w{m.config.n_embd}"
        try:
            out.append(decode_section(a, tmp, name, m, tok, d, a.sweep_window,
                                      own_server=a.sweep_server and not a.no_server))
        except Exception as e:  # noqa: BLE001
            say(f"sweep {name} failed: {type(e).__name__}: {e}")
            errors[f"sweep {name}"] = f"{type(e).__name__}: {e}"
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    return out


def overtakes(sweep: list[dict[str, Any]], batches: list[int]) -> dict[str, Any]:
    """Per batch: native/vLLM against width, the first measured width where vLLM is faster, and the width where the
    ratio crosses 1 by log-log interpolation between the two measured widths around it."""
    out = {}
    for b in batches:
        pts = [(s["width"], s["batches"][str(b)].get("ratio_vllm")) for s in sweep if str(b) in s.get("batches", {})]
        pts = [(w, r) for w, r in pts if r is not None]
        first = next((w for w, r in pts if r < 1), None)
        cross = None
        for (w0, r0), (w1, r1) in zip(pts, pts[1:]):
            if r0 >= 1 > r1:
                f = math.log(r0) / (math.log(r0) - math.log(r1))
                cross = math.exp(math.log(w0) + f * (math.log(w1) - math.log(w0)))
                break
        out[str(b)] = {"ratios": dict(pts), "first_width_vllm_faster": first, "crossing_width_interpolated": cross}
    return out
