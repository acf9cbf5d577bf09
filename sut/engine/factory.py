"""Engine options shared by every entry point, and the one place that builds an engine.

harness/run.py parses these flags and forwards them to each LoadGen child process
(``to_argv``); benchmarks and sut.evaluate build engines the same way, so a flag means
the same thing everywhere.
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sut.tasks.suites import DEFAULT_SUITE, DEFAULTS, SUITES, check_checkpoint_dir, check_suite, per_suite
from verifier.sandbox import add_isolation_flag


@dataclass
class EngineOptions:
    suite: str = DEFAULT_SUITE       # the task suite (sut/tasks/suites.py): its tasks, and the defaults below
    checkpoint: Path = DEFAULTS[DEFAULT_SUITE].checkpoint
    device: str = "cpu"
    max_attempts: int = DEFAULTS[DEFAULT_SUITE].max_attempts
    max_new_tokens: int = 0          # per attempt; 0: the suite's
    redraws: int = 3                 # AgentConfig.redraws: redraw a retry repeating rejected code
    max_batch: int = 64
    workers: int = 0                 # verifier sandbox workers (processes); 0: default_workers()
    batch_wait_ms: float = 0.0
    no_kv_cache: bool = False
    no_prefix_reuse: bool = False
    no_speculation: bool = False     # retries decode a token a step (no drafts checked in one pass)
    backend: str = "auto"            # the batched forward: "native" (sut/engine/native/step.py), "torch", or "auto"
    seed: int = 0
    threads: int = 0                 # torch intra-op threads; 0: leave torch's default
    isolation: str = "bwrap"         # the verifier sandbox: bwrap (fail closed) or process (explicit, weaker)
    temperature: float = 0.7         # retries' sampling temperature (attempt 0 is greedy); 0: greedy retries too
    engine: str = "native"           # who generates: our engine, vLLM in this process, or OpenAI-compatible servers
    base_url: list[str] = field(default_factory=list)   # --engine openai: the endpoints, e.g. http://host:8000/v1
    model_name: str = ""             # --engine openai: the served model's name ("" : the one the servers serve)
    request_timeout_s: float = 60.0  # --engine openai: a request's deadline; past it the task fails, counted
    vllm_compile: bool = False       # --engine vllm: torch.compile vLLM's model (slower start; docs/engine.md)

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser, default_suite: str = DEFAULT_SUITE) -> None:
        p.add_argument("--suite", default=default_suite,
                       help=f"task suite: {' or '.join(SUITES)} (default {default_suite}); it sets the defaults of "
                            "--checkpoint, --max-attempts and --max-new-tokens")
        p.add_argument("--checkpoint", type=Path, default=None,
                       help=f"checkpoint directory (default: the suite's, {per_suite('checkpoint')})")
        p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
        p.add_argument("--max-attempts", type=int, default=None,
                       help=f"attempts per task (1 = no retries; default: the suite's, {per_suite('max_attempts')})")
        p.add_argument("--max-new-tokens", type=int, default=None,
                       help=f"tokens per attempt (default: the suite's, {per_suite('max_new_tokens')})")
        p.add_argument("--redraws", type=int, default=3,
                       help="redraw a retry that repeats rejected code up to N times (0: off; docs/model.md)")
        p.add_argument("--max-batch", type=int, default=None, help="sequences decoded together (default: the scenario's)")
        p.add_argument("--workers", type=int, default=None, help="verifier sandbox workers (default: the scenario's; 0 = one per core but the engine thread's)")
        p.add_argument("--batch-wait-ms", type=float, default=None, help="wait to gather arrivals (default: the scenario's)")
        p.add_argument("--no-kv-cache", action="store_true", help="recompute the whole context for every token")
        p.add_argument("--no-prefix-reuse", action="store_true", help="re-prefill the whole transcript on every attempt")
        p.add_argument("--no-speculation", action="store_true",
                       help="decode retries a token a step, without prompt-lookup drafts (docs/engine.md)")
        p.add_argument("--backend", choices=("auto", "native", "torch"), default=None,
                       help="the engine's batched forward: our native CPU step, torch's operators, or auto (native "
                            "where it builds and applies; docs/engine.md)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
        add_isolation_flag(p)
        p.add_argument("--temperature", type=float, default=None,
                       help="retries' sampling temperature (default 0.7; 0: greedy on every attempt)")
        add_engine_arguments(p)

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> "EngineOptions":
        """The flags given; --checkpoint, --max-attempts and --max-new-tokens not given (or --max-new-tokens 0)
        are the suite's. SuiteError (a ValueError) for an unknown --suite."""
        opts = cls()
        for f in fields(cls):
            value = getattr(a, f.name, None)
            if value is not None:
                setattr(opts, f.name, value)
        suite = DEFAULTS[check_suite(opts.suite)]
        if getattr(a, "checkpoint", None) is None:
            opts.checkpoint = suite.checkpoint
        if getattr(a, "max_attempts", None) is None:
            opts.max_attempts = suite.max_attempts
        opts.max_new_tokens = opts.max_new_tokens or suite.max_new_tokens
        return opts

    def to_argv(self) -> list[str]:
        argv: list[str] = []
        for f in fields(self):
            value, flag = getattr(self, f.name), "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                argv += [flag] if value else []
            elif isinstance(value, list):
                argv += [x for v in value for x in (flag, str(v))]
            elif value == "":
                continue
            else:
                argv += [flag, str(value)]
        return argv

    def validate(self) -> None:
        """Every option checked before anything runs or is written; ValueError names the flag and the fix.
        Upper bounds stop values that would crash or hang the LoadGen child instead (torch segfaults on
        100000 threads; a pool of 100000 sandboxes never finishes starting; an unused KV-cache row costs memory)."""
        from sut.tasks.basic import EVAL_SIZE   # one row per evaluation task is the most a batch can fill

        check_suite(self.suite)
        for flag, value, low, high in (("--max-attempts", self.max_attempts, 1, None), ("--redraws", self.redraws, 0, None),
                                       ("--max-new-tokens", self.max_new_tokens, 0, None),
                                       ("--max-batch", self.max_batch, 1, EVAL_SIZE), ("--workers", self.workers, 0, PER_CPU),
                                       ("--threads", self.threads, 0, PER_CPU), ("--seed", self.seed, 0, MAX_SEED)):
            check_range(flag, value, low, high)
        check_range("--batch-wait-ms", self.batch_wait_ms, 0, MAX_BATCH_WAIT_MS)
        check_range("--temperature", self.temperature, 0, MAX_TEMPERATURE)
        check_range("--request-timeout-s", self.request_timeout_s, 0.1, None)
        if self.isolation not in ("bwrap", "process"):
            raise ValueError(f"--isolation must be bwrap or process, got {self.isolation!r}")
        check_device(self.device)
        if not (self.checkpoint / "config.json").is_file():
            raise ValueError(f"--checkpoint {self.checkpoint}: no checkpoint there (config.json missing); pass "
                             f"--checkpoint DIR or train one with `python -m sut.train --suite {self.suite} --out DIR`")
        check_checkpoint_dir(self.checkpoint, self.suite)
        self.check_engine()

    def check_engine(self) -> None:
        """The --engine and its options: ValueError in one line (vLLM missing, a checkpoint it cannot load,
        an endpoint that does not answer or does not serve --model-name), before anything is written."""
        from sut.engine.external.vllm_generator import EngineUnavailable, check_vllm  # noqa: PLC0415

        if self.engine not in ENGINES:
            raise ValueError(f"--engine {self.engine!r}: unknown engine; choose one of {', '.join(ENGINES)}")
        if self.base_url and self.engine != "openai":
            raise ValueError(f"--base-url is for --engine openai (the engine is {self.engine}); add --engine openai")
        if self.engine == "native":
            return
        if not (self.checkpoint / "tokenizer_config.json").is_file():
            raise ValueError(f"--engine {self.engine} needs a Hugging Face-format checkpoint ({self.checkpoint} is the "
                             "native format 1); convert it with `python -m sut.train.self_repair --attempt-markers`, "
                             "or use --engine native")
        try:
            if self.engine == "vllm":
                check_vllm(self.checkpoint)
            else:
                if not self.base_url:
                    raise ValueError("--engine openai needs --base-url URL (e.g. http://127.0.0.1:8000/v1)")
                from sut.engine.external.openai_generator import served_models  # noqa: PLC0415

                self.model_name, _ = served_models(self.base_url, self.model_name)
        except EngineUnavailable as e:
            raise ValueError(str(e)) from None


