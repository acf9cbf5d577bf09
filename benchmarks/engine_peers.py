"""Our engine against vLLM, in process and behind its OpenAI-compatible server, on the same model and tasks.

    python -m benchmarks.engine_peers --json runs/engine_peers.json       # the plot: runs/engine_peers/engine_peers.png
    python -m benchmarks.engine_bench --peers vllm --json runs/engine_peers.json     # the same
    python -m benchmarks.engine_peers --quick --json /tmp/peers.json                    # a smoke test (~2-3 min)

Sections (``--sections``, all by default):

decode     decode tokens/s at batch 1, 32 and 128 on the shipped agentic checkpoint: native (sut/engine.py's
           Engine), vLLM in process (``LLM.generate``) and vLLM's server (B concurrent ``completions.create``).
           Every row is forced to exactly N new tokens from the same prompt (vLLM: ``min_tokens = max_tokens = N``
           with ``ignore_eos``; native: <|end|>'s logit masked, what ``min_tokens`` does), greedy. Decode rate =
           batch * (N - 1) / (t(N) - t(1)), so prefill cancels (``bench_util.decode_rates``' rule), best of
           ``--reps`` interleaved reps; beside it the CPU core-seconds per 1,000 decode tokens (the native
           process, the vLLM worker, the server's processes). The native runs verify nothing (an instant verdict
           replaces the sandbox): ``generate`` does not verify either. Row 0's greedy tokens are compared.
agent      agentic tasks/s over the first ``--tasks`` frozen agentic tasks, the suite's budget (8 attempts, 256
           tokens), max batch 64, one sandbox worker (the same pool settings in each process): native Engine,
           ExternalEngine over VLLMGenerator, ExternalEngine over OpenAIGenerator (the server). pass@final too.
offline    a short LoadGen Offline run (harness/run.py, 64 tasks, min_duration 5 s, target_qps 20) per engine:
           samples/s and validity.
sweep      decode tokens/s of native and vLLM in process (the server with ``--sweep-server``) on random-weight
           GPT-2s of widths 128, 512 and 1024; depth grows with width as in the GPT-2 and Pythia families
           (4, 8 and 12 layers; Pythia-70M is 512 wide and 6 deep, GPT-2 small 768 and 12); head size 32 at 128
           (the checkpoint's) and 64 above (GPT-2's); the checkpoint's vocabulary. Their window is 256 (the decode
           reaches prompt + N ~ 200 tokens): the native engine preallocates window x batch of KV cache, 25.8 GB
           at width 1024 x batch 128 with 2048. Where the ratio native/vLLM drops below 1, vLLM overtakes.
breakdown  (within decode and sweep) per decode step, ms, where each engine's time goes, measured. Native: the
           engine loop's wall per step less its batched forward + token choice (Engine.stats()'s step_s), and
           that step split by timing its parts alone at the same rows and mean context (the native matmuls, LM
           head, attention, argmax; the step is one C call, so no profiler can split it; the cost of a separate
           ctypes call is taken off each part; the remainder is LayerNorm, GELU, adds, embeddings, KV writes).
           vLLM: timers around its engine's own calls (scheduler.schedule / update_from_output, the executor's
           execute_model / sample_tokens) and forward hooks on its modules (Linear layers, Attention, Sampler,
           compute_logits), medians over the decode steps of a run of its own (hooks cost time: the hooked step
           is printed beside the unhooked one).

Every vLLM configuration runs in a worker process of its own (``--worker``; one ``vllm.LLM`` per process), so its
memory and threads are gone before the next. Threads: the native step is single-threaded C (``--threads 1``);
vLLM takes one OpenMP thread per core unless ``--vllm-threads`` says otherwise. On a shared machine vLLM's
threads wait for each other at every barrier: its figures then swing by 10x where ``--vllm-threads 1`` holds.
Ratios are native / peer: above 1, ours is faster. Needs the [vllm] extra (``bash scripts/setup.sh --vllm``).
The full run takes about 40 minutes on 2 quiet cores, 20-25 of them the width-1024 sweep at batch 128: every
timed run prefills its 128 prompts again (~0.3 s each, natively and in vLLM, whose CPU KV blocks of 128 tokens
never cache a 64-token prompt) and then decodes 128 steps of ~0.6 s; ``--reps 2`` takes a third off. Memory
peaks at ~12 GB at width 1024: the native process ~5.5 GB (its KV cache of 128 x 256 positions 3.2 GB of it),
vLLM's worker ~6 GB.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PREFIX = "@peers "                 # a worker's protocol lines (its stdout carries nothing else)
SECTIONS = ("decode", "agent", "offline", "sweep", "breakdown")
ENGINES = ("native", "vllm", "server")
LABELS = {"native": "native", "vllm": "vLLM", "server": "vLLM server"}
OFFLINE_CONF = """\
nano-codegen-agent.*.min_duration = {ms}
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Offline.target_qps = {qps}
"""
FULL = {"batches": "1,32,128", "new_tokens": 128, "reps": 3, "tasks": 128, "widths": "128,512,1024"}
QUICK = {"batches": "1,8", "new_tokens": 16, "reps": 3, "tasks": 8, "widths": "128"}   # --quick's defaults
DEFAULT_OUT = REPO / "runs" / "engine_peers"   # git-ignored
PLOT = "engine_peers.png"
_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[peers {time.perf_counter() - _T0:6.0f} s] {msg}", file=sys.stderr, flush=True)


def ints(text: str, flag: str, p: argparse.ArgumentParser) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        p.error(f"{flag} takes comma-separated integers, got {text!r}")
    if not out or min(out) < 1:
        p.error(f"{flag} takes positive integers, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    from sut.suites import DEFAULTS   # noqa: PLC0415 - light
    from verifier.output_guard import add_json_flag   # noqa: PLC0415
    from verifier.sandbox import add_isolation_flag   # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m benchmarks.engine_peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULTS["agentic"].checkpoint,
                   help="the HF-format checkpoint every engine runs (default: checkpoints/agentic)")
    p.add_argument("--batches", default=None, help="decode batch sizes (default 1,32,128)")
    p.add_argument("--prompt-tokens", type=int, default=64, help="decode: prompt length (default 64)")
    p.add_argument("--new-tokens", type=int, default=None, help="decode: tokens generated per row (default 128)")
    p.add_argument("--reps", type=int, default=None, help="decode: interleaved reps, the best counts (default 3)")
    p.add_argument("--tasks", type=int, default=None, help="agent: the first N agentic tasks (default 128)")
    p.add_argument("--max-batch", type=int, default=64, help="agent: max batch of every engine (default 64)")
    p.add_argument("--workers", type=int, default=1, help="agent: verifier sandbox workers (default 1)")
    add_isolation_flag(p)
    p.add_argument("--offline-count", type=int, default=64, help="offline: tasks in the QSL (default 64)")
    p.add_argument("--offline-qps", type=float, default=20, help="offline: LoadGen's target_qps (default 20)")
    p.add_argument("--offline-ms", type=int, default=5000, help="offline: LoadGen's min_duration (default 5000 ms)")
    p.add_argument("--widths", default=None, help="sweep: model widths (default 128,512,1024)")
    p.add_argument("--depths", default=None, help="sweep: layers for each width (default 4,8,12 for 128,512,1024)")
    p.add_argument("--sweep-window", type=int, default=0,
                   help="sweep: the models' context window (default 256, or what prompt + new tokens need)")
    p.add_argument("--sweep-server", action="store_true", help="sweep: time the vLLM server too (one per width)")
    p.add_argument("--no-server", action="store_true", help="leave vLLM's server out of every section")
    p.add_argument("--skip-offline", action="store_true", help="leave the Offline runs out")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"a comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the native runs (default 1, as engine_bench; the native step is "
                        "single-threaded C); vLLM takes its own (it binds OpenMP threads to the cores)")
    p.add_argument("--vllm-threads", type=int, default=0,
                   help="OpenMP threads of vLLM (in process: OMP_NUM_THREADS; servers: VLLM_CPU_OMP_THREADS_BIND to "
                        "CPUs 0..N-1); default 0: vLLM's own choice, one per core")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: batches 1,8, 16 new tokens, 8 tasks, width 128 only, 3 reps (where those "
                        "flags are not given), no Offline, no server")
    add_json_flag(p, "every figure")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                   help=f"folder of the plot ({PLOT}: decode tokens/s against batch) and, with --keep, the scratch "
                        "files; the default, runs/engine_peers (git-ignored), is this bench's own and is rewritten on "
                        "every run; in another folder an existing plot needs --force")
    p.add_argument("--force", action="store_true", help="replace an existing --json file or plot under --out")
    p.add_argument("--keep", action="store_true", help="keep the scratch files (models, logs) in a folder under --out")
    p.add_argument("--worker", default=None, choices=("decode", "agent"), help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--window", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The flags, --quick's or the full run's defaults filled in, checked (``p.error``: one line, exit 2); nothing
    the run would write may exist already (exit 2) unless --force."""
    from verifier.output_guard import check_json, refuse_overwrite_files   # noqa: PLC0415

    p = build_parser()
    a = p.parse_args(argv)
    if a.worker:
        return a
    for name, value in (QUICK if a.quick else FULL).items():
        if getattr(a, name) is None:
            setattr(a, name, value)
    if a.quick:
        a.no_server, a.skip_offline, a.sweep_server = True, True, False
    for name in ("prompt_tokens", "reps", "tasks", "max_batch", "workers", "offline_count", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if not 0 <= a.vllm_threads <= (os.cpu_count() or 1):
        p.error(f"--vllm-threads must be from 0 to this machine's {os.cpu_count()} cores, got {a.vllm_threads}")
    if a.new_tokens < 2:
        p.error(f"--new-tokens must be at least 2 (the rate is t(N) - t(1)), got {a.new_tokens}")
    a.sections = [s for s in a.sections.split(",") if s.strip()]
    if not a.sections or set(a.sections) - set(SECTIONS):
        p.error(f"--sections takes a comma-separated subset of {','.join(SECTIONS)}, got {','.join(a.sections)}")
    if a.skip_offline and "offline" in a.sections:
        a.sections.remove("offline")
    check_models(p, a)
    check_json(a.json, a.force)
    if a.out.resolve() != DEFAULT_OUT:
        refuse_overwrite_files(a.out, [PLOT], a.force)
    a.keep = a.out / "scratch" if a.keep else None   # run_peers' scratch folder (None: a temporary one, removed)
    return a


def check_models(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """--batches, --widths and --depths as lists, the sweep's window, and the checkpoint vLLM must load; or ``p.error``."""
    a.batches = ints(a.batches, "--batches", p)
    a.widths = ints(a.widths, "--widths", p)
    if a.depths is None:
        known = {128: 4, 512: 8, 1024: 12}
        if any(w not in known for w in a.widths):
            p.error(f"--depths is needed for widths other than {', '.join(map(str, known))}")
        a.depths = [known[w] for w in a.widths]
    else:
        a.depths = ints(a.depths, "--depths", p)
    if len(a.depths) != len(a.widths):
        p.error(f"--depths gives {len(a.depths)} values for {len(a.widths)} widths")
    for w in a.widths:
        if w % 32 or w // head_dim(w) < 1:
            p.error(f"--widths: {w} is not a multiple of 32")
    need = a.prompt_tokens + a.new_tokens + 16
    a.sweep_window = a.sweep_window or max(256, 1 << (need - 1).bit_length())
    if a.sweep_window < need:
        p.error(f"--sweep-window {a.sweep_window} is shorter than prompt + new tokens + 16 ({need})")
    if not (a.checkpoint / "config.json").is_file() or not (a.checkpoint / "tokenizer_config.json").is_file():
        p.error(f"--checkpoint {a.checkpoint}: not a Hugging Face-format checkpoint (vLLM loads only those)")


def head_dim(width: int) -> int:
    return 32 if width <= 128 else 64


# -- native ------------------------------------------------------------------------------------------------------
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
    from sut.engine import Engine   # noqa: PLC0415

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


def best_ms(fns: dict[str, Callable[[], object]], reps: int = 5) -> dict[str, float]:
    """Best milliseconds per call of each function, interleaved rep by rep; enough calls for ~20 ms a rep."""
    calls = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        calls[name] = max(1, min(200, int(0.02 / max(time.perf_counter() - t, 1e-6))))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / calls[name] * 1e3)
    return best


def native_parts(model: Any, batch: int, context: int) -> dict[str, Any]:
    """The native decode step at ``batch`` rows and ``context`` keys, and its parts timed alone (ms): every
    layer's four matmuls, the LM head, every layer's attention (over the step's own cache), the argmax.

    The parts are separate ctypes calls here but one C call inside the step, so the cost of a call (timed on a
    1-row, 8-wide matmul and a 1-row, 1-key attention) is taken off each: ``*_raw`` keeps the figures before."""
    import torch   # noqa: PLC0415

    from sut import native   # noqa: PLC0415
    from sut.engine_batch import BatchModel   # noqa: PLC0415

    with torch.inference_mode():
        bm = BatchModel(model, batch)
        if bm.backend != "native":
            return {"unavailable": f"the native step does not run here (backend {bm.backend})"}
        cfg = model.config
        C, nh, V = cfg.n_embd, cfg.n_head, cfg.vocab_size
        kernel = native.tiles().index(bm.describe()["native_kernel"]["tile"])
        g = torch.Generator().manual_seed(0)
        xs = {C: torch.randn(batch, C, generator=g), 4 * C: torch.randn(batch, 4 * C, generator=g)}
        layers = [(native.pack_panels(m.weight, kernel), m.bias.detach().contiguous(), m.weight.shape[1])
                  for b in model.blocks for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]
        head = (native.pack_panels(model.lm_head.weight, kernel), torch.zeros(V))
        q = torch.randn(batch, nh, C // nh, generator=g)
        y = torch.empty_like(q)
        slots, lens = torch.arange(batch), torch.full((batch,), context + 1)
        scratch = torch.empty(native.scratch_floats(batch, nh, bm.window))
        logits = torch.randn(batch, V, generator=g)
        dec = [(s, 7, 0, context) for s in range(batch)]   # the cache's contents do not change the time
        tiny_x, tiny_w, tiny_b = torch.randn(1, 8), native.pack_panels(torch.randn(8, 8), kernel), torch.zeros(8)
        tiny_q, tiny_y, tiny_kv = torch.randn(1, 1, 8), torch.empty(1, 1, 8), torch.randn(2, 2, 1, 1, 8)
        zero, one = torch.zeros(1, dtype=torch.int64), torch.ones(1, dtype=torch.int64)
        tiny_scratch = torch.empty(native.scratch_floats(1, 1, 2))

        def matmuls() -> None:
            for packed, bias, k in layers:
                native.linear(xs[k], packed, bias, kernel)

        def attention() -> None:
            for layer in range(cfg.n_layer):
                native.decode_attention(q, bm.kv[layer], slots, lens, y, scratch)

        t = best_ms({"forward": lambda: bm.step(dec, []), "matmul": matmuls,
                     "lm_head": lambda: native.linear(xs[C], *head, kernel), "attention": attention,
                     "pick": lambda: bm.pick(logits, [], 0.0, None, []),
                     "linear_call": lambda: native.linear(tiny_x, tiny_w, tiny_b, kernel),
                     "attention_call": lambda: native.decode_attention(tiny_q, tiny_kv, zero, one, tiny_y,
                                                                       tiny_scratch)})
    return net_of_calls(t, len(layers), cfg.n_layer, context)


def net_of_calls(t: dict[str, float], n_linear: int, n_layer: int, context: int) -> dict[str, Any]:
    """native_parts' figures less the cost of the separate ctypes calls (one C call inside the step), the raw
    timings kept beside them; what the parts leave of the forward is the other model ops."""
    out = {"context": context, "forward": t["forward"], "pick": t["pick"], "matmul_raw": t["matmul"],
           "lm_head_raw": t["lm_head"], "attention_raw": t["attention"],
           "call_overhead_us": {"linear": t["linear_call"] * 1e3, "attention": t["attention_call"] * 1e3}}
    out["matmul"] = t["matmul"] - n_linear * t["linear_call"]
    out["lm_head"] = t["lm_head"] - t["linear_call"]
    out["attention"] = t["attention"] - n_layer * t["attention_call"]
    out["other_model"] = t["forward"] - out["matmul"] - out["lm_head"] - out["attention"]
    return out


# -- vLLM workers --------------------------------------------------------------------------------------------------
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
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

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


class _Clock:
    """Wall time of wrapped methods and hooked modules, per engine step (a dict of seconds by part)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.cur: dict[str, float] | None = None
        self._undo: list[Callable[[], None]] = []
        self._open: dict[int, float] = {}

    def add(self, key: str, dt: float) -> None:
        if self.cur is not None:
            self.cur[key] = self.cur.get(key, 0.0) + dt

    def wrap(self, obj: Any, name: str, key: str, outer: bool = False,
             seen: Callable[[Any], None] | None = None) -> None:
        orig = getattr(obj, name)

        def timed(*args: Any, **kw: Any) -> Any:
            if outer:
                self.cur = {}
            t = time.perf_counter()
            try:
                out = orig(*args, **kw)
            finally:
                self.add(key, time.perf_counter() - t)
                if outer:
                    self.steps.append(self.cur)
                    self.cur = None
            if seen is not None:
                seen(out)
            return out

        setattr(obj, name, timed)
        self._undo.append(lambda: delattr(obj, name))

    def hook(self, module: Any, key: str) -> None:
        def pre(m: Any, *_: Any) -> None:
            self._open[id(m)] = time.perf_counter()

        def post(m: Any, *_: Any) -> None:
            self.add(key, time.perf_counter() - self._open.pop(id(m)))

        hs = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        self._undo.append(lambda: [h.remove() for h in hs])

    def undo(self) -> None:
        for f in reversed(self._undo):
            f()
        self._undo.clear()


def vllm_profile(llm: Any, prompts: list, params: Any, batch: int) -> dict[str, Any]:
    """One forced-length generation with timers on vLLM's own calls; the mean of its decode-only steps (ms)."""
    try:
        from vllm.model_executor.layers.attention import Attention   # noqa: PLC0415
        from vllm.model_executor.layers.linear import LinearBase   # noqa: PLC0415

        eng = llm.llm_engine
        core = eng.engine_core.engine_core
        runner = core.model_executor.driver_worker.worker.model_runner
        model = runner.model
    except (ImportError, AttributeError) as e:
        return {"unavailable": f"vLLM's internals are not where this vLLM version kept them ({e})"}
    clock = _Clock()
    decode_step: list[bool] = []
    clock.wrap(eng, "step", "step", outer=True)
    clock.wrap(core.scheduler, "schedule", "schedule", seen=lambda out: decode_step.append(
        out.total_num_scheduled_tokens == len(out.num_scheduled_tokens) == batch))
    clock.wrap(core.scheduler, "update_from_output", "update")
    clock.wrap(core.model_executor, "execute_model", "execute")
    clock.wrap(core.model_executor, "sample_tokens", "sample")
    clock.wrap(model, "compute_logits", "lm_head")
    clock.hook(model, "forward")
    clock.hook(runner.sampler, "sampler")
    n_attn, n_linear = hook_layers(clock, model, Attention, LinearBase)
    t = time.perf_counter()
    try:
        llm.generate(prompts, params, use_tqdm=False)
    finally:
        wall = time.perf_counter() - t
        clock.undo()
    steps = [s for s in clock.steps if s.get("schedule") is not None]
    flags = decode_step[:len(steps)]
    dec = [s for s, d in zip(steps, flags) if d][2:]   # decode-only steps, the first two left out (warm-up)
    if not dec or not n_attn or not n_linear:
        return {"unavailable": f"no decode-only step was seen ({len(steps)} steps, {n_attn} attention and "
                               f"{n_linear} linear modules hooked)"}

    # each part's median over the decode steps: one preempted step on a shared machine does not move it (medians
    # of parts need not add up to the median step exactly)
    per_step = [step_parts(s) for s in dec]
    out = {k: statistics.median(p[k] for p in per_step) for k in per_step[0]}
    out.update(steps=len(steps), decode_steps=len(dec), attention_modules=n_attn, linear_modules=n_linear,
               loop_other=1e3 * (wall - sum(s.get("step", 0.0) for s in clock.steps)) / max(len(clock.steps), 1))
    return out


def hook_layers(clock: _Clock, model: Any, attention: type, linear: type) -> tuple[int, int]:
    """Time every attention and linear module of vLLM's model; how many of each were hooked (none: wrong internals)."""
    n_attn = n_linear = 0
    for m in model.modules():
        if isinstance(m, attention):
            clock.hook(m, "attention")
            n_attn += 1
        elif isinstance(m, linear):
            clock.hook(m, "matmul")
            n_linear += 1
    return n_attn, n_linear


def step_parts(s: dict[str, float]) -> dict[str, float]:
    """One hooked vLLM step's seconds by timer as the breakdown's parts, ms (the rest of each level by difference)."""
    g = {k: 1e3 * s.get(k, 0.0) for k in ("step", "schedule", "update", "execute", "sample", "forward", "matmul",
                                           "attention", "lm_head", "sampler")}
    return {"hooked_step": g["step"], "schedule": g["schedule"], "update": g["update"],
            "engine_other": g["step"] - g["schedule"] - g["update"] - g["execute"] - g["sample"],
            "runner_other": g["execute"] + g["sample"] - g["forward"] - g["lm_head"] - g["sampler"],
            "forward": g["forward"], "matmul": g["matmul"], "lm_head": g["lm_head"], "attention": g["attention"],
            "other_model": g["forward"] - g["matmul"] - g["attention"], "pick": g["sampler"]}


def _agent_worker(a: argparse.Namespace, send: Callable[..., None]) -> int:
    from sut.agent import AgentConfig   # noqa: PLC0415
    from sut.checkpoint import load_checkpoint   # noqa: PLC0415
    from sut.external_engine import ExternalEngine   # noqa: PLC0415
    from sut.suites import DEFAULTS, load_tasks   # noqa: PLC0415
    from sut.vllm_generator import VLLMGenerator   # noqa: PLC0415
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


def timed_agent(eng: Any, tasks: list, progress: Callable[[int], None]) -> tuple[float, list, dict]:
    """Run ``tasks`` through a started-or-not engine (native Engine or ExternalEngine); wall, results, stats."""
    results: list = [None] * len(tasks)
    left, lock, done = [len(tasks)], threading.Lock(), threading.Event()

    def on_done(i: int, r: Any) -> None:
        results[i] = r
        with lock:
            left[0] -= 1
            progress(len(tasks) - left[0])
            if left[0] == 0:
                done.set()

    eng.start()
    t0 = time.perf_counter()
    for i, task in enumerate(tasks):
        eng.submit(task, lambda r, i=i: on_done(i, r))
    done.wait()
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


# -- vLLM's server -------------------------------------------------------------------------------------------------
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
    from sut.vllm_server import VLLMServer   # noqa: PLC0415

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


# -- the sections --------------------------------------------------------------------------------------------------
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
    from sut.suites import DEFAULTS, load_tasks   # noqa: PLC0415
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
        from sut.engine import Engine   # noqa: PLC0415
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
            from sut.external_engine import ExternalEngine   # noqa: PLC0415
            from sut.openai_generator import OpenAIGenerator   # noqa: PLC0415
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


def sweep_models(a: argparse.Namespace, tok: Any, tmp: Path) -> Iterator[tuple[Any, Path]]:
    """Each width's random-weight model and its HF directory, one at a time (the largest is 0.6 GB)."""
    from benchmarks.bench_util import random_model   # noqa: PLC0415
    from sut.hf_format import save_hf   # noqa: PLC0415
    from sut.model import GPTConfig   # noqa: PLC0415

    for width, depth in zip(a.widths, a.depths):
        cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=a.sweep_window, n_layer=depth,
                        n_head=width // head_dim(width), n_embd=width, max_retries=0)
        model = random_model(cfg, tok, "cpu")   # <|end|>'s row zero: never the argmax, so every row runs N tokens
        d = tmp / f"random-w{width}-l{depth}"
        save_hf(d, model, tok, {"suite": "agentic", "note": "random weights (benchmarks/engine_peers.py sweep)"})
        yield model, d


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


# -- report --------------------------------------------------------------------------------------------------------
def fmt(x: Any, spec: str = ".0f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def report(r: dict[str, Any]) -> None:
    """Print the machine, then every section's tables, then the sections that failed."""
    m = r["machine"]
    print(f"\nmachine: {m['cpu']} ({m['cores']} cores), torch {m['torch']}, vLLM {m['vllm']}, python {m['python']}; "
          f"load average {m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}")
    print(f"threads: native {m['native_threads']} (its step is single-threaded C); vLLM {m.get('vllm_threads', '?')} "
          f"(OpenMP{', --vllm-threads ' + str(m['vllm_threads_asked']) if m.get('vllm_threads_asked') else ''})")
    print("ratios are native / peer: above 1 ours is faster")
    for d in [r.get("decode"), *r.get("sweep", [])]:
        if d and "batches" in d:
            report_decode(d)
    if "overtake" in r:
        report_overtake(r["overtake"])
    ag = r.get("agent")
    if ag and "native" in ag:
        report_agent(ag)
    off = r.get("offline")
    if off and "native" in off:
        report_offline(off)
    for name, err in r.get("errors", {}).items():
        print(f"\nsection {name} FAILED: {err}")


def report_decode(d: dict[str, Any]) -> None:
    """One model's decode table: tokens/s, ratios and CPU by batch, greedy agreement, and any breakdowns."""
    print(f"\ndecode tokens/s, {d['model']} (width {d['width']}, {d['layers']} layers, {d['heads']} heads, "
          f"{d['params'] / 1e6:.2f}M params, window {d['window']}; prompt {d['prompt_tokens']}, "
          f"{d['new_tokens']} new tokens, greedy, forced length; load average {d['loadavg_start'][0]:.1f} -> "
          f"{d.get('loadavg_end', [float('nan')])[0]:.1f})")
    peers = [p for p in ("vllm", "server") if any(p in row for row in d["batches"].values())]
    head = f"  {'batch':>6} {'native':>9}" + "".join(f" {LABELS[p]:>11}" for p in peers)
    head += "".join(f" {'/' + LABELS[p]:>12}" for p in peers) + "   core-s per 1k tokens (" + ", ".join(
        ["native", *[LABELS[p] for p in peers]]) + ")"
    print(head)
    for b, row in d["batches"].items():
        line = f"  {b:>6} {fmt(row['native']['decode_tok_s']):>9}"
        line += "".join(f" {fmt(row.get(p, {}).get('decode_tok_s')):>11}" for p in peers)
        line += "".join(f" {fmt(row.get(f'ratio_{p}'), '.2f'):>12}" for p in peers)
        line += "   " + ", ".join(fmt(row.get(e, {}).get("cpu_s_per_1k_tokens"), ".2f") for e in ["native", *peers])
        print(line)
    agreed = {p: [row.get(f"greedy_agree_{p}") for row in d["batches"].values()] for p in peers}
    print("  greedy tokens row 0 shares with native, per batch: " + "; ".join(
        f"{LABELS[p]} {', '.join(fmt(x) for x in v)} of {d['new_tokens']}" for p, v in agreed.items()))
    for b, row in d["batches"].items():
        if "breakdown" in row:
            print_breakdown(b, row["breakdown"])


def report_overtake(overtake: dict[str, Any]) -> None:
    """Per batch, the sweep's ratios by width and where vLLM in process overtakes native."""
    print("\nwhere vLLM in process overtakes native (ratio native/vLLM below 1), random weights:")
    for b, o in overtake.items():
        ratios = ", ".join(f"width {w}: {x:.2f}" for w, x in o["ratios"].items())
        verdict = (f"first at width {o['first_width_vllm_faster']}" if o["first_width_vllm_faster"] else
                   "not within the widths measured")
        if o["crossing_width_interpolated"]:
            verdict += f" (crossing ~{o['crossing_width_interpolated']:.0f}, log-log interpolated)"
        print(f"  batch {b:>4}: {ratios} -> {verdict}")


def report_agent(ag: dict[str, Any]) -> None:
    """The agentic tasks/s table, one line per engine."""
    print(f"\nagentic tasks/s, first {ag['tasks']} tasks ({ag['max_attempts']} attempts, {ag['max_new_tokens']} "
          f"tokens; max batch {ag['max_batch']}; {ag['workers']} sandbox worker(s), {ag.get('isolation')})")
    print(f"  {'engine':<12} {'tasks/s':>8} {'native/it':>10} {'pass@1':>7} {'pass@final':>10} {'attempts':>9} "
          f"{'errors':>6} {'wall s':>7}")
    for e in ENGINES:
        if e in ag:
            x = ag[e]
            print(f"  {LABELS[e]:<12} {x['tasks_s']:>8.2f} {fmt(ag.get(f'ratio_{e}', 1.0), '.2f'):>10} "
                  f"{x['pass_1']:>7.3f} {x['pass_final']:>10.3f} {x['mean_attempts']:>9.2f} {x['errors']:>6} "
                  f"{x['wall_s']:>7.1f}")


def report_offline(off: dict[str, Any]) -> None:
    """The Offline runs' samples/s and validity, one line per engine."""
    print(f"\nOffline (harness/run.py, {off['count']} tasks; {', '.join(x.split('.', 1)[1] for x in off['user_conf'])})"
          ": samples/s")
    for e in ENGINES:
        if e in off:
            x = off[e]
            print(f"  {LABELS[e]:<12} {fmt(x.get('samples_s'), '.2f'):>8}  {x.get('samples', '?')} samples, "
                  f"{x.get('validity') or x.get('error', '')}"
                  f"{'' if e == 'native' else ', native/it ' + fmt(off.get(f'ratio_{e}'), '.2f')}"
                  f"{' (' + str(x['invalid_reason']) + ')' if x.get('invalid_reason') else ''}")


def print_breakdown(batch: str, bd: dict[str, Any]) -> None:
    n, v = bd["native"], bd["vllm"]
    print(f"  per decode step at batch {batch}, ms (native parts timed alone at context {n.get('context', '?')}; "
          f"vLLM hooked, {fmt(v.get('hooked_step'), '.2f')} ms a hooked step):")
    if "unavailable" in n or "unavailable" in v:
        print(f"    not measured: {n.get('unavailable') or v.get('unavailable')}")
    rows = [("step wall (unhooked, from the rates)", n.get("wall"), v.get("wall")),
            ("scheduling + engine bookkeeping", n.get("engine_loop"),
             sum(v.get(k, 0.0) for k in ("schedule", "update", "engine_other", "loop_other")) if "schedule" in v else None),
            ("  of which vLLM schedule / update", None, f"{fmt(v.get('schedule'), '.2f')} / {fmt(v.get('update'), '.2f')}"),
            ("model runner: inputs, outputs", None, v.get("runner_other")),
            ("matmuls (4 a layer)", n.get("matmul"), v.get("matmul")),
            ("LM head", n.get("lm_head"), v.get("lm_head")),
            ("attention", n.get("attention"), v.get("attention")),
            ("other model ops (LN, GELU, adds, KV write)", n.get("other_model"), v.get("other_model")),
            ("token choice (argmax / Sampler)", n.get("pick"), v.get("pick"))]
    for name, x, y in rows:
        ys = y if isinstance(y, str) else fmt(y, ".3f")
        print(f"    {name:<44} {fmt(x, '.3f'):>9} {ys:>13}")


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib   # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # noqa: PLC0415

    models = [d for d in [r.get("decode"), *r.get("sweep", [])] if d and d.get("batches")]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, d in zip(axes[0], models):
        batches = [int(b) for b in d["batches"]]
        for e, style in zip(ENGINES, ("o-", "s-", "^--")):
            ys = [d["batches"][str(b)].get(e, {}).get("decode_tok_s") for b in batches]
            if any(y is not None for y in ys):
                ax.plot(batches, [y if y is not None else float("nan") for y in ys], style, label=LABELS[e])
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="decode tokens/s",
               title=f"{d['model']}\nwidth {d['width']}, {d['layers']} layers")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"decode tokens/s, {r['machine']['cpu']}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------------------------------
def run_peers(a: argparse.Namespace) -> dict[str, Any]:
    """Every section asked for; a section that fails is recorded under ``errors`` and the others still run."""
    import torch   # noqa: PLC0415

    from sut.checkpoint import load_checkpoint   # noqa: PLC0415
    from sut.vllm_generator import check_vllm   # noqa: PLC0415

    check_vllm(a.checkpoint)
    torch.set_num_threads(a.threads)
    model, tok, _ = load_checkpoint(a.checkpoint)
    res = run_header(a)
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="engine_peers-", dir=a.keep))
    say(f"scratch folder {tmp}")
    server = None

    def section(name: str, fn: Callable[[], Any]) -> None:
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001 - one section's failure must not lose the others' figures
            say(f"section {name} failed: {type(e).__name__}: {e}")
            res["errors"][name] = f"{type(e).__name__}: {e}"

    try:
        server = shared_server(a, tmp, res)
        if "decode" in a.sections:
            section("decode", lambda: decode_section(a, tmp, a.checkpoint.name, model, tok, a.checkpoint,
                                                     model.config.block_size, server))
        if "agent" in a.sections:
            section("agent", lambda: agent_section(a, tmp, model, tok, server))
        if "offline" in a.sections:
            section("offline", lambda: offline_section(a, tmp, server))
        if server is not None:
            server.stop()
            server = None
        if "sweep" in a.sections:
            section("sweep", lambda: sweep_section(a, tok, tmp, res["errors"]))
            if res.get("sweep"):
                res["overtake"] = overtakes(res["sweep"], a.batches)
    finally:
        if server is not None:
            server.stop()
    threads = {d.get("vllm", {}).get("threads") for d in [res.get("decode"), *res.get("sweep", [])] if d}
    res["machine"]["vllm_threads"] = ", ".join(str(t) for t in sorted(t for t in threads if t)) or None
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["scratch"] = str(tmp)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def run_header(a: argparse.Namespace) -> dict[str, Any]:
    """The figures' preamble: the command, the machine and versions, the settings, and an empty ``errors``."""
    import torch   # noqa: PLC0415

    from benchmarks.bench_util import cpu_model   # noqa: PLC0415
    from sut.vllm_generator import vllm_version   # noqa: PLC0415

    return {
        "command": " ".join(["python -m benchmarks.engine_peers", *a.argv]),
        "machine": {"cpu": cpu_model(detail=True), "cores": os.cpu_count(), "native_threads": a.threads,
                    "vllm_threads_asked": a.vllm_threads, "torch": torch.__version__, "vllm": vllm_version(),
                    "python": platform.python_version(), "loadavg_start": os.getloadavg()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()
                     if k not in ("worker", "model", "window", "seed", "argv")},
        "errors": {},
    }


