"""Hosting vLLM for benchmarks/engine_peers.py: the ``--worker`` processes (one ``vllm.LLM`` each, driven over
JSON lines), their worker side, and vLLM's OpenAI-compatible server with the client that times it."""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers import REPO
from benchmarks.peers.profile import vllm_profile

PREFIX = "@peers "                 # a worker's protocol lines (its stdout carries nothing else)


def vllm_env(kv_gib: int, threads: int) -> dict[str, str]:
    """The environment of a process running vLLM in process (its OpenMP threads: torch's, set by OMP_NUM_THREADS;
    VLLM_CPU_OMP_THREADS_BIND applies only where vLLM starts its own engine process, the server)."""
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": str(kv_gib),
           "VLLM_LOGGING_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def kv_gib(layers: int, width: int, batch: int, tokens: int, window: int) -> int:
    """GiB of vLLM's CPU KV cache for ``batch`` sequences of ``tokens`` (and one of ``window``), with headroom."""
    need = max(batch * (tokens + 32), window) * 2 * layers * width * 4
    return max(1, math.ceil(1.5 * need / 2 ** 30))


class Worker:
    """A ``--worker`` process: JSON lines in on its stdin, ``PREFIX`` + JSON lines out; its stderr goes to a log."""

    def __init__(self, kind: str, args: list[str], env: dict[str, str], log: Path, desc: str) -> None:
        self.log, self.desc = log, desc
        self._log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.engine_peers", "--worker", kind, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                     cwd=REPO, text=True, bufsize=1)
        self.ready = self._reply()

    def _reply(self, bar: Any = None) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith(PREFIX):
                continue
            msg = json.loads(line[len(PREFIX):])
            if "progress" in msg:
                if bar is not None:
                    bar.update(msg["progress"] - bar.n)
                continue
            if "error" in msg:
                raise RuntimeError(f"{self.desc}: {msg['error']} (its log: {self.tail(4)})")
            return msg
        raise RuntimeError(f"{self.desc} exited with {self.proc.wait()}: {self.tail()}")

    def call(self, bar: Any = None, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise RuntimeError(f"{self.desc} is gone: {self.tail()}") from None
        return self._reply(bar)

    def tail(self, lines: int = 8) -> str:
        from sut.engine.external.vllm_server import log_tail   # noqa: PLC0415

        return log_tail(self.log, lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def worker_main(a: argparse.Namespace) -> int:
    """The worker side: load one vLLM engine, answer commands. Only protocol lines reach the real stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # whatever vLLM, torch or C code prints goes to the log

    def send(**msg: Any) -> None:
        proto.write(PREFIX + json.dumps(msg) + "\n")

    try:
        return (_decode_worker if a.worker == "decode" else _agent_worker)(a, send)
    except Exception as e:  # noqa: BLE001 - the parent needs one line; the traceback goes to the log
        import traceback   # noqa: PLC0415
        traceback.print_exc()
        send(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1


def _decode_worker(a: argparse.Namespace, send: Callable[..., None]) -> int:
    import torch   # noqa: PLC0415
    import vllm   # noqa: PLC0415

    t0 = time.perf_counter()
    llm = vllm.LLM(model=str(a.model), skip_tokenizer_init=True, dtype="float32", enable_prefix_caching=True,
                   max_num_seqs=a.max_batch, max_model_len=a.window, distributed_executor_backend="uni", seed=0,
                   enforce_eager=True, enable_chunked_prefill=False)
    send(load_s=time.perf_counter() - t0, threads=torch.get_num_threads(), version=vllm.__version__,
         kv_cache_gib=int(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "0")))
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        params = vllm.SamplingParams(max_tokens=cmd["n"], min_tokens=cmd["n"], ignore_eos=True, temperature=0,
                                     detokenize=False)
        prompts = [{"prompt_token_ids": cmd["prompt"]}] * cmd["batch"]
        if cmd["op"] == "generate":
            c0, t = time.process_time(), time.perf_counter()
            outs = llm.generate(prompts, params, use_tqdm=False)
            wall, c1 = time.perf_counter() - t, time.process_time()
            lens = {len(o.outputs[0].token_ids) for o in outs}
            if lens != {cmd["n"]}:
                raise RuntimeError(f"vLLM wrote {sorted(lens)} tokens a row, not {cmd['n']}")
            send(s=wall, cpu_s=c1 - c0, tokens=list(outs[0].outputs[0].token_ids))
        elif cmd["op"] == "profile":
            send(**vllm_profile(llm, prompts, params, cmd["batch"]))
    return 0


def _agent_worker(a: argparse.Namespace, send: Callable[..., None]) -> int:
    from benchmarks.peers.agent_timing import agent_summary, timed_agent   # noqa: PLC0415
    from sut.agent import AgentConfig   # noqa: PLC0415
    from sut.model.checkpoint import load_checkpoint   # noqa: PLC0415
    from sut.engine.external.engine import ExternalEngine   # noqa: PLC0415
    from sut.tasks.suites import DEFAULTS, load_tasks   # noqa: PLC0415
    from sut.engine.external.vllm_generator import VLLMGenerator   # noqa: PLC0415
    from verifier.pool import SandboxPool   # noqa: PLC0415

    import torch   # noqa: PLC0415

    model, tok, _ = load_checkpoint(a.model)
    d = DEFAULTS["agentic"]
    cfg = AgentConfig(max_attempts=d.max_attempts, max_new_tokens=d.max_new_tokens, seed=a.seed)
    tasks = load_tasks("agentic")[: a.tasks]
    window = model.config.block_size
    with SandboxPool(workers=a.workers, lint=False, preload=(), isolation=a.isolation) as pool:
        gen = VLLMGenerator(a.model, a.max_batch, window, a.seed)
        eng = ExternalEngine(gen, tok, pool, cfg, window, model.kv_bytes(1), a.max_batch)
        send(load_s=gen.load_s, threads=torch.get_num_threads())
        json.loads(sys.stdin.readline())   # "go": the parent times from here
        wall, results, stats = timed_agent(eng, tasks, lambda k: send(progress=k))
        eng.stop(close_pool=False)
    send(**agent_summary(results, wall, stats))
    sys.stdin.readline()
    return 0


class ServerClient:
    """B concurrent non-streaming completions against one server, on one event loop kept for all calls."""

    def __init__(self, server: Any) -> None:
        import openai   # noqa: PLC0415
        import psutil   # noqa: PLC0415

        self.loop = asyncio.new_event_loop()
        self.client = openai.AsyncOpenAI(base_url=server.url, api_key="EMPTY", timeout=3600, max_retries=0)
        self.model, self.proc = server.model, psutil.Process(server.proc.pid)

    def _server_cpu(self) -> float:
        total = 0.0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                c = p.cpu_times()
                total += c.user + c.system
            except Exception:  # noqa: BLE001 - a helper that came and went
                pass
        return total

    def generate(self, ids: list[int], batch: int, n: int) -> dict[str, Any]:
        async def one() -> tuple[list[int] | None, int]:
            r = await self.client.completions.create(
                model=self.model, prompt=ids, max_tokens=n, temperature=0,
                extra_body={"min_tokens": n, "ignore_eos": True, "return_token_ids": True})
            c = r.choices[0]
            toks = getattr(c, "token_ids", None) or (c.model_extra or {}).get("token_ids")
            return toks, r.usage.completion_tokens

        async def every() -> list:
            return await asyncio.gather(*(one() for _ in range(batch)))

        s0, c0, t0 = self._server_cpu(), time.process_time(), time.perf_counter()
        outs = self.loop.run_until_complete(every())
        wall, c1, s1 = time.perf_counter() - t0, time.process_time(), self._server_cpu()
        if {u for _, u in outs} != {n}:
            raise RuntimeError(f"the server wrote {sorted({u for _, u in outs})} tokens a row, not {n}")
        return {"s": wall, "cpu_s": s1 - s0, "client_cpu_s": c1 - c0,
                "tokens": list(outs[0][0] or [])}

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


def start_server(model_dir: Path, max_seqs: int, gib: int, threads: int, log: Path) -> Any:
    from sut.engine.external.vllm_server import VLLMServer   # noqa: PLC0415

    saved = {k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND")}
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(gib)
    if threads:
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "0" if threads == 1 else f"0-{threads - 1}"
    try:
        srv = VLLMServer(model_dir, max_num_seqs=max_seqs, log_path=log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return srv.wait_ready()