ENGINES = ("native", "vllm", "openai")
MAX_TEMPERATURE = 10.0   # beyond this sampling is uniform noise: a typo
def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--engine and its options, the same in every tool that generates (run.py, sut.evaluate, engine_bench)."""
    p.add_argument("--engine", default=None, metavar="{" + ",".join(ENGINES) + "}",
                   help="who generates: native (ours, default), vllm (vLLM in this process) or openai (an "
                        "OpenAI-compatible server at --base-url); docs/engine.md")
    p.add_argument("--base-url", action="append", default=None, metavar="URL",
                   help="--engine openai: an endpoint's /v1 URL; repeat it for several (least-outstanding balancing)")
    p.add_argument("--model-name", default=None, help="--engine openai: the served model (default: the one served)")
    p.add_argument("--request-timeout-s", type=float, default=None,
                   help="--engine openai: seconds a request may take before its task fails (default 60)")
    p.add_argument("--vllm-compile", action="store_true", default=None,
                   help="--engine vllm: let vLLM torch.compile the model (about 40 s more to start)")


MAX_BATCH_WAIT_MS = 60_000   # a gathering wait longer than a minute is a typo, not a policy
MAX_SEED = 2 ** 63 - 1
PER_CPU = 4 * (os.cpu_count() or 1)   # threads or sandbox workers beyond this only queue, or crash torch


def check_range(flag: str, value: float, low: float, high: float | None = None) -> None:
    """ValueError naming ``flag`` unless ``value`` is a finite number from ``low`` to ``high`` (None: no cap)."""
    if not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number, got {value}")
    if value < low:
        raise ValueError(f"{flag} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{flag} must be at most {high}{' (4 per CPU here)' if high == PER_CPU else ''}, got {value}")


def check_device(device: str) -> None:
    """ValueError unless ``device`` is one torch can parse and this machine has (cpu, cuda[:N]);
    torch is imported here, not at module load. Shared by every command that takes ``--device``."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"--device {device!r} is not a torch device: try cpu, cuda or cuda:1") from e
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: only cpu and cuda are supported")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch ({torch.__version__}) sees no CUDA device; "
                         "install a CUDA build of torch on a GPU machine, or pass --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")


