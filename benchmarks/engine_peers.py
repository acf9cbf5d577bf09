"""Our engine against vLLM, in process and behind its OpenAI-compatible server, on the same model and tasks.

    python -m benchmarks.engine_peers --json runs/engine_peers.json       # the plot: runs/engine_peers/engine_peers.png
    python -m benchmarks.engine_bench --peers vllm --json runs/engine_peers.json     # the same
    python -m benchmarks.engine_peers --quick --json /tmp/peers.json                    # a smoke test (~2-3 min)

Sections (``--sections``, all by default):

decode     decode tokens/s at batch 1, 32 and 128 on the shipped agentic checkpoint: native (sut/engine/scheduler.py's
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

This module is the command (flags, the run's order, the figures file); its parts are in benchmarks/peers/:
workers.py hosts vLLM (the ``--worker`` processes, and the server with the client that times it), sections.py
measures (decode, agent, offline, sweep), profile.py splits a step (breakdown), report.py prints the tables and
draws the plot.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers import REPO, SECTIONS, say
from benchmarks.peers.report import plot, report
from benchmarks.peers.sections import agent_section, decode_section, head_dim, offline_section, overtakes, sweep_section
from benchmarks.peers.workers import start_server, worker_main

FULL = {"batches": "1,32,128", "new_tokens": 128, "reps": 3, "tasks": 128, "widths": "128,512,1024"}
QUICK = {"batches": "1,8", "new_tokens": 16, "reps": 3, "tasks": 8, "widths": "128"}   # --quick's defaults
DEFAULT_OUT = REPO / "runs" / "engine_peers"   # git-ignored
PLOT = "engine_peers.png"


def ints(text: str, flag: str, p: argparse.ArgumentParser) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        p.error(f"{flag} takes comma-separated integers, got {text!r}")
    if not out or min(out) < 1:
        p.error(f"{flag} takes positive integers, got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    from sut.tasks.suites import DEFAULTS   # noqa: PLC0415 - light
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


def run_peers(a: argparse.Namespace) -> dict[str, Any]:
    """Every section asked for; a section that fails is recorded under ``errors`` and the others still run."""
    import torch   # noqa: PLC0415

    from sut.model.checkpoint import load_checkpoint   # noqa: PLC0415
    from sut.engine.external.vllm_generator import check_vllm   # noqa: PLC0415

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

    from benchmarks.bench_util import cpu_model                  # noqa: PLC0415
    from sut.engine.external.vllm_generator import vllm_version  # noqa: PLC0415

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


def main(argv: list[str] | None = None) -> int:
    from verifier.output_guard import STDOUT, text_to_stderr, write_json   # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    if a.worker:
        return worker_main(a)
    a.argv = argv
    from sut.engine.external.vllm_generator import EngineUnavailable   # noqa: PLC0415
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
