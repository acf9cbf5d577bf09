"""The agent loop driven through another inference engine: vLLM in-process, or OpenAI-compatible servers.

The native engine (sut/engine/scheduler.py) owns the model and schedules every row itself. Here the model
belongs to someone else: a ``Generator`` (sut/engine/external/vllm_generator.py, sut/engine/external/openai_generator.py) turns
a token-id prompt into one attempt's tokens. What stays ours is everything the benchmark is about:
the transcript layout (sut/model/transcript.py, with the HF checkpoints' attempt markers), the feedback and
truncation rule (``sut.agent.append_feedback``), greedy first attempts and sampled retries seeded by
(seed, task, attempt, redraw) (``sut.agent.attempt_seed``), redraws of rejected code, the sandboxed
verifier and the records the harness logs. So a pass rate measured through vLLM and one measured
natively differ only by what the engines generate.

Concurrency: one asyncio loop on its own thread runs every task as a coroutine, at most
``max_batch`` at a time. A task awaits its attempt's generation, then its verdict (the sandbox pool
works in other processes), then submits its next attempt at once: verification of one task overlaps
generation of the others, as in the native engine. Every submitted task gets exactly one ``on_done``;
a generation that fails or times out fails its task with ``error="<engine>: ..."`` (counted by the
SUT, and a run with such errors is INVALID), never a hang.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


from sut.model import transcript as tr
from sut.agent import AgentConfig, append_feedback, attempt_seed, should_redraw
from sut.records import AgentResult, AttemptRecord
from sut.engine.seq import OnDone, OnFirstToken, call, one_line, run_all
from sut.model.tokenizer import CodeTokenizer
from verifier.verdict import Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenRequest:
    """One attempt's generation: at most ``max_tokens`` tokens, stopping after ``stop_id``; greedy when
    ``temperature`` is 0, else top-k sampling from the engine's generator seeded with ``seed``."""
    max_tokens: int
    temperature: float
    top_k: int | None
    seed: int
    stop_id: int


@dataclass
class GenOut:
    token_ids: list[int]                 # what the model wrote, the stop token included when it wrote it
    first_token_s: float                 # seconds from the request to its first token
    cached_tokens: int = 0               # prompt tokens the engine's prefix cache served (0: unknown or none)
    endpoint: int = 0                    # which endpoint served it (OpenAI-compatible servers)


class Generator(Protocol):
    """What the loop needs from an engine: generate one attempt (a coroutine run on the loop's thread)."""

    name: str

    async def generate(self, prompt_ids: list[int], req: GenRequest,
                       on_first: Callable[[], None] | None = None) -> GenOut: ...
    def describe(self) -> dict[str, Any]: ...   # engine, version, options, endpoints: what a run records
    def close(self) -> None: ...


class _VerifierFailed(RuntimeError):
    """A SANDBOX_ERROR verdict: the verifier broke, not the code (the task fails with ``error="verifier: ..."``)."""


@dataclass
class _Counts:
    submitted: int = 0
    done: int = 0
    passed: int = 0
    errors: int = 0
    attempts: int = 0
    tokens: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generate_s: float = 0.0
    verify_s: float = 0.0
    per_endpoint: dict[int, int] = field(default_factory=dict)