def default_workers() -> int:
    """Verifier workers beside an engine: one per CPU core but the one the engine thread keeps busy.
    On 2 cores, 1 worker gives 0.61-0.67 s for the 256-task agent run against 0.70-0.74 s with 2 and
    0.74-0.80 s with 3 (interleaved, docs/engine.md): a sandbox that shares the engine thread's core
    slows the one thread everything waits on."""
    return max(1, (os.cpu_count() or 1) - 1)


def build_engine(opts: EngineOptions):
    """Load the checkpoint, start a sandbox pool and return an engine (not yet started)."""
    import torch

    from sut.agent import AgentConfig
    from sut.model.checkpoint import load_checkpoint
    from verifier.pool import SandboxPool

    opts.validate()
    if opts.threads and opts.engine == "native":   # vLLM binds and sizes its own threads
        torch.set_num_threads(opts.threads)
    model, tokenizer, _meta = load_checkpoint(opts.checkpoint, device=opts.device)
    cfg = AgentConfig(max_attempts=opts.max_attempts, seed=opts.seed, redraws=opts.redraws, temperature=opts.temperature,
                      max_new_tokens=opts.max_new_tokens or DEFAULTS[opts.suite].max_new_tokens)
    if opts.engine != "native":
        return build_external(opts, model, tokenizer, cfg)
    # the agent reads verdicts, not lint notes, and its programs import nothing: a lean zygote (docs/verifier.md)
    pool = SandboxPool(workers=opts.workers or default_workers(), lint=False, preload=(), isolation=opts.isolation)
    from sut.engine.scheduler import Engine

    return Engine(model, tokenizer, pool, cfg, max_batch=opts.max_batch, batch_wait_ms=opts.batch_wait_ms,
                  use_kv_cache=not opts.no_kv_cache, prefix_reuse=not opts.no_prefix_reuse, device=opts.device,
                  backend=opts.backend, speculate=not opts.no_speculation)


def build_external(opts: EngineOptions, model: Any, tokenizer: Any, cfg: Any, pool: Any = None) -> Any:
    """An ExternalEngine (sut/engine/external/engine.py) over vLLM in this process or OpenAI-compatible servers;
    the generator starts first, so a checkpoint vLLM cannot load stops before any sandbox does (``pool``:
    a caller's sandbox pool, else one is started)."""
    from sut.engine.external.engine import ExternalEngine  # noqa: PLC0415
    from verifier.pool import SandboxPool  # noqa: PLC0415

    window = model.config.block_size
    if opts.engine == "vllm":
        from sut.engine.external.vllm_generator import VLLMGenerator  # noqa: PLC0415

        gen = VLLMGenerator(opts.checkpoint, opts.max_batch, window, opts.seed,
                            prefix_caching=not opts.no_prefix_reuse, compile=opts.vllm_compile)
    else:
        from sut.engine.external.openai_generator import OpenAIGenerator  # noqa: PLC0415

        gen = OpenAIGenerator(opts.base_url, tokenizer, opts.model_name, opts.request_timeout_s)
    if pool is None:
        pool = SandboxPool(workers=opts.workers or default_workers(), lint=False, preload=(), isolation=opts.isolation)
    return ExternalEngine(gen, tokenizer, pool, cfg, window, model.kv_bytes(1), opts.max_batch)