def shared_server(a: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> Any:
    """One vLLM server on the checkpoint for the decode, agent and Offline sections (idle while the others run);
    None where none is wanted or it did not start (recorded under ``errors``)."""
    if a.no_server or not {"decode", "agent", "offline"} & set(a.sections):
        return None
    say("starting vLLM's server on the checkpoint (~45 s)")
    try:
        return start_server(a.checkpoint, max(a.max_batch, *a.batches), 1, a.vllm_threads,
                            tmp / "server-checkpoint.log")
    except RuntimeError as e:
        say(f"vLLM's server did not start: {e}")
        res["errors"]["server"] = str(e)
        return None


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


def main(argv: list[str] | None = None) -> int:
    from verifier.output_guard import STDOUT, text_to_stderr, write_json   # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    if a.worker:
        return worker_main(a)
    a.argv = argv
    from sut.vllm_generator import EngineUnavailable   # noqa: PLC0415
    with text_to_stderr(a.json):
        try:
            res = run_peers(a)
        except EngineUnavailable as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        report(res)
        plot(res, a.out / PLOT)
        if (a.out / PLOT).is_file():
            print(f"\nplot: {a.out / PLOT}")
    write_json(a.json, res, default=str)
    if a.json is not None and a.json != STDOUT:
        print(f"figures: {a.json}")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