class ExternalEngine:
    """The retry loop over a ``Generator``; the same public API as sut.engine.scheduler.Engine (submit, start, stop, run)."""

    def __init__(self, generator: Generator, tokenizer: CodeTokenizer, pool: Any, cfg: AgentConfig, window: int,
                 kv_token_bytes: int, max_batch: int = 64) -> None:
        if max_batch < 1 or cfg.max_attempts < 1 or cfg.max_new_tokens < 1:
            raise ValueError(f"bad engine settings: max_batch={max_batch} (>= 1), max_attempts={cfg.max_attempts} "
                             f"(>= 1), max_new_tokens={cfg.max_new_tokens} (>= 1)")
        if not tokenizer.attempt_ids:
            raise ValueError("another engine needs a Hugging Face-format checkpoint (attempt markers in its tokenizer); "
                             "this one carries the retry step in an embedding table that only the native engine has")
        self.gen, self.tok, self.pool, self.cfg = generator, tokenizer, pool, cfg
        self.window, self.kv_token_bytes, self.max_batch = window, kv_token_bytes, max_batch
        self.isolation: str = getattr(pool, "isolation", "unknown")
        self._loop = asyncio.new_event_loop()
        self._slots: asyncio.Semaphore | None = None
        self._thread: threading.Thread | None = None
        self._cv = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._tasks: set[asyncio.Task] = set()
        self._n = _Counts()

    # -- public API ------------------------------------------------------------------------
    def submit(self, task: Any, on_done: OnDone, on_first_token: OnFirstToken | None = None) -> None:
        """Queue ``task``; returns at once. ``on_done`` runs exactly once, ``on_first_token`` once at attempt 0's
        first token (with token id 0 where the engine streams text: LoadGen only times it)."""
        with self._cv:
            if not self._closed:
                self._in_flight += 1
                self._n.submitted += 1
                self._loop.call_soon_threadsafe(self._spawn, task, on_done, on_first_token)
                return
        call(on_done, AgentResult(getattr(task, "id", "?"), error=f"{self.gen.name}: stopped; the task was not run"))

    def start(self) -> None:
        with self._cv:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run_loop, name=f"{self.gen.name}-engine", daemon=True)
                self._thread.start()

    def stop(self, drain: bool = True, close_pool: bool = True) -> None:
        """Finish (``drain``) or cancel what is in flight, stop the loop, close the generator and the pool."""
        self.start()
        with self._cv:
            self._closed = True
            if drain:
                self._cv.wait_for(lambda: self._in_flight == 0)
        if not drain:
            self._loop.call_soon_threadsafe(lambda: [t.cancel() for t in list(self._tasks)])
            with self._cv:
                self._cv.wait_for(lambda: self._in_flight == 0, timeout=30)
        aclose = getattr(self.gen, "aclose", None)
        if aclose is not None:   # clients bound to the loop close on it
            try:
                asyncio.run_coroutine_threadsafe(aclose(), self._loop).result(timeout=10)
            except Exception:  # noqa: BLE001 - closing is best effort; the run's results are already out
                log.warning("closing the %s engine's clients failed", self.gen.name, exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join()
        self.gen.close()
        if close_pool and hasattr(self.pool, "close"):
            self.pool.close()

    def run(self, tasks: Sequence[Any], progress: bool = False) -> list[AgentResult]:
        """Submit every task, wait for all, return the results in input order (starts the engine)."""
        return run_all(self, tasks, f"agent ({self.gen.name})", progress)

    def stats(self) -> dict[str, Any]:
        n = self._n
        return {"engine": self.gen.describe(), "tasks_submitted": n.submitted, "tasks_done": n.done,
                "tasks_passed": n.passed, "tasks_failed_with_error": n.errors, "attempts": n.attempts,
                "tokens_generated": n.tokens, "requests": n.requests, "prompt_tokens": n.prompt_tokens,
                "cached_prompt_tokens": n.cached_tokens,
                "prefix_reuse_hit_rate": n.cached_tokens / n.prompt_tokens if n.prompt_tokens else 0.0,
                "generate_s": n.generate_s, "verify_s": n.verify_s, "max_batch": self.max_batch,
                "requests_per_endpoint": dict(sorted(n.per_endpoint.items())), "isolation": self.isolation}

    # -- the loop thread ---------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._slots = asyncio.Semaphore(self.max_batch)
        self._loop.run_forever()
        pending = [t for t in self._tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def _spawn(self, task: Any, on_done: OnDone, on_first: OnFirstToken | None) -> None:
        t = self._loop.create_task(self._one_task(task, on_done, on_first))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _one_task(self, task: Any, on_done: OnDone, on_first: OnFirstToken | None) -> None:
        result = AgentResult(getattr(task, "id", "?"))
        try:
            assert self._slots is not None
            async with self._slots:
                await self._attempts(task, on_first, result)
        except asyncio.CancelledError:
            result.error = f"{self.gen.name}: stopped before the task finished"
        except _VerifierFailed as e:
            result.error = str(e)
        except Exception as e:  # noqa: BLE001 - one task's failure is its result, never the run's end
            result.error = one_line(f"{self.gen.name}: ", e)
            log.warning("task %s failed: %s", result.task_id, result.error)
        finally:
            n = self._n
            n.done += 1
            n.passed += result.passed
            n.errors += result.error is not None
            n.attempts += len(result.attempts)
            n.tokens += result.n_tokens
            call(on_done, result)
            with self._cv:
                self._in_flight -= 1
                self._cv.notify_all()

    async def _attempts(self, task: Any, on_first: OnFirstToken | None, result: AgentResult) -> None:
        """The native engine's retry loop (sut/engine/scheduler.py) for one task, with the generation done by
        another engine and the verdict awaited; the rules are sut/agent.py's."""
        tok, cfg = self.tok, self.cfg
        prefix = tr.prompt_prefix(tok, task.prompt)
        if len(prefix) + 1 >= self.window:
            raise ValueError(f"prompt is {len(prefix)} tokens: the context window is {self.window}")
        buf = tr.TokenBuffer()
        buf.reset(prefix)
        feedback: str | None = None
        rejected: set[str] = set()
        first = [on_first]          # fired once, at attempt 0's first token
        for k in range(cfg.max_attempts):
            truncated = False
            if k > 0:
                assert feedback is not None
                truncated = append_feedback(buf, tok, prefix, feedback, k, cfg.max_new_tokens, self.window)
            budget = min(cfg.max_new_tokens, self.window - len(buf) - 1)
            if budget < 1:
                raise ValueError(f"attempt {k} starts at {len(buf)} tokens: no room left in the {self.window}-token window")
            prompt_tokens = len(buf)
            t0 = time.perf_counter()
            out, ids, code, redraws, redrawn = await self._draw(task, buf, k, budget, rejected, first)
            t_gen = time.perf_counter()
            closed = ids if ids and ids[-1] == tok.end_id else [*ids, tok.end_id]   # a budget cut is closed by us
            buf.append(tr.Piece(closed, [0] * len(closed), [0] * len(closed)))
            try:
                verdict = await asyncio.wrap_future(self.pool.submit(code, task.check))
            except Exception as e:  # the pool promises a Verdict; anything else is its failure
                raise _VerifierFailed(one_line("verifier: ", e)) from e
            t_ver = time.perf_counter()
            self._n.verify_s += t_ver - t_gen
            reused = min(out.cached_tokens, prompt_tokens)
            result.attempts.append(AttemptRecord(
                attempt=k, context_len=len(buf), prompt_tokens=prompt_tokens, gen_tokens=len(ids),
                reused_tokens=reused, prefilled_tokens=prompt_tokens - reused,
                prefill_ms=out.first_token_s * 1e3, decode_ms=(t_gen - t0 - out.first_token_s) * 1e3,
                verify_ms=(t_ver - t_gen) * 1e3, status=verdict.status.value, kv_bytes=self.kv_token_bytes * len(buf),
                truncated=truncated, code=code, feedback=verdict.feedback, token_ids=ids, redraws=redraws,
                redrawn_tokens=redrawn))
            result.n_tokens += len(ids) + redrawn
            if verdict.status is Status.SANDBOX_ERROR:   # the verifier failed, not the code: never a silent fail
                raise _VerifierFailed(f"verifier: {verdict.feedback or verdict.message or 'sandbox error'}".splitlines()[0])
            if verdict.passed:
                result.passed = True
                return
            feedback = cfg.shown(verdict.feedback)
            rejected.add(code)

    async def _draw(self, task: Any, buf: tr.TokenBuffer, k: int, budget: int, rejected: set[str],
                    first: list[OnFirstToken | None]) -> tuple[GenOut, list[int], str, int, int]:
        """Attempt k's generation, a retry that repeats rejected code redrawn (cfg.redraws): the kept answer, its
        tokens (within the budget) and code, the redraws and the tokens they discarded."""
        tok, cfg = self.tok, self.cfg
        temperature = cfg.temperature if k > 0 else 0.0
        redraws = redrawn = 0
        while True:
            out = await self._generate(list(buf.ids), GenRequest(budget, temperature, cfg.top_k,
                                                                 attempt_seed(cfg.seed, task.id, k, redraws), tok.end_id),
                                       first)
            ids = out.token_ids[: budget]
            code = tok.decode(ids)
            if not should_redraw(cfg, k, redraws, temperature, code, rejected):
                return out, ids, code, redraws, redrawn
            redraws, redrawn = redraws + 1, redrawn + len(ids)

    async def _generate(self, prompt_ids: list[int], req: GenRequest, first: list[OnFirstToken | None]) -> GenOut:
        on_first = None
        if first[0] is not None:
            fire = first[0]

            def on_first() -> None:
                if first[0] is not None:
                    first[0] = None
                    call(fire, 0)
        t0 = time.perf_counter()
        out = await self.gen.generate(prompt_ids, req, on_first)
        n = self._n
        n.generate_s += time.perf_counter() - t0
        n.requests += 1
        n.prompt_tokens += len(prompt_ids)
        n.cached_tokens += min(out.cached_tokens, len(prompt_ids))
        n.per_endpoint[out.endpoint] = n.per_endpoint.get(out.endpoint, 0) + 1
        return out
